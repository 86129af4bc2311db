// Every dns_tproxy_* metric the server exports, read from plain counters at scrape time.
import type { DnsServer } from '../server.js';
import { CollectedMetric, Sample, histogramSamples } from './collected.js';
import { RCODE_NAMES } from '../dns/wire.js';
import { qtypeName } from './counters.js';
import { LATENCY_BUCKETS, UPSTREAM_ERROR_REASONS } from '../upstream/types.js';
import { buildInfoLabels } from './build-info.js';

export function registerServerMetrics(s: DnsServer): void {
  const r = s.registry;
  const add = (name: string, help: string, type: 'counter' | 'gauge' | 'histogram', read: () => Sample[]) =>
    r.registerMetric(new CollectedMetric(`dns_tproxy_${name}`, help, type, read) as never);
  const c = s.counters;

  // One set of label dimensions per metric: sum() over either gives the true total.
  add('queries_total', 'Client queries answered, by transport.', 'counter', () =>
    (Object.keys(c.queriesByTransport) as (keyof typeof c.queriesByTransport)[])
      .filter((t) => t !== 'internal').map((t) => ({ labels: { transport: t }, value: c.queriesByTransport[t] })));
  add('queries_by_type_total', 'Client queries answered, by query type (OTHER: types above 255).', 'counter', () => {
    const out: Sample[] = [];
    c.queriesByQtype.forEach((v, t) => { if (v > 0) out.push({ labels: { qtype: qtypeName(t) }, value: v }); });
    if (c.otherQtypes) out.push({ labels: { qtype: 'OTHER' }, value: c.otherQtypes });
    return out;
  });
  add('answer_latency_seconds', 'Time from receiving a client query to sending its answer, by how the answer was made.', 'histogram', () =>
    c.answerLatency.samples('dns_tproxy_answer_latency_seconds'));
  // Every worker runs the same build: the primary reports one of them, not their sum.
  r.registerMetric(new CollectedMetric('dns_tproxy_build_info', 'Always 1; the labels say which build and runtime this process runs.', 'gauge',
    () => [{ labels: buildInfoLabels(), value: 1 }], 'first') as never);
  add('answers_total', 'Answers sent, by response code.', 'counter', () => {
    const out: Sample[] = [];
    c.answersByRcode.forEach((v, i) => { if (v > 0 || i <= 5) out.push({ labels: { rcode: RCODE_NAMES[i] ?? `RCODE${i}` }, value: v }); });
    return out;
  });
  add('truncated_total', 'UDP answers cut to TC=1 because they exceeded the client\'s size.', 'counter', () => [{ value: c.truncated }]);
  add('dropped_total', 'Queries dropped without an answer, by reason.', 'counter', () => {
    const udp = s.udp;
    const sum = (f: (u: (typeof udp)[number]) => number) => udp.reduce((a, u) => a + f(u), 0);
    return [
      { labels: { reason: 'malformed' }, value: c.malformedDropped },
      { labels: { reason: 'rate_limited' }, value: s.rateLimit?.dropped ?? 0 },
      { labels: { reason: 'queue_full' }, value: sum((u) => u.droppedBusy) + s.tcp.reduce((a, t) => a + t.stats.droppedBusy, 0) },
      { labels: { reason: 'acl' }, value: sum((u) => u.droppedAcl) },
      { labels: { reason: 'draining' }, value: sum((u) => u.droppedDraining) },
      { labels: { reason: 'send_eagain' }, value: sum((u) => u.socket.stats.droppedEagain) },
      { labels: { reason: 'truncated' }, value: sum((u) => u.socket.stats.droppedTruncated) },
    ];
  });
  add('formerr_total', 'Malformed queries answered with FORMERR/NOTIMP/BADVERS.', 'counter', () => [
    { labels: { rcode: 'FORMERR' }, value: s.validate.formerr }, { labels: { rcode: 'NOTIMP' }, value: s.validate.notimp },
    { labels: { rcode: 'BADVERS' }, value: s.validate.badvers }]);
  add('inflight_queries', 'Queries accepted and not yet answered.', 'gauge', () => [{ value: s.pool.inUse }]);
  add('upstream_inflight_cap_total', 'Queries refused (SERVFAIL) because the upstream in-flight cap was reached.', 'counter', () => [{ value: s.forward.overCapacity }]);

  const upstreamLabel = (name: string) => ({ upstream: name });
  add('upstream_requests_total', 'Requests sent to each upstream.', 'counter', () => s.upstreams.upstreams.map((u) => ({ labels: upstreamLabel(u.name), value: u.stats.requests })));
  add('upstream_errors_total', 'Upstream failures by reason.', 'counter', () => {
    const out: Sample[] = [];
    // Every known reason is exported from the start (at 0), so rate() and the alerts see a series
    // before the first failure rather than an absent one.
    for (const u of s.upstreams.upstreams) {
      for (const reason of UPSTREAM_ERROR_REASONS) out.push({ labels: { upstream: u.name, reason }, value: u.stats.errors.get(reason) ?? 0 });
    }
    return out;
  });
  add('upstream_latency_seconds', 'Time from sending a query upstream to its answer.', 'histogram', () =>
    s.upstreams.upstreams.flatMap((u) => histogramSamples('dns_tproxy_upstream_latency_seconds', upstreamLabel(u.name), LATENCY_BUCKETS,
      u.stats.latencyBuckets, u.stats.latencySum, u.stats.latencyCount)));
  add('upstream_replays_total', 'In-flight queries re-sent on a fresh connection after GOAWAY or a reset.', 'counter', () =>
    s.upstreams.upstreams.map((u) => ({ labels: upstreamLabel(u.name), value: (u as { replays?: number }).replays ?? 0 })));
  add('upstream_connections_opened_total', 'Connections dialled to each upstream (TLS handshakes for DoH).', 'counter', () =>
    s.upstreams.upstreams.map((u) => ({ labels: upstreamLabel(u.name), value: (u as { connectionsOpened?: number }).connectionsOpened ?? 0 })));
  add('upstream_hedges_total', 'Extra attempts sent to another upstream because the first was slow.', 'counter', () => [{ value: s.forward.hedges }]);
  add('upstream_healthy', '1 when the upstream is in rotation, 0 while its circuit is open.', 'gauge', () => s.upstreams.upstreams.map((u) => ({ labels: upstreamLabel(u.name), value: u.healthy ? 1 : 0 })));

  if (s.cache) {
    const k = s.cache;
    add('cache_hits_total', 'Answers served fresh from the cache.', 'counter', () => [{ value: k.hits }]);
    add('cache_misses_total', 'Lookups that found nothing servable.', 'counter', () => [{ value: k.misses }]);
    add('cache_stale_total', 'Expired answers served (RFC 8767).', 'counter', () => [{ value: k.staleServed }]);
    add('cache_prefetches_total', 'Popular entries refreshed before expiry.', 'counter', () => [{ value: k.prefetches }]);
    add('cache_coalesced_total', 'Misses that joined an identical query already in flight.', 'counter', () => [{ value: k.coalesced }]);
    add('cache_evictions_total', 'Entries evicted for space.', 'counter', () => [{ value: k.evictions }]);
    add('cache_probe_limited_total', 'Answers not cached because their index probe sequence was full (a hash flood).', 'counter', () => [{ value: k.probeLimited }]);
    add('cache_entries', 'Entries in the cache.', 'gauge', () => [{ value: k.entries }]);
    add('cache_bytes', 'Bytes accounted to cache entries.', 'gauge', () => [{ value: k.bytes }]);
  }

  add('socket_packets_total', 'Native socket counters, by listener and counter.', 'counter', () => {
    const out: Sample[] = [];
    for (const u of s.udp) {
      const st = u.socket.stats as unknown as Record<string, number>;
      for (const key of ['received', 'sent', 'rxBatches', 'txBatches', 'recvErrors', 'sendErrors', 'droppedNoOrigDst']) {
        if (typeof st[key] === 'number') out.push({ labels: { listener: u.name, counter: key }, value: st[key] });
      }
    }
    return out;
  });
  add('tcp_connections_total', 'TCP connection events by kind.', 'counter', () => {
    const out: Sample[] = [];
    for (const t of s.tcp) {
      const st = t.stats;
      for (const [kind, v] of Object.entries({ accepted: st.accepted, rejected_total: st.rejectedTotal, rejected_per_client: st.rejectedPerClient,
        rejected_acl: st.rejectedAcl, idle_closed: st.idleClosed, read_timeout: st.readTimeouts, query_limit: st.queryLimitClosed,
        write_buffer_overflow: st.writeBufferOverflows })) out.push({ labels: { listener: t.name, kind }, value: v });
    }
    return out;
  });
  add('tcp_connections_open', 'Open TCP connections.', 'gauge', () => s.tcp.map((t) => ({ labels: { listener: t.name }, value: t.stats.open })));
  add('querylog_dropped_total', 'Query log entries dropped (queue full or write errors).', 'counter', () => [{ value: s.queryLog?.stats.dropped ?? 0 }]);
  add('querylog_written_total', 'Query log entries written.', 'counter', () => [{ value: s.queryLog?.stats.written ?? 0 }]);
  add('querylog_errors_total', 'Query log write errors.', 'counter', () => [{ value: s.queryLog?.stats.errors ?? 0 }]);
  add('dnstap_dropped_total', 'dnstap frames dropped (collector away and buffer full).', 'counter', () => [{ value: s.dnstap?.stats.dropped ?? 0 }]);
  add('dnstap_sent_total', 'dnstap frames written to the collector.', 'counter', () => [{ value: s.dnstap?.stats.sent ?? 0 }]);
  if (s.filterStage) {
    const f = s.filterStage;
    add('filter_answers_total', 'Queries answered by policy, by kind (block, local, forward, block-cname).', 'counter', () => [
      { labels: { kind: 'block' }, value: f.blocked }, { labels: { kind: 'local' }, value: f.local },
      { labels: { kind: 'forward' }, value: f.forwarded }, { labels: { kind: 'block-cname' }, value: s.cnameStage?.blocked ?? 0 }]);
    add('blocked_total', 'Blocked queries by the list whose rule matched.', 'counter', () =>
      Object.entries(s.filter?.stats.blockedByList ?? {}).map(([list, v]) => ({ labels: { list }, value: v })));
    add('list_rules', 'Rules loaded from each list.', 'gauge', () => (s.filter?.stats.lists ?? []).map((l) => ({ labels: { list: l.name }, value: l.rules })));
    add('list_bad_lines', 'Lines of each list that could not be parsed (see the log for file and line).', 'gauge', () =>
      (s.filter?.stats.lists ?? []).map((l) => ({ labels: { list: l.name }, value: l.badLines })));
    add('list_last_refresh_timestamp_seconds', 'When each list was last loaded or confirmed fresh.', 'gauge', () =>
      (s.filter?.stats.lists ?? []).map((l) => ({ labels: { list: l.name }, value: (l.lastRefresh ?? 0) / 1000 })));
    add('list_refresh_failures_total', 'Failed downloads of each url list.', 'counter', () =>
      (s.filter?.stats.lists ?? []).map((l) => ({ labels: { list: l.name }, value: l.failures })));
  }
  if (s.rateLimit) {
    const r = s.rateLimit;
    add('rate_limited_total', 'Queries over their client\'s token bucket, by action taken.', 'counter', () => [
      { labels: { action: 'drop' }, value: r.dropped }, { labels: { action: 'refused' }, value: r.refused }]);
    add('rate_limit_clients', 'Clients tracked by the rate limiter.', 'gauge', () => [{ value: r.tracked }]);
    add('rate_limit_evictions_total', 'Clients evicted from the rate-limit table to make room.', 'counter', () => [{ value: r.evictions }]);
  }
  add('drain_timeouts_total', 'Shutdowns whose drain timed out with queries still in flight.', 'counter', () => [{ value: s.drainTimeouts }]);
  add('config_reloads_total', 'Successful SIGHUP reloads.', 'counter', () => [{ value: s.reloads }]);
  add('config_reload_failures_total', 'Rejected SIGHUP reloads (the old config stays).', 'counter', () => [{ value: s.reloadFailures }]);
  add('heap_trims_total', 'Times freed malloc memory was handed back to the kernel (every 30 s when there was any).', 'counter', () => [{ value: s.heapTrims }]);
}
