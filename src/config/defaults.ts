import path from 'node:path';
import { DEFAULT_CACHE_CONFIG } from '../cache/packet-cache.js';
import type { Config } from './types.js';
import { DEFAULT_SEMI_SPACE_MIB } from '../heap-tuning.js';

/** Loopback and private ranges: the plain listener must never become an open resolver. */
export const DEFAULT_PLAIN_ALLOW = ['127.0.0.0/8', '::1/128', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7', 'fe80::/10'];

export function applyDefaults(raw: Partial<Config>, baseDir: string): Config {
  const l = (raw.listen ?? {}) as Partial<Config['listen']>;
  const u = (raw.upstream ?? {}) as Partial<Config['upstream']>;
  const c = (raw.cache ?? {}) as Partial<Config['cache']>;
  const m = (raw.metrics ?? {}) as Partial<Config['metrics']>;
  const resolve = (p: string | undefined) => (p ? path.resolve(baseDir, p) : p);
  return {
    ...raw,
    listen: {
      tproxy: { ...(l.tproxy ?? {}) },
      plain: l.plain ?? [],
      plainTcp: l.plainTcp ?? [],
      tlsCert: resolve(l.tlsCert),
      tlsKey: resolve(l.tlsKey),
      dot: l.dot ?? [],
      doh: l.doh ?? [],
      udpMaxSize: l.udpMaxSize ?? 1232,
      plainAllow: l.plainAllow ?? DEFAULT_PLAIN_ALLOW,
      tcp: {
        idleTimeoutMs: 10_000, readTimeoutMs: 5_000, maxConnections: 4096, maxConnectionsPerClient: 64,
        maxQueriesPerConnection: 100_000, maxWriteBufferBytes: 256 * 1024, ...(l.tcp ?? {}),
      },
    },
    workers: raw.workers ?? 1,
    memory: { semiSpaceMiB: DEFAULT_SEMI_SPACE_MIB, ...(raw.memory ?? {}) },
    upstreams: (raw.upstreams ?? []).map((x) => ({ ...x, ca: resolve(x.ca) })),
    bootstrap: raw.bootstrap ?? [],
    upstream: {
      timeoutMs: 2000, strategy: 'fastest', maxInflight: 4096, ecs: 'strip', paddingBlock: 128,
      maxStreamsPerConnection: 100, maxConnections: 4, pingIntervalMs: 15000,
      hedgeMs: 300, failureThreshold: 3, maxBackoffMs: 30000, plain0x20: true, ...u,
    },
    cache: { enabled: true, ...DEFAULT_CACHE_CONFIG, ...c },
    metrics: { allowNonLoopback: false, ...m },
    stateDir: path.resolve(baseDir, raw.stateDir ?? '.state'),
    baseDir,
  } as Config;
}
