// The stage chain. Stages see a query on the way in (`query`) and, optionally, the answer on the way
// out (`answer`, run in reverse order for the stages the query passed through). The order is decided in
// one place: build.ts.
import type { QueryContext } from './context.js';

export type Next = (ctx: QueryContext) => void;

export interface Stage {
  readonly name: string;
  /** Either answers (through chain.respond) or passes on with next(ctx); may do so later (async). */
  query(ctx: QueryContext, next: Next): void;
  /** Sees, and may rewrite, ctx's answer before it is sent. Must be synchronous. */
  answer?(ctx: QueryContext): void;
}

/** What happens once an answer is final: send, count, log, release. Owned by the server. */
export interface AnswerSink {
  finish(ctx: QueryContext): void;
  /** A stage called next() past the end of the chain: a wiring bug, answered with SERVFAIL. */
  fellOffEnd(ctx: QueryContext): void;
}

export class Chain {
  private readonly nexts: Next[];
  private readonly hooks: Array<Stage | null>;

  constructor(readonly stages: readonly Stage[], private readonly sink: AnswerSink) {
    // One `next` per position, made once, so passing a query on allocates nothing.
    this.nexts = stages.map((_, i) => {
      const nextStage = stages[i + 1];
      if (!nextStage) return (ctx: QueryContext) => sink.fellOffEnd(ctx);
      return (ctx: QueryContext) => { ctx.depth = i + 1; nextStage.query(ctx, this.nexts[i + 1]); };
    });
    this.hooks = stages.map((s) => (s.answer ? s : null));
  }

  run(ctx: QueryContext): void {
    ctx.depth = 0;
    this.stages[0].query(ctx, this.nexts[0]);
  }

  /** Called by the stage holding ctx once ctx has an answer. */
  respond(ctx: QueryContext): void {
    for (let i = ctx.depth - 1; i >= 0; i--) {
      const h = this.hooks[i];
      if (h) h.answer!(ctx);
    }
    this.sink.finish(ctx);
  }

  stage<T extends Stage>(name: string): T | undefined {
    return this.stages.find((s) => s.name === name) as T | undefined;
  }
}
