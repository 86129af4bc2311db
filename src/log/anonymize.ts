/**
 * Client-address anonymisation for the query log.
 *
 * - `truncate`: zero the host bits of the address. IPv4 keeps `v4Prefix` bits (default 24),
 *   IPv6 keeps `v6Prefix` bits (default 56). IPv4-mapped IPv6 (`::ffff:a.b.c.d`, as seen on
 *   dual-stack sockets) is treated as IPv4 and keeps its `::ffff:` form.
 *   Strings that are not IP addresses are returned unchanged.
 * - `hash`: HMAC-SHA256 keyed with `salt` over the textual address, hex, truncated to 16 hex
 *   chars (64 bits). Without a salt a random per-process salt is used, so hashes are only
 *   comparable within one process lifetime.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';

export interface AnonymizeConfig {
  mode: 'none' | 'truncate' | 'hash';
  v4Prefix?: number;
  v6Prefix?: number;
  salt?: string;
}

export const HASH_HEX_CHARS = 16;

/** Parse an IPv6 text address into 8 16-bit groups. Returns null when invalid. */
export function parseIPv6(addr: string): number[] | null {
  let s = addr;
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct); // drop zone id
  if (!isIPv6(s)) return null;
  // rewrite an embedded dotted quad at the end as two hex groups
  const lastColon = s.lastIndexOf(':');
  const lastPart = s.slice(lastColon + 1);
  if (lastPart.includes('.')) {
    const o = lastPart.split('.').map(Number);
    s = `${s.slice(0, lastColon + 1)}${((o[0] << 8) | o[1]).toString(16)}:${((o[2] << 8) | o[3]).toString(16)}`;
  }
  const want = 8;
  const dbl = s.indexOf('::');
  let groups: number[];
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((h) => parseInt(h, 16)));
  if (dbl >= 0) {
    const head = parse(s.slice(0, dbl));
    const rest = parse(s.slice(dbl + 2));
    const fill = want - head.length - rest.length;
    if (fill < 0) return null;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  } else {
    groups = parse(s);
  }
  if (groups.length !== 8 || groups.some((g) => !(g >= 0 && g <= 0xffff))) return null;
  return groups;
}

/** Canonical (RFC 5952) text for 8 groups. */
export function formatIPv6(g: number[]): string {
  // find the longest run (>= 2) of zero groups, first one wins on ties
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestLen < 2) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}`;
}

function maskBits(value: number, width: number, keep: number): number {
  // keep `keep` high bits of a `width`-bit value
  if (keep >= width) return value;
  if (keep <= 0) return 0;
  const mask = ((1 << width) - 1) ^ ((1 << (width - keep)) - 1);
  return value & mask;
}

export function truncateIPv4(addr: string, prefix: number): string {
  const o = addr.split('.').map(Number);
  const out = o.map((b, i) => maskBits(b, 8, prefix - i * 8));
  return out.join('.');
}

export function truncateIPv6(addr: string, prefix: number): string | null {
  const g = parseIPv6(addr);
  if (!g) return null;
  return formatIPv6(g.map((v, i) => maskBits(v, 16, prefix - i * 16)));
}

const MAPPED_RE = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

export class Anonymizer {
  readonly mode: AnonymizeConfig['mode'];
  private readonly v4Prefix: number;
  private readonly v6Prefix: number;
  private readonly key: Buffer;

  constructor(cfg?: AnonymizeConfig) {
    this.mode = cfg?.mode ?? 'none';
    this.v4Prefix = clampInt(cfg?.v4Prefix, 0, 32, 24);
    this.v6Prefix = clampInt(cfg?.v6Prefix, 0, 128, 56);
    this.key = cfg?.salt !== undefined && cfg.salt !== '' ? Buffer.from(cfg.salt, 'utf8') : randomBytes(32);
  }

  apply(addr: string): string {
    switch (this.mode) {
      case 'truncate':
        return this.truncate(addr);
      case 'hash':
        return createHmac('sha256', this.key).update(addr).digest('hex').slice(0, HASH_HEX_CHARS);
      default:
        return addr;
    }
  }

  private truncate(addr: string): string {
    if (isIPv4(addr)) return truncateIPv4(addr, this.v4Prefix);
    const m = MAPPED_RE.exec(addr);
    if (m && isIPv4(m[1])) return `::ffff:${truncateIPv4(m[1], this.v4Prefix)}`;
    return truncateIPv6(addr, this.v6Prefix) ?? addr;
  }
}

function clampInt(v: number | undefined, min: number, max: number, dflt: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) return dflt;
  return Math.min(max, Math.max(min, Math.trunc(v)));
}
