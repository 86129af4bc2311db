// The configuration schema. Keys under listen/upstreams/metrics are fixed by the first issue because
// tools (the shared benchmark) and tests write them.
const hostPort = { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]|[0-9.]+|[A-Za-z0-9.-]+):[0-9]{1,5}$' };
const ms = { type: 'integer', minimum: 0 };

export const coreSchema = {
  listen: {
    type: 'object', additionalProperties: false,
    properties: {
      tproxy: {
        type: 'object', additionalProperties: false,
        properties: { udp: hostPort, tcp: hostPort },
      },
      plain: { type: 'array', items: hostPort },
      plainTcp: { type: 'array', items: hostPort },
      /** Certificate chain and key (PEM) for the DoT and DoH listeners; reloaded on SIGHUP and on change. */
      tlsCert: { type: 'string', minLength: 1 },
      tlsKey: { type: 'string', minLength: 1 },
      /** DNS over TLS (RFC 7858) listeners for LAN clients. */
      dot: { type: 'array', items: hostPort },
      /** DNS over HTTPS (RFC 8484, /dns-query, HTTP/2 and HTTP/1.1) listeners for LAN clients. */
      doh: { type: 'array', items: hostPort },
      /** Largest UDP answer we send, whatever the client's EDNS size (DNS Flag Day 2020: 1232). */
      udpMaxSize: { type: 'integer', minimum: 512, maximum: 4096, default: 1232 },
      /** Who may use the plain (non-transparent) listeners. */
      plainAllow: { type: 'array', items: { type: 'string' } },
      tcp: {
        type: 'object', additionalProperties: false,
        properties: {
          idleTimeoutMs: ms, readTimeoutMs: ms, maxConnections: { type: 'integer', minimum: 1 },
          maxConnectionsPerClient: { type: 'integer', minimum: 1 }, maxQueriesPerConnection: { type: 'integer', minimum: 1 },
          maxWriteBufferBytes: { type: 'integer', minimum: 1024 },
        },
      },
    },
  },
  workers: { oneOf: [{ type: 'integer', minimum: 1, maximum: 64 }, { const: 'auto' }] },
  memory: {
    type: 'object', additionalProperties: false,
    properties: {
      /** Cap on each V8 young-generation semi-space (src/heap-tuning.ts); 1 saves RSS, 4 saves CPU. */
      semiSpaceMiB: { type: 'integer', minimum: 1, maximum: 64 },
    },
  },
  upstreams: {
    type: 'array', minItems: 1,
    items: {
      type: 'object', additionalProperties: false, required: ['url'],
      properties: {
        url: { type: 'string', pattern: '^(https|udp|tcp|tls)://' },
        ca: { type: 'string' },
        name: { type: 'string' },
        /** Fixed address for a hostname URL (TLS still checks the hostname). */
        ip: { type: 'string' },
      },
    },
  },
  /** Plain-DNS servers (IP or IP:port) that resolve upstream hostnames; never the system resolver. */
  bootstrap: { type: 'array', items: { type: 'string' } },
  upstream: {
    type: 'object', additionalProperties: false,
    properties: {
      timeoutMs: { type: 'integer', minimum: 50, maximum: 60000 },
      strategy: { enum: ['fastest', 'failover', 'round-robin', 'parallel'] },
      /** Floor of the hedge delay (max(hedgeMs, 2 x latency EWMA)); 0 disables hedging. */
      hedgeMs: ms,
      failureThreshold: { type: 'integer', minimum: 1 },
      maxBackoffMs: { type: 'integer', minimum: 100 },
      maxInflight: { type: 'integer', minimum: 1 },
      ecs: { enum: ['strip', 'pass'] },
      paddingBlock: { type: 'integer', minimum: 0, maximum: 512 },
      maxStreamsPerConnection: { type: 'integer', minimum: 1 },
      maxConnections: { type: 'integer', minimum: 1, maximum: 64 },
      pingIntervalMs: ms,
      /** 0x20 case randomisation on plain-DNS upstreams (answers must echo the case); false for servers that do not. */
      plain0x20: { type: 'boolean' },
    },
  },
  cache: {
    type: 'object', additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      maxBytes: { type: 'integer', minimum: 65536 },
      maxEntries: { type: 'integer', minimum: 1 },
      minTtl: { type: 'integer', minimum: 0 },
      maxTtl: { type: 'integer', minimum: 0 },
      negativeTtl: { type: 'integer', minimum: 0 },
      servfailTtl: { type: 'integer', minimum: 0 },
      staleMaxAge: { type: 'integer', minimum: 0 },
      optimistic: { type: 'boolean' },
      optimisticMaxAge: { type: 'integer', minimum: 0 },
      prefetchThreshold: { type: 'number', minimum: 0, maximum: 1 },
      prefetchMinHits: { type: 'integer', minimum: 0 },
    },
  },
  metrics: {
    type: 'object', additionalProperties: false,
    properties: {
      listen: hostPort,
      /** A non-loopback metrics/admin bind must be asked for explicitly. */
      allowNonLoopback: { type: 'boolean' },
      /** Bearer token for admin actions (cache flush); required when metrics.listen is not loopback. */
      adminToken: { type: 'string', minLength: 16 },
      /** Host names (besides IP literals and localhost) the endpoint answers to: DNS-rebinding guard. */
      hosts: { type: 'array', items: { type: 'string', pattern: '^[A-Za-z0-9.-]+$' } },
    },
  },
  stateDir: { type: 'string' },
} as const;
