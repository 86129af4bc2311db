// The packet cache: upstream answers stored once on the wire, served by copying and patching in place
// (ID, question case, TTLs). No DNS decoding on a hit.
import { LRUCache } from 'lru-cache';
import { AnswerInfo, TtlPolicy, cacheableTtl } from '../dns/answer.js';
import { ParsedQuery, readU32, writeOpt, SERVER_UDP_SIZE } from '../dns/wire.js';

export interface CacheConfig extends TtlPolicy {
  maxBytes: number;
  maxEntries: number;
  /** Serve expired entries for this long (seconds) when upstreams fail (RFC 8767). 0 disables. */
  staleMaxAge: number;
  /** Answer from expired entries at once and refresh in the background. */
  optimistic: boolean;
  /** Upper bound on the age of an entry served optimistically (seconds). */
  optimisticMaxAge: number;
  /** Fraction of the TTL left at which popular entries are refreshed ahead of expiry. */
  prefetchThreshold: number;
  /** Hits an entry needs before prefetch considers it popular. */
  prefetchMinHits: number;
}

export const DEFAULT_CACHE_CONFIG: CacheConfig = {
  maxBytes: 64 * 1024 * 1024, maxEntries: 200_000, minTtl: 0, maxTtl: 86400, negativeTtl: 3600, servfailTtl: 5,
  staleMaxAge: 3600, optimistic: false, optimisticMaxAge: 600, prefetchThreshold: 0.1, prefetchMinHits: 2,
};

/** TTL written into stale answers (RFC 8767 4: "30 seconds is RECOMMENDED"). */
export const STALE_TTL = 30;

/**
 * One cached answer. The wire bytes (ID 0, no OPT) and the offsets of its TTL fields are packed into a
 * single latin1 string: at 100k entries a string costs a fraction of a Buffer plus a Uint16Array
 * (each a separate object with its own backing store), and Buffer#latin1Write copies it out natively.
 */
export class CacheEntry {
  constructor(
    /** wire bytes, then two bytes (big-endian) per TTL offset */
    readonly data: string,
    readonly wireLen: number,
    /** When it was stored, ms on the cache clock. */
    readonly storedAt: number,
    /** Effective TTL in seconds after min/max clamping. */
    readonly ttl: number,
    readonly rcode: number,
    readonly hasCname: boolean,
  ) {}
  hits = 0;
  prefetching = false;
  get ttlCount(): number { return (this.data.length - this.wireLen) >> 1; }
  ttlOffset(i: number): number {
    const p = this.wireLen + 2 * i;
    return (this.data.charCodeAt(p) << 8) | this.data.charCodeAt(p + 1);
  }
  /** Bytes charged to the cache: the string plus the entry, its key and the LRU's bookkeeping. */
  get size(): number { return this.data.length + 160; }
}

/** Returned by lookup(): whether the entry is fresh, stale-servable, or unusable. */
export const enum Freshness { MISS = 0, FRESH = 1, STALE = 2 }

export class PacketCache {
  readonly config: CacheConfig;
  private readonly lru: LRUCache<string, CacheEntry>;
  private readonly now: () => number;
  // Plain counters: exported by the metrics collector, never prom-client calls per query.
  hits = 0;
  misses = 0;
  staleServed = 0;
  prefetches = 0;
  coalesced = 0;
  evictions = 0;
  inserts = 0;

  constructor(config: Partial<CacheConfig> = {}, now: () => number = Date.now) {
    this.config = { ...DEFAULT_CACHE_CONFIG, ...config };
    this.now = now;
    // No `max`: with one, lru-cache preallocates seven arrays of `max` slots (7 MiB at the default 200k,
    // resident before the first answer). Without it they grow with use, and store() enforces the cap.
    this.lru = new LRUCache<string, CacheEntry>({
      max: 0,
      maxSize: this.config.maxBytes,
      sizeCalculation: (e) => e.size,
      dispose: (_v, _k, reason) => { if (reason === 'evict') this.evictions++; },
    });
  }

  get entries(): number { return this.lru.size; }
  get bytes(): number { return this.lru.calculatedSize; }

  /** The entry for `key` if it can be served fresh, or as stale within the allowed window. */
  get(key: string): CacheEntry | undefined { return this.lru.get(key); }

  freshness(e: CacheEntry, now = this.now()): Freshness {
    const ageMs = now - e.storedAt;
    if (ageMs < e.ttl * 1000) return Freshness.FRESH;
    if (ageMs < (e.ttl + this.config.staleMaxAge) * 1000) return Freshness.STALE;
    return Freshness.MISS;
  }

  /** True when a fresh hit is in the last part of its TTL and popular enough to refresh early. */
  wantsPrefetch(e: CacheEntry, now = this.now()): boolean {
    if (e.prefetching || e.hits < this.config.prefetchMinHits || e.ttl < 10) return false;
    const left = e.ttl * 1000 - (now - e.storedAt);
    return left < e.ttl * 1000 * this.config.prefetchThreshold;
  }

  /**
   * Stores an upstream answer (already validated by analyzeAnswer into `info`). Returns the entry or
   * undefined when the answer is not cacheable.
   */
  store(key: string, ans: Uint8Array, len: number, info: AnswerInfo): CacheEntry | undefined {
    const ttl = cacheableTtl(info, this.config);
    if (ttl <= 0) return undefined;
    // Store without OPT: the OPT we answer with depends on the client's own EDNS, not the upstream's.
    let wireLen = len;
    let optStart = info.optStart, optEnd = info.optStart + info.optLen;
    if (optStart >= 0) wireLen -= info.optLen;
    const buf = Buffer.allocUnsafe(wireLen + 2 * info.ttlCount);
    if (optStart >= 0) {
      buf.set(ans.subarray(0, optStart), 0);
      buf.set(ans.subarray(optEnd, len), optStart);
      const ar = ((buf[10] << 8) | buf[11]) - 1;
      buf[10] = ar >> 8; buf[11] = ar & 0xff;
      buf[3] &= 0xf0; buf[3] |= info.rcode & 0x0f;
    } else {
      buf.set(ans.subarray(0, len), 0);
      optStart = 0x10000; optEnd = 0x10000;
    }
    for (let i = 0; i < info.ttlCount; i++) {
      const o = info.ttlOffsets[i];
      const at = o > optStart ? o - (optEnd - optStart) : o;
      buf[wireLen + 2 * i] = at >> 8; buf[wireLen + 2 * i + 1] = at & 0xff;
    }
    buf[0] = 0; buf[1] = 0;
    const e = new CacheEntry(buf.toString('latin1'), wireLen, this.now(), ttl, info.rcode & 0x0f, info.hasCname);
    this.lru.set(key, e);
    // pop() takes the least recently used, never the entry just set, and reports it as an eviction.
    while (this.lru.size > this.config.maxEntries) this.lru.pop();
    this.inserts++;
    return e;
  }

  delete(key: string): boolean { return this.lru.delete(key); }

  /** Drops everything, or every entry whose name equals `name` or lies under it. */
  flush(name?: string): number {
    if (!name) { const n = this.lru.size; this.lru.clear(); return n; }
    const target = nameToWireLower(name);
    let n = 0;
    for (const k of [...this.lru.keys()]) {
      // Key layout: group, flags, then the wire qname; a suffix match on label boundaries.
      const qname = k.slice(2, k.length - 4);
      if (qname === target || (qname.endsWith(target) && isLabelBoundary(qname, qname.length - target.length))) {
        this.lru.delete(k); n++;
      }
    }
    return n;
  }

  /**
   * Writes the entry as an answer to the client's query into `out` at `o`: the client's ID and
   * question bytes (its 0x20 case), TTLs reduced by the entry's age (or STALE_TTL), and an OPT when the
   * client sent one. Returns the length.
   */
  writeAnswer(e: CacheEntry, query: Uint8Array, qStart: number, q: ParsedQuery, out: Buffer, o: number,
    stale: boolean, now = this.now()): number {
    const len = e.wireLen;
    // latin1Write skips Buffer#write's encoding normalisation (a measurable share of a hit).
    (out as Buffer & { latin1Write(s: string, o: number, n: number): number }).latin1Write(e.data, o, len);
    // RD mirrors the client's; the rest of the flags are the upstream's.
    out[o + 2] = (out[o + 2] & 0xfe) | (query[qStart + 2] & 0x01);
    out[o] = query[qStart]; out[o + 1] = query[qStart + 1];
    for (let i = 12; i < q.questionEnd; i++) out[o + i] = query[qStart + i];
    const n = e.ttlCount;
    const cfg = this.config;
    const age = Math.floor((now - e.storedAt) / 1000);
    for (let i = 0; i < n; i++) {
      const p = o + e.ttlOffset(i);
      let t: number;
      if (stale) t = STALE_TTL;
      else {
        t = readU32(out, p);
        if (t < cfg.minTtl) t = cfg.minTtl; else if (t > cfg.maxTtl) t = cfg.maxTtl;
        t -= age;
        if (t < 0) t = 0;
      }
      out[p] = t >>> 24; out[p + 1] = (t >>> 16) & 0xff; out[p + 2] = (t >>> 8) & 0xff; out[p + 3] = t & 0xff;
    }
    let end = o + len;
    if (q.hasOpt) {
      end = writeOpt(out, end, { udpSize: SERVER_UDP_SIZE, doBit: q.doBit, extRcode: 0, ede: stale ? 3 : -1 });
      const ar = ((out[o + 10] << 8) | out[o + 11]) + 1;
      out[o + 10] = ar >> 8; out[o + 11] = ar & 0xff;
    }
    return end - o;
  }
}

function nameToWireLower(name: string): string {
  let s = '';
  for (const label of name.toLowerCase().replace(/\.$/, '').split('.')) {
    if (!label) continue;
    s += String.fromCharCode(label.length) + label;
  }
  return s + '\0';
}

/** Whether position `at` in a wire-format name string starts a label (so "ample.com" never matches "example.com"). */
function isLabelBoundary(wire: string, at: number): boolean {
  let p = 0;
  while (p < at) p += wire.charCodeAt(p) + 1;
  return p === at;
}
