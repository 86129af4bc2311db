// Source-address ACL for the plain listener, so it is never an open resolver. Checked on raw bytes.
import net from 'node:net';

interface Prefix { family: 4 | 6; bytes: Uint8Array; bits: number }

export class ClientAcl {
  private readonly prefixes: Prefix[];
  constructor(cidrs: readonly string[]) {
    this.prefixes = cidrs.map(parseCidr);
  }

  allows(family: number, buf: Uint8Array, off: number): boolean {
    for (const p of this.prefixes) {
      if (p.family !== family) continue;
      if (prefixMatch(p, buf, off)) return true;
    }
    return false;
  }

  allowsString(ip: string): boolean {
    const fam = net.isIP(ip);
    if (fam === 0) return false;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
    if (mapped) return this.allows(4, ipToBytes(mapped[1]), 0);
    return this.allows(fam, ipToBytes(ip), 0);
  }
}

function prefixMatch(p: Prefix, buf: Uint8Array, off: number): boolean {
  let bits = p.bits;
  let i = 0;
  while (bits >= 8) { if (buf[off + i] !== p.bytes[i]) return false; i++; bits -= 8; }
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (buf[off + i] & mask) === (p.bytes[i] & mask);
}

export function parseCidr(s: string): Prefix {
  const [ip, len] = s.split('/');
  const fam = net.isIP(ip);
  if (fam === 0) throw new Error(`"${s}" is not an IP prefix`);
  const max = fam === 4 ? 32 : 128;
  const bits = len === undefined ? max : Number(len);
  if (!Number.isInteger(bits) || bits < 0 || bits > max) throw new Error(`"${s}" has a bad prefix length`);
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
