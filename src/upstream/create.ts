import type { Config } from '../config/types.js';
import type { Upstream } from './types.js';
import { DohUpstream } from './doh.js';
import { PlainDnsUpstream } from './plain.js';
import { UpstreamConfigError } from '../errors.js';

export function createUpstreams(cfg: Config): Upstream[] {
  return cfg.upstreams.map((u) => {
    const scheme = u.url.slice(0, u.url.indexOf(':'));
    if (scheme === 'https') {
      return new DohUpstream({
        url: u.url, ca: u.ca, maxStreamsPerConnection: cfg.upstream.maxStreamsPerConnection,
        maxConnections: cfg.upstream.maxConnections, pingIntervalMs: cfg.upstream.pingIntervalMs,
      });
    }
    if (scheme === 'udp' || scheme === 'tcp') return new PlainDnsUpstream(u.url);
    throw new UpstreamConfigError(`upstream scheme "${scheme}" is not supported yet: ${u.url}`);
  });
}
