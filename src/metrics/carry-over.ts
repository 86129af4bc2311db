// SIGHUP builds a new upstream pool and forward stage. Their counters start from the old ones, so a
// reload never looks like a counter reset to Prometheus (rate() would see a drop to zero). What the old
// pool counts while it drains its last in-flight queries is not carried: at most a few queries.
import type { Upstream } from '../upstream/types.js';

/** Adds each old upstream's counters into the new upstream of the same name. */
export function carryOverUpstreamStats(from: readonly Upstream[], into: readonly Upstream[]): void {
  const byName = new Map(into.map((u) => [u.name, u]));
  for (const old of from) {
    const u = byName.get(old.name);
    if (!u) continue;
    const a = u.stats;
    const b = old.stats;
    a.requests += b.requests;
    a.answers += b.answers;
    for (const [reason, n] of b.errors) a.errors.set(reason, (a.errors.get(reason) ?? 0) + n);
    for (let i = 0; i < a.latencyBuckets.length; i++) a.latencyBuckets[i] += b.latencyBuckets[i];
    a.latencySum += b.latencySum;
    a.latencyCount += b.latencyCount;
    a.mismatches += b.mismatches;
    a.caseMismatches += b.caseMismatches;
  }
}

/** The same for the forward stage's own counters. */
export function carryOverForwardCounters(from: { hedges: number; overCapacity: number }, into: { hedges: number; overCapacity: number }): void {
  into.hedges += from.hedges;
  into.overCapacity += from.overCapacity;
}
