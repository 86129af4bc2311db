// The audit trail: for each answered client query, a query-log line and dnstap CLIENT_QUERY/RESPONSE
// frames, plus the bounded top-k of clients and names. Runs after the answer was handed to the
// transport; it allocates (strings, objects) but only when one of its outputs is enabled.
import { createRequire } from 'node:module';
import type { QueryObserver } from './finish.js';
import { isStream, type QueryContext } from './context.js';
import { qnameString, RCODE_NAMES } from '../dns/wire.js';
import { qtypeName } from '../metrics/counters.js';
import { QueryLog, summarizeAnswers, type QueryLogEntry } from '../log/query-log.js';
import type { DnstapWriter } from '../log/dnstap.js';
import { TopK } from '../metrics/topk.js';
import type { Anonymizer } from '../log/anonymize.js';
import type { DeviceResolver } from '../devices/types.js';

export class AuditObserver implements QueryObserver {
  constructor(private readonly log: QueryLog | null, public tap: DnstapWriter | null,
    private readonly top: { clients: TopK; names: TopK; sampleEvery: number } | null) {}
  private sampleCount = 0;
  /**
   * log.anonymize, applied to every client address this observer hands on (/stats/top, dnstap), as the
   * query log applies it to its lines: one privacy setting, honoured everywhere.
   */
  anonymizer: Anonymizer | null = null;
  /** Names the client's device in log lines (set by the server once the device table is up). */
  devices: DeviceResolver | null = null;

  answered(ctx: QueryContext, wire: Uint8Array, off: number, len: number): void {
    const rcode = wire[off + 3] & 0x0f;
    const wantLog = this.log !== null && this.log.wants(RCODE_NAMES[rcode] ?? String(rcode));
    const wantTop = this.top !== null && ++this.sampleCount >= this.top.sampleEvery;
    if (!wantLog && this.tap === null && !wantTop) return;
    const where = ctx.responder.describe(ctx);
    const qname = ctx.q.hasQuestion ? qnameString(ctx.buf, 0, ctx.q.qnameEnd) : '';
    if (wantTop) {
      this.sampleCount = 0;
      this.top!.clients.add(this.anonymizer ? this.anonymizer.apply(where.client) : where.client);
      this.top!.names.add(qname);
    }
    if (this.tap) {
      const proto = isStream(ctx.responder.transport) ? 'tcp' : 'udp';
      const q = ctx.buf.subarray(0, ctx.len);
      const a = wire.subarray(off, off + len);
      // Anonymised: a truncated address stays an address; a hash is not one, so dnstap leaves it out. The
      // client port goes too (with the time it could single a client out again).
      const client = this.anonymizer ? this.anonymizer.apply(where.client) : where.client;
      const clientPort = this.anonymizer ? 0 : where.clientPort;
      this.tap.clientQuery(ctx.wallStarted, where.family, proto, client, clientPort, where.server, where.serverPort, q);
      this.tap.clientResponse(ctx.wallStarted, Date.now(), where.family, proto, client, clientPort, where.server, where.serverPort, q, a);
    }
    if (wantLog) {
      const entry: QueryLogEntry = {
        time: ctx.wallStarted, client: where.client, clientPort: where.clientPort, server: where.server, serverPort: where.serverPort,
        transport: ctx.responder.transport as QueryLogEntry['transport'], qname, qtype: qtypeName(ctx.q.qtype),
        rcode: RCODE_NAMES[rcode] ?? String(rcode), cache: ctx.cacheStatus,
        latencyMs: Math.round((performance.now() - ctx.started) * 1000) / 1000,
      };
      const answers = summarize(wire, off, len);
      if (answers.length) entry.answers = answers;
      if (ctx.decision) entry.filter = { action: ctx.decision.kind, list: ctx.decision.list, rule: ctx.decision.rule, group: ctx.decision.group as string | undefined };
      if (ctx.upstream) entry.upstream = ctx.upstream;
      if (this.devices) {
        const d = this.devices.lookup(where.client);
        if (d.name !== undefined || d.mac !== undefined) entry.device = { name: d.name, mac: d.mac };
      }
      this.log!.write(entry);
    }
  }
}

// dns-packet decodes answers for the query log only; loaded on first use, servers that log no answers
// never pay its resident memory.
const requireCjs = createRequire(import.meta.url);
let dnsPacket: typeof import('dns-packet') | null = null;

function summarize(wire: Uint8Array, off: number, len: number): string[] {
  try {
    dnsPacket ??= requireCjs('dns-packet') as typeof import('dns-packet');
    return summarizeAnswers(dnsPacket.decode(Buffer.from(wire.buffer, wire.byteOffset + off, len)).answers as never);
  } catch {
    return [];
  }
}
