// Choosing an upstream for each attempt, and passive health: a run of failures takes an upstream out of
// rotation, and it is let back in for one probe query after a backoff.
import type { Upstream } from './types.js';

export type Strategy = 'failover' | 'round-robin' | 'fastest';

export interface PoolOptions { strategy?: Strategy; failureThreshold?: number; probeBackoffMs?: number; maxBackoffMs?: number }

interface Health { failures: number; openUntil: number; backoff: number; ewmaMs: number }

export class UpstreamPool {
  readonly strategy: Strategy;
  private readonly health: Health[];
  private rr = 0;
  private readonly threshold: number;
  private readonly baseBackoff: number;
  private readonly maxBackoff: number;

  constructor(readonly upstreams: readonly Upstream[], opts: PoolOptions = {}, private readonly now: () => number = () => performance.now()) {
    if (upstreams.length === 0) throw new Error('at least one upstream is required');
    this.strategy = opts.strategy ?? 'failover';
    this.threshold = opts.failureThreshold ?? 3;
    this.baseBackoff = opts.probeBackoffMs ?? 1000;
    this.maxBackoff = opts.maxBackoffMs ?? 30000;
    this.health = upstreams.map(() => ({ failures: 0, openUntil: 0, backoff: this.baseBackoff, ewmaMs: 0 }));
    upstreams.forEach((u, i) => {
      if ('connectivity' in u) u.connectivity = (ok) => (ok ? this.reachable(i) : this.unreachable(i));
    });
  }

  /**
   * The upstream for attempt number `attempt` (0-based) of one query, skipping `exclude` (a bit mask of
   * indexes already tried). Returns -1 when none is left.
   */
  pick(exclude: number): number {
    const n = this.upstreams.length;
    const t = this.now();
    let fallback = -1;
    const start = this.strategy === 'round-robin' ? (this.rr++ % n) : 0;
    let best = -1;
    for (let k = 0; k < n; k++) {
      const i = (start + k) % n;
      if (exclude & (1 << i)) continue;
      const h = this.health[i];
      if (h.openUntil > t) { if (fallback < 0) fallback = i; continue; }
      if (this.strategy !== 'fastest') return i;
      if (best < 0 || h.ewmaMs < this.health[best].ewmaMs) best = i;
    }
    // Every untried upstream is in backoff: trying one beats answering SERVFAIL without trying.
    return best >= 0 ? best : fallback;
  }

  success(i: number, latencyMs: number): void {
    const h = this.health[i];
    h.failures = 0; h.openUntil = 0; h.backoff = this.baseBackoff;
    h.ewmaMs = h.ewmaMs === 0 ? latencyMs : h.ewmaMs * 0.9 + latencyMs * 0.1;
    this.upstreams[i].healthy = true;
  }

  failure(i: number): void {
    const h = this.health[i];
    h.failures++;
    if (h.failures >= this.threshold) {
      h.openUntil = this.now() + h.backoff;
      h.backoff = Math.min(h.backoff * 2, this.maxBackoff);
      this.upstreams[i].healthy = false;
    }
  }

  /** The transport connected: let it back into rotation at once. */
  reachable(i: number): void {
    const h = this.health[i];
    if (h.openUntil === 0 && this.upstreams[i].healthy) return;
    h.failures = 0; h.openUntil = 0; h.backoff = this.baseBackoff;
    this.upstreams[i].healthy = true;
  }

  /** The transport cannot connect: out of rotation without waiting for queries to fail. */
  unreachable(i: number): void {
    const h = this.health[i];
    h.failures = Math.max(h.failures, this.threshold);
    h.openUntil = this.now() + h.backoff;
    this.upstreams[i].healthy = false;
  }

  get anyHealthy(): boolean { return this.upstreams.some((u) => u.healthy); }

  close(): void { for (const u of this.upstreams) u.close(); }
}
