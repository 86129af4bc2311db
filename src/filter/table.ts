// Compact domain table.
//
// Layout: an open-addressing (linear probing) table of 3 x uint32 per slot
//   [ finalHash, arenaOffset + 1 (0 = empty), value ]
// and one byte arena holding every key as <len byte><ascii bytes>.
//
// Keys are hashed from the LAST character towards the first, so while walking a
// query name right-to-left the hash of every label-aligned suffix
// ("com", "example.com", "ads.example.com") falls out of a single pass; each
// suffix costs one table probe, never a substring allocation.

export const HASH_SEED = 0x811c9dc5 | 0;
export const HASH_MUL = 0x01000193;

/** One fold step; apply to characters from the end of the name backwards. */
export function hstep(h: number, c: number): number {
  return Math.imul(h ^ c, HASH_MUL);
}

/** Final avalanche; the result (uint32) is both stored and used for the slot index. */
export function hfinal(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Hash of a whole string (same function the right-to-left walk produces). */
export function hashString(s: string): number {
  let h = HASH_SEED;
  for (let i = s.length - 1; i >= 0; i--) h = hstep(h, s.charCodeAt(i));
  return hfinal(h);
}

export function hashBytes(b: Uint8Array, s: number, e: number): number {
  let h = HASH_SEED;
  for (let i = e - 1; i >= s; i--) h = hstep(h, b[i]!);
  return hfinal(h);
}

const MAX_LOAD = 0.7;
const TARGET_LOAD = 0.55;

export class DomainTable {
  slots: Uint32Array;
  cap: number;
  scale: number;
  size = 0;
  arena: Buffer;
  arenaLen = 0;
  /**
   * Blocked Bloom pre-filter (2 bits in one 32-bit word per key, ~16 bits per
   * key), built by compact() for large tables: most suffixes of a query name
   * are absent, and this answers "absent" from ~2 MB that stays in cache
   * instead of touching the 20+ MB slot array.
   */
  bloom: Uint32Array | null = null;
  bloomMask = 0;

  constructor(expected = 16, arenaBytes = 1024) {
    this.cap = Math.max(8, Math.ceil(expected / TARGET_LOAD));
    this.scale = this.cap / 4294967296;
    this.slots = new Uint32Array(this.cap * 3);
    this.arena = Buffer.allocUnsafeSlow(Math.max(64, arenaBytes));
  }

  /** Slot index for key bytes b[s..e) (already lower-case), inserting with `initial` if absent. */
  /** The slot holding these bytes, or ~slot of the empty one where they would go (always negative). */
  private probe(b: Uint8Array, s: number, e: number, h: number): number {
    const len = e - s;
    const slots = this.slots;
    const arena = this.arena;
    let idx = (h * this.scale) | 0;
    for (;;) {
      const o = idx * 3;
      const off1 = slots[o + 1]!;
      if (off1 === 0) return ~idx;
      if (slots[o] === h) {
        const off = off1 - 1;
        if (arena[off] === len) {
          let j = 0;
          while (j < len && arena[off + 1 + j] === b[s + j]) j++;
          if (j === len) return idx;
        }
      }
      if (++idx === this.cap) idx = 0;
    }
  }

  upsertBytes(b: Uint8Array, s: number, e: number, h: number, initial: number): number {
    const found = this.probe(b, s, e, h);
    if (found >= 0) return found;
    const idx = ~found;
    const len = e - s;
    if (this.arenaLen + len + 1 > this.arena.length) this.growArena(len + 1);
    const off = this.arenaLen;
    this.arena[off] = len;
    for (let j = 0; j < len; j++) this.arena[off + 1 + j] = b[s + j]!;
    this.arenaLen += len + 1;
    const o = idx * 3;
    this.slots[o] = h;
    this.slots[o + 1] = off + 1;
    this.slots[o + 2] = initial;
    this.size++;
    if (this.bloom !== null) this.bloom[(h >>> 10) & this.bloomMask]! |= (1 << (h & 31)) | (1 << ((h >>> 5) & 31));
    if (this.size > this.cap * MAX_LOAD) {
      this.rehash(Math.ceil(this.size * 2 / TARGET_LOAD));
      return this.findBytes(b, s, e, h);
    }
    return idx;
  }

  upsertString(key: string, initial: number): number {
    const b = Buffer.from(key, 'latin1');
    return this.upsertBytes(b, 0, b.length, hashBytes(b, 0, b.length), initial);
  }

  findBytes(b: Uint8Array, s: number, e: number, h: number): number {
    const r = this.probe(b, s, e, h);
    return r >= 0 ? r : -1;
  }

  /**
   * Find the key equal to q.substring(start) given its final hash. Hot path:
   * no allocation. Returns slot index or -1.
   */
  find(q: string, start: number, h: number): number {
    const bloom = this.bloom;
    if (bloom !== null && (bloom[(h >>> 10) & this.bloomMask]! & ((1 << (h & 31)) | (1 << ((h >>> 5) & 31)))) !== ((1 << (h & 31)) | (1 << ((h >>> 5) & 31)))) {
      return -1;
    }
    const len = q.length - start;
    const slots = this.slots;
    const arena = this.arena;
    const cap = this.cap;
    let idx = (h * this.scale) | 0;
    for (;;) {
      const o = idx * 3;
      const off1 = slots[o + 1]!;
      if (off1 === 0) return -1;
      if (slots[o] === h && arena[off1 - 1] === len) {
        let j = 0;
        while (j < len && arena[off1 + j] === q.charCodeAt(start + j)) j++;
        if (j === len) return idx;
      }
      if (++idx === cap) idx = 0;
    }
  }

  findString(key: string): number {
    return this.find(key, 0, hashString(key));
  }

  value(slot: number): number {
    return this.slots[slot * 3 + 2]!;
  }

  setValue(slot: number, v: number): void {
    this.slots[slot * 3 + 2] = v;
  }

  key(slot: number): string {
    const off = this.slots[slot * 3 + 1]! - 1;
    return this.arena.toString('latin1', off + 1, off + 1 + this.arena[off]!);
  }

  /** Iterate occupied slots. */
  *entries(): Generator<[slot: number, value: number]> {
    for (let i = 0; i < this.cap; i++) if (this.slots[i * 3 + 1] !== 0) yield [i, this.slots[i * 3 + 2]!];
  }

  private growArena(need: number): void {
    let n = this.arena.length * 2;
    while (n < this.arenaLen + need) n *= 2;
    const a = Buffer.allocUnsafeSlow(n);
    this.arena.copy(a, 0, 0, this.arenaLen);
    this.arena = a;
  }

  private rehash(newCap: number): void {
    const old = this.slots;
    const oldCap = this.cap;
    this.cap = Math.max(8, newCap);
    this.scale = this.cap / 4294967296;
    const slots = new Uint32Array(this.cap * 3);
    for (let i = 0; i < oldCap; i++) {
      const o = i * 3;
      if (old[o + 1] === 0) continue;
      let idx = (old[o]! * this.scale) | 0;
      while (slots[idx * 3 + 1] !== 0) if (++idx === this.cap) idx = 0;
      const n = idx * 3;
      slots[n] = old[o]!;
      slots[n + 1] = old[o + 1]!;
      slots[n + 2] = old[o + 2]!;
    }
    this.slots = slots;
  }

  /** Drop slack: shrink the slot array to the target load and the arena to its used length. */
  compact(): void {
    this.bloom = null;
    const want = Math.max(8, Math.ceil(this.size / TARGET_LOAD));
    if (this.cap > want * 1.25) this.rehash(want);
    // Shrink the arena only when the slack is large: the copy briefly holds both, and pages of slack
    // that were never written are not resident anyway.
    if (this.arena.length > this.arenaLen + 64 && this.arena.length - this.arenaLen > this.arena.length / 8) {
      const a = Buffer.allocUnsafeSlow(Math.max(64, this.arenaLen));
      this.arena.copy(a, 0, 0, this.arenaLen);
      this.arena = a;
    }
    if (this.size >= 4096) {
      let words = 1;
      while (words * 32 < this.size * 16) words *= 2;
      const bloom = new Uint32Array(words);
      const mask = words - 1;
      for (let i = 0; i < this.cap; i++) {
        if (this.slots[i * 3 + 1] === 0) continue;
        const h = this.slots[i * 3]!;
        bloom[(h >>> 10) & mask]! |= (1 << (h & 31)) | (1 << ((h >>> 5) & 31));
      }
      this.bloom = bloom;
      this.bloomMask = mask;
    }
  }

  get bytes(): number {
    return this.slots.byteLength + this.arena.length + (this.bloom?.byteLength ?? 0);
  }
}
