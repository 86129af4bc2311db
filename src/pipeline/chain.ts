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
  private readonly list: Stage[];

  constructor(stages: readonly Stage[], private readonly sink: AnswerSink) {
    this.list = [...stages];
    // One `next` per position, made once, so passing a query on allocates nothing. They read the stage
    // from the list at call time, so a stage swapped by replaceStage() (SIGHUP) takes effect at once.
    this.nexts = this.list.map((_, i) => {
      if (i + 1 >= this.list.length) return (ctx: QueryContext) => sink.fellOffEnd(ctx);
      return (ctx: QueryContext) => { ctx.depth = i + 1; this.list[i + 1].query(ctx, this.nexts[i + 1]); };
    });
  }

  get stages(): readonly Stage[] { return this.list; }

  run(ctx: QueryContext): void {
    ctx.depth = 0;
    this.list[0].query(ctx, this.nexts[0]);
  }

  /** Called by the stage holding ctx once ctx has an answer. */
  respond(ctx: QueryContext): void {
    for (let i = ctx.depth - 1; i >= 0; i--) {
      const s = this.list[i];
      if (s.answer !== undefined) s.answer(ctx);
    }
    this.sink.finish(ctx);
  }

  /** Swaps the stage called `name` for `stage`; queries already inside the old one finish there. */
  replaceStage(name: string, stage: Stage): Stage {
    const i = this.list.findIndex((s) => s.name === name);
    if (i < 0) throw new Error(`no stage named ${name}`);
    const old = this.list[i];
    this.list[i] = stage;
    return old;
  }

  stage<T extends Stage>(name: string): T | undefined {
    return this.list.find((s) => s.name === name) as T | undefined;
  }
}
