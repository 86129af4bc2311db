// The packet cache: upstream answers stored once on the wire, served by copying and patching in place
// (ID, question case, TTLs). No DNS decoding on a hit.
import { AnswerInfo, TtlPolicy, cacheableTtl } from '../dns/answer.js';
import { ParsedQuery, readU32, writeOpt, writeCacheKey, SERVER_UDP_SIZE } from '../dns/wire.js';

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

/** Returned by lookup(): whether the entry is fresh, stale-servable, or unusable. */
export const enum Freshness { MISS = 0, FRESH = 1, STALE = 2 }

/** get()/store() result meaning "no entry". Entry handles are slot numbers (>= 0). */
export const NO_ENTRY = -1;

/**
 * Bytes charged per entry on top of its record string: the slot's typed-array fields (31 B), its index
 * cell and the slack of growth (~20 B), and the string's header and array pointer (24 B).
 * Measured: `node --expose-gc bench/cache-memory.mjs`.
 */
export const ENTRY_OVERHEAD = 80;

/** Longest probe sequence the index allows. Keys that would sit further from home are not cached, so a
 *  flood of colliding names costs a bounded number of probes per lookup rather than a scan. */
const MAX_PROBE = 128;
const INITIAL_SLOTS = 1024;
/** Scratch for building a record: the largest answer plus its TTL offsets plus the largest key. */
const recordScratch = Buffer.allocUnsafe(65535 + 2 * 256 + 512);

type Latin1Buffer = Buffer & { latin1Write(s: string, o: number, n: number): number; latin1Slice(a: number, b: number): string };

/**
 * The answer store. lru-cache was the first cut; at 100k entries its Map and five per-entry arrays cost
 * ~87 B, the key string ~45 B and the entry object ~110 B (bench/cache-memory.mjs), three times the
 * answers themselves. Here an entry is a slot number. Its fixed fields sit in typed arrays and its bytes
 * in one latin1 string (the record), found through an open-addressing index over a seeded hash of the key:
 *
 *   record = header (12) | answer after the question | 2 bytes per TTL offset | key
 *
 * The question is not stored twice: it is the key's tail, and writeAnswer() copies the client's own
 * question bytes (its 0x20 case) anyway. Records carry the ID zeroed and no OPT (the OPT we answer with
 * depends on the client's EDNS, not the upstream's).
 *
 * A handle stays valid until the next store(), delete() or flush(); callers use it synchronously.
 */
export class PacketCache {
  readonly config: CacheConfig;
  private readonly now: () => number;
  // Plain counters: exported by the metrics collector, never prom-client calls per query.
  hits = 0;
  misses = 0;
  staleServed = 0;
  prefetches = 0;
  coalesced = 0;
  evictions = 0;
  inserts = 0;
  /** Answers not cached because their key's probe sequence was full (a hash flood, or bad luck). */
  probeLimited = 0;

  private readonly seed = (Math.random() * 0x100000000) | 0;
  private readonly keyBytes = Buffer.allocUnsafe(512);
  private keyBytesLen = 0;
  private capacity = 0;
  private count = 0;
  private usedBytes = 0;
  private records: string[] = [];
  private hashOf = new Int32Array(0);
  /** LRU list: head is the most recently used. Free slots are chained through `next` too. */
  private prev = new Int32Array(0);
  private next = new Int32Array(0);
  private head = -1;
  private tail = -1;
  private freeHead = -1;
  private storedAtMs = new Float64Array(0);
  private ttlSec = new Int32Array(0);
  /** Saturates at 65535: prefetch only asks whether an entry reached a small threshold. */
  private hitCount = new Uint16Array(0);
  private dataLen = new Uint16Array(0);
  private keyLen = new Uint16Array(0);
  private refreshing = new Uint8Array(0);
  /** slot + 1, or 0 for an empty cell. Twice the slot capacity, so the load stays at or under 1/2. */
  private index = new Int32Array(0);
  private mask = 0;

  constructor(config: Partial<CacheConfig> = {}, now: () => number = Date.now) {
    this.config = { ...DEFAULT_CACHE_CONFIG, ...config };
    this.now = now;
    this.reset();
  }

  get entries(): number { return this.count; }
  get bytes(): number { return this.usedBytes; }

  /** The entry for `key` (fresh or not: see freshness()), made most recently used; NO_ENTRY if absent. */
  get(key: string): number {
    const n = this.loadKey(key);
    const s = this.findKey(n, this.hashKey(n));
    if (s >= 0) this.touch(s);
    return s;
  }

  /**
   * The hit path's get(): the key is built from the query into a scratch buffer and compared as bytes,
   * so a hit makes no key string. lastKey() makes it for the miss path.
   */
  lookup(query: Uint8Array, qStart: number, q: ParsedQuery, group: number): number {
    const n = writeCacheKey(query, qStart, q, group, this.keyBytes);
    this.keyBytesLen = n;
    const s = this.findKey(n, this.hashKey(n));
    if (s >= 0) this.touch(s);
    return s;
  }

  /** The key of the last lookup(), get(), store() or delete(), as the string the other methods take. */
  lastKey(): string { return (this.keyBytes as Latin1Buffer).latin1Slice(0, this.keyBytesLen); }

  freshness(e: number, now = this.now()): Freshness {
    const ageMs = now - this.storedAtMs[e];
    const ttl = this.ttlSec[e];
    if (ageMs < ttl * 1000) return Freshness.FRESH;
    if (ageMs < (ttl + this.config.staleMaxAge) * 1000) return Freshness.STALE;
    return Freshness.MISS;
  }

  storedAt(e: number): number { return this.storedAtMs[e]; }
  /** Effective TTL in seconds after min/max clamping. */
  ttl(e: number): number { return this.ttlSec[e]; }
  hitsOf(e: number): number { return this.hitCount[e]; }
  countHit(e: number): void { if (this.hitCount[e] < 0xffff) this.hitCount[e]++; }
  isRefreshing(e: number): boolean { return this.refreshing[e] !== 0; }
  setRefreshing(e: number, on: boolean): void { this.refreshing[e] = on ? 1 : 0; }

  /** True when a fresh hit is in the last part of its TTL and popular enough to refresh early. */
  wantsPrefetch(e: number, now = this.now()): boolean {
    const ttl = this.ttlSec[e];
    if (this.refreshing[e] !== 0 || this.hitCount[e] < this.config.prefetchMinHits || ttl < 10) return false;
    const left = ttl * 1000 - (now - this.storedAtMs[e]);
    return left < ttl * 1000 * this.config.prefetchThreshold;
  }

  /**
   * Stores an upstream answer (already validated by analyzeAnswer into `info`, so its question is the
   * key's). Returns the entry, or NO_ENTRY when the answer is not cacheable.
   */
  store(key: string, ans: Uint8Array, len: number, info: AnswerInfo): number {
    const ttl = cacheableTtl(info, this.config);
    if (ttl <= 0) return NO_ENTRY;
    const qEnd = 12 + key.length - 2;
    let optStart = info.optStart, optEnd = info.optStart + info.optLen;
    if (optStart < 0) { optStart = 0x10000; optEnd = 0x10000; }
    const r = recordScratch as Latin1Buffer;
    // Header, then everything after the question except the OPT.
    r.set(ans.subarray(0, 12), 0);
    let w = 12;
    if (optStart < len) {
      r.set(ans.subarray(qEnd, optStart), w); w += optStart - qEnd;
      r.set(ans.subarray(optEnd, len), w); w += len - optEnd;
      const ar = ((r[10] << 8) | r[11]) - 1;
      r[10] = ar >> 8; r[11] = ar & 0xff;
      r[3] = (r[3] & 0xf0) | (info.rcode & 0x0f);
    } else {
      r.set(ans.subarray(qEnd, len), w); w += len - qEnd;
    }
    r[0] = 0; r[1] = 0;
    const data = w;
    for (let i = 0; i < info.ttlCount; i++) {
      const o = info.ttlOffsets[i];
      const at = o > optStart ? o - (optEnd - optStart) : o;
      r[w++] = at >> 8; r[w++] = at & 0xff;
    }
    w += r.latin1Write(key, w, key.length);
    const record = r.latin1Slice(0, w);
    const size = w + ENTRY_OVERHEAD;
    if (size > this.config.maxBytes) return NO_ENTRY;

    const n = this.loadKey(key);
    const h = this.hashKey(n);
    const old = this.findKey(n, h);
    if (old >= 0) this.remove(old);
    while (this.count > 0 && (this.count >= this.config.maxEntries || this.usedBytes + size > this.config.maxBytes)) {
      this.remove(this.tail);
      this.evictions++;
    }
    if (this.count === this.capacity) this.grow();
    const cell = this.freeCellFor(h);
    if (cell < 0) { this.probeLimited++; return NO_ENTRY; }
    const s = this.freeHead;
    this.freeHead = this.next[s];
    this.index[cell] = s + 1;
    this.records[s] = record;
    this.hashOf[s] = h;
    this.storedAtMs[s] = this.now();
    this.ttlSec[s] = ttl;
    this.hitCount[s] = 0;
    this.dataLen[s] = data;
    this.keyLen[s] = key.length;
    this.refreshing[s] = 0;
    this.linkFront(s);
    this.count++;
    this.usedBytes += size;
    this.inserts++;
    return s;
  }

  delete(key: string): boolean {
    const n = this.loadKey(key);
    const s = this.findKey(n, this.hashKey(n));
    if (s < 0) return false;
    this.remove(s);
    return true;
  }

  /** Drops everything, or every entry whose name equals `name` or lies under it. */
  flush(name?: string): number {
    if (!name) { const n = this.count; this.reset(); return n; }
    const target = nameToWireLower(name);
    const doomed: number[] = [];
    for (let s = this.head; s >= 0; s = this.next[s]) {
      // Key layout: group, flags, then the wire qname, then QTYPE and QCLASS; a suffix match on label boundaries.
      const rec = this.records[s];
      const qname = rec.slice(rec.length - this.keyLen[s] + 2, rec.length - 4);
      if (qname === target || (qname.endsWith(target) && isLabelBoundary(qname, qname.length - target.length))) doomed.push(s);
    }
    for (const s of doomed) this.remove(s);
    return doomed.length;
  }

  /**
   * Writes the entry as an answer to the client's query into `out` at `o`: the client's ID and
   * question bytes (its 0x20 case), TTLs reduced by the entry's age (or STALE_TTL), and an OPT when the
   * client sent one. Returns the length.
   */
  writeAnswer(e: number, query: Uint8Array, qStart: number, q: ParsedQuery, out: Buffer, o: number,
    stale: boolean, now = this.now()): number {
    const rec = this.records[e];
    const data = this.dataLen[e];
    const qLen = this.keyLen[e] - 2;
    // Header to o, then the client's question, then the record's tail. A charCodeAt loop rather than
    // Buffer#latin1Write: answers are tens of bytes, where the C++ call costs more than the copy.
    for (let i = 0; i < 12; i++) out[o + i] = rec.charCodeAt(i);
    for (let i = 12, p = o + 12 + qLen; i < data; i++, p++) out[p] = rec.charCodeAt(i);
    // RD mirrors the client's; the rest of the flags are the upstream's.
    out[o + 2] = (out[o + 2] & 0xfe) | (query[qStart + 2] & 0x01);
    out[o] = query[qStart]; out[o + 1] = query[qStart + 1];
    for (let i = 12; i < q.questionEnd; i++) out[o + i] = query[qStart + i];
    const ttlEnd = rec.length - this.keyLen[e];
    const cfg = this.config;
    // Clamped: "now" may be a batch's arrival time, a little before an entry stored during that batch.
    const age = Math.max(0, Math.floor((now - this.storedAtMs[e]) / 1000));
    for (let k = data; k < ttlEnd; k += 2) {
      const p = o + ((rec.charCodeAt(k) << 8) | rec.charCodeAt(k + 1));
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
    let end = o + data + qLen;
    if (q.hasOpt) {
      end = writeOpt(out, end, { udpSize: SERVER_UDP_SIZE, doBit: q.doBit, extRcode: 0, ede: stale ? 3 : -1 });
      const ar = ((out[o + 10] << 8) | out[o + 11]) + 1;
      out[o + 10] = ar >> 8; out[o + 11] = ar & 0xff;
    }
    return end - o;
  }

  /** Length of the answer writeAnswer() produces before any OPT (for buffer sizing). */
  wireLength(e: number): number { return this.dataLen[e] + this.keyLen[e] - 2; }

  private recordEndsWith(s: number, k: Uint8Array, n: number): boolean {
    const rec = this.records[s];
    for (let i = 0, o = rec.length - n; i < n; i++) if (rec.charCodeAt(o + i) !== k[i]) return false;
    return true;
  }

  /** Copies a key string into the key buffer, where lookups compare and hash it as bytes. */
  private loadKey(key: string): number {
    this.keyBytesLen = (this.keyBytes as Latin1Buffer).latin1Write(key, 0, key.length);
    return this.keyBytesLen;
  }

  /** Seeded 32-bit hash of the first n key-buffer bytes. The seed is per process, so colliding names
   *  cannot be prepared offline; MAX_PROBE bounds what a collision flood could cost anyway. */
  private hashKey(n: number): number {
    const k = this.keyBytes;
    let h = this.seed ^ n;
    for (let i = 0; i < n; i++) { h = Math.imul(h ^ k[i], 0x5bd1e995); h ^= h >>> 15; }
    // Final avalanche, so that keys differing in their last bytes spread over the whole index.
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return h ^ (h >>> 16);
  }

  /** The slot holding the first n key-buffer bytes as its key, or NO_ENTRY. */
  private findKey(n: number, h: number): number {
    const idx = this.index, mask = this.mask, k = this.keyBytes;
    for (let i = h & mask, probes = 0; probes < MAX_PROBE; i = (i + 1) & mask, probes++) {
      const s = idx[i] - 1;
      if (s < 0) return NO_ENTRY;
      if (this.hashOf[s] === h && this.keyLen[s] === n && this.recordEndsWith(s, k, n)) return s;
    }
    return NO_ENTRY;
  }

  /** The first empty index cell within MAX_PROBE of `h`'s home, or -1. */
  private freeCellFor(h: number): number {
    const idx = this.index, mask = this.mask;
    for (let i = h & mask, n = 0; n < MAX_PROBE; i = (i + 1) & mask, n++) if (idx[i] === 0) return i;
    return -1;
  }

  private remove(s: number): void {
    const idx = this.index, mask = this.mask;
    let i = this.hashOf[s] & mask;
    while (idx[i] !== s + 1) i = (i + 1) & mask;
    // Backward-shift deletion: pull later cells of the run into the hole unless that would put one
    // before its home cell, so lookups can still stop at the first empty cell and no tombstones pile up.
    for (let j = (i + 1) & mask; idx[j] !== 0; j = (j + 1) & mask) {
      const home = this.hashOf[idx[j] - 1] & mask;
      if (((j - home) & mask) >= ((j - i) & mask)) { idx[i] = idx[j]; i = j; }
    }
    idx[i] = 0;
    this.release(s);
  }

  /** Takes a slot that is no longer in the index off the LRU list and puts it on the free list. */
  private release(s: number): void {
    this.unlink(s);
    this.usedBytes -= this.records[s].length + ENTRY_OVERHEAD;
    this.records[s] = '';
    this.next[s] = this.freeHead;
    this.freeHead = s;
    this.count--;
  }

  private touch(s: number): void {
    if (s === this.head) return;
    this.unlink(s);
    this.linkFront(s);
  }

  private linkFront(s: number): void {
    this.prev[s] = -1;
    this.next[s] = this.head;
    if (this.head >= 0) this.prev[this.head] = s;
    this.head = s;
    if (this.tail < 0) this.tail = s;
  }

  private unlink(s: number): void {
    const p = this.prev[s], n = this.next[s];
    if (p >= 0) this.next[p] = n; else this.head = n;
    if (n >= 0) this.prev[n] = p; else this.tail = p;
  }

  private reset(): void {
    this.capacity = 0; this.count = 0; this.usedBytes = 0;
    this.head = this.tail = this.freeHead = -1;
    this.records = [];
    this.resize(Math.min(INITIAL_SLOTS, Math.max(1, this.config.maxEntries)));
  }

  /**
   * Grows the slot arrays up to maxEntries and rebuilds the index for the new size: doubling while
   * small, then by a quarter, so that a large cache carries at most ~25 % of unused slots (doubling left
   * 31 % unused at 100k entries, ~1.2 MB).
   */
  private grow(): void {
    const c = this.capacity;
    const next = c < 65536 ? c * 2 : c + (c >> 2);
    this.resize(Math.min(next, Math.max(c + 1, this.config.maxEntries)));
  }

  private resize(cap: number): void {
    const old = this.capacity;
    const copy = <A extends Int32Array | Uint16Array | Uint8Array | Float64Array>(a: A, make: new (n: number) => A): A => {
      const b = new make(cap); b.set(a.subarray(0, Math.min(old, cap))); return b;
    };
    this.hashOf = copy(this.hashOf, Int32Array);
    this.prev = copy(this.prev, Int32Array);
    this.next = copy(this.next, Int32Array);
    this.storedAtMs = copy(this.storedAtMs, Float64Array);
    this.ttlSec = copy(this.ttlSec, Int32Array);
    this.hitCount = copy(this.hitCount, Uint16Array);
    this.dataLen = copy(this.dataLen, Uint16Array);
    this.keyLen = copy(this.keyLen, Uint16Array);
    this.refreshing = copy(this.refreshing, Uint8Array);
    for (let s = old; s < cap; s++) this.records.push('');
    // New slots go on the free list in ascending order.
    for (let s = cap - 1; s >= old; s--) { this.next[s] = this.freeHead; this.freeHead = s; }
    this.capacity = cap;
    let size = 2;
    while (size < cap * 2) size <<= 1;
    this.index = new Int32Array(size);
    this.mask = size - 1;
    // A rebuild into a larger table runs out of probes only under a hash flood; such entries are dropped
    // as if they had never been cached.
    let unplaced: number[] | null = null;
    for (let s = this.head; s >= 0; s = this.next[s]) {
      const cell = this.freeCellFor(this.hashOf[s]);
      if (cell >= 0) this.index[cell] = s + 1; else (unplaced ??= []).push(s);
    }
    if (unplaced) for (const s of unplaced) { this.release(s); this.probeLimited++; }
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
