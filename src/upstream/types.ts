// What the forward stage needs from any upstream transport (DoH today; plain DNS and DoT alongside).
import type { QueryContext } from '../pipeline/context.js';

export interface UpstreamHandler {
  /** Exactly one call per send(): an answer body, or an error reason (a metrics label). */
  onUpstreamResult(ctx: QueryContext, upstream: Upstream, answer: Buffer | null, error: UpstreamErrorReason | null, latencyMs: number): void;
}

export type UpstreamErrorReason =
  | 'timeout' | 'connect' | 'reset' | 'goaway' | 'http_status' | 'content_type' | 'too_large' | 'invalid_answer' | 'closed' | 'over_capacity';

export const UPSTREAM_ERROR_REASONS: readonly UpstreamErrorReason[] = [
  'timeout', 'connect', 'reset', 'goaway', 'http_status', 'content_type', 'too_large', 'invalid_answer', 'closed', 'over_capacity'];

/** Latency bucket bounds in seconds, shared by every upstream's histogram. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5];

export class UpstreamStats {
  requests = 0;
  answers = 0;
  readonly errors = new Map<UpstreamErrorReason, number>();
  readonly latencyBuckets = new Float64Array(LATENCY_BUCKETS.length + 1);
  latencySum = 0;
  latencyCount = 0;
  inflight = 0;
  /** Answers dropped because they did not match a query in flight (address, port, ID, question): spoofing
   *  attempts or a confused server. */
  mismatches = 0;
  /** Of those, the right question in the wrong 0x20 case: a blind guess. */
  caseMismatches = 0;

  error(reason: UpstreamErrorReason): void { this.errors.set(reason, (this.errors.get(reason) ?? 0) + 1); }

  observe(ms: number): void {
    const s = ms / 1000;
    let i = 0;
    while (i < LATENCY_BUCKETS.length && s > LATENCY_BUCKETS[i]) i++;
    this.latencyBuckets[i]++;
    this.latencySum += s;
    this.latencyCount++;
  }
}

/** A request in flight, returned by send() so that a query answered elsewhere can withdraw it. */
export interface UpstreamCall {
  /** Ends the request now; its handler is not called afterwards. */
  cancel(): void;
}

export interface Upstream {
  readonly name: string;
  readonly stats: UpstreamStats;
  healthy: boolean;
  /**
   * `query` has ID 0 and is owned by the upstream from now on. Transports that can withdraw a request
   * return a handle for it (hedged and parallel queries cancel the loser).
   */
  send(query: Buffer, ctx: QueryContext, handler: UpstreamHandler, deadline: number): UpstreamCall | void;
  /** Set by the pool on transports that can tell when they connect or fail to. */
  connectivity?: ((ok: boolean) => void) | null;
  close(): void;
}
