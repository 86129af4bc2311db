// Plain-number counters bumped on the hot path and read by the metrics collector at scrape time. No
// prom-client call ever happens per query.
import type { Transport } from '../pipeline/context.js';
import { AnswerLatency } from './answer-latency.js';

export class ServerCounters {
  readonly queriesByTransport: Record<Transport | 'internal', number> = { udp: 0, tcp: 0, plain: 0, dot: 0, doh: 0, internal: 0 };
  /** Indexed by qtype for the common range; rarer types land in `otherQtypes`. */
  readonly queriesByQtype = new Float64Array(256);
  otherQtypes = 0;
  readonly answersByRcode = new Float64Array(24);
  truncated = 0;
  malformedDropped = 0;
  /** Client-facing latency by how the answer was made (cache, upstream, blocked, ...). */
  readonly answerLatency = new AnswerLatency();
}

export const QTYPE_NAMES: Record<number, string> = {
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 35: 'NAPTR',
  43: 'DS', 46: 'RRSIG', 47: 'NSEC', 48: 'DNSKEY', 50: 'NSEC3', 52: 'TLSA', 64: 'SVCB', 65: 'HTTPS', 99: 'SPF',
  255: 'ANY', 257: 'CAA',
};

export function qtypeName(t: number): string { return QTYPE_NAMES[t] ?? `TYPE${t}`; }
