// The contract of the query history: the record written for every answered (or dropped) client
// query, and the store interface the HTTP API (/api/v1/queries, /stats, /clients, /stream) reads.
// SQLite (embedded, default) and PostgreSQL (fleets) both implement QueryStore.

export type QueryKind = 'query' | 'dropped' | 'bypass';
/** How the answer was produced. */
export type AnsweredBy = 'cache' | 'stale' | 'upstream' | 'local' | 'forward' | 'blocked';

export interface QueryRecord {
  /** Wall-clock ms when the query arrived. */
  time: number;
  /** Client address (text form, no port). */
  client: string;
  clientPort?: number;
  /** The device behind the client address, when known. */
  device?: { id?: string; name?: string; mac?: string };
  /** Original destination the client sent the query to (TPROXY) or our listener address. */
  server: string;
  serverPort: number;
  /** How the client reached us: 'udp' | 'tcp' (transparent), 'plain', 'dot', 'doh', ... */
  transport: string;
  qname: string;
  /** Mnemonic (A, AAAA, ...) or TYPEnnn. */
  qtype: string;
  kind: QueryKind;
  /** RCODE mnemonic (NOERROR, NXDOMAIN, ...); absent for dropped queries. */
  rcode?: string;
  answeredBy?: AnsweredBy;
  /** Filter decision, when one applied. */
  group?: string;
  list?: string;
  rule?: string;
  /** Why a dropped query was dropped ('malformed', 'ratelimit', ...). */
  dropReason?: string;
  upstream?: string;
  upstreamLatencyMs?: number;
  /** From arrival to the answer handed to the transport. */
  latencyMs?: number;
  /** First records of the answer, short text form ("A 192.0.2.1"). */
  answers?: string[];
  /** Set by the PostgreSQL store (which gateway wrote it); absent in SQLite. */
  gateway?: string;
}

/** A record as read back: an opaque id that orders like time (for cursors and SSE ids). */
export interface StoredRecord extends QueryRecord { id: string }

/** 'blocked' | 'cache' | 'upstream' | ... (answeredBy), 'dropped', or an RCODE mnemonic ('NXDOMAIN'). */
export type ResultFilter = string;

export interface SearchQuery {
  /** Client address, or device name (exact, case-insensitive). */
  client?: string;
  /** Substring of the qname (case-insensitive). */
  name?: string;
  /** Qtype mnemonic. */
  type?: string;
  result?: ResultFilter;
  /** Inclusive lower bound, ms. */
  from?: number;
  /** Exclusive upper bound, ms. */
  to?: number;
  /** Default 100, at most 1000. */
  limit?: number;
  /** The nextCursor of a previous page. */
  cursor?: string;
}

export interface SearchResult { items: StoredRecord[]; nextCursor: string | null }

export interface StatsQuery {
  /** ms; defaults: to = now, from = to - 24 h. */
  from?: number;
  to?: number;
  /** Bucket width in ms; default chosen to give about 100 buckets. */
  step?: number;
  /** Entries in each top list; default 10. */
  top?: number;
}

export interface StatsPoint { time: number; total: number; blocked: number; cacheHits: number }
export interface TopEntry { key: string; count: number; name?: string }

export interface StatsResult {
  from: number; to: number; step: number;
  total: number; blocked: number; cacheHits: number; dropped: number;
  series: StatsPoint[];
  /** key = client address; name = device name when known. */
  topClients: TopEntry[];
  topNames: TopEntry[];
  topBlocked: TopEntry[];
}

export interface ClientEntry {
  /** Device id (see DeviceInfo.id) or `ip:<address>` for unknown devices. */
  id: string;
  name?: string;
  mac?: string;
  group?: string;
  addresses: string[];
  /** ms; 0 when never seen in the store. */
  lastSeen: number;
  queries24h: number;
}

export type RecordListener = (r: QueryRecord) => void;

export interface QueryStore {
  /** Never blocks and never throws: the record joins a bounded queue; the oldest unwritten record is
   *  dropped (and counted) when the queue is full. Listeners of subscribe() see it at once. */
  append(r: QueryRecord): void;
  search(q: SearchQuery): Promise<SearchResult>;
  stats(q: StatsQuery): Promise<StatsResult>;
  clients(): Promise<ClientEntry[]>;
  /** Live records; returns the unsubscribe function. A throwing listener is removed. */
  subscribe(listener: RecordListener): () => void;
  /** Writes what is queued, then closes. */
  close(): Promise<void>;
  /** Records committed to the store. */
  readonly written: number;
  /** Records dropped from a full queue (or lost to a failed write) before reaching the store. */
  readonly droppedUnwritten: number;
  /** Write transactions committed. */
  readonly batches: number;
  readonly queueDepth: number;
  readonly backend: 'sqlite' | 'postgres';
}
