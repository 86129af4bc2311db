// Local records ("nas.home 300 A 192.168.1.10") answered authoritatively.
import { parseIPv4, parseIPv6 } from './net.js';
import { normalizeDomain, qtypeFromName } from './parse.js';
import type { LocalDecision } from './types.js';
import { concat, encodeName, encodeRR, soaRdata } from './wire.js';

interface LocalRR {
  type: number;
  ttl: number;
  rdata: Uint8Array;
  /** CNAME target (normalised) */
  target?: string;
}

export class LocalZone {
  readonly names = new Map<string, LocalRR[]>();
  private readonly memo = new Map<string, Map<number, LocalDecision>>();
  private readonly soa: Uint8Array;

  constructor(readonly defaultTtl: number) {
    this.soa = encodeRR(null, 6, Math.min(defaultTtl, 300), soaRdata(Math.min(defaultTtl, 300)));
  }

  /** Parse one `local:` entry; throws with a readable message on error. */
  add(entry: string): void {
    const toks = tokenize(entry);
    if (toks.length < 3) throw new Error(`local record "${entry}": expected "name [ttl] [IN] TYPE data"`);
    const name = normalizeDomain(toks[0]!);
    if (name === null) throw new Error(`local record "${entry}": invalid name`);
    let i = 1;
    let ttl = this.defaultTtl;
    if (/^\d+$/.test(toks[i]!)) ttl = Number(toks[i++]);
    if (ttl > 2147483647) throw new Error(`local record "${entry}": TTL too large`);
    if (toks[i]?.toUpperCase() === 'IN') i++;
    const typeName = toks[i++];
    const type = typeName ? qtypeFromName(typeName) : null;
    if (type === null) throw new Error(`local record "${entry}": unknown type "${typeName}"`);
    const data = toks.slice(i);
    if (data.length === 0) throw new Error(`local record "${entry}": missing data`);
    const rr: LocalRR = { type, ttl, rdata: new Uint8Array(0) };
    const one = (): string => {
      if (data.length !== 1) throw new Error(`local record "${entry}": expected one value`);
      return data[0]!;
    };
    switch (type) {
      case 1: {
        const v = parseIPv4(one());
        if (v === null) throw new Error(`local record "${entry}": invalid IPv4 address`);
        rr.rdata = Uint8Array.of(v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);
        break;
      }
      case 28: {
        const v = parseIPv6(one());
        if (v === null) throw new Error(`local record "${entry}": invalid IPv6 address`);
        rr.rdata = v;
        break;
      }
      case 5:
      case 12:
      case 2: {
        const t = normalizeDomain(one());
        if (t === null) throw new Error(`local record "${entry}": invalid target name`);
        rr.rdata = encodeName(t);
        if (type === 5) rr.target = t;
        break;
      }
      case 15: {
        if (data.length !== 2 || !/^\d+$/.test(data[0]!)) throw new Error(`local record "${entry}": MX needs "preference target"`);
        const t = normalizeDomain(data[1]!);
        if (t === null) throw new Error(`local record "${entry}": invalid MX target`);
        const pref = Number(data[0]);
        rr.rdata = concat([Uint8Array.of(pref >>> 8, pref & 255), encodeName(t)]);
        break;
      }
      case 33: {
        if (data.length !== 4 || !data.slice(0, 3).every((x) => /^\d+$/.test(x))) {
          throw new Error(`local record "${entry}": SRV needs "priority weight port target"`);
        }
        const t = normalizeDomain(data[3]!);
        if (t === null) throw new Error(`local record "${entry}": invalid SRV target`);
        const nums = data.slice(0, 3).map(Number);
        rr.rdata = concat([Uint8Array.from(nums.flatMap((n) => [n >>> 8, n & 255])), encodeName(t)]);
        break;
      }
      case 16: {
        const parts: number[] = [];
        for (const s of data) {
          const b = Buffer.from(s, 'utf8');
          for (let o = 0; o < b.length || o === 0; o += 255) {
            const chunk = b.subarray(o, o + 255);
            parts.push(chunk.length, ...chunk);
            if (b.length === 0) break;
          }
        }
        rr.rdata = Uint8Array.from(parts);
        break;
      }
      default:
        throw new Error(`local record "${entry}": type ${typeName} not supported (A, AAAA, CNAME, PTR, NS, MX, SRV, TXT)`);
    }
    const list = this.names.get(name) ?? [];
    if (type === 5 && list.length > 0) throw new Error(`local record "${entry}": CNAME cannot coexist with other records`);
    if (type !== 5 && list.some((r) => r.type === 5)) throw new Error(`local record "${entry}": ${name} already has a CNAME`);
    list.push(rr);
    this.names.set(name, list);
  }

  /** Decision for (name, qtype); memoised for up to 32 qtypes per name. */
  answer(name: string, qtype: number): LocalDecision {
    let m = this.memo.get(name);
    if (!m) {
      m = new Map();
      this.memo.set(name, m);
    }
    let d = m.get(qtype);
    if (d) return d;
    d = this.build(name, qtype);
    if (m.size < 32) m.set(qtype, d);
    return d;
  }

  private build(name: string, qtype: number): LocalDecision {
    const parts: Uint8Array[] = [];
    let ancount = 0;
    let cur = name;
    let owner: Uint8Array | null = null; // null = pointer to question
    const seen = new Set<string>();
    for (let depth = 0; depth < 8; depth++) {
      const rrs = this.names.get(cur);
      if (!rrs || seen.has(cur)) break;
      seen.add(cur);
      const cname = rrs.find((r) => r.type === 5);
      if (cname && qtype !== 5 && qtype !== 255) {
        parts.push(encodeRR(owner, 5, cname.ttl, cname.rdata));
        ancount++;
        cur = cname.target!;
        owner = encodeName(cur);
        continue;
      }
      for (const r of rrs) {
        if (r.type === qtype || qtype === 255) {
          parts.push(encodeRR(owner, r.type, r.ttl, r.rdata));
          ancount++;
        }
      }
      break;
    }
    return {
      kind: 'local',
      name,
      qtype,
      rcode: 0,
      answer: concat(parts),
      ancount,
      authority: ancount === 0 ? this.soa : new Uint8Array(0),
      nscount: ancount === 0 ? 1 : 0,
    };
  }
}

/** Split on whitespace, keeping "quoted strings" (with \" escapes) as one token. */
function tokenize(s: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < s.length) {
    while (i < s.length && /\s/.test(s[i]!)) i++;
    if (i >= s.length) break;
    if (s[i] === '"') {
      let t = '';
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        t += s[i++];
      }
      i++;
      out.push(t);
    } else {
      let t = '';
      while (i < s.length && !/\s/.test(s[i]!)) t += s[i++];
      out.push(t);
    }
  }
  return out;
}
