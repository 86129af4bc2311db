// The last stage: everything that could answer without the network has had its turn. Each query gets
// an overall deadline; within it a failed attempt moves to the next upstream. Every query ends with an
// answer or SERVFAIL carrying an Extended DNS Error, never silence.
import { AnswerInfo, analyzeAnswer, AnswerError, rewriteOpt } from '../dns/answer.js';
import { writeHeaderOnlyReply, Rcode, EDNS_OPT_ECS, EDNS_OPT_KEEPALIVE, TYPE_OPT, readU16 } from '../dns/wire.js';
import type { Stage, Next } from './chain.js';
import type { QueryContext } from './context.js';
import type { Upstream, UpstreamHandler, UpstreamErrorReason } from '../upstream/types.js';
import type { UpstreamPool } from '../upstream/pool.js';

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

class Attempt {
  tried = 0;
  lastError: UpstreamErrorReason | null = null;
  constructor(readonly deadline: number, readonly wire: Buffer) {}
}

const kAttempt = Symbol('attempt');
type Tracked = QueryContext & { [kAttempt]?: Attempt };

export class ForwardStage implements Stage, UpstreamHandler {
  readonly name = 'forward';
  inflight = 0;
  overCapacity = 0;
  invalidAnswers = 0;
  servfails = 0;
  retries = 0;
  private readonly info = new AnswerInfo();
  /** dnstap FORWARDER_QUERY/RESPONSE, when configured. */
  onForwarded: ((upstream: string, query: Uint8Array, answer: Uint8Array | null, tQuery: number, tResp: number) => void) | null = null;

  constructor(private readonly pool: UpstreamPool, private readonly respond: (ctx: QueryContext) => void,
    private readonly opts: ForwardOptions) {}

  query(ctx: QueryContext, _next: Next): void {
    if (this.inflight >= this.opts.maxInflight) {
      this.overCapacity++;
      this.fail(ctx, 'over_capacity');
      return;
    }
    this.inflight++;
    const wire = buildUpstreamQuery(ctx, this.opts);
    const a = new Attempt(performance.now() + this.opts.timeoutMs, wire);
    (ctx as Tracked)[kAttempt] = a;
    this.attempt(ctx, a);
  }

  private attempt(ctx: QueryContext, a: Attempt): void {
    const i = this.pool.pick(a.tried);
    if (i < 0 || performance.now() >= a.deadline) { this.done(ctx, null); return; }
    a.tried |= 1 << i;
    const up = this.pool.upstreams[i];
    ctx.upstream = up.name;
    // Each attempt gets its own copy: a timed-out transport may still hold the previous one.
    up.send(a.tried === 1 << i ? a.wire : Buffer.from(a.wire), ctx, this, a.deadline);
  }

  onUpstreamResult(ctx: QueryContext, upstream: Upstream, answer: Buffer | null, error: UpstreamErrorReason | null, latencyMs: number): void {
    const a = (ctx as Tracked)[kAttempt];
    if (!a) return;
    const idx = this.pool.upstreams.indexOf(upstream);
    if (this.onForwarded) {
      const now = Date.now();
      this.onForwarded(upstream.name, a.wire, answer, now - latencyMs, now);
    }
    if (answer) {
      const err = analyzeAnswer(answer, answer.length, ctx.buf, 0, ctx.q, this.info);
      // DoH answers carry ID 0 (RFC 8484 4.1); anything else did not answer our question.
      if (err === AnswerError.OK && answer[0] === 0 && answer[1] === 0) {
        this.pool.success(idx, latencyMs);
        const out = Buffer.allocUnsafe(answer.length + 64);
        const n = rewriteOpt(answer, answer.length, this.info, ctx.q, out, 0);
        out[0] = ctx.buf[0]; out[1] = ctx.buf[1];
        ctx.setAnswer(out, 0, n);
        this.done(ctx, out);
        return;
      }
      this.invalidAnswers++;
      upstream.stats.error('invalid_answer');
      error = 'invalid_answer';
    }
    a.lastError = error;
    this.pool.failure(idx);
    if (performance.now() < a.deadline && this.pool.pick(a.tried) >= 0) {
      this.retries++;
      this.attempt(ctx, a);
      return;
    }
    this.done(ctx, null);
  }

  private done(ctx: QueryContext, answered: Buffer | null): void {
    const a = (ctx as Tracked)[kAttempt];
    (ctx as Tracked)[kAttempt] = undefined;
    this.inflight--;
    if (answered) { this.respond(ctx); return; }
    this.fail(ctx, a?.lastError ?? 'timeout');
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
