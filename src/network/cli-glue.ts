// Glue between the CLI (`run --manage-network`, `network up|down|show|rules`)
// and the network module. The `network:` config key is validated by
// networkSchema (registered by the config loader) and again, strictly, here.
import type { Config } from '../config/types.js';
import type { LogFn } from '../server.js';
import { ConfigError } from '../errors.js';
import { parseHostPort } from '../config/address.js';
import { bypassUpFor, bypassDownFor, bypassShowFor } from './bypass.js';
import {
  cleanupStale,
  networkDown,
  networkExit,
  networkRuleset,
  networkShow,
  networkUp,
  NetworkConfigError,
  readIngress,
  resolveNetworkConfig,
  type ListenPorts,
  type NetworkConfig,
} from './index.js';

function netCfg(cfg: Config): NetworkConfig {
  const n = (cfg.network ?? {}) as NetworkConfig;
  try {
    resolveNetworkConfig(n);
  } catch (e) {
    if (e instanceof NetworkConfigError) throw new ConfigError(e.message, undefined, undefined, 'network');
    throw e;
  }
  return n;
}

/** Ports of listen.tproxy.udp / .tcp; one may stand in for the other. */
export function portsFrom(cfg: Config): ListenPorts {
  const t = cfg.listen?.tproxy ?? {};
  const port = (s: string | undefined, key: string): number | undefined => {
    if (!s) return undefined;
    try {
      return parseHostPort(s).port;
    } catch (e) {
      throw new ConfigError(`listen.tproxy.${key}: ${(e as Error).message}`, undefined, undefined, `listen.tproxy.${key}`);
    }
  };
  const udp = port(t.udp, 'udp');
  const tcp = port(t.tcp, 'tcp');
  if (udp === undefined && tcp === undefined) {
    throw new ConfigError('network management needs listen.tproxy.udp and/or listen.tproxy.tcp', undefined, undefined, 'listen.tproxy');
  }
  return { udpPort: (udp ?? tcp)!, tcpPort: (tcp ?? udp)! };
}

/** `run --manage-network` start: clear what a crashed run left behind, then apply. */
export async function upForRun(cfg: Config, log: LogFn): Promise<void> {
  const n = netCfg(cfg);
  const ports = portsFrom(cfg);
  const { found } = await cleanupStale(n);
  if (found.length) log('warn', 'removed stale network state left by a previous run', { found });
  const ingress = await networkUp(n, ports);
  const r = resolveNetworkConfig(n);
  log('info', 'network up', {
    table: `inet ${r.table}`,
    fwmark: `0x${r.fwmark.toString(16)}`,
    routeTable: r.routeTable,
    udpPort: ports.udpPort,
    tcpPort: ports.tcpPort,
    failMode: r.failMode,
    local: r.local,
    interceptOn: ingress.lanInterfaces,
    notIntercepted: ingress.wanInterfaces,
    ...(ingress.note ? { note: ingress.note } : {}),
  });
  const bypass = await bypassUpFor(cfg);
  if (bypass) log('info', `network up: ${bypass}`);
}

/** `run --manage-network` exit: failMode open removes everything, closed keeps it. */
export async function downForExit(cfg: Config, log: LogFn): Promise<void> {
  try {
    const { action, found } = await networkExit(netCfg(cfg));
    if (action === 'removed') await bypassDownFor(cfg);
    if (action === 'kept') log('info', 'network rules kept (failMode closed): DNS is blocked until dns-tproxy runs again');
    else log('info', 'network down', { removed: found });
  } catch (e) {
    log('error', 'network down failed', { error: (e as Error).message });
  }
}

/** `dns-tproxy network up|down|show|rules`; returns the exit code. */
export async function networkCommand(sub: string | undefined, cfg: Config): Promise<number> {
  const n = netCfg(cfg);
  switch (sub) {
    case 'up':
      await networkUp(n, portsFrom(cfg));
      process.stdout.write('network up\n');
      { const b = await bypassUpFor(cfg); if (b) process.stdout.write(`${b}\n`); }
      return 0;
    case 'down':
      await networkDown(n);
      await bypassDownFor(cfg);
      process.stdout.write('network down\n');
      return 0;
    case 'show': {
      const r = await networkShow(n, portsFrom(cfg));
      const b = await bypassShowFor(cfg);
      process.stdout.write(r.text + b.text);
      return r.ok && b.ok ? 0 : 1;
    }
    case 'rules': {
      const ingress = await readIngress(resolveNetworkConfig(n));
      process.stdout.write(networkRuleset(n, portsFrom(cfg), ingress.wanInterfaces));
      return 0;
    }
    default:
      process.stderr.write('usage: dns-tproxy network up|down|show|rules --config FILE\n');
      return 2;
  }
}
