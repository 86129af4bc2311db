// DNS over TLS (RFC 7858): tls://host[:853]. One TLS connection carries every query, pipelined with
// 2-byte length framing (RFC 7766); each query gets a random ID on the wire, mapped back to ID 0 in the
// answer so the forward stage treats every transport alike. Certificates are always verified (extra
// CA like DoH); a hostname URL is resolved through the bootstrap servers or a fixed `ip`, never the
// system resolver, and SNI plus the certificate check stay on the hostname.
//
// When the connection closes or fails, queries it carried are replayed once on a new connection if
// the deadline allows (servers close idle or long-lived connections at will); a connection that never
// came up fails its queries with `connect`, so the forward stage moves on to another upstream.
import tls from 'node:tls';
import net from 'node:net';
import fs from 'node:fs';
import crypto from 'node:crypto';
import type { QueryContext } from '../pipeline/context.js';
import { Upstream, UpstreamHandler, UpstreamStats, UpstreamErrorReason, UpstreamCall } from './types.js';
import { BootstrapResolver } from './bootstrap.js';

export interface DotOptions {
  url: string;
  /** Extra CA bundle (PEM path), added to the system roots. */
  ca?: string;
  ip?: string;
  bootstrap?: BootstrapResolver;
  connectTimeoutMs?: number;
  /** Close the connection after this long without queries (default 30 s). */
  idleTimeoutMs?: number;
  /** Queries in flight on the connection at once (default 1000); more fail with over_capacity. */
  maxInflight?: number;
  /** With the upstream marked unreachable, re-dial this often to notice it is back (default 2 s). */
  healthIntervalMs?: number;
}

const MAX_REPLAYS = 1;

class DotRequest implements UpstreamCall {
  id = -1;
  done = false;
  replays = 0;
  conn: DotConnection | null = null;
  constructor(readonly owner: DotUpstream, readonly ctx: QueryContext, readonly handler: UpstreamHandler, readonly query: Buffer,
    readonly started: number, readonly deadline: number) {}
  cancel(): void { this.owner.cancel(this); }
}

class DotConnection {
  connected = false;
  dead = false;
  readonly pending = new Map<number, DotRequest>();
  private buf: Buffer = Buffer.alloc(0);
  constructor(readonly sock: tls.TLSSocket) {}

  /** Appends received bytes; returns complete messages. */
  frames(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Buffer[] = [];
    let p = 0;
    while (this.buf.length - p >= 2) {
      const len = this.buf.readUInt16BE(p);
      if (this.buf.length - p - 2 < len) break;
      out.push(this.buf.subarray(p + 2, p + 2 + len));
      p += 2 + len;
    }
    this.buf = p === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(p);
    return out;
  }
}

export class DotUpstream implements Upstream {
  readonly name: string;
  readonly stats = new UpstreamStats();
  healthy = true;
  connectivity: ((ok: boolean) => void) | null = null;
  replays = 0;
  private readonly host: string;
  private readonly port: number;
  private readonly servername: string | undefined;
  private readonly ca: string[] | undefined;
  private readonly lookup: net.LookupFunction | undefined;
  private readonly bootstrap: BootstrapResolver | undefined;
  private readonly connectTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly maxInflight: number;
  private conn: DotConnection | null = null;
  private readonly all = new Set<DotRequest>();
  private readonly sweepTimer: NodeJS.Timeout;
  private readonly healthTimer: NodeJS.Timeout;
  private lastConnectFailed = false;
  private closed = false;
  /** Connections opened (tests, stats). */
  connects = 0;

  constructor(opts: DotOptions) {
    const u = new URL(opts.url);
    if (u.protocol !== 'tls:') throw new TypeError(`DoT upstream must be tls://: ${opts.url}`);
    this.name = opts.url;
    this.host = u.hostname.replace(/^\[|\]$/g, '');
    this.port = Number(u.port || 853);
    const literal = net.isIP(this.host) !== 0;
    this.servername = literal ? undefined : this.host;
    this.bootstrap = opts.bootstrap;
    this.lookup = literal ? undefined : opts.ip ? new BootstrapResolver([]).lookup(opts.ip) : (opts.bootstrap ?? new BootstrapResolver([])).lookup();
    this.ca = opts.ca ? [...tls.rootCertificates, fs.readFileSync(opts.ca, 'utf8')] : undefined;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 30_000;
    this.maxInflight = opts.maxInflight ?? 1000;
    this.sweepTimer = setInterval(() => this.sweep(), 25);
    this.sweepTimer.unref();
    this.healthTimer = setInterval(() => { if (this.lastConnectFailed && !this.closed && !this.conn) this.connection(); }, opts.healthIntervalMs ?? 2000);
    this.healthTimer.unref();
  }

  send(query: Buffer, ctx: QueryContext, handler: UpstreamHandler, deadline: number): UpstreamCall {
    this.stats.requests++;
    this.stats.inflight++;
    const req = new DotRequest(this, ctx, handler, query, performance.now(), deadline);
    this.all.add(req);
    this.dispatch(req);
    return req;
  }

  private dispatch(req: DotRequest): void {
    if (this.closed) { this.finish(req, null, 'closed'); return; }
    const c = this.connection();
    if (c.pending.size >= this.maxInflight) { this.finish(req, null, 'over_capacity'); return; }
    let id = crypto.randomInt(0, 65536);
    for (let k = 0; c.pending.has(id) && k < 32; k++) id = crypto.randomInt(0, 65536);
    if (c.pending.has(id)) { this.finish(req, null, 'over_capacity'); return; }
    req.id = id;
    req.conn = c;
    c.pending.set(id, req);
    const frame = Buffer.allocUnsafe(req.query.length + 2);
    frame.writeUInt16BE(req.query.length, 0);
    req.query.copy(frame, 2);
    frame.writeUInt16BE(id, 2);
    c.sock.write(frame);
  }

  private connection(): DotConnection {
    if (this.conn && !this.conn.dead) return this.conn;
    this.connects++;
    const sock = tls.connect({
      host: this.host, port: this.port, servername: this.servername, ca: this.ca, lookup: this.lookup,
      ALPNProtocols: ['dot'],
    });
    const c = new DotConnection(sock);
    this.conn = c;
    sock.setNoDelay(true);
    const timer = setTimeout(() => { if (!c.connected) sock.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })); }, this.connectTimeoutMs);
    timer.unref();
    sock.on('secureConnect', () => {
      clearTimeout(timer);
      c.connected = true;
      this.lastConnectFailed = false;
      this.connectivity?.(true);
    });
    sock.setTimeout(this.idleTimeoutMs, () => { if (c.pending.size === 0) sock.end(); });
    sock.on('data', (chunk: Buffer) => {
      for (const msg of c.frames(chunk)) {
        if (msg.length < 12) continue;
        const req = c.pending.get(msg.readUInt16BE(0));
        if (!req) continue;
        c.pending.delete(req.id);
        msg[0] = 0; msg[1] = 0;
        this.finish(req, msg, null);
      }
    });
    sock.on('error', () => { /* handled on close */ });
    sock.on('close', () => {
      clearTimeout(timer);
      c.dead = true;
      if (this.conn === c) this.conn = null;
      if (!c.connected) {
        this.lastConnectFailed = true;
        this.bootstrap?.invalidate(this.host);
        this.connectivity?.(false);
      }
      const orphans = [...c.pending.values()];
      c.pending.clear();
      for (const req of orphans) {
        if (c.connected && req.replays < MAX_REPLAYS && performance.now() < req.deadline - 1 && !this.closed) {
          req.replays++;
          this.replays++;
          this.dispatch(req);
        } else {
          this.finish(req, null, c.connected ? 'reset' : 'connect');
        }
      }
    });
    return c;
  }

  cancel(req: DotRequest): void {
    if (req.done) return;
    req.done = true;
    this.all.delete(req);
    req.conn?.pending.delete(req.id);
    this.stats.inflight--;
  }

  private finish(req: DotRequest, body: Buffer | null, err: UpstreamErrorReason | null): void {
    if (req.done) return;
    req.done = true;
    this.all.delete(req);
    if (req.conn?.pending.get(req.id) === req) req.conn.pending.delete(req.id);
    this.stats.inflight--;
    const ms = performance.now() - req.started;
    if (err) this.stats.error(err); else { this.stats.answers++; this.stats.observe(ms); }
    req.handler.onUpstreamResult(req.ctx, this, body, err, ms);
  }

  private sweep(): void {
    if (this.all.size === 0) return;
    const now = performance.now();
    for (const r of this.all) if (now >= r.deadline) this.finish(r, null, 'timeout');
  }

  /** Whether a connection is currently up (tests). */
  get connected(): boolean { return this.conn?.connected === true && !this.conn.dead; }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweepTimer);
    clearInterval(this.healthTimer);
    for (const r of [...this.all]) this.finish(r, null, 'closed');
    this.conn?.sock.destroy();
    this.conn = null;
  }
}
