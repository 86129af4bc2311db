// GET /api/v1/clients: the store knows which addresses asked and when; the device resolver knows
// which addresses belong together (one MAC, several IPv6 privacy addresses) and their names. This
// folds the two into one entry per device.
import type { DeviceResolver } from '../devices/types.js';
import type { ClientEntry } from './types.js';

export type GroupOf = (address: string) => string | undefined;

export function mergeClients(seen: ClientEntry[], devices: DeviceResolver | null, groupOf?: GroupOf): ClientEntry[] {
  const byId = new Map<string, ClientEntry>();
  const add = (e: ClientEntry): void => {
    const cur = byId.get(e.id);
    if (!cur) { byId.set(e.id, { ...e, addresses: [...e.addresses] }); return; }
    for (const a of e.addresses) if (!cur.addresses.includes(a)) cur.addresses.push(a);
    cur.lastSeen = Math.max(cur.lastSeen, e.lastSeen);
    cur.queries24h += e.queries24h;
    cur.name ??= e.name;
    cur.mac ??= e.mac;
  };
  for (const e of seen) {
    const dev = devices?.lookup(e.addresses[0]);
    if (dev && (dev.name !== undefined || dev.mac !== undefined)) {
      add({ ...e, id: dev.id, name: dev.name ?? e.name, mac: dev.mac ?? e.mac });
    } else add(e);
  }
  for (const d of devices?.list() ?? []) {
    add({ id: d.id, name: d.name, mac: d.mac, addresses: d.addresses, lastSeen: 0, queries24h: 0 });
  }
  const out = [...byId.values()];
  for (const e of out) {
    if (e.name === undefined) delete e.name;
    if (e.mac === undefined) delete e.mac;
    if (groupOf) {
      for (const a of e.addresses) { const g = groupOf(a); if (g) { e.group = g; break; } }
    }
  }
  out.sort((a, b) => b.lastSeen - a.lastSeen || (a.name ?? a.id).localeCompare(b.name ?? b.id));
  return out;
}
