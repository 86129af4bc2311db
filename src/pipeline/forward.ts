// The last stage: everything that could answer without the network has had its turn. Each query gets
// an overall deadline (upstream.timeoutMs, default 2 s). Within it:
//   - a failed attempt (error, invalid answer) moves at once to the next upstream the pool picks;
//   - an attempt with no answer after the pool's hedge delay (max(hedgeMs = 300 ms, 2 × that upstream's
//     latency EWMA)) is hedged: the next upstream is asked as well, the first valid answer wins and the
//     other request is cancelled. The slow upstream gets a soft failure, so a frozen upstream leaves
//     rotation after a few queries while those queries are still answered in ~hedge delay;
//   - the `parallel` strategy, and half-open probes, send to two upstreams at once.
// Every query ends with an answer or SERVFAIL carrying an Extended DNS Error (22 when attempts timed
// out, 23 when they failed), never silence; the cache stage turns that SERVFAIL into a stale answer
// when it has one (ctx.upstreamFailed).
import { AnswerInfo, analyzeAnswer, AnswerError, rewriteOpt } from '../dns/answer.js';
import { writeHeaderOnlyReply, Rcode, EDNS_OPT_ECS, EDNS_OPT_KEEPALIVE, TYPE_OPT, readU16 } from '../dns/wire.js';
import type { Stage, Next } from './chain.js';
import type { QueryContext } from './context.js';
import type { Upstream, UpstreamHandler, UpstreamErrorReason, UpstreamCall } from '../upstream/types.js';
import type { UpstreamPool } from '../upstream/pool.js';
import { DeadlineSweeper, type TimerApi } from '../upstream/deadlines.js';
import { mayBeOwnQuery, sentByUs } from '../upstream/plain.js';

export interface ForwardOptions {
  /** Overall time a query may spend upstream, across attempts. */
  timeoutMs: number;
  /** Cap on queries waiting for upstream answers; over it, SERVFAIL at once (counted). */
  maxInflight: number;
  /** 'strip' (default, privacy) removes EDNS Client Subnet before forwarding; 'pass' keeps it. */
  ecs: 'strip' | 'pass';
  /** RFC 8467 block padding of queries sent over encrypted transports; 0 disables. */
  paddingBlock: number;
}

/** RFC 8914: 22 No Reachable Authority (every upstream timed out), 23 Network Error (they failed). */
const EDE_NO_REACHABLE_AUTHORITY = 22;
const EDE_NETWORK_ERROR = 23;
/** Least time between two checks of hedge delays and deadlines while queries wait (one timer for all
 *  queries, armed only while some wait). */
const SWEEP_MS = 10;

interface Outstanding { i: number; call: UpstreamCall | void; started: number; hedgeAt: number }

/** One query's journey upstream; also the handler the transports call back, so a late answer for a
 * query that is already done (its context possibly reused) is recognised and only feeds health. */
class Attempt implements UpstreamHandler {
  /** Bit mask of upstreams asked so far. */
  tried = 0;
  lastError: UpstreamErrorReason | null = null;
  readonly out: Outstanding[] = [];
  finished = false;
  hedged = false;
  /** The next hedge time or the deadline, whichever comes first (the sweeper's key). */
  due: number;
  constructor(readonly stage: ForwardStage, readonly ctx: QueryContext, readonly deadline: number, readonly wire: Buffer) { this.due = deadline; }

  onUpstreamResult(_ctx: QueryContext, upstream: Upstream, answer: Buffer | null, error: UpstreamErrorReason | null, latencyMs: number): void {
    this.stage.result(this, upstream, answer, error, latencyMs);
  }
}

export class ForwardStage implements Stage {
  readonly name = 'forward';
  inflight = 0;
  overCapacity = 0;
  invalidAnswers = 0;
  servfails = 0;
  retries = 0;
  /** Extra requests sent because an attempt was slow (hedge) or by the parallel strategy / probes. */
  hedges = 0;
  /** Queries we had sent upstream ourselves that came back to a listener (a forwarding loop): SERVFAIL. */
  loops = 0;
  private readonly info = new AnswerInfo();
  private readonly deadlines: DeadlineSweeper<Attempt>;
  /** dnstap FORWARDER_QUERY/RESPONSE, when configured. */
  onForwarded: ((upstream: string, query: Uint8Array, answer: Uint8Array | null, tQuery: number, tResp: number) => void) | null = null;

  constructor(private readonly pool: UpstreamPool, private readonly respond: (ctx: QueryContext) => void,
    private readonly opts: ForwardOptions, private readonly now: () => number = () => performance.now(), timers?: TimerApi) {
    this.deadlines = new DeadlineSweeper<Attempt>((a, t) => this.visit(a, t), { resolutionMs: SWEEP_MS, now, timers });
  }

  query(ctx: QueryContext, _next: Next): void {
    // One array read per miss; only an ID some plain upstream has in flight costs a lookup.
    if (mayBeOwnQuery((ctx.buf[0] << 8) | ctx.buf[1]) && isOwnQuery(ctx)) {
      this.loops++;
      this.fail(ctx, 'connect');
      return;
    }
    if (this.inflight >= this.opts.maxInflight) {
      this.overCapacity++;
      this.fail(ctx, 'over_capacity');
      return;
    }
    this.inflight++;
    const wire = buildUpstreamQuery(ctx, this.opts);
    const a = new Attempt(this, ctx, this.now() + this.opts.timeoutMs, wire);
    const i = this.launch(a);
    if (i < 0) { this.finish(a, null); return; }
    // parallel strategy, or a half-open probe: a second upstream at once.
    if (!a.finished && (this.pool.strategy === 'parallel' || this.pool.lastPickProbe)) {
      if (this.launch(a) >= 0) this.hedges++;
    }
  }

  /** Sends to the next upstream the pool picks; returns its index, or -1 when none is left. */
  private launch(a: Attempt): number {
    const i = this.pool.pick(a.tried);
    if (i < 0) return -1;
    const first = a.tried === 0;
    a.tried |= 1 << i;
    const up = this.pool.upstreams[i];
    const t = this.now();
    const o: Outstanding = { i, call: undefined, started: t, hedgeAt: t + this.pool.hedgeDelay(i) };
    a.out.push(o);
    // Watched from the first launch; a later one may bring the next hedge time forward.
    if (o.hedgeAt < a.due) a.due = o.hedgeAt;
    if (first) this.deadlines.add(a); else this.deadlines.moved(a);
    // Each request gets its own copy: transports may write their own ID into it, or hold it for a replay.
    o.call = up.send(first ? a.wire : Buffer.from(a.wire), a.ctx, a, a.deadline);
    return i;
  }

  /** Called by Attempt for every transport result. */
  result(a: Attempt, upstream: Upstream, answer: Buffer | null, error: UpstreamErrorReason | null, latencyMs: number): void {
    const idx = this.pool.upstreams.indexOf(upstream);
    const k = a.out.findIndex((o) => o.i === idx);
    if (k >= 0) a.out.splice(k, 1);
    const ctx = a.ctx;
    if (this.onForwarded && !a.finished) {
      const now = Date.now();
      this.onForwarded(upstream.name, a.wire, answer, now - latencyMs, now);
    }
    if (answer) {
      const err = a.finished ? AnswerError.OK : analyzeAnswer(answer, answer.length, ctx.buf, 0, ctx.q, this.info);
      // DoH answers carry ID 0 (RFC 8484 4.1); anything else did not answer our question.
      if (err === AnswerError.OK && answer[0] === 0 && answer[1] === 0) {
        if (idx >= 0) this.pool.success(idx, latencyMs);
        if (a.finished) return;
        const out = Buffer.allocUnsafe(answer.length + 64);
        const n = rewriteOpt(answer, answer.length, this.info, ctx.q, out, 0);
        out[0] = ctx.buf[0]; out[1] = ctx.buf[1];
        ctx.upstream = upstream.name;
        ctx.upstreamMs = latencyMs;
        ctx.setAnswer(out, 0, n);
        this.finish(a, out);
        return;
      }
      this.invalidAnswers++;
      upstream.stats.error('invalid_answer');
      error = 'invalid_answer';
    }
    if (idx >= 0) this.pool.failure(idx);
    if (a.finished) return;
    // A timeout only counts as the reason when nothing else went wrong.
    if (error !== 'timeout' || a.lastError === null) a.lastError = error;
    if (this.now() < a.deadline) {
      if (this.launch(a) >= 0) { this.retries++; return; }
    }
    if (a.out.length === 0) this.finish(a, null);
  }

  /** Runs the hedge and deadline checks now (the timer does this; fake-clock tests call it). */
  sweep(): void { this.deadlines.run(); }

  /** Whether the sweeper's timer is armed (tests: not while nothing waits). */
  get timerArmed(): boolean { return this.deadlines.armed; }

  /** Hedges a slow attempt and enforces the deadline for transports that do not. */
  private visit(a: Attempt, t: number): void {
    if (a.finished) { this.deadlines.delete(a); return; }
    if (t >= a.deadline) {
      a.lastError = a.lastError ?? 'timeout';
      if (a.lastError === 'over_capacity') a.lastError = 'timeout';
      this.finish(a, null);
      return;
    }
    for (let k = 0; k < a.out.length; k++) {
      const o = a.out[k];
      if (t < o.hedgeAt) continue;
      o.hedgeAt = Infinity;
      // Only when there is someone else to ask: a lone slow upstream is not marked down for it.
      const before = a.tried;
      if (this.launch(a) >= 0) {
        this.hedges++;
        this.pool.slow(o.i, t - o.started);
      }
      if (a.tried !== before) break;
    }
    let due = a.deadline;
    for (let k = 0; k < a.out.length; k++) if (a.out[k].hedgeAt < due) due = a.out[k].hedgeAt;
    a.due = due;
  }

  private finish(a: Attempt, answered: Buffer | null): void {
    if (a.finished) return;
    a.finished = true;
    this.deadlines.delete(a);
    // The losers: withdraw them so they neither cost the upstream nor call back.
    for (const o of a.out) {
      if (o.call) { o.call.cancel(); this.pool.cancelled(o.i); }
    }
    a.out.length = 0;
    this.inflight--;
    if (answered) { this.respond(a.ctx); return; }
    this.fail(a.ctx, a.lastError ?? 'timeout');
  }

  private fail(ctx: QueryContext, reason: UpstreamErrorReason): void {
    this.servfails++;
    ctx.upstreamFailed = true;
    const out = Buffer.allocUnsafe(ctx.q.questionEnd + 64);
    const ede = reason === 'timeout' ? EDE_NO_REACHABLE_AUTHORITY : EDE_NETWORK_ERROR;
    const n = writeHeaderOnlyReply(ctx.buf, 0, ctx.q, Rcode.SERVFAIL, out, 0, false, ede);
    ctx.setAnswer(out, 0, n);
    this.respond(ctx);
  }

  /** Stops the sweeper (the pool is closed separately). */
  close(): void {
    this.deadlines.clear();
  }
}

/**
 * Whether `ctx` holds a query one of our plain upstreams sent and is waiting on: the upstream points at
 * one of our own listeners, directly or through routing. Such a query would be forwarded again, and again,
 * until the in-flight cap is full. (A looped query whose question is already waiting upstream is
 * coalesced by the cache stage and never gets here; calling this before the cache catches that too.)
 */
export function isOwnQuery(ctx: QueryContext): boolean {
  const id = (ctx.buf[0] << 8) | ctx.buf[1];
  if (!mayBeOwnQuery(id)) return false;
  let port: number | undefined;
  try { port = ctx.responder.describe(ctx).clientPort; } catch { return false; }
  return typeof port === 'number' && sentByUs(id, port, ctx.buf, ctx.len);
}

/**
 * The query as sent upstream: ID 0 (DoH caches key on the body), ECS removed unless configured, and
 * padded to a block size so that the encrypted length says little about the name (RFC 8467).
 */
export function buildUpstreamQuery(ctx: QueryContext, opts: Pick<ForwardOptions, 'ecs' | 'paddingBlock'>): Buffer {
  const q = ctx.q;
  const src = ctx.buf;
  let end = ctx.len;
  let body: Buffer;
  if (!q.hasOpt) {
    // Add an OPT so we can ask for large answers and pad.
    body = Buffer.allocUnsafe(end + 11 + 4 + opts.paddingBlock);
    src.copy(body, 0, 0, end);
    const ar = readU16(body, 10) + 1;
    body[10] = ar >> 8; body[11] = ar & 0xff;
    body[end] = 0; body[end + 1] = 0; body[end + 2] = TYPE_OPT; body[end + 3] = 0x10; body[end + 4] = 0x00;
    body.fill(0, end + 5, end + 11);
    end += 11;
  } else {
    body = Buffer.allocUnsafe(end + 4 + opts.paddingBlock);
    // Copy up to the OPT RDATA, then its options one by one, leaving out ECS and any old padding.
    const rdlenAt = q.optStart + 9;
    src.copy(body, 0, 0, rdlenAt + 2);
    let o = rdlenAt + 2;
    let p = rdlenAt + 2;
    const optEnd = q.optStart + q.optLen;
    while (p + 4 <= optEnd) {
      const code = readU16(src, p), olen = readU16(src, p + 2);
      // Hop-by-hop options stay on the client's hop: ECS (unless configured), padding (redone below for
      // this hop) and edns-tcp-keepalive (RFC 7828: about the client's TCP connection with us). Every
      // other option, known or not, goes upstream as the client sent it.
      const keep = !(code === EDNS_OPT_ECS && opts.ecs === 'strip') && code !== 12 && code !== EDNS_OPT_KEEPALIVE;
      if (keep) { src.copy(body, o, p, p + 4 + olen); o += 4 + olen; }
      p += 4 + olen;
    }
    // Anything after the OPT RR (rare: OPT not last) is kept as is.
    src.copy(body, o, optEnd, end);
    o += end - optEnd;
    end = o;
    const rdlen = end - (rdlenAt + 2) - (ctx.len - optEnd);
    body[rdlenAt] = rdlen >> 8; body[rdlenAt + 1] = rdlen & 0xff;
  }
  body[0] = 0; body[1] = 0;
  if (opts.paddingBlock > 0) {
    // The padding option goes last in the OPT RDATA; with OPT as the last RR that is the message end.
    const optRdlenAt = q.hasOpt ? q.optStart + 9 : end - 2;
    const lastRrIsOpt = !q.hasOpt || q.optStart + q.optLen === ctx.len;
    if (lastRrIsOpt) {
      const withHeader = end + 4;
      const padded = Math.ceil(withHeader / opts.paddingBlock) * opts.paddingBlock;
      const padLen = padded - withHeader;
      body[end] = 0; body[end + 1] = 12; body[end + 2] = padLen >> 8; body[end + 3] = padLen & 0xff;
      body.fill(0, end + 4, end + 4 + padLen);
      end += 4 + padLen;
      const rdlen = readU16(body, optRdlenAt) + 4 + padLen;
      body[optRdlenAt] = rdlen >> 8; body[optRdlenAt + 1] = rdlen & 0xff;
    }
  }
  return body.subarray(0, end);
}
