// The contract between device naming and its users (the store's record builder, the query log, the
// top-k table and the HTTP API). lookup() runs for every recorded query, so it must be a map read.

/** What is known about the device behind a client address. */
export interface DeviceInfo {
  /** Stable key: `mac:<aa:bb:..>` when the MAC is known (so IPv6 privacy addresses fold into one
   *  device), else `name:<configured name>`, else `ip:<address>`. */
  id: string;
  name?: string;
  mac?: string;
}

/** One device with every address it was seen at (for GET /api/v1/clients). */
export interface DeviceEntry extends DeviceInfo {
  addresses: string[];
  /** Where the name came from. */
  source?: 'config' | 'dnsmasq' | 'odhcpd' | 'dhcpd' | 'reverse' | 'neighbour';
}

export interface DeviceResolver {
  /** Synchronous and cheap: a read of maps refreshed in the background. Never throws. */
  lookup(address: string): DeviceInfo;
  /** Every device known from leases, config and the neighbour table. */
  list(): DeviceEntry[];
  /** Stops watchers and timers. */
  close(): void;
  /** Resolves when background refreshes started by recent lookups are done (bounded wait). Optional. */
  settle?(maxMs?: number): Promise<void>;
}
