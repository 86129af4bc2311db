// Reading upstream answers: validation against the question we sent, TTL field offsets for in-place
// aging, and the TTL an answer may be cached for (RFC 2308 for negative answers).
import { ParsedQuery, Rcode, TYPE_OPT, TYPE_SOA, readU16, readU32, skipName, writeOpt, SERVER_UDP_SIZE } from './wire.js';

export class AnswerInfo {
  rcode = 0;
  truncated = false;
  ancount = 0;
  /** Offsets of every TTL field except OPT's, in message order. Reused; read `ttlCount` entries. */
  ttlOffsets = new Uint16Array(256);
  ttlCount = 0;
  /** Smallest TTL in the answer section, or -1 when there are no answer records. */
  minAnswerTtl = -1;
  /** min(SOA TTL, SOA MINIMUM) from the authority section (RFC 2308 5), or -1. */
  negativeTtl = -1;
  optStart = -1;
  optLen = 0;
  /** CNAME targets matter to the filter; remember whether any were seen so inspection can be skipped. */
  hasCname = false;
}

export const enum AnswerError { OK = 0, SHORT = 1, NOT_RESPONSE = 2, QUESTION_MISMATCH = 3, MALFORMED = 4, TOO_MANY_RRS = 5 }

/**
 * Validates `ans` against the query's question (case-insensitive, as 0x20 resolvers may change case) and
 * records what caching needs. The ID is checked by the caller: DoH sends ID 0.
 */
export function analyzeAnswer(ans: Uint8Array, len: number, query: Uint8Array, qStart: number, q: ParsedQuery,
  info: AnswerInfo): AnswerError {
  info.ttlCount = 0; info.minAnswerTtl = -1; info.negativeTtl = -1; info.optStart = -1; info.optLen = 0;
  info.hasCname = false;
  if (len < 12) return AnswerError.SHORT;
  if (!(ans[2] & 0x80)) return AnswerError.NOT_RESPONSE;
  info.truncated = (ans[2] & 0x02) !== 0;
  info.rcode = ans[3] & 0x0f;
  const qd = readU16(ans, 4), an = readU16(ans, 6), ns = readU16(ans, 8), ar = readU16(ans, 10);
  info.ancount = an;
  if (qd !== 1) return AnswerError.QUESTION_MISMATCH;
  const qlen = q.questionEnd - 12;
  if (12 + qlen > len) return AnswerError.QUESTION_MISMATCH;
  for (let i = 0; i < qlen; i++) {
    let a = ans[12 + i], b = query[qStart + 12 + i];
    if (a >= 0x41 && a <= 0x5a) a |= 0x20;
    if (b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (a !== b) return AnswerError.QUESTION_MISMATCH;
  }
  let p = 12 + qlen;
  const total = an + ns + ar;
  if (total > info.ttlOffsets.length) return AnswerError.TOO_MANY_RRS;
  for (let i = 0; i < total; i++) {
    const rr = p;
    p = skipName(ans, 0, len, p);
    if (p < 0 || p + 10 > len) return AnswerError.MALFORMED;
    const type = readU16(ans, p);
    const rdlen = readU16(ans, p + 8);
    const rd = p + 10;
    if (rd + rdlen > len) return AnswerError.MALFORMED;
    if (type === TYPE_OPT) {
      // RFC 6891 6.1.1: one OPT, owned by the root, in the additional section. Anything else would make
      // stripping it corrupt the section counts. It must also be the last record: cutting it out of the
      // middle would shift every later byte, and a compression pointer after it that points past it would
      // then land on the wrong bytes. (Servers put it last; only TSIG/SIG(0), never sent over DoH, follow.)
      if (info.optStart >= 0 || i < an + ns || p !== rr + 1 || i !== total - 1) return AnswerError.MALFORMED;
      info.optStart = rr; info.optLen = rd + rdlen - rr;
      info.rcode |= ans[p + 4] << 4;
    } else {
      const ttl = readU32(ans, p + 4);
      info.ttlOffsets[info.ttlCount++] = p + 4;
      if (i < an) {
        if (info.minAnswerTtl < 0 || ttl < info.minAnswerTtl) info.minAnswerTtl = ttl;
        if (type === 5) info.hasCname = true;
      } else if (i < an + ns && type === TYPE_SOA) {
        // SOA MINIMUM is the last 32-bit field of its RDATA.
        if (rdlen >= 22) {
          const min = readU32(ans, rd + rdlen - 4);
          info.negativeTtl = Math.min(ttl, min);
        }
      }
    }
    p = rd + rdlen;
  }
  if (p !== len) {
    // Trailing garbage is tolerated by most resolvers; we cut it off rather than cache it.
    return AnswerError.MALFORMED;
  }
  return AnswerError.OK;
}

/**
 * Copies `ans` into `out` without the upstream's OPT, then adds our own OPT if the client sent one
 * (echoing its DO bit). The upstream's EDNS options (its EDE, padding, cookies) describe the hop
 * between us and it, not between the client and us, so they are not forwarded.
 */
export function rewriteOpt(ans: Uint8Array, len: number, info: AnswerInfo, q: ParsedQuery, out: Uint8Array,
  o: number, ede = -1): number {
  const start = o;
  let arDelta = 0;
  if (info.optStart >= 0) {
    out.set(ans.subarray(0, info.optStart), o);
    o += info.optStart;
    const after = info.optStart + info.optLen;
    out.set(ans.subarray(after, len), o);
    o += len - after;
    arDelta--;
  } else {
    out.set(ans.subarray(0, len), o);
    o += len;
  }
  if (q.hasOpt) {
    o = writeOpt(out, o, { udpSize: SERVER_UDP_SIZE, doBit: q.doBit, extRcode: info.rcode >> 4, ede });
    arDelta++;
  }
  if (arDelta !== 0) {
    const ar = readU16(out, start + 10) + arDelta;
    out[start + 10] = ar >> 8; out[start + 11] = ar & 0xff;
  }
  return o - start;
}

export interface TtlPolicy { minTtl: number; maxTtl: number; negativeTtl: number; servfailTtl: number }

/** Seconds this answer may be cached, or 0 for never. */
export function cacheableTtl(info: AnswerInfo, policy: TtlPolicy): number {
  if (info.truncated) return 0;
  const rc = info.rcode;
  if (rc === Rcode.SERVFAIL) return policy.servfailTtl;
  if (rc === Rcode.NXDOMAIN || (rc === Rcode.NOERROR && info.ancount === 0)) {
    const t = info.negativeTtl >= 0 ? info.negativeTtl : policy.negativeTtl;
    return Math.max(Math.min(t, policy.negativeTtl), Math.min(policy.minTtl, policy.negativeTtl));
  }
  if (rc !== Rcode.NOERROR) return 0;
  const t = info.minAnswerTtl < 0 ? policy.minTtl : info.minAnswerTtl;
  return Math.min(Math.max(t, policy.minTtl), policy.maxTtl);
}
