// The end of every query: enforce the client's UDP size (TC=1 past it), send, count, tell observers,
// and return the context to the pool.
import { writeHeaderOnlyReply } from '../dns/wire.js';
import type { AnswerSink } from './chain.js';
import type { QueryContext, ContextPool } from './context.js';
import type { ServerCounters } from '../metrics/counters.js';

export interface QueryObserver {
  /** Called once per answered client query, after the answer was handed to the transport. */
  answered(ctx: QueryContext, wire: Uint8Array, off: number, len: number): void;
  /** Called once per client query dropped without an answer ('malformed', 'ratelimit'), before release. */
  dropped?(ctx: QueryContext, reason: string): void;
}

const truncScratch = Buffer.allocUnsafe(1024);

export class AnswerSender implements AnswerSink {
  observers: QueryObserver[] = [];
  /** Queries between acquire and finish; SIGTERM waits for this to reach zero. */
  constructor(private readonly pool: ContextPool, private readonly counters: ServerCounters) {}

  finish(ctx: QueryContext): void {
    const r = ctx.responder;
    const c = this.counters;
    let buf = ctx.ansBuf!, off = ctx.ansOff, len = ctx.ansLen;
    if (r.transport === ('internal' as string)) { c.queriesByTransport.internal++; this.pool.release(ctx); return; }
    c.queriesByTransport[r.transport]++;
    const qt = ctx.q.qtype;
    if (qt < 256) c.queriesByQtype[qt]++; else c.otherQtypes++;
    if (len > ctx.maxReply) {
      // Never send more than the client can take: it retries over TCP on TC=1 (RFC 7766).
      c.truncated++;
      len = writeHeaderOnlyReply(ctx.buf, 0, ctx.q, buf[off + 3] & 0x0f, truncScratch, 0, true);
      buf = truncScratch; off = 0;
    }
    c.answersByRcode[buf[off + 3] & 0x0f]++;
    c.answerLatency.observe(ctx, performance.now());
    r.send(ctx, buf, off, len);
    const obs = this.observers;
    for (let i = 0; i < obs.length; i++) obs[i].answered(ctx, buf, off, len);
    this.pool.release(ctx);
  }

  fellOffEnd(ctx: QueryContext): void {
    const n = writeHeaderOnlyReply(ctx.buf, 0, ctx.q, 2, truncScratch, 0);
    ctx.setAnswer(truncScratch, 0, n);
    this.finish(ctx);
  }

  /** Validation (or the rate limiter) dropped the datagram: nothing is sent. */
  drop(ctx: QueryContext, reason = 'malformed'): void {
    if (reason === 'malformed') this.counters.malformedDropped++;
    const obs = this.observers;
    for (let i = 0; i < obs.length; i++) obs[i].dropped?.(ctx, reason);
    this.pool.release(ctx);
  }
}
