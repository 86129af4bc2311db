// Wire-level answer synthesis for blocked and local answers, plus the small
// DNS name reader used by CNAME inspection. Nothing here allocates per query
// except the (memoised) EDE option bytes on first use per list.
import type { Decision, LocalDecision } from './types.js';

export const SOA_MNAME = 'ns.dns-tproxy.invalid';
export const SOA_RNAME = 'hostmaster.dns-tproxy.invalid';

/** Encode a dotted name (no trailing dot, "" = root) as uncompressed wire labels. */
export function encodeName(name: string): Uint8Array {
  if (name === '' || name === '.') return Uint8Array.of(0);
  const labels = name.replace(/\.$/, '').split('.');
  const out: number[] = [];
  for (const l of labels) {
    const b = Buffer.from(l, 'latin1');
    if (b.length === 0 || b.length > 63) throw new Error(`invalid label in "${name}"`);
    out.push(b.length, ...b);
  }
  out.push(0);
  if (out.length > 255) throw new Error(`name too long: "${name}"`);
  return Uint8Array.from(out);
}

function u16(n: number): number[] {
  return [(n >>> 8) & 255, n & 255];
}
function u32(n: number): number[] {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
}

/** One resource record; owner is the question name (pointer 0xC00C) when ownerWire is null. */
export function encodeRR(ownerWire: Uint8Array | null, type: number, ttl: number, rdata: Uint8Array): Uint8Array {
  const owner = ownerWire ?? Uint8Array.of(0xc0, 0x0c);
  const out = new Uint8Array(owner.length + 10 + rdata.length);
  out.set(owner, 0);
  out.set([...u16(type), 0, 1, ...u32(ttl), ...u16(rdata.length)], owner.length);
  out.set(rdata, owner.length + 10);
  return out;
}

export function soaRdata(minimum: number): Uint8Array {
  const m = encodeName(SOA_MNAME);
  const r = encodeName(SOA_RNAME);
  return Uint8Array.from([...m, ...r, ...u32(1), ...u32(1800), ...u32(900), ...u32(604800), ...u32(minimum)]);
}

export function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** OPT RR: UDP size 1232, DO echoed, optional EDE option (RFC 8914). */
export function optRR(doBit: boolean, ede: number | null, text = ''): Uint8Array {
  const rdata: number[] = [];
  if (ede !== null) {
    const t = Buffer.from(text, 'utf8');
    rdata.push(...u16(15), ...u16(2 + t.length), ...u16(ede), ...t);
  }
  return Uint8Array.from([0, ...u16(41), ...u16(1232), 0, 0, doBit ? 0x80 : 0, 0, ...u16(rdata.length), ...rdata]);
}

const OPT_PLAIN = [optRR(false, null), optRR(true, null)] as const;

/** Per-engine precomputed RR bytes for block answers. */
export class BlockTemplates {
  readonly soa: Uint8Array;
  readonly aNull: Uint8Array;
  readonly aaaaNull: Uint8Array;
  readonly customA: Uint8Array;
  readonly customACount: number;
  readonly customAAAA: Uint8Array;
  readonly customAAAACount: number;
  private readonly optCache: (Uint8Array | undefined)[] = [];

  constructor(ttl: number, customA: Uint8Array[], customAAAA: Uint8Array[], private readonly sourceNames: string[]) {
    this.soa = encodeRR(null, 6, ttl, soaRdata(ttl));
    this.aNull = encodeRR(null, 1, ttl, new Uint8Array(4));
    this.aaaaNull = encodeRR(null, 28, ttl, new Uint8Array(16));
    this.customA = concat(customA.map((a) => encodeRR(null, 1, ttl, a)));
    this.customACount = customA.length;
    this.customAAAA = concat(customAAAA.map((a) => encodeRR(null, 28, ttl, a)));
    this.customAAAACount = customAAAA.length;
  }

  /** OPT with EDE; EXTRA-TEXT is the list name. Memoised per (source, code, DO). */
  opt(src: number, ede: number, doBit: boolean): Uint8Array {
    const i = src * 4 + (ede === 17 ? 2 : 0) + (doBit ? 1 : 0);
    let o = this.optCache[i];
    if (o === undefined) {
      o = optRR(doBit, ede, this.sourceNames[src] ?? '');
      this.optCache[i] = o;
    }
    return o;
  }
}

function writeMessage(
  query: Uint8Array, qOffset: number, qLen: number, questionEnd: number, aa: boolean, rcode: number,
  an: Uint8Array | null, anCount: number, ns: Uint8Array | null, nsCount: number, opt: Uint8Array | null,
  out: Uint8Array, o: number,
): number {
  if (qLen < 12 || questionEnd > qOffset + qLen) return -1;
  const hasQ = questionEnd > qOffset + 12;
  if (!hasQ) {
    // no question to point at: header (+OPT) only
    an = null;
    anCount = 0;
    ns = null;
    nsCount = 0;
  }
  if (!hasQ) questionEnd = qOffset + 12;
  const qBytes = questionEnd - qOffset - 12;
  const total = 12 + qBytes + (an ? an.length : 0) + (ns ? ns.length : 0) + (opt ? opt.length : 0);
  if (o + total > out.length) return -1;
  out[o] = query[qOffset]!;
  out[o + 1] = query[qOffset + 1]!;
  // QR=1, opcode and RD copied, AA as requested
  out[o + 2] = 0x80 | (query[qOffset + 2]! & 0x79) | (aa ? 0x04 : 0);
  // RA=1, CD copied, rcode
  out[o + 3] = 0x80 | (query[qOffset + 3]! & 0x10) | (rcode & 0x0f);
  out[o + 4] = 0;
  out[o + 5] = hasQ ? 1 : 0;
  out[o + 6] = anCount >>> 8;
  out[o + 7] = anCount & 255;
  out[o + 8] = 0;
  out[o + 9] = nsCount;
  out[o + 10] = 0;
  out[o + 11] = opt ? 1 : 0;
  let p = o + 12;
  // the question (short) is copied with a loop: cheaper than subarray()+set(); templates use set()
  for (let i = qOffset + 12; i < questionEnd; i++) out[p++] = query[i]!;
  if (an) p = put(an, out, p);
  if (ns) p = put(ns, out, p);
  if (opt) p = put(opt, out, p);
  return p - o;
}

function put(src: Uint8Array, out: Uint8Array, p: number): number {
  const n = src.length;
  if (n > 24) {
    out.set(src, p);
    return p + n;
  }
  for (let i = 0; i < n; i++) out[p + i] = src[i]!;
  return p + n;
}

/**
 * Write a blocked answer for `decision` into out[outOffset..]. Returns the
 * number of bytes written, or -1 if it does not fit or the input is malformed.
 * A 'local' decision is passed on to writeLocalAnswer; a 'forward' decision returns -1.
 */
export function writeBlockedAnswer(
  query: Uint8Array, qOffset: number, qLen: number, questionEnd: number, qtype: number,
  hasOpt: boolean, doBit: boolean, decision: Decision, out: Uint8Array, outOffset: number,
): number {
  if (decision.kind !== 'block') {
    return decision.kind === 'local' ? writeLocalAnswer(query, qOffset, qLen, questionEnd, qtype, hasOpt, doBit, decision, out, outOffset) : -1;
  }
  const t = decision.templates;
  let rcode = 0;
  let an: Uint8Array | null = null;
  let anCount = 0;
  let ns: Uint8Array | null = null;
  switch (decision.mode) {
    case 'nxdomain':
      rcode = 3;
      ns = t.soa;
      break;
    case 'nodata':
      ns = t.soa;
      break;
    case 'refused':
      rcode = 5;
      break;
    case 'null':
      if (qtype === 1) {
        an = t.aNull;
        anCount = 1;
      } else if (qtype === 28) {
        an = t.aaaaNull;
        anCount = 1;
      } else ns = t.soa;
      break;
    case 'custom':
      if (qtype === 1 && t.customACount > 0) {
        an = t.customA;
        anCount = t.customACount;
      } else if (qtype === 28 && t.customAAAACount > 0) {
        an = t.customAAAA;
        anCount = t.customAAAACount;
      } else ns = t.soa;
      break;
  }
  const opt = hasOpt ? t.opt(decision.src, decision.ede, doBit) : null;
  return writeMessage(query, qOffset, qLen, questionEnd, false, rcode, an, anCount, ns, ns ? 1 : 0, opt, out, outOffset);
}

/**
 * Write an authoritative (AA=1) answer from local records. Same conventions
 * as writeBlockedAnswer (a 'block' decision is passed on to it; 'forward' -> -1).
 */
export function writeLocalAnswer(
  query: Uint8Array, qOffset: number, qLen: number, questionEnd: number, _qtype: number,
  hasOpt: boolean, doBit: boolean, decision: Decision, out: Uint8Array, outOffset: number,
): number {
  if (decision.kind !== 'local') {
    return decision.kind === 'block' ? writeBlockedAnswer(query, qOffset, qLen, questionEnd, _qtype, hasOpt, doBit, decision, out, outOffset) : -1;
  }
  const opt = hasOpt ? OPT_PLAIN[doBit ? 1 : 0] : null;
  return writeMessage(
    query, qOffset, qLen, questionEnd, true, decision.rcode,
    decision.ancount > 0 ? decision.answer : null, decision.ancount,
    decision.nscount > 0 ? decision.authority : null, decision.nscount, opt, out, outOffset,
  );
}

/**
 * Read a possibly compressed name at `off` (message starts at `base`).
 * Returns the lower-cased dotted name, or null when malformed. Pointer loops
 * are cut by a jump limit and by requiring pointers to go strictly backwards.
 */
export function readName(msg: Uint8Array, base: number, off: number, end: number): string | null {
  let name = '';
  let jumps = 0;
  let total = 0;
  let limit = off; // pointers must target bytes before this
  for (;;) {
    if (off >= end) return null;
    const len = msg[off]!;
    if (len === 0) return name;
    if ((len & 0xc0) === 0xc0) {
      if (off + 1 >= end) return null;
      const ptr = base + (((len & 0x3f) << 8) | msg[off + 1]!);
      if (ptr >= limit || ++jumps > 32) return null;
      limit = ptr;
      off = ptr;
      continue;
    }
    if (len & 0xc0) return null;
    if (off + 1 + len > end) return null;
    total += len + 1;
    if (total > 255) return null;
    if (name.length) name += '.';
    for (let i = 1; i <= len; i++) {
      let c = msg[off + i]!;
      if (c >= 65 && c <= 90) c += 32;
      name += String.fromCharCode(c);
    }
    off += len + 1;
  }
}

/** Offset just past a (possibly compressed) name, or -1. */
export function skipName(msg: Uint8Array, off: number, end: number): number {
  for (;;) {
    if (off >= end) return -1;
    const len = msg[off]!;
    if (len === 0) return off + 1;
    if ((len & 0xc0) === 0xc0) return off + 2 <= end ? off + 2 : -1;
    if (len & 0xc0) return -1;
    off += len + 1;
  }
}
