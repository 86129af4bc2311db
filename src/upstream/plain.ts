// Plain DNS upstreams (udp://host:port, tcp://host:port) for internal resolvers and conditional
// forwarding. UDP queries get random IDs (answers are matched on ID and source); a truncated UDP answer
// is retried over TCP. Answers are handed back with ID 0, like DoH's, so the forward stage treats every
// transport alike.
import dgram from 'node:dgram';
import net from 'node:net';
import crypto from 'node:crypto';
import type { QueryContext } from '../pipeline/context.js';
import { Upstream, UpstreamHandler, UpstreamStats, UpstreamErrorReason, UpstreamCall } from './types.js';

class Pending implements UpstreamCall {
  id = 0;
  done = false;
  tcp: net.Socket | null = null;
  constructor(readonly owner: PlainDnsUpstream, readonly ctx: QueryContext, readonly handler: UpstreamHandler, readonly query: Buffer,
    readonly started: number, readonly deadline: number) {}
  cancel(): void { this.owner.cancel(this); }
}

export class PlainDnsUpstream implements Upstream {
  readonly name: string;
  readonly stats = new UpstreamStats();
  healthy = true;
  private readonly host: string;
  private readonly port: number;
  private readonly tcpOnly: boolean;
  private sock: dgram.Socket | null = null;
  private readonly pending = new Map<number, Pending>();
  private readonly sweepTimer: NodeJS.Timeout;
  private readonly randomIds = new Uint16Array(4096);
  private randomIdx = 4096;

  /** `ip` stands in for a hostname in the URL (plain DNS never resolves names itself). */
  constructor(url: string, opts: { ip?: string } = {}) {
    const u = new URL(url);
    this.name = url;
    this.host = opts.ip ?? u.hostname.replace(/^\[|\]$/g, '');
    if (net.isIP(this.host) === 0) throw new TypeError(`plain DNS upstream needs an IP address (or ip:): ${url}`);
    this.port = Number(u.port || 53);
    this.tcpOnly = u.protocol === 'tcp:';
    this.sweepTimer = setInterval(() => this.sweep(), 25);
    this.sweepTimer.unref();
  }

  private socket(): dgram.Socket {
    if (this.sock) return this.sock;
    const s = dgram.createSocket(net.isIPv6(this.host) ? 'udp6' : 'udp4');
    s.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    s.on('error', () => { s.close(); if (this.sock === s) this.sock = null; });
    s.unref();
    this.sock = s;
    return s;
  }

  private nextId(): number {
    if (this.randomIdx >= this.randomIds.length) { crypto.randomFillSync(this.randomIds); this.randomIdx = 0; }
    return this.randomIds[this.randomIdx++];
  }

  send(query: Buffer, ctx: QueryContext, handler: UpstreamHandler, deadline: number): UpstreamCall {
    this.stats.requests++;
    this.stats.inflight++;
    const p = new Pending(this, ctx, handler, query, performance.now(), deadline);
    if (this.tcpOnly) { this.sendTcp(p); return p; }
    let id = this.nextId();
    for (let tries = 0; this.pending.has(id) && tries < 16; tries++) id = this.nextId();
    if (this.pending.has(id)) { this.finish(p, null, 'over_capacity'); return p; }
    p.id = id;
    query[0] = id >> 8; query[1] = id & 0xff;
    this.pending.set(id, p);
    this.socket().send(query, this.port, this.host, (err) => { if (err) this.finish(p, null, 'connect'); });
    return p;
  }

  /** Withdrawn by the forward stage: forget it without calling back. */
  cancel(p: Pending): void {
    if (p.done) return;
    p.done = true;
    if (p.id >= 0) this.pending.delete(p.id);
    this.stats.inflight--;
    p.tcp?.destroy();
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < 12 || rinfo.port !== this.port) return;
    const id = msg.readUInt16BE(0);
    const p = this.pending.get(id);
    // Answers from anywhere but the upstream, or for IDs we did not ask, are spoofing attempts.
    if (!p || normalise(rinfo.address) !== normalise(this.host)) return;
    if (msg[2] & 0x02) { this.pending.delete(id); this.sendTcp(p); return; }
    msg[0] = 0; msg[1] = 0;
    this.finish(p, msg, null);
  }

  private sendTcp(p: Pending): void {
    this.pending.delete(p.id);
    p.id = -1;
    const q = p.query;
    q[0] = 0; q[1] = 0;
    const s = net.connect({ host: this.host, port: this.port });
    p.tcp = s;
    let buf = Buffer.alloc(0);
    const done = (body: Buffer | null, err: UpstreamErrorReason | null) => { s.destroy(); this.finish(p, body, err); };
    s.setNoDelay(true);
    s.on('connect', () => { const len = Buffer.allocUnsafe(2); len.writeUInt16BE(q.length); s.write(Buffer.concat([len, q])); });
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(buf.subarray(2, 2 + buf.readUInt16BE(0)), null);
    });
    s.on('error', () => done(null, 'connect'));
    s.on('close', () => done(null, 'closed'));
    s.setTimeout(Math.max(1, p.deadline - performance.now()), () => done(null, 'timeout'));
  }

  private finish(p: Pending, body: Buffer | null, err: UpstreamErrorReason | null): void {
    if (p.done) return;
    p.done = true;
    if (p.id >= 0) this.pending.delete(p.id);
    this.stats.inflight--;
    const ms = performance.now() - p.started;
    if (err) this.stats.error(err); else { this.stats.answers++; this.stats.observe(ms); }
    p.handler.onUpstreamResult(p.ctx, this, body, err, ms);
  }

  private sweep(): void {
    if (this.pending.size === 0) return;
    const now = performance.now();
    for (const p of this.pending.values()) if (now >= p.deadline) this.finish(p, null, 'timeout');
  }

  close(): void {
    clearInterval(this.sweepTimer);
    for (const p of [...this.pending.values()]) this.finish(p, null, 'closed');
    this.sock?.close();
    this.sock = null;
  }
}

function normalise(ip: string): string { return ip.startsWith('::ffff:') ? ip.slice(7) : ip; }
