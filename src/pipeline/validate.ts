// Stage 1. Every later stage reads the ParsedQuery this fills, so it must come first; it is also where
// malformed input is counted and answered (FORMERR, NOTIMP, BADVERS) or dropped.
import { readQuery, ReadStatus, writeHeaderOnlyReply, Rcode, SERVER_UDP_SIZE } from '../dns/wire.js';
import type { Stage, Next } from './chain.js';
import { isStream, type QueryContext } from './context.js';
import { syncScratch } from './scratch.js';

export class ValidateStage implements Stage {
  readonly name = 'validate';
  dropped = 0;
  formerr = 0;
  notimp = 0;
  badvers = 0;

  constructor(private readonly respond: (ctx: QueryContext) => void, private readonly drop: (ctx: QueryContext) => void,
    private readonly serverUdpMax = SERVER_UDP_SIZE) {}

  query(ctx: QueryContext, next: Next): void {
    const q = ctx.q;
    const st = readQuery(ctx.buf, 0, ctx.len, q);
    if (isStream(ctx.responder.transport)) ctx.maxReply = 65535;
    else ctx.maxReply = q.hasOpt ? Math.min(q.udpSize, this.serverUdpMax) : 512;
    if (st === ReadStatus.OK) { next(ctx); return; }
    if (st === ReadStatus.DROP) { this.dropped++; this.drop(ctx); return; }
    let rcode: number;
    if (st === ReadStatus.NOTIMP) { this.notimp++; rcode = Rcode.NOTIMP; }
    else if (st === ReadStatus.BADVERS) { this.badvers++; rcode = Rcode.BADVERS; }
    else { this.formerr++; rcode = Rcode.FORMERR; q.hasOpt = false; }
    const n = writeHeaderOnlyReply(ctx.buf, 0, q, rcode, syncScratch, 0);
    ctx.setAnswer(syncScratch, 0, n);
    this.respond(ctx);
  }
}
