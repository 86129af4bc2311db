// Seeded mutation engine: generic byte mutations plus DNS-aware ones (compression pointer loops and
// forward pointers, bad label lengths, absurd counts, truncated/garbled OPT, oversized names, huge
// answers). Deterministic for a given seed so a run can be repeated with --seed.

export class Rng {
  constructor(seed) { this.s = (seed >>> 0) || 0x9e3779b9; }
  u32() { let x = this.s; x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; this.s = x; return x; }
  int(n) { return n <= 0 ? 0 : this.u32() % n; }
  chance(p) { return this.u32() / 0x100000000 < p; }
  pick(a) { return a[this.int(a.length)]; }
  bytes(n) { const b = Buffer.allocUnsafe(n); for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff; return b; }
}

const INTERESTING16 = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x3fff, 0x7fff, 0x8000, 0xfffe, 0xffff];

/** Offsets just after the question name (12 + name), walking uncompressed labels; -1 if it does not parse. */
export function nameEnd(b, p) {
  for (let guard = 0; guard < 300 && p < b.length; guard++) {
    const l = b[p];
    if (l === 0) return p + 1;
    if ((l & 0xc0) === 0xc0) return p + 2;
    if (l > 63) return -1;
    p += l + 1;
  }
  return -1;
}

/** Start offsets of every RR after the question (best effort). */
export function rrStarts(b) {
  const out = [];
  if (b.length < 12) return out;
  let p = nameEnd(b, 12);
  if (p < 0) return out;
  p += 4;
  for (let i = 0; i < 400 && p < b.length; i++) {
    const s = p;
    p = nameEnd(b, p);
    if (p < 0 || p + 10 > b.length) break;
    out.push(s);
    p += 10 + b.readUInt16BE(p + 8);
  }
  return out;
}

function setU16(b, o, v) { if (o + 1 < b.length) { b[o] = (v >> 8) & 0xff; b[o + 1] = v & 0xff; } }

const dnsMutators = [
  // absurd counts
  (b, r) => { if (b.length >= 12) setU16(b, 4 + 2 * r.int(4), r.pick(INTERESTING16)); return b; },
  // a compression pointer to itself (loop) or to a later offset (forward) at a name position
  (b, r) => {
    const spots = [12, ...rrStarts(b)];
    const at = r.pick(spots);
    if (at + 1 >= b.length) return b;
    const target = r.chance(0.4) ? at : r.chance(0.5) ? at + 2 + r.int(Math.max(1, b.length - at)) : r.int(0x3fff);
    b[at] = 0xc0 | ((target >> 8) & 0x3f); b[at + 1] = target & 0xff;
    return b;
  },
  // two pointers pointing at each other
  (b, r) => {
    const spots = rrStarts(b);
    if (spots.length === 0 || b.length < 16) return b;
    const a = r.pick(spots);
    if (a + 1 >= b.length) return b;
    b[12] = 0xc0 | (a >> 8); b[13] = a & 0xff;
    b[a] = 0xc0; b[a + 1] = 12;
    return b;
  },
  // bad label length
  (b, r) => { if (b.length > 12) b[12 + r.int(Math.min(b.length - 12, 40))] = r.pick([64, 65, 127, 128, 0x40 | r.int(64), 0x80 | r.int(64), 63, 255]); return b; },
  // oversized name: replace the question name by a long run of labels
  (b, r) => {
    if (b.length < 13) return b;
    const end = nameEnd(b, 12);
    const labels = [];
    const total = 240 + r.int(80);
    let n = 0;
    while (n < total) { const l = 1 + r.int(63); labels.push(Buffer.from([l]), Buffer.alloc(l, 0x61 + r.int(26))); n += l + 1; }
    labels.push(Buffer.from([0]));
    return Buffer.concat([b.subarray(0, 12), ...labels, end > 0 ? b.subarray(end) : Buffer.alloc(4)]);
  },
  // truncate inside the last RR (often the OPT)
  (b, r) => { const s = rrStarts(b); if (!s.length) return b; const last = s[s.length - 1]; return b.subarray(0, last + r.int(b.length - last)); },
  // garble an OPT: rdlen or option lengths
  (b, r) => {
    for (const s of rrStarts(b)) {
      if (b[s] === 0 && s + 11 <= b.length && b.readUInt16BE(s + 1) === 41) {
        const which = r.int(4);
        if (which === 0) setU16(b, s + 9, r.pick(INTERESTING16));
        else if (which === 1) b[s + 5] = r.int(256); // EDNS version / extended rcode
        else if (which === 2 && s + 15 <= b.length) setU16(b, s + 13, r.pick(INTERESTING16)); // option length
        else return Buffer.concat([b, Buffer.from([0, 8, 0, 200, 0, 1, 24])]); // trailing ECS claiming 200 bytes
        return b;
      }
    }
    return b;
  },
  // rdlength / type / ttl of a random RR
  (b, r) => {
    const s = rrStarts(b);
    if (!s.length) return b;
    const at = nameEnd(b, r.pick(s));
    if (at < 0 || at + 10 > b.length) return b;
    const w = r.int(3);
    if (w === 0) setU16(b, at + 8, r.pick(INTERESTING16));
    else if (w === 1) setU16(b, at, r.pick([1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 46, 47, 50, 65, 255, r.int(65536)]));
    else b.writeUInt32BE(r.pick([0, 1, 0x7fffffff, 0x80000000, 0xffffffff]), at + 4);
    return b;
  },
  // flags: QR, opcode, TC, rcode, random
  (b, r) => { if (b.length >= 4) { b[2] = r.chance(0.5) ? b[2] ^ (1 << r.int(8)) : r.int(256); b[3] = r.chance(0.5) ? b[3] ^ (1 << r.int(8)) : r.int(256); } return b; },
  // huge answer: repeat one RR many times and fix the count
  (b, r) => {
    const s = rrStarts(b);
    if (!s.length || b.length < 12) return b;
    const i = r.int(s.length);
    const end = i + 1 < s.length ? s[i + 1] : b.length;
    const rr = b.subarray(s[i], end);
    const n = r.pick([10, 100, 250, 255, 256, 257, 400]);
    const parts = [b];
    for (let k = 0; k < n; k++) parts.push(rr);
    const out = Buffer.concat(parts);
    if (out.length > 65535) return b;
    setU16(out, 10, out.readUInt16BE(10) + n);
    return out;
  },
  // case changes in the question (0x20)
  (b) => { for (let i = 13; i < Math.min(b.length, 60); i++) if (b[i] >= 0x61 && b[i] <= 0x7a) b[i] ^= 0x20; return b; },
];

const byteMutators = [
  (b, r) => { if (b.length) b[r.int(b.length)] ^= 1 << r.int(8); return b; },
  (b, r) => { if (b.length) b[r.int(b.length)] = r.int(256); return b; },
  (b, r) => { const at = r.int(b.length + 1); return Buffer.concat([b.subarray(0, at), r.bytes(1 + r.int(16)), b.subarray(at)]); },
  (b, r) => { if (!b.length) return b; const at = r.int(b.length); return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + r.int(16))]); },
  (b, r) => b.subarray(0, r.int(b.length + 1)),
  (b, r) => { if (b.length < 4) return b; const a = r.int(b.length - 1); const l = 1 + r.int(Math.min(32, b.length - a)); const at = r.int(b.length); return Buffer.concat([b.subarray(0, at), b.subarray(a, a + l), b.subarray(at)]); },
  (b, r) => { if (b.length >= 2) setU16(b, r.int(b.length - 1), r.pick(INTERESTING16)); return b; },
];

/** One mutated DNS message from `seed` (a copy; the corpus entry is not changed). */
export function mutateDns(seed, r, corpus) {
  if (r.chance(0.08)) return r.bytes(r.int(r.chance(0.5) ? 16 : 700));
  let b = Buffer.from(seed);
  if (r.chance(0.05) && corpus.length > 1) {
    const other = r.pick(corpus);
    const cut = r.int(b.length + 1);
    b = Buffer.concat([b.subarray(0, cut), other.subarray(r.int(other.length + 1))]);
  }
  const rounds = 1 + r.int(r.chance(0.2) ? 8 : 3);
  for (let i = 0; i < rounds; i++) b = (r.chance(0.6) ? r.pick(dnsMutators) : r.pick(byteMutators))(b, r);
  return b;
}

export function mutateBytes(seed, r) {
  let b = Buffer.from(seed);
  const rounds = 1 + r.int(4);
  for (let i = 0; i < rounds; i++) b = r.pick(byteMutators)(b, r);
  return b;
}

const RULE_BITS = ['||', '^', '@@', '$important', '$badfilter', '$dnstype=AAAA', '$dnstype=~MX|A', '$client=192.0.2.0/24',
  '$client=~[fd00::/8]', '$client=\'laptop\'', '*.', '/', '/^ad[0-9]+\\./', '(a+)+', '\\1', '0.0.0.0 ', '127.0.0.1 ', '::1 ', '#', '!',
  '\t', ' ', '.', '..', '-', '_', 'xn--', 'ü', '\u0000', '\r', 'a'.repeat(64), `${'a.'.repeat(130)}b`, '|', '$', ',', '=', '~'];

/** A mutated rule list (text) from `seed`. */
export function mutateRules(seed, r) {
  const lines = seed.toString('utf8').split('\n');
  const n = 1 + r.int(6);
  for (let i = 0; i < n; i++) {
    const li = r.int(lines.length);
    const line = lines[li] ?? '';
    const op = r.int(5);
    if (op === 0) { const at = r.int(line.length + 1); lines[li] = line.slice(0, at) + r.pick(RULE_BITS) + line.slice(at); }
    else if (op === 1) lines[li] = line.slice(0, r.int(line.length + 1));
    else if (op === 2) lines.splice(li, 0, Array.from({ length: 1 + r.int(4) }, () => r.pick(RULE_BITS)).join(''));
    else if (op === 3) lines[li] = r.bytes(r.int(80)).toString('latin1');
    else { const a = Buffer.from(line); lines[li] = mutateBytes(a, r).toString('utf8'); }
  }
  return Buffer.from(lines.join(r.chance(0.1) ? '\r\n' : '\n'));
}
