// A metric whose values are read from plain counters at scrape time. prom-client's registry only needs
// name/help/type and get(); this keeps the hot path free of prom-client calls.
export interface Sample { labels?: Record<string, string | number>; value: number; metricName?: string }

export class CollectedMetric {
  /** How the primary combines the workers' values (prom-client's AggregatorRegistry). */
  constructor(readonly name: string, readonly help: string, readonly type: 'counter' | 'gauge' | 'histogram',
    private readonly read: () => Sample[], readonly aggregator: 'sum' | 'first' | 'max' = 'sum') {}
  get() {
    // Every sample gets a labels object: the cluster aggregator (workers) reads it unconditionally.
    const values = this.read();
    for (const v of values) v.labels ??= {};
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
  reset(): void { /* values live in their owners */ }
}

/** Samples for a Prometheus histogram from per-bucket (non-cumulative) counts. */
export function histogramSamples(name: string, labels: Record<string, string>, bounds: readonly number[],
  buckets: ArrayLike<number>, sum: number, count: number): Sample[] {
  const out: Sample[] = [];
  let acc = 0;
  for (let i = 0; i < bounds.length; i++) {
    acc += buckets[i];
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: bounds[i] }, value: acc });
  }
  acc += buckets[bounds.length];
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: acc });
  out.push({ metricName: `${name}_sum`, labels, value: sum });
  out.push({ metricName: `${name}_count`, labels, value: count });
  return out;
}
