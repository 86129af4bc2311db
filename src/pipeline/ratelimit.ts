// Per-client rate limiting: a token bucket per client, kept in a fixed-size open-addressing table keyed
// by the raw source-address bytes (no string formatting, no allocation per query).
//
// Clients. UDP (transparent and plain): the source address from the rx metadata copy in ctx.meta,
// masked to `ipv4Prefix` / `ipv6Prefix` bits (IPv6 defaults to /64: one host usually owns a whole /64,
// so per-address buckets would be trivially sidestepped). TCP: the socket's remote address, parsed once
// per connection and cached. Background refreshes (transport 'internal') are never limited.
//
// The table. One slot per client (`maxClients` slots, at least 16), allocated once; an entry lives
// within WINDOW slots of its hash position, so the table itself is the bound on tracked clients. Keys are stored in full (family + 4 words), so two clients never share a bucket:
// a hash collision only means they compete for the same window. When the key is not in its window the
// new client takes an empty slot of its window or else the least recently seen slot of the window ("LRU-ish", counted in `evictions`). Entries whose bucket has refilled
// completely are freed whenever a scan passes them: such an entry is indistinguishable from a fresh one,
// so forgetting it changes no decision. Lookups always scan the whole window (no early stop at an empty
// slot), which is what makes freeing in place safe without tombstones. The hash is seeded per process, so nobody can pick source addresses that land in a
// victim's window on purpose. Eviction is fail-open: an evicted client comes back with a full bucket.
//
// What this does not do: it cannot stop a flood with spoofed sources spread over many addresses (each
// new source starts with a full bucket); that is what the context pool bound and the upstream in-flight
// cap are for. Over the limit with `action: refused` we answer REFUSED over UDP only to queries that
// parse (the question is echoed, so the answer is never larger than the query plus an OPT); anything
// else over the limit is dropped. Over TCP the source cannot be spoofed and a silent drop would leave the
// connection waiting for an answer that never comes, so TCP is always answered REFUSED.
import crypto from 'node:crypto';
import net from 'node:net';
import { readQuery, ReadStatus, writeHeaderOnlyReply, Rcode } from '../dns/wire.js';
import type { Stage, Next } from './chain.js';
import { isStream, type QueryContext } from './context.js';
// The rx metadata layout has one source, checked against the addon when it loads (native/lib).
import { M_FAMILY, M_SRC_ADDR } from '../../native/lib/index.js';

export interface LimitsConfig {
  /** Sustained queries per second per client (or per IPv6 prefix). */
  perClientQps: number;
  /** Bucket size: how many queries a quiet client may send at once. */
  perClientBurst: number;
  /** What happens to a query over the limit. */
  action: 'drop' | 'refused';
  /** Upper bound on clients tracked at once: the table's slot count (about 40 bytes per slot). */
  maxClients: number;
  /** IPv6 clients are aggregated by this prefix length. */
  ipv6Prefix: number;
  /** IPv4 clients are aggregated by this prefix length (32 = per address). */
  ipv4Prefix: number;
}

export const DEFAULT_LIMITS: LimitsConfig = {
  perClientQps: 200, perClientBurst: 400, action: 'drop', maxClients: 10_000, ipv6Prefix: 64, ipv4Prefix: 32,
};

/** JSON-schema fragment for the top-level `limits:` key. */
export const limitsSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    perClientQps: { type: 'number', exclusiveMinimum: 0, maximum: 10_000_000 },
    perClientBurst: { type: 'number', minimum: 1, maximum: 10_000_000 },
    action: { enum: ['drop', 'refused'] },
    maxClients: { type: 'integer', minimum: 1, maximum: 4_000_000 },
    ipv6Prefix: { type: 'integer', minimum: 1, maximum: 128 },
    ipv4Prefix: { type: 'integer', minimum: 1, maximum: 32 },
  },
} as const;

/** Slots searched around a key's hash position. */
export const WINDOW = 8;


const refusedScratch = Buffer.allocUnsafe(1024);

/** A TCP connection as far as the limiter cares: anything with a remote address. */
interface ConnLike { clientIp?: string; socket?: { remoteAddress?: string } }

export class RateLimitStage implements Stage {
  readonly name = 'ratelimit';
  /** Queries over the limit (dropped + refused). */
  limited = 0;
  /** Queries over the limit that got no answer. */
  dropped = 0;
  /** Queries over the limit answered REFUSED. */
  refused = 0;
  /** Tracked clients pushed out of a full window before their bucket had refilled. */
  evictions = 0;
  /** Clients currently tracked (never above maxClients). */
  tracked = 0;

  readonly cfg: LimitsConfig;
  private readonly size: number;
  private readonly keys: Int32Array;
  private readonly fams: Uint8Array;
  private readonly tokens: Float64Array;
  private readonly last: Float64Array;
  private readonly perMs: number;
  private readonly burst: number;
  /** A bucket idle this long (ms) is full again. */
  private readonly refillMs: number;
  private readonly seed: number;
  private readonly mask4: number;
  private readonly mask6: Int32Array;
  private readonly tcpKeys = new WeakMap<object, Int32Array>();
  private readonly respondsRefused: boolean;

  constructor(cfg: Partial<LimitsConfig>, private readonly respond: (ctx: QueryContext) => void,
    private readonly drop: (ctx: QueryContext) => void, private readonly now: () => number = () => performance.now(),
    seed = crypto.randomBytes(4).readInt32LE(0)) {
    this.cfg = { ...DEFAULT_LIMITS, ...cfg };
    const c = this.cfg;
    if (!(c.perClientQps > 0)) throw new RangeError('limits.perClientQps must be > 0');
    if (!(c.perClientBurst >= 1)) throw new RangeError('limits.perClientBurst must be >= 1');
    const size = Math.max(16, Math.trunc(c.maxClients));
    this.size = size;
    this.keys = new Int32Array(size * 4);
    this.fams = new Uint8Array(size);
    this.tokens = new Float64Array(size);
    this.last = new Float64Array(size);
    this.perMs = c.perClientQps / 1000;
    this.burst = c.perClientBurst;
    this.refillMs = this.burst / this.perMs;
    this.seed = seed | 0;
    this.respondsRefused = c.action === 'refused';
    // Masks built byte by byte and read back as native-endian words, so they apply directly to the
    // Int32 view of the address bytes.
    const m = new Uint8Array(16);
    for (let bit = 0; bit < c.ipv6Prefix; bit++) m[bit >> 3] |= 0x80 >> (bit & 7);
    this.mask6 = new Int32Array(m.buffer.slice(0));
    m.fill(0);
    for (let bit = 0; bit < c.ipv4Prefix; bit++) m[bit >> 3] |= 0x80 >> (bit & 7);
    this.mask4 = new Int32Array(m.buffer)[0];
  }

  /** Slots in the table (capacity, not clients). */
  get slots(): number { return this.size; }

  query(ctx: QueryContext, next: Next): void {
    const tr = ctx.responder.transport as string;
    let ok: boolean;
    if (tr === 'udp' || tr === 'plain') {
      const m = ctx.meta;
      if (m[M_FAMILY] === 6) {
        const k = this.mask6;
        ok = this.take(6, m[M_SRC_ADDR] & k[0], m[M_SRC_ADDR + 1] & k[1], m[M_SRC_ADDR + 2] & k[2], m[M_SRC_ADDR + 3] & k[3]);
      } else {
        ok = this.take(4, m[M_SRC_ADDR] & this.mask4, 0, 0, 0);
      }
    } else if (isStream(tr) && ctx.conn !== null && typeof ctx.conn === 'object') {
      const k = this.tcpKey(ctx.conn as ConnLike);
      ok = k[0] === 0 ? true : this.take(k[0], k[1], k[2], k[3], k[4]);
    } else {
      next(ctx);
      return;
    }
    if (ok) { next(ctx); return; }
    this.limited++;
    if (isStream(tr) || this.respondsRefused) {
      const q = ctx.q;
      if (readQuery(ctx.buf, 0, ctx.len, q) === ReadStatus.OK) {
        ctx.maxReply = isStream(tr) ? 65535 : 512;
        const n = writeHeaderOnlyReply(ctx.buf, 0, q, Rcode.REFUSED, refusedScratch, 0);
        ctx.setAnswer(refusedScratch, 0, n);
        this.refused++;
        this.respond(ctx);
        return;
      }
      // Over TCP, let validation answer what does not parse (a silent drop would stall the connection).
      if (isStream(tr)) { next(ctx); return; }
    }
    this.dropped++;
    this.drop(ctx);
  }

  /** Takes one token from the client's bucket; false when it is empty. Exposed for tests. */
  take(fam: number, k0: number, k1: number, k2: number, k3: number): boolean {
    const now = this.now();
    const keys = this.keys, fams = this.fams, last = this.last, tokens = this.tokens;
    let h = Math.imul(k0 ^ this.seed ^ fam, 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 15) ^ k1, 0x85ebca77);
    h = Math.imul(h ^ (h >>> 13) ^ k2, 0xc2b2ae3d);
    h = Math.imul(h ^ (h >>> 16) ^ k3, 0x27d4eb2f);
    h ^= h >>> 15;
    const size = this.size;
    let s = (h >>> 0) % size;
    let empty = -1, oldest = -1, oldestAt = Infinity;
    for (let j = 0; j < WINDOW; j++, s = s + 1 === size ? 0 : s + 1) {
      const f = fams[s];
      if (f === 0) { if (empty < 0) empty = s; continue; }
      const o = s << 2;
      if (f === fam && keys[o] === k0 && keys[o + 1] === k1 && keys[o + 2] === k2 && keys[o + 3] === k3) {
        let el = now - last[s];
        if (el < 0) el = 0;
        let t = tokens[s] + el * this.perMs;
        if (t > this.burst) t = this.burst;
        last[s] = now;
        if (t >= 1) { tokens[s] = t - 1; return true; }
        tokens[s] = t;
        return false;
      }
      const at = last[s];
      if (now - at >= this.refillMs) {
        // Refilled completely: forgetting it changes no decision, so free the slot on the way past.
        fams[s] = 0;
        this.tracked--;
        if (empty < 0) empty = s;
        continue;
      }
      if (at < oldestAt) { oldestAt = at; oldest = s; }
    }
    // Not tracked yet: take a free slot, or evict the least recently seen of the window.
    if (empty >= 0) { s = empty; this.tracked++; }
    else { s = oldest; this.evictions++; }
    fams[s] = fam;
    const o = s << 2;
    keys[o] = k0; keys[o + 1] = k1; keys[o + 2] = k2; keys[o + 3] = k3;
    last[s] = now;
    tokens[s] = this.burst - 1;
    return true;
  }

  /** [family, k0..k3] for a TCP connection, computed once per connection; family 0 = unknown (not limited). */
  private tcpKey(conn: ConnLike): Int32Array {
    let k = this.tcpKeys.get(conn);
    if (k !== undefined) return k;
    k = new Int32Array(5);
    const ip = conn.clientIp ?? conn.socket?.remoteAddress ?? '';
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
    const addr = mapped ? mapped[1] : ip;
    const fam = net.isIP(addr);
    if (fam === 4) {
      const b = new Uint8Array(4);
      addr.split('.').forEach((x, i) => { b[i] = Number(x); });
      k[0] = 4; k[1] = new Int32Array(b.buffer)[0] & this.mask4;
    } else if (fam === 6) {
      const b = ipv6Bytes(addr);
      const w = new Int32Array(b.buffer);
      k[0] = 6;
      for (let i = 0; i < 4; i++) k[1 + i] = w[i] & this.mask6[i];
    }
    this.tcpKeys.set(conn, k);
    return k;
  }
}

/** 16 bytes of an IPv6 address (zone index ignored). */
function ipv6Bytes(addr: string): Uint8Array {
  const out = new Uint8Array(16);
  let s = addr.split('%')[0];
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (v4) {
    const b = v4.slice(1).map(Number);
    s = s.slice(0, v4.index) + ((b[0] << 8) | b[1]).toString(16) + ':' + ((b[2] << 8) | b[3]).toString(16);
  }
  const [head, tail] = s.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = [...h, ...new Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  for (let i = 0; i < 8; i++) {
    const v = parseInt(groups[i] ?? '0', 16) || 0;
    out[i * 2] = v >> 8; out[i * 2 + 1] = v & 0xff;
  }
  return out;
}

/** Builds the stage from the `limits:` config section. `drop` must release the context without answering. */
export function createRateLimitStage(cfg: Partial<LimitsConfig>, respond: (ctx: QueryContext) => void,
  drop: (ctx: QueryContext) => void, now?: () => number): RateLimitStage {
  return new RateLimitStage(cfg, respond, drop, now);
}
