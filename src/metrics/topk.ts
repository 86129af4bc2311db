// Bounded "heavy hitters" (the Space-Saving algorithm): at most `capacity` keys are tracked; a new key
// evicts the smallest and inherits its count, so memory stays fixed whatever the traffic.
export class TopK {
  private readonly counts = new Map<string, number>();
  constructor(readonly capacity: number) {}

  add(key: string, n = 1): void {
    const c = this.counts.get(key);
    if (c !== undefined) { this.counts.set(key, c + n); return; }
    if (this.counts.size < this.capacity) { this.counts.set(key, n); return; }
    let minKey = '', min = Infinity;
    for (const [k, v] of this.counts) if (v < min) { min = v; minKey = k; }
    this.counts.delete(minKey);
    this.counts.set(key, min + n);
  }

  top(n = 20): Array<{ key: string; count: number }> {
    return [...this.counts].sort((a, b) => b[1] - a[1]).slice(0, n).map(([key, count]) => ({ key, count }));
  }
}
