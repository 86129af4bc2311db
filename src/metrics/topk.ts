// Bounded "heavy hitters" for /stats/top: at most `capacity` keys are counted. When the table is full,
// the less-counted half is dropped in one sweep, so an insert costs O(1) amortised instead of a scan per
// new key; keys that stay heavy survive every sweep. Counts are approximate for keys that re-enter.
export class TopK {
  private readonly counts = new Map<string, number>();
  constructor(readonly capacity: number) {}

  add(key: string, n = 1): void {
    const c = this.counts.get(key);
    if (c !== undefined) { this.counts.set(key, c + n); return; }
    if (this.counts.size >= this.capacity) this.sweep();
    this.counts.set(key, n);
  }

  private sweep(): void {
    const sorted = [...this.counts.values()].sort((a, b) => a - b);
    const cut = sorted[Math.floor(sorted.length / 2)];
    for (const [k, v] of this.counts) if (v <= cut) this.counts.delete(k);
    // Everyone tied at the cut: drop arbitrary keys until half the room is free.
    if (this.counts.size > this.capacity / 2) {
      let excess = this.counts.size - Math.floor(this.capacity / 2);
      for (const k of this.counts.keys()) { if (excess-- <= 0) break; this.counts.delete(k); }
    }
  }

  top(n = 20): Array<{ key: string; count: number }> {
    return [...this.counts].sort((a, b) => b[1] - a[1]).slice(0, n).map(([key, count]) => ({ key, count }));
  }
}
