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
    if (st === ReadStatus.NOTIMP) {
      // An opcode we do not implement: answer as unbound does (worker_check_request), the query itself
      // echoed with QR set and RCODE=NOTIMP, every other header bit as the client sent it (RD echoed,
      // RA not claimed). No larger than the query, so it amplifies nothing.
      this.notimp++;
      syncScratch.set(ctx.buf.subarray(0, ctx.len), 0);
      syncScratch[2] = ctx.buf[2] | 0x80;
      syncScratch[3] = (ctx.buf[3] & 0xf0) | Rcode.NOTIMP;
      ctx.setAnswer(syncScratch, 0, ctx.len);
      this.respond(ctx);
      return;
    }
    let rcode: number;
    if (st === ReadStatus.BADVERS) { this.badvers++; rcode = Rcode.BADVERS; }
    else { this.formerr++; rcode = Rcode.FORMERR; q.hasOpt = false; }
    const n = writeHeaderOnlyReply(ctx.buf, 0, q, rcode, syncScratch, 0);
    ctx.setAnswer(syncScratch, 0, n);
    this.respond(ctx);
  }
}
