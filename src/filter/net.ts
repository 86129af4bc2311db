// IP / CIDR / MAC helpers (no allocation on the matching side).
import { isIPv4, isIPv6 } from 'node:net';

export interface Cidr {
  family: 4 | 6;
  /** v4: one word; v6: four words, network order, already masked */
  net: Uint32Array;
  mask: Uint32Array;
  prefix: number;
  text: string;
}

export function parseIPv4(s: string): number | null {
  if (!isIPv4(s)) return null;
  const p = s.split('.');
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}

/** IPv6 text to 16 bytes (accepts embedded IPv4 and zone ids, which are dropped). */
export function parseIPv6(s: string): Uint8Array | null {
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct);
  if (!isIPv6(s)) return null;
  const out = new Uint8Array(16);
  let head = s;
  let tail = '';
  const dc = s.indexOf('::');
  if (dc >= 0) {
    head = s.slice(0, dc);
    tail = s.slice(dc + 2);
  }
  const words = (part: string): number[] => {
    if (part === '') return [];
    const res: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const v4 = parseIPv4(g);
        if (v4 === null) return [];
        res.push(v4 >>> 16, v4 & 0xffff);
      } else res.push(parseInt(g, 16));
    }
    return res;
  };
  const h = words(head);
  const t = words(tail);
  const all = dc >= 0 ? [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t] : h;
  if (all.length !== 8) return null;
  for (let i = 0; i < 8; i++) {
    out[i * 2] = all[i]! >>> 8;
    out[i * 2 + 1] = all[i]! & 0xff;
  }
  return out;
}

export function parseCidr(text: string): Cidr | null {
  const t = text.trim();
  const slash = t.indexOf('/');
  const addr = slash >= 0 ? t.slice(0, slash) : t;
  const pstr = slash >= 0 ? t.slice(slash + 1) : null;
  if (pstr !== null && !/^\d{1,3}$/.test(pstr)) return null;
  const v4 = parseIPv4(addr);
  if (v4 !== null) {
    const prefix = pstr === null ? 32 : Number(pstr);
    if (prefix > 32) return null;
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    return { family: 4, net: Uint32Array.of((v4 & mask) >>> 0), mask: Uint32Array.of(mask), prefix, text: t };
  }
  const v6 = parseIPv6(addr);
  if (v6 === null) return null;
  const prefix = pstr === null ? 128 : Number(pstr);
  if (prefix > 128) return null;
  const net = new Uint32Array(4);
  const mask = new Uint32Array(4);
  for (let w = 0; w < 4; w++) {
    const bits = Math.max(0, Math.min(32, prefix - w * 32));
    mask[w] = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    const word = ((v6[w * 4]! << 24) | (v6[w * 4 + 1]! << 16) | (v6[w * 4 + 2]! << 8) | v6[w * 4 + 3]!) >>> 0;
    net[w] = (word & mask[w]!) >>> 0;
  }
  return { family: 6, net, mask, prefix, text: t };
}

export function readU32(a: Uint8Array, o: number): number {
  return ((a[o]! << 24) | (a[o + 1]! << 16) | (a[o + 2]! << 8) | a[o + 3]!) >>> 0;
}

/** True when the 16 bytes at o are an IPv4-mapped IPv6 address (::ffff:a.b.c.d). */
export function isV4Mapped(a: Uint8Array, o: number): boolean {
  for (let i = 0; i < 10; i++) if (a[o + i] !== 0) return false;
  return a[o + 10] === 0xff && a[o + 11] === 0xff;
}

export function cidrMatchBytes(c: Cidr, family: 4 | 6, a: Uint8Array, o: number): boolean {
  if (family === 6 && isV4Mapped(a, o)) {
    family = 4;
    o += 12;
  }
  if (c.family !== family) return false;
  if (family === 4) return ((readU32(a, o) & c.mask[0]!) >>> 0) === c.net[0];
  for (let w = 0; w < 4; w++) if (((readU32(a, o + w * 4) & c.mask[w]!) >>> 0) !== c.net[w]) return false;
  return true;
}

/** Parse an IP string into (family, bytes). */
export function ipToBytes(s: string): { family: 4 | 6; bytes: Uint8Array } | null {
  const v4 = parseIPv4(s);
  if (v4 !== null) return { family: 4, bytes: Uint8Array.of(v4 >>> 24, (v4 >>> 16) & 255, (v4 >>> 8) & 255, v4 & 255) };
  const v6 = parseIPv6(s);
  return v6 ? { family: 6, bytes: v6 } : null;
}

const MAC_RE = /^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$/i;
export function normalizeMac(s: string): string | null {
  const t = s.trim();
  return MAC_RE.test(t) ? t.toLowerCase().replace(/-/g, ':') : null;
}

export function v6Key(a: Uint8Array, o: number): string {
  let s = '';
  for (let i = 0; i < 16; i++) s += (a[o + i]! < 16 ? '0' : '') + a[o + i]!.toString(16);
  return s;
}
