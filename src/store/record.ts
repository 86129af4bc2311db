// Builds a QueryRecord from a finished query context. Runs in the AnswerSender's observer loop, after
// the answer was handed to the transport: it allocates (one object, a few strings) but never decodes
// the whole answer — the summary walks at most the first few answer records on the wire.
import type { QueryContext } from '../pipeline/context.js';
import { qnameString, RCODE_NAMES, readU16, skipName, TYPE_CNAME } from '../dns/wire.js';
import { qtypeName } from '../metrics/counters.js';
import type { DeviceResolver } from '../devices/types.js';
import type { AnsweredBy, QueryRecord } from './types.js';

/** Answer records kept in the summary: enough to see what a name resolved to. */
export const SUMMARY_MAX = 4;

const TYPE_A = 1;
const TYPE_AAAA = 28;

/** How the answer was produced, from what the stages left on the context. */
export function answeredBy(ctx: Pick<QueryContext, 'decision' | 'cacheStatus'>): AnsweredBy {
  const d = ctx.decision;
  if (d) {
    // A CNAME-inspection block is a block too (its decision kind says how it was found).
    if (d.kind === 'block' || d.kind === 'block-cname') return 'blocked';
    if (d.kind === 'local') return 'local';
    if (d.kind === 'forward') return 'forward';
  }
  if (ctx.cacheStatus === 'hit') return 'cache';
  if (ctx.cacheStatus === 'stale') return 'stale';
  return 'upstream';
}

/** What every record says about a query: when, who, to which server, over what, for which name. */
function baseRecord(ctx: QueryContext, kind: QueryRecord['kind'], devices: DeviceResolver | null): QueryRecord {
  const where = ctx.responder.describe(ctx);
  const r: QueryRecord = {
    time: ctx.wallStarted || Date.now(),
    client: where.client,
    clientPort: where.clientPort,
    server: where.server,
    serverPort: where.serverPort,
    transport: ctx.responder.transport,
    qname: ctx.q.hasQuestion ? qnameString(ctx.buf, 0, ctx.q.qnameEnd) : '',
    qtype: ctx.q.hasQuestion ? qtypeName(ctx.q.qtype) : '',
    kind,
  };
  if (devices) {
    const dev = devices.lookup(where.client);
    if (dev.name !== undefined || dev.mac !== undefined) r.device = dev;
  }
  return r;
}

export function buildRecord(ctx: QueryContext, wire: Uint8Array, off: number, len: number, devices: DeviceResolver | null): QueryRecord {
  const rcode = len >= 4 ? wire[off + 3] & 0x0f : 2;
  const r = baseRecord(ctx, 'query', devices);
  r.rcode = RCODE_NAMES[rcode] ?? String(rcode);
  r.answeredBy = answeredBy(ctx);
  r.latencyMs = Math.round((performance.now() - ctx.started) * 1000) / 1000;
  const d = ctx.decision;
  if (d) {
    if (typeof d.group === 'string') r.group = d.group;
    if (d.list) r.list = d.list;
    if (d.rule) r.rule = d.rule;
    if (d.kind === 'forward' && typeof d.upstream === 'string') r.upstream = d.upstream;
  }
  if (ctx.upstream) r.upstream = ctx.upstream;
  if (ctx.upstreamMs) r.upstreamLatencyMs = Math.round(ctx.upstreamMs * 1000) / 1000;
  const answers = summarizeWire(wire, off, len, SUMMARY_MAX);
  if (answers.length) r.answers = answers;
  return r;
}

/** A record for a query that got no answer (malformed, over the rate limit). */
export function buildDroppedRecord(ctx: QueryContext, reason: string, devices: DeviceResolver | null): QueryRecord {
  const r = baseRecord(ctx, 'dropped', devices);
  r.dropReason = reason;
  return r;
}

/**
 * The first `max` answer-section records as short text ("A 192.0.2.1", "CNAME x.example"). Never
 * throws on outside input: a record that does not parse ends the summary.
 */
export function summarizeWire(wire: Uint8Array, off: number, len: number, max: number): string[] {
  const out: string[] = [];
  if (len < 12) return out;
  const qd = readU16(wire, off + 4);
  const an = readU16(wire, off + 6);
  if (an === 0) return out;
  const msg = wire.subarray(off, off + len);
  let p = 12;
  for (let i = 0; i < qd; i++) {
    p = skipName(msg, 0, len, p);
    if (p < 0 || p + 4 > len) return out;
    p += 4;
  }
  for (let i = 0; i < an && out.length < max; i++) {
    p = skipName(msg, 0, len, p);
    if (p < 0 || p + 10 > len) return out;
    const type = readU16(msg, p);
    const rdlen = readU16(msg, p + 8);
    const rd = p + 10;
    if (rd + rdlen > len) return out;
    if (type === TYPE_A && rdlen === 4) out.push(`A ${msg[rd]}.${msg[rd + 1]}.${msg[rd + 2]}.${msg[rd + 3]}`);
    else if (type === TYPE_AAAA && rdlen === 16) out.push(`AAAA ${ipv6Text(msg, rd)}`);
    else if (type === TYPE_CNAME) out.push(`CNAME ${readName(msg, rd, len)}`);
    else out.push(qtypeName(type));
    p = rd + rdlen;
  }
  return out;
}

function ipv6Text(b: Uint8Array, o: number): string {
  const words: string[] = [];
  for (let i = 0; i < 8; i++) words.push(((b[o + 2 * i] << 8) | b[o + 2 * i + 1]).toString(16));
  // Compress the longest run of zero words (RFC 5952).
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (words[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && words[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return words.join(':');
  return `${words.slice(0, best).join(':')}::${words.slice(best + bestLen).join(':')}`;
}

/** A possibly compressed name; bounded pointer chasing. */
function readName(b: Uint8Array, p: number, len: number): string {
  let s = '';
  for (let hops = 0; hops < 130 && p < len; hops++) {
    const l = b[p];
    if (l === 0) return s || '.';
    if ((l & 0xc0) === 0xc0) {
      if (p + 1 >= len) return s;
      p = ((l & 0x3f) << 8) | b[p + 1];
      continue;
    }
    if (p + 1 + l > len) return s;
    if (s) s += '.';
    for (let i = 1; i <= l; i++) {
      const c = b[p + i];
      s += c === 0x2e || c < 0x21 || c > 0x7e ? '\\' + c.toString().padStart(3, '0') : String.fromCharCode(c);
    }
    p += l + 1;
  }
  return s;
}
