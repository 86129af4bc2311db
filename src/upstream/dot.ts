// DNS over TLS (RFC 7858): tls://host[:853]. One TLS connection carries every query, pipelined with
// 2-byte length framing (RFC 7766); each query gets a random ID on the wire, mapped back to ID 0 in the
// answer so the forward stage treats every transport alike. Certificates are always verified (extra
// CA like DoH); a hostname URL is resolved through the bootstrap servers or a fixed `ip`, never the
// system resolver, and SNI plus the certificate check stay on the hostname.
//
// When the connection closes or fails, queries it carried are replayed once on a new connection if
// the deadline allows (servers close idle or long-lived connections at will); a connection that never
// came up fails its queries with `connect`, so the forward stage moves on to another upstream.
//
// A hostile or broken server cannot make us buffer without bound: writes stop at a backlog cap (a
// server that does not read gets no more queries: over_capacity, the forward stage asks elsewhere),
// a connection that has sent nothing for `stallTimeoutMs` while a query waits is closed and its queries
// replayed, and the read side keeps at most one message (64 KiB), each byte copied once.
import tls from 'node:tls';
import net from 'node:net';
import fs from 'node:fs';
import crypto from 'node:crypto';
import type { QueryContext } from '../pipeline/context.js';
import { Upstream, UpstreamHandler, UpstreamStats, UpstreamErrorReason, UpstreamCall } from './types.js';
import { BootstrapResolver } from './bootstrap.js';
import { DeadlineSweeper, type DeadlineOptions } from './deadlines.js';

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
  /** A connection silent this long while a query waits on it is closed and its queries replayed (default 1.5 s). */
  stallTimeoutMs?: number;
  /** Output the socket has not taken yet beyond which new queries are refused (default 256 KiB). */
  maxWriteBacklog?: number;
  /** Fake clock and timers for tests. */
  deadlines?: DeadlineOptions;
}

const MAX_REPLAYS = 1;

class DotRequest implements UpstreamCall {
  id = -1;
  done = false;
  replays = 0;
  conn: DotConnection | null = null;
  /** When the sweeper looks at it next: the stall check, then the deadline. */
  due: number;
  /** When it was last written to a connection. */
  sentAt = 0;
  constructor(readonly owner: DotUpstream, readonly ctx: QueryContext, readonly handler: UpstreamHandler, readonly query: Buffer,
    readonly started: number, readonly deadline: number) { this.due = deadline; }
  cancel(): void { this.owner.cancel(this); }
}

class DotConnection {
  connected = false;
  dead = false;
  readonly pending = new Map<number, DotRequest>();
  /** A message not yet complete, collected in place (allocated on first need, one message's worth). */
  private partial: Buffer | null = null;
  private have = 0;
  /** Bytes copied into `partial`: at most what was received, however finely it was split. */
  partialBytes = 0;
  lastReceived = performance.now();
  constructor(readonly sock: tls.TLSSocket) {}

  /** Received bytes; returns the messages they complete (each a buffer of its own or a view of `chunk`,
   *  which Node does not reuse for stream 'data'). */
  frames(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let p = 0;
    if (this.have > 0) {
      const part = this.partial!;
      if (this.have < 2) { part[1] = chunk[p++]; this.have = 2; this.partialBytes++; }
      const need = 2 + part.readUInt16BE(0) - this.have;
      const take = Math.min(need, chunk.length - p);
      chunk.copy(part, this.have, p, p + take);
      this.have += take;
      this.partialBytes += take;
      p += take;
      if (take < need) return out;
      out.push(Buffer.from(part.subarray(2, this.have)));
      this.have = 0;
    }
    while (chunk.length - p >= 2) {
      const len = chunk.readUInt16BE(p);
      if (chunk.length - p - 2 < len) break;
      out.push(chunk.subarray(p + 2, p + 2 + len));
      p += 2 + len;
    }
    if (p < chunk.length) {
      this.partial ??= Buffer.allocUnsafe(2 + 65535);
      chunk.copy(this.partial, 0, p);
      this.have = chunk.length - p;
      this.partialBytes += this.have;
    }
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
  private readonly deadlines: DeadlineSweeper<DotRequest>;
  private readonly stallTimeoutMs: number;
  private readonly maxWriteBacklog: number;
  private readonly now: () => number;
  /** Connections closed because they stopped answering. */
  stalls = 0;
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
    this.stallTimeoutMs = opts.stallTimeoutMs ?? 1500;
    this.maxWriteBacklog = opts.maxWriteBacklog ?? 256 * 1024;
    this.now = opts.deadlines?.now ?? (() => performance.now());
    this.deadlines = new DeadlineSweeper<DotRequest>((r, now) => this.due(r, now), { resolutionMs: 25, ...opts.deadlines });
    this.healthTimer = setInterval(() => { if (this.lastConnectFailed && !this.closed && !this.conn) this.connection(); }, opts.healthIntervalMs ?? 2000);
    this.healthTimer.unref();
  }

  send(query: Buffer, ctx: QueryContext, handler: UpstreamHandler, deadline: number): UpstreamCall {
    this.stats.requests++;
    this.stats.inflight++;
    const req = new DotRequest(this, ctx, handler, query, this.now(), deadline);
    this.deadlines.add(req);
    this.dispatch(req);
    return req;
  }

  private dispatch(req: DotRequest): void {
    if (this.closed) { this.finish(req, null, 'closed'); return; }
    const c = this.connection();
    // A server that does not read what we write (or answer) gets no more: our queue would only grow.
    if (c.pending.size >= this.maxInflight || c.sock.writableLength > this.maxWriteBacklog) { this.finish(req, null, 'over_capacity'); return; }
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
    // The first look is the stall check: a connection that has not answered by then is suspect.
    req.sentAt = this.now();
    req.due = Math.min(req.deadline, req.sentAt + this.stallTimeoutMs);
    this.deadlines.moved(req);
  }

  /** The sweeper's visit: the deadline, or else the stall check of the request's connection. */
  private due(req: DotRequest, now: number): void {
    if (now >= req.deadline) { this.finish(req, null, 'timeout'); return; }
    const c = req.conn;
    // Only once the connection is up: the handshake has its own timeout (connectTimeoutMs).
    if (c && c.connected && !c.dead && c.pending.get(req.id) === req) {
      const silent = now - Math.max(c.lastReceived, req.sentAt);
      if (silent >= this.stallTimeoutMs) {
        // Nothing at all from the server since this query went out: close; the close handler replays.
        this.stalls++;
        c.dead = true;
        c.sock.destroy();
        return;
      }
      req.due = Math.min(req.deadline, Math.max(c.lastReceived, req.sentAt) + this.stallTimeoutMs);
      return;
    }
    req.due = req.deadline;
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
      c.lastReceived = this.now();
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
        if (c.connected && req.replays < MAX_REPLAYS && this.now() < req.deadline - 1 && !this.closed) {
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
    this.deadlines.delete(req);
    if (req.conn?.pending.get(req.id) === req) req.conn.pending.delete(req.id);
    this.stats.inflight--;
  }

  private finish(req: DotRequest, body: Buffer | null, err: UpstreamErrorReason | null): void {
    if (req.done) return;
    req.done = true;
    this.deadlines.delete(req);
    if (req.conn?.pending.get(req.id) === req) req.conn.pending.delete(req.id);
    this.stats.inflight--;
    const ms = this.now() - req.started;
    if (err) this.stats.error(err); else { this.stats.answers++; this.stats.observe(ms); }
    req.handler.onUpstreamResult(req.ctx, this, body, err, ms);
  }

  /** Runs the deadline and stall checks now (fake-clock tests). */
  sweep(): void { this.deadlines.run(); }

  /** Whether a deadline timer is armed (tests: none while nothing is in flight). */
  get timerArmed(): boolean { return this.deadlines.armed; }

  /** Bytes the current connection copied into its partial-message buffer (tests: each byte at most once). */
  get partialBytes(): number { return this.conn?.partialBytes ?? 0; }

  /** Bytes written to the current connection that the socket has not taken yet. */
  get writeBacklog(): number { return this.conn?.sock.writableLength ?? 0; }

  /** Whether a connection is currently up (tests). */
  get connected(): boolean { return this.conn?.connected === true && !this.conn.dead; }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.healthTimer);
    for (const r of this.deadlines.values()) this.finish(r, null, 'closed');
    this.deadlines.clear();
    this.conn?.sock.destroy();
    this.conn = null;
  }
}
