// Rule-line parsing: hosts files, plain domain lists, wildcard domains,
// the DNS subset of AdBlock syntax and /regex/ rules.
//
// The list parser works on raw bytes: the common shapes (plain domain,
// "||domain^", "@@||domain^", "0.0.0.0 domain", "*.domain") are recognised,
// lower-cased and hashed in place without creating a JS string per line.
// Everything else falls back to parseRule() on a string.
import { domainToASCII } from 'node:url';
import { checkRegex, compileRule, type RuleMatcher } from './regex-guard.js';
import { parseCidr, type Cidr } from './net.js';

// rule classes, in increasing precedence
export const C_BLOCK = 0;
export const C_ALLOW = 1;
export const C_IMP = 2; // $important block
export const C_IALLOW = 3; // @@ ... $important
// scopes
export const S_EXACT = 0; // the name only
export const S_SUBTREE = 1; // the name and all subdomains
export const S_CHILDREN = 2; // subdomains only (*.name)

export interface ClientSpec {
  neg: boolean;
  cidr: Cidr | null;
  name: string | null;
}

export interface Modifiers {
  important: boolean;
  badfilter: boolean;
  /** allowed qtypes, or null */
  dnstypes: Set<number> | null;
  /** true when dnstypes lists excluded types (~MX) */
  dnstypesNeg: boolean;
  clients: ClientSpec[] | null;
  /** canonical modifier text without badfilter, used to match $badfilter rules */
  key: string;
}

export type ParsedRule =
  | { t: 'domain'; cls: number; scope: number; domains: string[]; mods: Modifiers | null }
  | { t: 'regex'; cls: number; re: RuleMatcher; pattern: string; mods: Modifiers | null }
  | { t: 'skip' }
  | { t: 'bad'; reason: string }
  | { t: 'unsupported'; reason: string };

export const QTYPES: Record<string, number> = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, HINFO: 13, MX: 15, TXT: 16, AAAA: 28, SRV: 33, NAPTR: 35,
  DNAME: 39, OPT: 41, DS: 43, SSHFP: 44, RRSIG: 46, NSEC: 47, DNSKEY: 48, NSEC3: 50, TLSA: 52,
  SVCB: 64, HTTPS: 65, SPF: 99, AXFR: 252, ANY: 255, CAA: 257,
};

export function qtypeFromName(s: string): number | null {
  const u = s.toUpperCase();
  if (u in QTYPES) return QTYPES[u]!;
  const m = /^TYPE(\d{1,5})$/.exec(u);
  if (m && Number(m[1]) < 65536) return Number(m[1]);
  return null;
}

export function qtypeName(t: number): string {
  for (const [k, v] of Object.entries(QTYPES)) if (v === t) return k;
  return `TYPE${t}`;
}

const LOCALHOST_NAMES = new Set([
  'localhost', 'localhost.localdomain', 'local', 'broadcasthost', 'ip6-localhost', 'ip6-loopback',
  'ip6-localnet', 'ip6-mcastprefix', 'ip6-allnodes', 'ip6-allrouters', 'ip6-allhosts', '0.0.0.0',
]);
const BLOCKING_IPS = new Set(['0.0.0.0', '127.0.0.1', '::', '::1', '0:0:0:0:0:0:0:0', '0:0:0:0:0:0:0:1']);

/** Normalise a domain: lower-case, no trailing dot, IDN to punycode. Returns null if invalid. */
export function normalizeDomain(input: string): string | null {
  let s = input.trim().toLowerCase();
  if (s.endsWith('.')) s = s.slice(0, -1);
  if (s.length === 0) return null;
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(s)) {
    const a = domainToASCII(s);
    if (!a) return null;
    s = a;
  }
  if (s.length > 253) return null;
  if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(s)) return null;
  for (const l of s.split('.')) if (l.length > 63) return null;
  return s;
}

function parseModifiers(text: string): { mods: Modifiers } | { bad: string } | { unsupported: string } {
  const mods: Modifiers = { important: false, badfilter: false, dnstypes: null, dnstypesNeg: false, clients: null, key: '' };
  const keyParts: string[] = [];
  // split on commas not inside quotes
  const parts: string[] = [];
  let cur = '';
  let q: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (q) {
      if (c === '\\' && i + 1 < text.length) {
        cur += text[++i];
        continue;
      }
      if (c === q) q = null;
      else cur += c;
      continue;
    }
    if (c === '"' || c === "'") q = c;
    else if (c === ',') {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  for (const raw of parts) {
    const p = raw.trim();
    if (p === '') continue;
    const eq = p.indexOf('=');
    const name = (eq >= 0 ? p.slice(0, eq) : p).trim().toLowerCase();
    const val = eq >= 0 ? p.slice(eq + 1).trim() : '';
    if (name === 'important') {
      mods.important = true;
      keyParts.push('important');
    } else if (name === 'badfilter') {
      mods.badfilter = true;
    } else if (name === 'dnstype') {
      if (!val) return { bad: 'empty $dnstype' };
      const set = new Set<number>();
      let neg: boolean | null = null;
      for (let v of val.split('|')) {
        v = v.trim();
        const isNeg = v.startsWith('~');
        if (neg !== null && neg !== isNeg) return { bad: '$dnstype mixes excluded and included types' };
        neg = isNeg;
        const t = qtypeFromName(isNeg ? v.slice(1) : v);
        if (t === null) return { bad: `unknown DNS type "${v}" in $dnstype` };
        set.add(t);
      }
      mods.dnstypes = set;
      mods.dnstypesNeg = neg === true;
      keyParts.push('dnstype=' + [...set].sort((a, b) => a - b).map((t) => (neg ? '~' : '') + qtypeName(t)).join('|'));
    } else if (name === 'client') {
      if (!val) return { bad: 'empty $client' };
      const specs: ClientSpec[] = [];
      for (let v of val.split('|')) {
        v = v.trim();
        const neg = v.startsWith('~');
        if (neg) v = v.slice(1).trim();
        if (v.startsWith('"') || v.startsWith("'")) v = v.slice(1, -1);
        if (!v) return { bad: 'empty $client value' };
        const cidr = parseCidr(v);
        specs.push({ neg, cidr, name: cidr ? null : v.toLowerCase() });
      }
      mods.clients = specs;
      keyParts.push('client=' + specs.map((s) => (s.neg ? '~' : '') + (s.cidr ? s.cidr.text : s.name)).sort().join('|'));
    } else {
      return { unsupported: `unsupported modifier $${name}` };
    }
  }
  mods.key = keyParts.sort().join(',');
  return { mods };
}

function globToRegex(anchor: '||' | '|' | '', body: string): string {
  let s = anchor === '||' ? '(?:^|\\.)' : anchor === '|' ? '^' : '';
  for (const ch of body) {
    if (ch === '*') s += '.*';
    else if (/[a-z0-9_-]/.test(ch)) s += ch;
    else if (ch === '.') s += '\\.';
    else return '';
  }
  return s + '$';
}

/**
 * Parse one rule line given as text (already trimmed or not). Used for inline
 * config rules and as the slow path of the list parser.
 * @param allowSection when true (config `allow:`) block rules are flipped to exceptions
 */
export function parseRule(line: string, opts: { hostsScope?: number; regexMaxLength?: number; allowSection?: boolean } = {}): ParsedRule {
  let s = line.trim();
  if (s === '' || s[0] === '!' || s[0] === '#' || (s[0] === '[' && s.endsWith(']'))) return { t: 'skip' };
  const ws = /\s+/.exec(s);
  const hostsShaped = ws !== null && !s.startsWith('|') && !s.startsWith('@@') && !s.startsWith('/');
  const ip = hostsShaped ? s.slice(0, ws.index) : '';
  const isIp = /^[0-9.]+$/.test(ip) || ip.includes(':');
  // cosmetic / scriptlet / HTML filtering rules. Not on a hosts line, where "#" starts a comment
  // ("127.0.0.1 ads.example #@# note" blocks ads.example, as the list parser's fast path reads it).
  // Nor on a whole /regex/ line, where "##" or "$$" are pattern text.
  const regexLine = /^(@@)?\/.*\/$/.test(s);
  if (!(hostsShaped && isIp) && !regexLine && /#[@?$%]*#|\$\$|#@\$?#/.test(s)) return { t: 'unsupported', reason: 'cosmetic rule' };

  // hosts line
  if (hostsShaped) {
    const rest = s.slice(ws.index).split('#')[0]!.trim();
    const names = rest.split(/\s+/).filter((x) => x.length > 0);
    if (!isIp) return { t: 'bad', reason: 'unexpected whitespace' };
    const real = names.filter((n) => !LOCALHOST_NAMES.has(n.toLowerCase()));
    if (real.length === 0) return { t: 'skip' };
    if (!BLOCKING_IPS.has(ip)) return { t: 'unsupported', reason: `hosts entry maps to ${ip} (only 0.0.0.0, 127.0.0.1, ::, ::1 block)` };
    const domains: string[] = [];
    for (const n of real) {
      const d = normalizeDomain(n);
      if (d === null) return { t: 'bad', reason: `invalid hostname "${n}"` };
      domains.push(d);
    }
    return { t: 'domain', cls: C_BLOCK, scope: opts.hostsScope ?? S_EXACT, domains, mods: null };
  }

  let cls = C_BLOCK;
  if (s.startsWith('@@')) {
    cls = C_ALLOW;
    s = s.slice(2);
  }
  if (opts.allowSection) cls = C_ALLOW;

  // regex
  if (s.startsWith('/')) {
    let end = s.length - 1;
    let modText = '';
    if (!s.endsWith('/')) {
      const i = s.lastIndexOf('/$');
      if (i <= 0) return { t: 'unsupported', reason: 'URL rule' };
      end = i;
      modText = s.slice(i + 2);
    }
    if (end <= 0) return { t: 'bad', reason: 'empty regex' };
    const pattern = s.slice(1, end);
    let mods: Modifiers | null = null;
    if (modText) {
      const m = parseModifiers(modText);
      if ('bad' in m) return { t: 'bad', reason: m.bad };
      if ('unsupported' in m) return { t: 'unsupported', reason: m.unsupported };
      mods = m.mods;
    }
    const chk = checkRegex(pattern, opts.regexMaxLength);
    if (!chk.ok) return { t: 'bad', reason: `unsafe or invalid regex: ${chk.reason}` };
    if (mods?.important) cls = cls === C_ALLOW ? C_IALLOW : C_IMP;
    return { t: 'regex', cls, re: chk.re!, pattern, mods };
  }

  // modifiers
  let mods: Modifiers | null = null;
  const dollar = s.indexOf('$');
  if (dollar >= 0) {
    const m = parseModifiers(s.slice(dollar + 1));
    if ('bad' in m) return { t: 'bad', reason: m.bad };
    if ('unsupported' in m) return { t: 'unsupported', reason: m.unsupported };
    mods = m.mods;
    s = s.slice(0, dollar);
  }
  if (mods?.important) cls = cls === C_ALLOW ? C_IALLOW : C_IMP;

  let anchor: '||' | '|' | '' = '';
  if (s.startsWith('||')) {
    anchor = '||';
    s = s.slice(2);
  } else if (s.startsWith('|')) {
    anchor = '|';
    s = s.slice(1);
  }
  if (s.endsWith('|')) s = s.slice(0, -1); // "|name|" end anchor
  if (s.endsWith('^')) s = s.slice(0, -1);
  if (s.includes('/') || s.includes('^') || s.includes('?') || s.includes('=') || s.includes(':')) {
    return { t: 'unsupported', reason: 'URL rule' };
  }
  let scope = anchor === '|' ? S_EXACT : S_SUBTREE;
  if (s.startsWith('*.') && !s.slice(2).includes('*')) {
    scope = S_CHILDREN;
    s = s.slice(2);
  }
  if (s.includes('*')) {
    const body = s.toLowerCase();
    if ((body.match(/\*/g) ?? []).length > 3) return { t: 'bad', reason: 'more than 3 wildcards' };
    const src = globToRegex(anchor || '||', body);
    if (!src) return { t: 'bad', reason: 'invalid characters in wildcard rule' };
    // RE2 too: "a*b*c*d" as a backtracking RegExp is cubic in the name.
    const re = compileRule(src);
    if (re === null) return { t: 'bad', reason: 'wildcard rule too complex' };
    return { t: 'regex', cls, re, pattern: src, mods };
  }
  const d = normalizeDomain(s);
  if (d === null) return { t: 'bad', reason: `invalid domain "${s}"` };
  return { t: 'domain', cls, scope, domains: [d], mods };
}

/** Canonical text of a rule (used for decision.rule and $badfilter matching). */
export function ruleText(cls: number, scope: number, domainOrRegex: string, isRegex: boolean, modKey: string): string {
  let s = cls === C_ALLOW || cls === C_IALLOW ? '@@' : '';
  if (isRegex) s += '/' + domainOrRegex + '/';
  else s += (scope === S_EXACT ? '|' : '||') + (scope === S_CHILDREN ? '*.' : '') + domainOrRegex + '^';
  const mods = modKey ? modKey.split(',') : [];
  if ((cls === C_IMP || cls === C_IALLOW) && !mods.includes('important')) mods.unshift('important');
  return mods.length ? s + '$' + mods.join(',') : s;
}

// ---------------------------------------------------------------------------
// Byte-level list parser

export interface ListSink {
  /** domain bytes b[s..e), lower-case, validated; h = final hash */
  addDomain(cls: number, scope: number, b: Uint8Array, s: number, e: number): void;
  addParsed(r: ParsedRule, line: number, text: string): void;
  bad(line: number, text: string, reason: string): void;
  unsupported(line: number, text: string, reason: string): void;
}

const CH_DOT = 46;

/**
 * Validate and lower-case domain bytes in place. Returns the new end (a
 * trailing dot is dropped), -1 if invalid, -2 if non-ASCII (use slow path).
 */
export function checkDomainBytes(b: Uint8Array, s: number, e: number): number {
  if (e > s && b[e - 1] === CH_DOT) e--;
  const len = e - s;
  if (len <= 0 || len > 253) return -1;
  let label = 0;
  for (let i = s; i < e; i++) {
    let c = b[i]!;
    if (c >= 65 && c <= 90) {
      c += 32;
      b[i] = c;
    }
    if (c === CH_DOT) {
      if (label === 0) return -1;
      label = 0;
      continue;
    }
    if ((c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 95) {
      if (++label > 63) return -1;
      continue;
    }
    if (c >= 128) return -2;
    return -1;
  }
  // "name.." loses one dot above and would end in an empty label here: reject it like parseRule does.
  if (label === 0) return -1;
  return e;
}

function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 13 || c === 11 || c === 12;
}

function bytesEq(b: Uint8Array, s: number, e: number, lit: string): boolean {
  if (e - s !== lit.length) return false;
  for (let i = 0; i < lit.length; i++) if (b[s + i] !== lit.charCodeAt(i)) return false;
  return true;
}

function isBlockingIpBytes(b: Uint8Array, s: number, e: number): boolean {
  return bytesEq(b, s, e, '0.0.0.0') || bytesEq(b, s, e, '127.0.0.1') || bytesEq(b, s, e, '::') || bytesEq(b, s, e, '::1');
}

export class ListParser {
  pos = 0;
  line = 0;
  constructor(
    readonly buf: Buffer,
    readonly sink: ListSink,
    readonly opts: { hostsScope: number; regexMaxLength: number; continues?: boolean },
  ) {
    // skip a UTF-8 BOM at the start of a file (not at the start of a later chunk of it)
    if (!opts.continues && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) this.pos = 3;
  }

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  /** Parse up to maxLines lines. Returns true when the buffer is exhausted. */
  step(maxLines: number): boolean {
    const b = this.buf;
    const n = b.length;
    let pos = this.pos;
    while (maxLines-- > 0 && pos < n) {
      let le = b.indexOf(10, pos);
      if (le < 0) le = n;
      const next = le + 1;
      this.line++;
      let ls = pos;
      while (ls < le && isSpace(b[ls]!)) ls++;
      while (le > ls && isSpace(b[le - 1]!)) le--;
      pos = next;
      if (ls === le) continue;
      this.parseLine(b, ls, le);
    }
    this.pos = pos;
    return pos >= n;
  }

  private slow(b: Buffer, ls: number, le: number): void {
    const text = b.toString('utf8', ls, le);
    const r = parseRule(text, this.opts);
    switch (r.t) {
      case 'skip':
        return;
      case 'bad':
        this.sink.bad(this.line, text, r.reason);
        return;
      case 'unsupported':
        this.sink.unsupported(this.line, text, r.reason);
        return;
      default:
        this.sink.addParsed(r, this.line, text);
    }
  }

  private parseLine(b: Buffer, ls: number, le: number): void {
    const c0 = b[ls]!;
    if (c0 === 33 /* ! */ || c0 === 35 /* # */) return;
    if (c0 === 91 /* [ */ && b[le - 1] === 93) return;
    let p = ls;
    let cls = C_BLOCK;
    if (c0 === 64 && b[ls + 1] === 64) {
      cls = C_ALLOW;
      p += 2;
    }
    const c = b[p];
    if (c === 124 /* | */) {
      // ||domain^ or |domain^ (fast path only without modifiers/wildcards)
      let scope = S_EXACT;
      p++;
      if (b[p] === 124) {
        scope = S_SUBTREE;
        p++;
      }
      let e = le;
      // Same order as parseRule: a trailing "|" end anchor first, then "^".
      if (e > p && b[e - 1] === 124 /* trailing | */) e--;
      if (e > p && b[e - 1] === 94 /* ^ */) e--;
      if (b[p] === 42 && b[p + 1] === CH_DOT && scope === S_SUBTREE) return this.slow(b, ls, le);
      const r = checkDomainBytes(b, p, e);
      if (r > 0) return this.sink.addDomain(cls, scope, b, p, r);
      return this.slow(b, ls, le);
    }
    if (cls === C_ALLOW) {
      const r = checkDomainBytes(b, p, le);
      if (r > 0) return this.sink.addDomain(cls, S_SUBTREE, b, p, r);
      return this.slow(b, ls, le);
    }
    if (c0 === 42 /* * */ && b[ls + 1] === CH_DOT) {
      const r = checkDomainBytes(b, ls + 2, le);
      if (r > 0) return this.sink.addDomain(C_BLOCK, S_CHILDREN, b, ls + 2, r);
      return this.slow(b, ls, le);
    }
    if ((c0 >= 48 && c0 <= 57) || c0 === 58) {
      // maybe a hosts line
      let ws = ls;
      while (ws < le && !isSpace(b[ws]!)) ws++;
      if (ws < le) {
        if (!isBlockingIpBytes(b, ls, ws)) return this.slow(b, ls, le);
        let any = false;
        let q = ws;
        for (;;) {
          while (q < le && isSpace(b[q]!)) q++;
          if (q >= le || b[q] === 35) break;
          let te = q;
          while (te < le && !isSpace(b[te]!)) te++;
          const r = checkDomainBytes(b, q, te);
          if (r > 0) {
            const len = r - q;
            const f = b[q];
            if (len <= 21 && (f === 108 || f === 98 || f === 105 || f === 48) && LOCALHOST_NAMES.has(b.toString('latin1', q, r))) {
              // skip localhost entries
            } else {
              this.sink.addDomain(C_BLOCK, this.opts.hostsScope, b, q, r);
              any = true;
            }
          } else if (r === -2) {
            const d = normalizeDomain(b.toString('utf8', q, te));
            if (d) {
              const db = Buffer.from(d, 'latin1');
              this.sink.addDomain(C_BLOCK, this.opts.hostsScope, db, 0, db.length);
              any = true;
            } else this.sink.bad(this.line, b.toString('utf8', ls, le), 'invalid hostname');
          } else {
            this.sink.bad(this.line, b.toString('utf8', ls, le), `invalid hostname "${b.toString('utf8', q, te)}"`);
          }
          q = te;
        }
        void any;
        return;
      }
    }
    const r = checkDomainBytes(b, ls, le);
    if (r > 0) return this.sink.addDomain(C_BLOCK, S_SUBTREE, b, ls, r);
    return this.slow(b, ls, le);
  }
}
