// Choosing an upstream for each attempt, and passive health.
//
// Strategies (config `upstream.strategy`):
//   fastest (default)  lowest latency EWMA among healthy upstreams; `explore` of the picks (5%) go to a
//                      random other healthy upstream so that the others' EWMAs and health stay current.
//   failover           the first healthy upstream in config order.
//   round-robin        healthy upstreams in turn.
//   parallel           the best two (by EWMA) at once; the first valid answer wins, the other is cancelled.
//
// Health is a circuit per upstream: `failureThreshold` consecutive failures (errors, invalid answers, or
// no answer within the hedge delay while another upstream was asked instead) open it, and it stays out
// of rotation for a backoff that doubles on each re-opening (1 s … 30 s). When the backoff is over it is
// half-open: exactly one query at a time is sent to it as a probe (the forward stage sends that query to
// a healthy upstream too, so a probe never costs a client latency); a success closes the circuit, a
// failure re-opens it. Transports that know they cannot connect (or just did) say so through
// `connectivity`, which opens or closes the circuit at once. `Upstream.healthy` is true exactly while
// the circuit is closed; that is what the `upstream_healthy` metric and /readyz show.
import type { Upstream } from './types.js';

export type Strategy = 'fastest' | 'failover' | 'round-robin' | 'parallel';
export const STRATEGIES: readonly Strategy[] = ['fastest', 'failover', 'round-robin', 'parallel'];

export interface PoolOptions {
  strategy?: Strategy;
  /** Consecutive failures that open the circuit (default 3). */
  failureThreshold?: number;
  /** First backoff of an open circuit (default 1000 ms); doubles up to maxBackoffMs. */
  probeBackoffMs?: number;
  maxBackoffMs?: number;
  /** Share of `fastest` picks that go to a random other healthy upstream (default 0.05). */
  explore?: number;
  /** Floor of the hedge delay; 0 disables hedging (default 300 ms). See hedgeDelay(). */
  hedgeMs?: number;
}

interface Health {
  failures: number;
  /** 0 while closed; otherwise when the open circuit becomes half-open. */
  openUntil: number;
  backoff: number;
  /** Latency EWMA (ms) for selection, including hedged-out waits; 0 until the first sample. */
  ewmaMs: number;
  /** EWMA of answered requests only: the base of the hedge delay, so a frozen upstream does not
   * stretch its own hedge delay. */
  okMs: number;
  /** When the half-open probe was sent (0: none in flight). */
  probing: number;
}

/** A probe with no verdict after this long (cancelled, lost) no longer blocks the next one. */
const PROBE_STALE_MS = 5000;
const EWMA_WEIGHT = 0.2;

export class UpstreamPool {
  readonly strategy: Strategy;
  private readonly health: Health[];
  private rr = 0;
  private favourite = -1;
  private readonly threshold: number;
  private readonly baseBackoff: number;
  private readonly maxBackoff: number;
  private readonly explore: number;
  private readonly hedgeMs: number;
  /** True when the last pick() returned a half-open upstream (a probe). */
  lastPickProbe = false;
  probes = 0;
  hedges = 0;

  constructor(readonly upstreams: readonly Upstream[], opts: PoolOptions = {},
    private readonly now: () => number = () => performance.now(), private readonly random: () => number = Math.random) {
    if (upstreams.length === 0) throw new Error('at least one upstream is required');
    if (upstreams.length > 30) throw new Error('at most 30 upstreams are supported');
    this.strategy = opts.strategy ?? 'fastest';
    this.threshold = opts.failureThreshold ?? 3;
    this.baseBackoff = opts.probeBackoffMs ?? 1000;
    this.maxBackoff = opts.maxBackoffMs ?? 30000;
    this.explore = opts.explore ?? 0.05;
    this.hedgeMs = opts.hedgeMs ?? 300;
    this.health = upstreams.map(() => ({ failures: 0, openUntil: 0, backoff: this.baseBackoff, ewmaMs: 0, okMs: 0, probing: 0 }));
    upstreams.forEach((u, i) => {
      u.healthy = true;
      if ('connectivity' in u) u.connectivity = (ok) => (ok ? this.reachable(i) : this.unreachable(i));
    });
  }

  /**
   * The upstream for the next attempt of one query, skipping `exclude` (a bit mask of indexes already
   * tried). Returns -1 when none is left. Sets lastPickProbe when the pick is a half-open probe.
   */
  pick(exclude: number): number {
    this.lastPickProbe = false;
    const n = this.upstreams.length;
    const t = this.now();
    // A half-open upstream due for its probe goes first: the forward stage pairs the probe with a
    // healthy upstream, so the client does not wait on it.
    let fallback = -1;
    let healthyCount = 0;
    for (let i = 0; i < n; i++) {
      if (exclude & (1 << i)) continue;
      const h = this.health[i];
      if (h.openUntil === 0) { healthyCount++; continue; }
      if (h.openUntil <= t && (h.probing === 0 || t - h.probing > PROBE_STALE_MS)) {
        h.probing = t;
        this.probes++;
        this.lastPickProbe = true;
        return i;
      }
      if (fallback < 0 || h.openUntil < this.health[fallback].openUntil) fallback = i;
    }
    // Every untried upstream is out of rotation: trying the one closest to its probe beats answering
    // SERVFAIL without trying.
    if (healthyCount === 0) return fallback;
    switch (this.strategy) {
      case 'failover':
        for (let i = 0; i < n; i++) if (this.usable(i, exclude)) return i;
        return -1;
      case 'round-robin': {
        const start = this.rr++ % n;
        if (this.rr >= 0x40000000) this.rr = 0;
        for (let k = 0; k < n; k++) { const i = (start + k) % n; if (this.usable(i, exclude)) return i; }
        return -1;
      }
      default: {
        // fastest and parallel: lowest EWMA; an upstream without samples yet counts as fastest so it
        // gets measured.
        let best = -1;
        for (let i = 0; i < n; i++) {
          if (!this.usable(i, exclude)) continue;
          if (best < 0 || this.health[i].ewmaMs < this.health[best].ewmaMs) best = i;
        }
        // Hysteresis: stay on the current favourite unless another is clearly (25%) faster, so that
        // equally fast upstreams do not split the load (one busy connection batches better).
        const f = this.favourite;
        let chosen = best;
        if (exclude === 0) {
          if (f >= 0 && f !== best && this.usable(f, 0) && this.health[f].ewmaMs <= this.health[best].ewmaMs * 1.25 + 0.5) chosen = f;
          else this.favourite = best;
        }
        // Exploration goes to one of the others: landing on the upstream we would pick anyway would
        // waste it, and a frozen or recovered upstream would take twice as long to notice.
        if (this.strategy === 'fastest' && healthyCount > 1 && this.random() < this.explore) {
          let k = Math.floor(this.random() * (healthyCount - 1));
          for (let i = 0; i < n; i++) if (i !== chosen && this.usable(i, exclude) && k-- === 0) return i;
        }
        return chosen;
      }
    }
  }

  private usable(i: number, exclude: number): boolean {
    return (exclude & (1 << i)) === 0 && this.health[i].openUntil === 0;
  }

  /**
   * How long an attempt on `i` may go unanswered before the forward stage asks another upstream as
   * well: max(hedgeMs, 2 × EWMA of its answered latencies). Infinity when hedging is off.
   */
  hedgeDelay(i: number): number {
    if (this.hedgeMs <= 0) return Infinity;
    return Math.max(this.hedgeMs, 2 * this.health[i].okMs);
  }

  success(i: number, latencyMs: number): void {
    const h = this.health[i];
    h.failures = 0; h.openUntil = 0; h.backoff = this.baseBackoff; h.probing = 0;
    this.sample(h, latencyMs);
    h.okMs = h.okMs === 0 ? latencyMs : h.okMs * (1 - EWMA_WEIGHT) + latencyMs * EWMA_WEIGHT;
    this.upstreams[i].healthy = true;
  }

  failure(i: number): void {
    const h = this.health[i];
    h.failures++;
    const halfOpen = h.openUntil !== 0;
    h.probing = 0;
    if (halfOpen || h.failures >= this.threshold) this.open(i);
  }

  /** The hedge delay passed without an answer from `i` and another upstream was asked: a soft failure. */
  slow(i: number, waitedMs: number): void {
    this.hedges++;
    this.sample(this.health[i], waitedMs);
    this.failure(i);
  }

  /** A request to `i` was withdrawn (another upstream answered first): no verdict on its health. */
  cancelled(i: number): void {
    this.health[i].probing = 0;
  }

  private sample(h: Health, ms: number): void {
    h.ewmaMs = h.ewmaMs === 0 ? ms : h.ewmaMs * (1 - EWMA_WEIGHT) + ms * EWMA_WEIGHT;
  }

  private open(i: number): void {
    const h = this.health[i];
    h.openUntil = this.now() + h.backoff;
    h.backoff = Math.min(h.backoff * 2, this.maxBackoff);
    this.upstreams[i].healthy = false;
  }

  /** The transport connected: let it back into rotation at once. */
  reachable(i: number): void {
    const h = this.health[i];
    if (h.openUntil === 0 && this.upstreams[i].healthy) return;
    h.failures = 0; h.openUntil = 0; h.backoff = this.baseBackoff; h.probing = 0;
    this.upstreams[i].healthy = true;
  }

  /** The transport cannot connect: out of rotation without waiting for queries to fail. */
  unreachable(i: number): void {
    const h = this.health[i];
    h.failures = Math.max(h.failures, this.threshold);
    h.probing = 0;
    // Already open: keep its schedule (and backoff) rather than pushing the probe further out.
    if (h.openUntil > this.now()) return;
    this.open(i);
  }

  /** Latency EWMA in ms (tests, stats). */
  ewma(i: number): number { return this.health[i].ewmaMs; }

  get anyHealthy(): boolean { return this.upstreams.some((u) => u.healthy); }

  close(): void { for (const u of this.upstreams) u.close(); }
}
