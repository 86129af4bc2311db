// Small EDNS helpers for transport-specific options (RFC 7828 edns-tcp-keepalive).
//
// The rule for EDNS options (the lead documents it in the README):
//   - client → us → upstream: the upstream query keeps the client's options except ECS (stripped unless
//     `upstream.ecs: pass`), padding (re-done for the upstream hop, RFC 8467) and edns-tcp-keepalive
//     (it describes the client's TCP connection with us); unknown options pass through untouched.
//   - upstream → us → client: the upstream's OPT is dropped and ours rebuilt (rewriteOpt in answer.ts),
//     so unknown options the upstream sent never reach the client; we add only our own (EDE, and on TCP
//     edns-tcp-keepalive when the client asked for it).
import { TYPE_OPT, EDNS_OPT_KEEPALIVE, readU16, skipName } from './wire.js';

/**
 * The OPT RR of a message: offset of its owner byte (relative to `start`) and its length, or null when
 * there is none or the message does not parse. Walks every RR: slow paths only (few clients ask for
 * keepalive).
 */
export function findOpt(buf: Uint8Array, start: number, len: number): { at: number; len: number } | null {
  if (len < 12) return null;
  const qd = readU16(buf, start + 4);
  const rrs = readU16(buf, start + 6) + readU16(buf, start + 8) + readU16(buf, start + 10);
  let p = 12;
  for (let i = 0; i < qd; i++) {
    p = skipName(buf, start, len, p);
    if (p < 0 || p + 4 > len) return null;
    p += 4;
  }
  for (let i = 0; i < rrs; i++) {
    const rr = p;
    p = skipName(buf, start, len, p);
    if (p < 0 || p + 10 > len) return null;
    const type = readU16(buf, start + p);
    const rdlen = readU16(buf, start + p + 8);
    if (p + 10 + rdlen > len) return null;
    if (type === TYPE_OPT) return { at: rr, len: p + 10 + rdlen - rr };
    p += 10 + rdlen;
  }
  return null;
}

/**
 * Length of option `code` inside the OPT RR at `optAt` (relative to `start`), or -1 when absent.
 */
export function optionLength(buf: Uint8Array, start: number, optAt: number, optLen: number, code: number): number {
  let o = optAt + 11;
  const end = optAt + optLen;
  while (o + 4 <= end) {
    const c = readU16(buf, start + o), l = readU16(buf, start + o + 2);
    if (c === code) return l;
    o += 4 + l;
  }
  return -1;
}

/** RFC 7828 TIMEOUT: idle timeout in units of 100 ms, saturating at the 16-bit field. */
export function keepaliveUnits(idleTimeoutMs: number): number {
  return Math.min(0xffff, Math.max(0, Math.floor(idleTimeoutMs / 100)));
}

/**
 * Copies the message in `src[off, off+len)` to `out` at `o`, adding an edns-tcp-keepalive option with
 * `units` to its OPT RR (replacing one already there). Returns the new length, or -1 when the message has
 * no OPT (then nothing is added: RFC 7828 options only travel in an OPT the client asked for).
 * `out` needs `len + 6` bytes.
 */
export function addKeepalive(src: Uint8Array, off: number, len: number, units: number, out: Uint8Array, o: number): number {
  const opt = findOpt(src, off, len);
  if (opt === null) return -1;
  const rdStart = opt.at + 11;
  const optEnd = opt.at + opt.len;
  let w = o;
  out.set(src.subarray(off, off + rdStart), w);
  w += rdStart;
  // Existing options, minus any keepalive (a cached or upstream one must not survive).
  let p = rdStart;
  while (p + 4 <= optEnd) {
    const c = readU16(src, off + p), l = readU16(src, off + p + 2);
    if (c !== EDNS_OPT_KEEPALIVE) { out.set(src.subarray(off + p, off + p + 4 + l), w); w += 4 + l; }
    p += 4 + l;
  }
  out[w++] = 0; out[w++] = EDNS_OPT_KEEPALIVE; out[w++] = 0; out[w++] = 2;
  out[w++] = units >> 8; out[w++] = units & 0xff;
  const rdlen = w - (o + rdStart);
  out[o + opt.at + 9] = rdlen >> 8; out[o + opt.at + 10] = rdlen & 0xff;
  // Anything after the OPT RR (OPT not last: TSIG, or odd upstreams) follows unchanged.
  out.set(src.subarray(off + optEnd, off + len), w);
  w += len - optEnd;
  return w - o;
}
