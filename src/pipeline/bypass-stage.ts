// Encrypted-DNS bypass control, the DNS half (issue #19): clients are steered back to us rather than to a
// resolver we cannot see.
//   - the hostnames of the bypass lists (public DoH/DoT services) get NXDOMAIN, so a browser cannot
//     even find its DoH server;
//   - the canaries: use-application-dns.net (Firefox turns its DoH off on NXDOMAIN), mask.icloud.com
//     and mask-h2.icloud.com (iCloud Private Relay does the same);
//   - DDR (RFC 9462): _dns.resolver.arpa SVCB names our own DoT/DoH listeners, so clients that want
//     encrypted DNS upgrade to us; NODATA when there are none.
// `mode: log` (globally, or for a group) answers normally and only counts; `off` for a group skips it.
// Every interception is reported through onAttempt (metrics, query history).
import type { Stage, Next } from './chain.js';
import { isStream, type QueryContext } from './context.js';
import { qnameString, writeHeaderOnlyReply, writeOpt, SERVER_UDP_SIZE, Rcode } from '../dns/wire.js';
import { encodeName, encodeRR, soaRdata, concat } from '../filter/wire.js';
import { syncScratch } from './scratch.js';

export type BypassMode = 'block' | 'log' | 'off';

/** The names browsers and operating systems probe to decide whether to bypass the local resolver. */
export const CANARIES: readonly string[] = ['use-application-dns.net', 'mask.icloud.com', 'mask-h2.icloud.com'];
export const DDR_NAME = '_dns.resolver.arpa';
const TYPE_SVCB = 64;
/** EDE 15 "Blocked" (RFC 8914): the operator's policy, not an upstream failure. */
const EDE_BLOCKED = 15;
const NEGATIVE_TTL = 60;
/** DDR answers may be cached by clients for a while; listeners change only with a restart. */
const DDR_TTL = 300;

/** One of our encrypted listeners as DDR advertises it. */
export interface EncryptedEndpoint { alpn: 'dot' | 'h2'; port: number; v4: string[]; v6: string[] }

export type AttemptKind = 'canary' | 'name';

export interface BypassStageOptions {
  mode: BypassMode;
  /** Our DoT/DoH listeners, for DDR. */
  endpoints: EncryptedEndpoint[];
  /** TargetName of the DDR records (a name on our certificate), "." when we have none. */
  ddrTarget?: string;
  /** The mode for this client's group when it overrides the global one, else null. */
  groupMode?: ((ctx: QueryContext) => BypassMode | null) | null;
  /** Called once per intercepted query (block or log), after the decision; may allocate. */
  onAttempt?: ((ctx: QueryContext, kind: AttemptKind, name: string, blocked: boolean) => void) | null;
}

export class BypassStage implements Stage {
  readonly name = 'bypass';
  canaryAnswers = 0;
  nameBlocks = 0;
  /** Queries for listed names or canaries let through because the mode (or the group's) is log. */
  logged = 0;
  ddrAnswers = 0;
  /** Listed hostnames, lower-case, no trailing dot; replaced whole on refresh (never mutated). */
  private names: ReadonlySet<string> = new Set();
  /** wireHash of each listed name: the allocation-free first test (a hit is confirmed on the string). */
  private listedHashes: ReadonlySet<number> = new Set();
  private readonly canaries = new Set(CANARIES);
  /** wireHash of the canaries and of the DDR name. */
  private readonly specialHashes = new Set([...CANARIES, DDR_NAME].map(nameHash));
  private readonly ddrRecords: Uint8Array;
  private readonly ddrCount: number;
  private readonly soa = encodeRR(encodeName(''), 6, NEGATIVE_TTL, soaRdata(NEGATIVE_TTL));

  constructor(private readonly respond: (ctx: QueryContext) => void, private readonly opts: BypassStageOptions) {
    const recs = opts.endpoints.map((e, i) => encodeRR(null, TYPE_SVCB, DDR_TTL, svcbRdata(i + 1, opts.ddrTarget ?? '.', e)));
    this.ddrRecords = concat(recs);
    this.ddrCount = recs.length;
  }

  /** Swaps in the hostnames of the bypass lists (after a list refresh). */
  setNames(names: Iterable<string>): void {
    const s = new Set<string>();
    const h = new Set<number>();
    for (const n of names) {
      const name = n.toLowerCase().replace(/\.$/, '');
      try { h.add(nameHash(name)); } catch { continue; } // not encodable: cannot be queried either
      s.add(name);
    }
    this.names = s;
    this.listedHashes = h;
  }

  get nameCount(): number { return this.names.size; }

  query(ctx: QueryContext, next: Next): void {
    const q = ctx.q;
    // Almost every query matches nothing here: hashes of the wire name and of its parents decide
    // that without allocating; only a hash hit builds the name string and confirms on it.
    if (!this.mayMatch(ctx.buf, q.qnameEnd)) { next(ctx); return; }
    const name = qnameString(ctx.buf, 0, q.qnameEnd);
    if (name === DDR_NAME) { this.answerDdr(ctx); return; }
    let kind: AttemptKind | null = null;
    if (this.canaries.has(name)) kind = 'canary';
    else if (this.names.size > 0 && listed(this.names, name)) kind = 'name';
    if (kind === null) { next(ctx); return; }
    const mode = this.opts.groupMode?.(ctx) ?? this.opts.mode;
    if (mode === 'off') { next(ctx); return; }
    if (mode === 'log') {
      this.logged++;
      this.opts.onAttempt?.(ctx, kind, name, false);
      next(ctx);
      return;
    }
    if (kind === 'canary') this.canaryAnswers++; else this.nameBlocks++;
    ctx.decision = { kind: 'block', list: kind === 'canary' ? 'bypass-canary' : 'bypass', rule: name };
    this.write(ctx, Rcode.NXDOMAIN, null, 0, this.soa, 1, EDE_BLOCKED);
    this.opts.onAttempt?.(ctx, kind, name, true);
    this.respond(ctx);
  }

  private mayMatch(buf: Uint8Array, end: number): boolean {
    const full = wireHash(buf, 12, end);
    if (this.specialHashes.has(full)) return true;
    const listed = this.listedHashes;
    if (listed.size === 0) return false;
    if (listed.has(full)) return true;
    for (let p = 13 + buf[12]; p < end - 1; p += buf[p] + 1) if (listed.has(wireHash(buf, p, end))) return true;
    return false;
  }

  /** RFC 9462: our own encrypted listeners for SVCB, NODATA for any other type or when we have none. */
  private answerDdr(ctx: QueryContext): void {
    this.ddrAnswers++;
    ctx.decision = { kind: 'local', rule: DDR_NAME };
    if (ctx.q.qtype === TYPE_SVCB && this.ddrCount > 0) this.write(ctx, Rcode.NOERROR, this.ddrRecords, this.ddrCount, null, 0, -1);
    else this.write(ctx, Rcode.NOERROR, null, 0, this.soa, 1, -1);
    this.respond(ctx);
  }

  /** Header and question of the query, then the given sections, then the client's OPT (if it sent one). */
  private write(ctx: QueryContext, rcode: number, an: Uint8Array | null, anCount: number, ns: Uint8Array | null, nsCount: number, ede: number): void {
    const q = ctx.q;
    const out = syncScratch;
    const hadOpt = q.hasOpt;
    q.hasOpt = false;
    let n = writeHeaderOnlyReply(ctx.buf, 0, q, rcode, out, 0);
    q.hasOpt = hadOpt;
    // Answers that do not fit the scratch (cannot happen with a handful of listeners) go without.
    const room = out.length - n - 64;
    if (an && an.length <= room) { out.set(an, n); n += an.length; out[6] = anCount >> 8; out[7] = anCount & 0xff; }
    if (ns && ns.length <= out.length - n - 64) { out.set(ns, n); n += ns.length; out[8] = nsCount >> 8; out[9] = nsCount & 0xff; }
    if (hadOpt) {
      n = writeOpt(out, n, { udpSize: SERVER_UDP_SIZE, doBit: q.doBit, extRcode: 0, ede, edeText: ede >= 0 ? 'encrypted DNS bypass' : undefined });
      out[11] = 1;
    }
    // Authoritative: these names are ours to answer (DDR) or deliberately answered by policy.
    out[2] |= 0x04;
    ctx.setAnswer(out, 0, n);
  }
}

/** FNV-1a over the wire bytes [from, to), ASCII letters folded to lower case (length bytes are < 64). */
function wireHash(b: Uint8Array, from: number, to: number): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) {
    let c = b[i];
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    h = Math.imul(h ^ c, 0x01000193);
  }
  return h >>> 0;
}

function nameHash(name: string): number {
  const w = encodeName(name);
  return wireHash(w, 0, w.length);
}

/** Is `name` or one of its parent domains (at least two labels) in `set`? */
function listed(set: ReadonlySet<string>, name: string): boolean {
  if (set.has(name)) return true;
  let i = name.indexOf('.');
  while (i >= 0) {
    const rest = name.slice(i + 1);
    if (rest.indexOf('.') < 0) return false; // a bare TLD is never a DoH service
    if (set.has(rest)) return true;
    i = name.indexOf('.', i + 1);
  }
  return false;
}

/** SVCB RDATA (RFC 9460): priority, target, then SvcParams in increasing key order. */
export function svcbRdata(priority: number, target: string, e: EncryptedEndpoint): Uint8Array {
  const params: Array<[number, Uint8Array]> = [];
  const alpns = e.alpn === 'h2' ? ['h2', 'http/1.1'] : ['dot'];
  params.push([1, concat(alpns.map((a) => Uint8Array.from([a.length, ...Buffer.from(a, 'latin1')])))]);
  params.push([3, Uint8Array.of(e.port >> 8, e.port & 0xff)]);
  if (e.v4.length) params.push([4, concat(e.v4.map((a) => Uint8Array.from(a.split('.').map(Number))))]);
  if (e.v6.length) params.push([6, concat(e.v6.map(ipv6Bytes))]);
  // RFC 9461 dohpath: the URI template of our DoH endpoint.
  if (e.alpn === 'h2') params.push([7, Buffer.from('/dns-query{?dns}', 'latin1')]);
  const parts: Uint8Array[] = [Uint8Array.of(priority >> 8, priority & 0xff), encodeName(target === '.' ? '' : target)];
  for (const [k, v] of params) parts.push(Uint8Array.of(k >> 8, k & 0xff, v.length >> 8, v.length & 0xff), v);
  return concat(parts);
}

function ipv6Bytes(a: string): Uint8Array {
  const out = new Uint8Array(16);
  const [head, tail] = a.includes('::') ? a.split('::') : [a, null];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === null ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => { const v = parseInt(g, 16); out[i * 2] = v >> 8; out[i * 2 + 1] = v & 0xff; });
  return out;
}

/** The client address of a query, for group lookups and attribution (allocates: off the common path). */
export function clientOf(ctx: QueryContext): string {
  if (isStream(ctx.responder.transport)) {
    const c = ctx.conn as { clientIp?: string } | null;
    if (c?.clientIp) return c.clientIp;
  }
  return ctx.responder.describe(ctx).client;
}
