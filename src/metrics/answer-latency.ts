// Client-facing answer latency, by how the answer was made. Fixed buckets in one typed array, bumped
// on the hot path with no allocation and no prom-client call; exported as a histogram at scrape time.
import type { QueryContext } from '../pipeline/context.js';
import { histogramSamples, type Sample } from './collected.js';

/** How an answer was made; `other` covers locally made errors (FORMERR, REFUSED, SERVFAIL with no upstream). */
export const ANSWER_SOURCES = ['cache', 'stale', 'upstream', 'blocked', 'local', 'other'] as const;
export type AnswerSource = (typeof ANSWER_SOURCES)[number];
const CACHE = 0, STALE = 1, UPSTREAM = 2, BLOCKED = 3, LOCAL = 4, OTHER = 5;

/** Seconds. A cache hit takes tens of microseconds; an upstream exchange milliseconds to seconds. */
export const ANSWER_LATENCY_BOUNDS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];
const NB = ANSWER_LATENCY_BOUNDS.length + 1;
const BOUNDS_MS = Float64Array.from(ANSWER_LATENCY_BOUNDS, (s) => s * 1000);

export function answerSource(ctx: QueryContext): number {
  if (ctx.cacheStatus === 'hit') return CACHE;
  if (ctx.cacheStatus === 'stale') return STALE;
  const d = ctx.decision;
  if (d !== null) {
    if (d.kind === 'block' || d.kind === 'block-cname') return BLOCKED;
    if (d.kind === 'local') return LOCAL;
  }
  return ctx.upstream !== '' ? UPSTREAM : OTHER;
}

export class AnswerLatency {
  /** Per source, NB non-cumulative bucket counts (the last one is +Inf). */
  readonly buckets = new Float64Array(ANSWER_SOURCES.length * NB);
  readonly sumSeconds = new Float64Array(ANSWER_SOURCES.length);
  readonly count = new Float64Array(ANSWER_SOURCES.length);

  /** `now` and ctx.started are performance.now() milliseconds. */
  observe(ctx: QueryContext, now: number): void {
    const s = answerSource(ctx);
    const ms = now - ctx.started;
    let b = 0;
    while (b < BOUNDS_MS.length && ms > BOUNDS_MS[b]) b++;
    this.buckets[s * NB + b]++;
    this.sumSeconds[s] += ms / 1000;
    this.count[s]++;
  }

  samples(name: string): Sample[] {
    const out: Sample[] = [];
    for (let s = 0; s < ANSWER_SOURCES.length; s++) {
      out.push(...histogramSamples(name, { source: ANSWER_SOURCES[s] }, ANSWER_LATENCY_BOUNDS,
        this.buckets.subarray(s * NB, (s + 1) * NB), this.sumSeconds[s], this.count[s]));
    }
    return out;
  }
}
