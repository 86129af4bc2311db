// Per-query state. Contexts are pooled: a cache hit borrows one and returns it in the same tick, so
// steady-state traffic allocates none. The pool size is the bound on queries held at once.
import { ParsedQuery } from '../dns/wire.js';

export type Transport = 'udp' | 'tcp' | 'plain' | 'dot' | 'doh';

/** Transports where a query waits on a connection: never dropped silently, answers up to 64 KiB. */
export function isStream(t: Transport | string): boolean { return t === 'tcp' || t === 'dot' || t === 'doh'; }
export type CacheStatus = 'none' | 'hit' | 'miss' | 'stale';

/** Where an answer goes. UDP listeners copy it into a tx slot; TCP connections frame it. */
export interface Responder {
  readonly transport: Transport;
  send(ctx: QueryContext, wire: Uint8Array, off: number, len: number): void;
  /** Human-readable addresses, for logs only (allocates). */
  describe(ctx: QueryContext): { client: string; clientPort: number; server: string; serverPort: number; family: 4 | 6 };
}

/** Why a query was filtered or answered locally; opaque to everything but the filter and the log. */
export interface FilterDecisionLike { kind: string; list?: string; rule?: string; [k: string]: unknown }

export class QueryContext {
  /** The client's query, copied in so that rx slots can be reused while the query waits upstream. */
  buf: Buffer = Buffer.allocUnsafe(512);
  len = 0;
  readonly q = new ParsedQuery();
  responder!: Responder;
  /** Addressing for UDP replies: a copy of the rx metadata slot (see native/README.md). */
  readonly meta = new Int32Array(16);
  /** The same memory as `meta`, for the raw address bytes. */
  readonly metaBytes = new Uint8Array(this.meta.buffer);
  /** TCP: the connection the query came on. */
  conn: unknown = null;
  /** Largest reply this client accepts over UDP (EDNS size capped by the server maximum, 512 without EDNS). */
  maxReply = 512;
  group = 0;
  key = '';
  /** Monotonic ms when the query arrived. */
  started = 0;
  /** Wall-clock ms when the query arrived (logs, dnstap). */
  wallStarted = 0;
  cacheStatus: CacheStatus = 'none';
  decision: FilterDecisionLike | null = null;
  upstream = '';
  /** Latency of the upstream exchange that produced the answer, ms (0: none); for the query history. */
  upstreamMs = 0;
  /** Set by the forward stage when every upstream attempt failed; serve-stale looks at it. */
  upstreamFailed = false;
  /** Index of the stage that holds the query; answer hooks run for the stages below it. */
  depth = 0;
  ansBuf: Uint8Array | null = null;
  ansOff = 0;
  ansLen = 0;
  inUse = false;

  /** Copies a query into this context, growing the buffer only for unusually large TCP queries. */
  load(src: Uint8Array, off: number, len: number): void {
    if (len > this.buf.length) this.buf = Buffer.allocUnsafe(len);
    this.buf.set(src.subarray(off, off + len), 0);
    this.len = len;
  }

  setAnswer(buf: Uint8Array, off: number, len: number): void {
    this.ansBuf = buf; this.ansOff = off; this.ansLen = len;
  }
}

export class ContextPool {
  private readonly free: QueryContext[] = [];
  private created = 0;
  /** Contexts handed out and not yet returned. */
  inUse = 0;
  exhausted = 0;
  constructor(readonly capacity: number) {}

  acquire(): QueryContext | null {
    let c = this.free.pop();
    if (!c) {
      if (this.created >= this.capacity) { this.exhausted++; return null; }
      c = new QueryContext();
      this.created++;
    }
    c.inUse = true;
    this.inUse++;
    c.group = 0; c.key = ''; c.cacheStatus = 'none'; c.decision = null; c.upstream = ''; c.upstreamMs = 0; c.upstreamFailed = false;
    c.depth = 0; c.ansBuf = null; c.ansLen = 0; c.conn = null;
    return c;
  }

  release(c: QueryContext): void {
    if (!c.inUse) return;
    c.inUse = false;
    c.ansBuf = null;
    c.conn = null;
    this.inUse--;
    this.free.push(c);
  }
}
