// Source-address ACL for the listeners: the plain listener's (`listen.plainAllow`) and the transparent
// listeners' ingress ACL (derived from the LAN side, src/network/ingress.ts), so neither is an open
// resolver. The UDP hot path checks the client address straight from the native metadata words: each
// prefix is kept as (network, mask) in 32-bit words with the same byte order as those words, so a
// check is one AND and one compare per word with no decoding and no allocation.
import net from 'node:net';

interface Prefix { family: 4 | 6; bytes: Uint8Array; bits: number }

export class ClientAcl {
  /** IPv4 prefixes: [net, mask] pairs. */
  private v4 = new Int32Array(0);
  /** IPv6 prefixes: 4 network words then 4 mask words each. */
  private v6 = new Int32Array(0);
  private texts: string[] = [];

  constructor(cidrs: readonly string[]) {
    this.replace(cidrs);
  }

  /** Swap in a new prefix list (validated first: a bad entry throws and leaves the old list). */
  replace(cidrs: readonly string[]): void {
    const prefixes = cidrs.map(parseCidr);
    const v4 = prefixes.filter((p) => p.family === 4);
    const v6 = prefixes.filter((p) => p.family === 6);
    const words4 = new Int32Array(v4.length * 2);
    v4.forEach((p, i) => { const [n, m] = toWords(p); words4[i * 2] = n[0]; words4[i * 2 + 1] = m[0]; });
    const words6 = new Int32Array(v6.length * 8);
    v6.forEach((p, i) => { const [n, m] = toWords(p); words6.set(n, i * 8); words6.set(m, i * 8 + 4); });
    this.v4 = words4;
    this.v6 = words6;
    this.texts = [...cidrs];
  }

  /** The prefixes in effect, as given. */
  get cidrs(): readonly string[] { return this.texts; }

  /**
   * `words[at..]` holds the address in host byte order words, as the native metadata does (4 bytes
   * for IPv4, 16 for IPv6).
   */
  allowsWords(family: number, words: Int32Array, at: number): boolean {
    if (family === 4) {
      const a = words[at];
      const t = this.v4;
      for (let i = 0; i < t.length; i += 2) if ((a & t[i + 1]) === t[i]) return true;
      return false;
    }
    const t = this.v6;
    const a0 = words[at], a1 = words[at + 1], a2 = words[at + 2], a3 = words[at + 3];
    for (let i = 0; i < t.length; i += 8) {
      if ((a0 & t[i + 4]) === t[i] && (a1 & t[i + 5]) === t[i + 1] && (a2 & t[i + 6]) === t[i + 2] && (a3 & t[i + 7]) === t[i + 3]) return true;
    }
    return false;
  }

  /** Address bytes at `buf[off..]` (4 or 16 of them). */
  allows(family: number, buf: Uint8Array, off: number): boolean {
    const n = family === 4 ? 4 : 16;
    const copy = new Uint8Array(16);
    for (let i = 0; i < n; i++) copy[i] = buf[off + i];
    return this.allowsWords(family, new Int32Array(copy.buffer), 0);
  }

  allowsString(ip: string): boolean {
    const fam = net.isIP(ip);
    if (fam === 0) return false;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
    if (mapped) return this.allows(4, ipToBytes(mapped[1]), 0);
    return this.allows(fam, ipToBytes(ip), 0);
  }
}

/** Network and mask of a prefix as host-order words over the address bytes. */
function toWords(p: Prefix): [Int32Array, Int32Array] {
  const len = p.family === 4 ? 4 : 16;
  const netBytes = new Uint8Array(len);
  const maskBytes = new Uint8Array(len);
  for (let i = 0; i < len; i++) {
    const bits = Math.max(0, Math.min(8, p.bits - i * 8));
    const m = bits === 0 ? 0 : (0xff << (8 - bits)) & 0xff;
    maskBytes[i] = m;
    netBytes[i] = p.bytes[i] & m;
  }
  return [new Int32Array(netBytes.buffer), new Int32Array(maskBytes.buffer)];
}

export function parseCidr(s: string): Prefix {
  const [ip, len] = s.split('/');
  const fam = net.isIP(ip);
  if (fam === 0) throw new Error(`"${s}" is not an IP prefix`);
  const max = fam === 4 ? 32 : 128;
  const bits = len === undefined ? max : Number(len);
  if (!/^\d{1,3}$/.test(len ?? String(max)) || !Number.isInteger(bits) || bits < 0 || bits > max) throw new Error(`"${s}" has a bad prefix length`);
  return { family: fam as 4 | 6, bytes: ipToBytes(ip), bits };
}

export function ipToBytes(ip: string): Uint8Array {
  if (net.isIPv4(ip)) return Uint8Array.from(ip.split('.').map(Number));
  const sl = new net.SocketAddress({ address: ip, family: 'ipv6' });
  // Expand "::" by hand: SocketAddress normalises but has no byte accessor.
  const full = expandV6(sl.address);
  const out = new Uint8Array(16);
  full.forEach((h, i) => { const v = parseInt(h, 16); out[i * 2] = v >> 8; out[i * 2 + 1] = v & 0xff; });
  return out;
}

function expandV6(a: string): string[] {
  let s = a;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const b = v4[1].split('.').map(Number);
    s = s.slice(0, -v4[1].length) + ((b[0] << 8) | b[1]).toString(16) + ':' + ((b[2] << 8) | b[3]).toString(16);
  }
  const [head, tail] = s.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined ? (tail ? tail.split(':') : []) : [];
  const fill = tail !== undefined ? new Array(8 - h.length - t.length).fill('0') : [];
  return [...h, ...fill, ...t];
}
