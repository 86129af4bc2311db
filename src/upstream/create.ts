import net from 'node:net';
import type { Config, UpstreamConfig } from '../config/types.js';
import type { Upstream } from './types.js';
import { DohUpstream } from './doh.js';
import { DotUpstream } from './dot.js';
import { PlainDnsUpstream } from './plain.js';
import { BootstrapResolver } from './bootstrap.js';
import { UpstreamPool, type PoolOptions } from './pool.js';
import { UpstreamConfigError } from '../errors.js';

/** One upstream from its config entry. `bootstrap` resolves hostname URLs (see bootstrap.ts). */
export function createUpstream(u: UpstreamConfig, cfg: Pick<Config, 'upstream'>, bootstrap: BootstrapResolver): Upstream {
  let url: URL;
  try { url = new URL(u.url); } catch { throw new UpstreamConfigError(`upstream URL is not valid: ${u.url}`); }
  const scheme = url.protocol.slice(0, -1);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (u.ip !== undefined && net.isIP(u.ip) === 0) throw new UpstreamConfigError(`upstream ${u.url}: ip "${u.ip}" is not an IP address`);
  if (net.isIP(host) === 0 && !u.ip && !(bootstrap.configured && (scheme === 'https' || scheme === 'tls'))) {
    // The system resolver may be dns-tproxy itself: a hostname needs a fixed ip or bootstrap servers.
    throw new UpstreamConfigError(`upstream ${u.url}: hostname "${host}" needs "ip:" on the upstream or a top-level "bootstrap:" list of DNS server IPs`
      + (scheme === 'udp' || scheme === 'tcp' ? ' (plain DNS upstreams take "ip:" only)' : ''));
  }
  const o = cfg.upstream;
  if (scheme === 'https') {
    return new DohUpstream({
      url: u.url, ca: u.ca, ip: u.ip, bootstrap, maxStreamsPerConnection: o.maxStreamsPerConnection,
      maxConnections: o.maxConnections, pingIntervalMs: o.pingIntervalMs,
    });
  }
  if (scheme === 'tls') return new DotUpstream({ url: u.url, ca: u.ca, ip: u.ip, bootstrap });
  if (scheme === 'udp' || scheme === 'tcp') return new PlainDnsUpstream(u.url, { ip: u.ip, use0x20: o.plain0x20 ?? true });
  throw new UpstreamConfigError(`upstream scheme "${scheme}" is not supported: ${u.url}`);
}

export function createUpstreams(cfg: Config): Upstream[] {
  let bootstrap: BootstrapResolver;
  try { bootstrap = new BootstrapResolver(cfg.bootstrap ?? []); } catch (e) { throw new UpstreamConfigError(`bootstrap: ${(e as Error).message}`); }
  const made: Upstream[] = [];
  try {
    for (const u of cfg.upstreams) made.push(createUpstream(u, cfg, bootstrap));
  } catch (e) {
    for (const m of made) m.close();
    throw e;
  }
  return made;
}

/** Pool options from the config (`upstream.strategy`, `hedgeMs`, `failureThreshold`, `maxBackoffMs`). */
export function poolOptions(cfg: Pick<Config, 'upstream'>): PoolOptions {
  const o = cfg.upstream;
  return { strategy: o.strategy, hedgeMs: o.hedgeMs, failureThreshold: o.failureThreshold, maxBackoffMs: o.maxBackoffMs };
}

/** The pool for a config: createUpstreams + poolOptions. */
export function createUpstreamPool(cfg: Config): UpstreamPool {
  return new UpstreamPool(createUpstreams(cfg), poolOptions(cfg));
}
