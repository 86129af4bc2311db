// Wire-level DNS reading and writing for the hot path. Nothing here allocates per query except
// where a comment says so: the reader fills a reusable ParsedQuery, the writers write into
// caller-supplied buffers. dns-packet is used only on slow paths (logging, tests, synthesis).

export const TYPE_OPT = 41;
export const TYPE_SOA = 6;
export const TYPE_CNAME = 5;
export const EDNS_OPT_ECS = 8;
export const EDNS_OPT_KEEPALIVE = 11;
export const EDNS_OPT_PADDING = 12;
export const EDNS_OPT_EDE = 15;

export const enum Rcode { NOERROR = 0, FORMERR = 1, SERVFAIL = 2, NXDOMAIN = 3, NOTIMP = 4, REFUSED = 5, BADVERS = 16 }

export const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'YXDOMAIN', 'YXRRSET',
  'NXRRSET', 'NOTAUTH', 'NOTZONE', 'RCODE11', 'RCODE12', 'RCODE13', 'RCODE14', 'RCODE15', 'BADVERS'];

/** What the reader concluded about a datagram. */
export const enum ReadStatus {
  OK = 0,
  /** Not answerable at all (shorter than a header, or a response): drop silently, count. */
  DROP = 1,
  /** Header readable but the message is malformed: answer FORMERR. */
  FORMERR = 2,
  /** Opcode other than QUERY. */
  NOTIMP = 3,
  /** EDNS version above 0 (RFC 6891 6.1.3). */
  BADVERS = 4,
}

/** Filled in place by readQuery(); one instance per reader, reused for every packet. */
export class ParsedQuery {
  id = 0;
  flags = 0;
  /** Offset (relative to the message start) just past QNAME. */
  qnameEnd = 0;
  /** Offset just past QTYPE/QCLASS: the question section is [12, questionEnd). */
  questionEnd = 0;
  qtype = 0;
  qclass = 0;
  /** True when QDCOUNT was 1 and the question parsed; FORMERR answers can then echo it. */
  hasQuestion = false;
  hasOpt = false;
  udpSize = 512;
  ednsVersion = 0;
  doBit = false;
  cdBit = false;
  rd = false;
  /** Offset of the OPT RR (its owner-name byte) and its total length, for stripping/rewriting. */
  optStart = 0;
  optLen = 0;
  hasEcs = false;
  hasKeepalive = false;
  /** Total message length the reader accepted. */
  length = 0;
}

/**
 * Validates a query and fills `out`. Checks header, QDCOUNT = 1, the name (no compression, label and
 * name limits), and any OPT record. Never throws on outside input.
 */
export function readQuery(buf: Uint8Array, start: number, len: number, out: ParsedQuery): ReadStatus {
  out.hasQuestion = false;
  out.hasOpt = false;
  out.udpSize = 512;
  out.ednsVersion = 0;
  out.doBit = false;
  out.hasEcs = false;
  out.hasKeepalive = false;
  out.optStart = 0;
  out.optLen = 0;
  out.length = len;
  if (len < 12) return ReadStatus.DROP;
  const b = start;
  out.id = (buf[b] << 8) | buf[b + 1];
  const flags = (buf[b + 2] << 8) | buf[b + 3];
  out.flags = flags;
  // A response arriving on a query port is either a reflection attempt or a loop: never answer it.
  if (flags & 0x8000) return ReadStatus.DROP;
  out.rd = (flags & 0x0100) !== 0;
  out.cdBit = (flags & 0x0010) !== 0;
  const qd = (buf[b + 4] << 8) | buf[b + 5];
  const an = (buf[b + 6] << 8) | buf[b + 7];
  const ns = (buf[b + 8] << 8) | buf[b + 9];
  const ar = (buf[b + 10] << 8) | buf[b + 11];
  if (((flags >> 11) & 0xf) !== 0) return ReadStatus.NOTIMP;
  if (qd !== 1) return ReadStatus.FORMERR;
  let p = 12;
  let nameLen = 1;
  for (;;) {
    if (p >= len) return ReadStatus.FORMERR;
    const l = buf[b + p];
    if (l === 0) { p++; break; }
    // Compression in a question is legal in theory but never sent by real stubs; refusing it keeps
    // the cache key a plain byte copy.
    if (l > 63) return ReadStatus.FORMERR;
    nameLen += l + 1;
    if (nameLen > 255) return ReadStatus.FORMERR;
    p += l + 1;
  }
  if (p + 4 > len) return ReadStatus.FORMERR;
  out.qnameEnd = p;
  out.qtype = (buf[b + p] << 8) | buf[b + p + 1];
  out.qclass = (buf[b + p + 2] << 8) | buf[b + p + 3];
  p += 4;
  out.questionEnd = p;
  out.hasQuestion = true;
  // Walk every remaining RR: OPT may sit anywhere in the additional section, and a count that
  // overruns the message is malformed.
  const rrs = an + ns + ar;
  for (let i = 0; i < rrs; i++) {
    const rrStart = p;
    p = skipName(buf, b, len, p);
    if (p < 0 || p + 10 > len) return ReadStatus.FORMERR;
    const type = (buf[b + p] << 8) | buf[b + p + 1];
    const rdlen = (buf[b + p + 8] << 8) | buf[b + p + 9];
    const rdStart = p + 10;
    if (rdStart + rdlen > len) return ReadStatus.FORMERR;
    if (type === TYPE_OPT) {
      // RFC 6891 6.1.1: at most one OPT, owned by the root, in the additional section.
      if (out.hasOpt || i < an + ns || p !== rrStart + 1) return ReadStatus.FORMERR;
      out.hasOpt = true;
      out.optStart = rrStart;
      out.optLen = rdStart + rdlen - rrStart;
      const size = (buf[b + p + 2] << 8) | buf[b + p + 3];
      out.udpSize = size < 512 ? 512 : size;
      out.ednsVersion = buf[b + p + 5];
      out.doBit = (buf[b + p + 6] & 0x80) !== 0;
      let o = rdStart;
      const end = rdStart + rdlen;
      while (o < end) {
        if (o + 4 > end) return ReadStatus.FORMERR;
        const code = (buf[b + o] << 8) | buf[b + o + 1];
        const olen = (buf[b + o + 2] << 8) | buf[b + o + 3];
        if (o + 4 + olen > end) return ReadStatus.FORMERR;
        if (code === EDNS_OPT_ECS) out.hasEcs = true;
        else if (code === EDNS_OPT_KEEPALIVE) out.hasKeepalive = true;
        o += 4 + olen;
      }
    }
    p = rdStart + rdlen;
  }
  if (out.hasOpt && out.ednsVersion > 0) return ReadStatus.BADVERS;
  return ReadStatus.OK;
}

/** Skips a possibly compressed name; returns the offset after it or -1. Pointers end the name. */
export function skipName(buf: Uint8Array, base: number, len: number, p: number): number {
  let guard = 0;
  for (;;) {
    if (p >= len || ++guard > 128) return -1;
    const l = buf[base + p];
    if (l === 0) return p + 1;
    if ((l & 0xc0) === 0xc0) return p + 2 <= len ? p + 2 : -1;
    if (l > 63) return -1;
    p += l + 1;
  }
}

const lowerScratch = Buffer.allocUnsafe(512);

/**
 * Cache key: one latin1 string (the only per-query allocation on a hit). The qname is lower-cased
 * so 0x20-randomised clients share entries; group, DO and CD keep answers apart that must differ.
 */
export function cacheKey(buf: Uint8Array, start: number, q: ParsedQuery, group: number): string {
  return lowerScratch.toString('latin1', 0, writeCacheKey(buf, start, q, group, lowerScratch));
}

/** The bytes of cacheKey() written into `out` (no string made: what a cache hit needs); returns the length. */
export function writeCacheKey(buf: Uint8Array, start: number, q: ParsedQuery, group: number, out: Uint8Array): number {
  out[0] = group & 0xff;
  out[1] = (q.doBit ? 1 : 0) | (q.cdBit ? 2 : 0);
  let o = 2;
  // QNAME, QTYPE, QCLASS copied as they are on the wire, with ASCII upper case folded.
  for (let i = start + 12, end = start + q.questionEnd; i < end; i++) {
    const c = buf[i];
    out[o++] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
  }
  return o;
}

/** The question name as a lower-case dotted string without the trailing dot (allocates; slow paths and filters). */
export function qnameString(buf: Uint8Array, start: number, qnameEnd: number): string {
  let s = '';
  let p = start + 12;
  const end = start + qnameEnd;
  while (p < end) {
    const l = buf[p];
    if (l === 0) break;
    if (s.length) s += '.';
    for (let i = 1; i <= l; i++) {
      let c = buf[p + i];
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      s += c === 0x2e || c < 0x21 || c > 0x7e ? '\\' + c.toString().padStart(3, '0') : String.fromCharCode(c);
    }
    p += l + 1;
  }
  return s;
}

export interface OptSpec {
  udpSize: number;
  doBit: boolean;
  extRcode: number;
  /** RFC 8914 Extended DNS Error code, or -1. */
  ede: number;
  edeText?: string;
}

/** Writes an OPT RR at `o`; returns the new offset. */
export function writeOpt(out: Uint8Array, o: number, spec: OptSpec): number {
  out[o++] = 0;
  out[o++] = 0; out[o++] = TYPE_OPT;
  out[o++] = spec.udpSize >> 8; out[o++] = spec.udpSize & 0xff;
  out[o++] = spec.extRcode & 0xff; out[o++] = 0;
  out[o++] = spec.doBit ? 0x80 : 0; out[o++] = 0;
  const rdlenAt = o;
  o += 2;
  if (spec.ede >= 0) {
    const text = spec.edeText ?? '';
    out[o++] = 0; out[o++] = EDNS_OPT_EDE;
    const olen = 2 + text.length;
    out[o++] = olen >> 8; out[o++] = olen & 0xff;
    out[o++] = spec.ede >> 8; out[o++] = spec.ede & 0xff;
    for (let i = 0; i < text.length; i++) out[o++] = text.charCodeAt(i) & 0x7f;
  }
  const rdlen = o - rdlenAt - 2;
  out[rdlenAt] = rdlen >> 8; out[rdlenAt + 1] = rdlen & 0xff;
  return o;
}

/** Server-side EDNS buffer size we advertise (DNS Flag Day 2020). */
export const SERVER_UDP_SIZE = 1232;

/**
 * Header + echoed question (+ OPT when the client sent one) with the given rcode. Used for
 * FORMERR/SERVFAIL/REFUSED/NOTIMP/BADVERS and for the TC=1 truncation reply.
 */
export function writeHeaderOnlyReply(query: Uint8Array, qStart: number, q: ParsedQuery, rcode: number,
  out: Uint8Array, o: number, truncated = false, ede = -1, edeText?: string): number {
  const start = o;
  out[o] = query[qStart]; out[o + 1] = query[qStart + 1];
  // QR=1, keep opcode and RD, RA=1 (we recurse through the upstream), TC as asked.
  out[o + 2] = 0x80 | (query[qStart + 2] & 0x79) | (truncated ? 0x02 : 0);
  out[o + 3] = 0x80 | (query[qStart + 3] & 0x10) | (rcode & 0x0f);
  const withQuestion = q.hasQuestion;
  out[o + 4] = 0; out[o + 5] = withQuestion ? 1 : 0;
  out[o + 6] = 0; out[o + 7] = 0; out[o + 8] = 0; out[o + 9] = 0;
  out[o + 10] = 0; out[o + 11] = q.hasOpt ? 1 : 0;
  o += 12;
  if (withQuestion) {
    for (let i = 12; i < q.questionEnd; i++) out[o++] = query[qStart + i];
  }
  if (q.hasOpt) {
    o = writeOpt(out, o, { udpSize: SERVER_UDP_SIZE, doBit: q.doBit, extRcode: rcode >> 4, ede, edeText });
  }
  return o - start;
}

export function readU16(b: Uint8Array, o: number): number { return (b[o] << 8) | b[o + 1]; }
export function readU32(b: Uint8Array, o: number): number { return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0; }
