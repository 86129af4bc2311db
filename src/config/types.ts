import type { CacheConfig } from '../cache/packet-cache.js';

export interface UpstreamConfig { url: string; ca?: string; name?: string; ip?: string }

export interface TcpLimits {
  idleTimeoutMs: number; readTimeoutMs: number; maxConnections: number; maxConnectionsPerClient: number;
  maxQueriesPerConnection: number; maxWriteBufferBytes: number;
}

export interface Config {
  listen: {
    tproxy: { udp?: string; tcp?: string };
    plain: string[];
    plainTcp: string[];
    tlsCert?: string;
    tlsKey?: string;
    dot: string[];
    doh: string[];
    udpMaxSize: number;
    plainAllow: string[];
    tcp: TcpLimits;
  };
  workers: number | 'auto';
  memory: { semiSpaceMiB: number };
  upstreams: UpstreamConfig[];
  /** Plain-DNS servers resolving upstream hostnames. */
  bootstrap: string[];
  upstream: {
    timeoutMs: number; strategy: 'fastest' | 'failover' | 'round-robin' | 'parallel'; maxInflight: number; ecs: 'strip' | 'pass';
    paddingBlock: number; maxStreamsPerConnection: number; maxConnections: number; pingIntervalMs: number;
    hedgeMs: number; failureThreshold: number; maxBackoffMs: number;
    /** 0x20 case randomisation of plain-DNS upstream queries, checked on the answer. */
    plain0x20: boolean;
  };
  cache: CacheConfig & { enabled: boolean };
  metrics: { listen?: string; allowNonLoopback: boolean; adminToken?: string; hosts?: string[] };
  stateDir: string;
  /** Directory of the config file: relative paths in it resolve from here. */
  baseDir: string;
  /** Keys owned by other subsystems, validated by their own schema fragments. */
  [key: string]: unknown;
}
