// DNS over HTTPS (RFC 8484) on node:http2: POST application/dns-message, ID 0 on the wire. node:http2
// was measured at several times undici's HTTP/2 request rate on this path (see README), so the query
// path uses it; undici serves list downloads.
//
// Resilience: a connection that errors, closes or receives GOAWAY is marked dead at once and never
// picked again; the requests it still carried are replayed (up to twice) on a fresh connection if the
// deadline allows, instead of failing, so an upstream restart or a GOAWAY loses no query. Only when a new
// connection cannot be made does the request fail with `connect` (and the forward stage goes to the next
// upstream). Idle connections are PINGed so a dead path is found before a query needs it.
import http2 from 'node:http2';
import fs from 'node:fs';
import tls from 'node:tls';
import type { QueryContext } from '../pipeline/context.js';
import { Upstream, UpstreamHandler, UpstreamStats, UpstreamErrorReason, UpstreamCall } from './types.js';
import { BootstrapResolver } from './bootstrap.js';

export interface DohOptions {
  url: string;
  /** Extra CA bundle (PEM path), for private or lab resolvers. Certificates are always verified. */
  ca?: string;
  /** Cap on concurrent streams per connection; more connections open past it. */
  maxStreamsPerConnection?: number;
  maxConnections?: number;
  /** How often to re-dial when no connection is alive. */
  healthIntervalMs?: number;
  /** Largest answer body accepted. */
  maxAnswerBytes?: number;
  /** HTTP/2 PING interval on idle connections, so dead ones are found before a query needs them. */
  pingIntervalMs?: number;
  /** Fixed address for a hostname URL (TLS still verifies the hostname). */
  ip?: string;
  /** Resolves a hostname URL without the system resolver (see bootstrap.ts). */
  bootstrap?: BootstrapResolver;
  /** A connection not up within this long is abandoned (default 5000 ms). */
  connectTimeoutMs?: number;
}

const MAX_DNS_MESSAGE = 65535;
const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE } = http2.constants;

/** Replays of one request after its connection died under it. */
const MAX_REPLAYS = 2;

/** One in-flight request. Stream handlers are shared functions that find this through the stream. */
class DohRequest implements UpstreamCall {
  chunks: Buffer[] = [];
  bytes = 0;
  status = 0;
  contentType = '';
  done = false;
  replays = 0;
  constructor(readonly upstream: DohUpstream, public conn: DohConnection, readonly ctx: QueryContext,
    readonly handler: UpstreamHandler, readonly started: number, readonly deadline: number,
    public stream: http2.ClientHttp2Stream | null, readonly query: Buffer) {}

  cancel(): void { this.upstream.cancel(this); }
}

const kRequest = Symbol('dohRequest');
type TaggedStream = http2.ClientHttp2Stream & { [kRequest]: DohRequest };

class DohConnection {
  session: http2.ClientHttp2Session | null = null;
  active = 0;
  dead = false;
  lastUsed = 0;
  /** Why the session failed, when it did: streams cancelled by it are classified by this. */
  sessionError = '';
  /** The TLS handshake completed (requests lost after this are replayed; before it, `connect`). */
  connected = false;
  constructor(readonly owner: DohUpstream) {}
}

export class DohUpstream implements Upstream {
  readonly name: string;
  readonly stats = new UpstreamStats();
  healthy = true;
  private readonly origin: string;
  private readonly path: string;
  private readonly tls: http2.SecureClientSessionOptions;
  private readonly conns: DohConnection[] = [];
  private readonly pending = new Set<DohRequest>();
  private readonly maxStreams: number;
  private readonly maxConns: number;
  private readonly maxAnswer: number;
  private readonly sweepTimer: NodeJS.Timeout;
  private pingTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Stands in for a connection on requests refused before one was picked. */
  private readonly noConnection = new DohConnection(this);
  /** Told when a connection comes up or fails, so health follows the transport even without queries. */
  connectivity: ((ok: boolean) => void) | null = null;
  private readonly healthTimer: NodeJS.Timeout;
  /** Consecutive failures; the pool uses it for passive health. */
  consecutiveFailures = 0;

  private readonly hostname: string;
  private readonly lookup: http2.SecureClientSessionOptions['lookup'];
  private readonly connectTimeoutMs: number;
  private readonly bootstrap: BootstrapResolver | undefined;
  replays = 0;
  /** TLS sessions dialled, for metrics: a steady load should not need new ones. */
  connectionsOpened = 0;

  constructor(opts: DohOptions) {
    const u = new URL(opts.url);
    if (u.protocol !== 'https:') throw new TypeError(`DoH upstream must be https: ${opts.url}`);
    this.name = opts.url;
    this.origin = u.origin;
    this.path = u.pathname + u.search;
    this.hostname = u.hostname.replace(/^\[|\]$/g, '');
    // One secure context for every connection: building it parses the whole CA bundle, which is too
    // slow to repeat on each reconnect.
    const secureContext = tls.createSecureContext({ ca: opts.ca ? [...tlsRootCertificates(), fs.readFileSync(opts.ca, 'utf8')] : undefined });
    this.tls = { secureContext, servername: isIp(u.hostname) ? undefined : u.hostname };
    // A hostname is never given to the system resolver (it may be us): a fixed IP or the bootstrap
    // servers supply the address; without either, connecting fails with `connect`.
    this.bootstrap = opts.bootstrap;
    this.lookup = isIp(this.hostname) ? undefined
      : opts.ip ? fixedLookup(opts.ip)
        : (opts.bootstrap ?? new BootstrapResolver([])).lookup();
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
    this.maxStreams = opts.maxStreamsPerConnection ?? 100;
    this.maxConns = opts.maxConnections ?? 4;
    this.maxAnswer = opts.maxAnswerBytes ?? MAX_DNS_MESSAGE;
    // One sweeper for every deadline instead of a timer per query.
    this.sweepTimer = setInterval(() => this.sweep(), 25);
    this.sweepTimer.unref();
    // With no live connection, dial one every interval: a dead upstream shows up in /readyz and metrics
    // without waiting for a client query to fail on it, and a recovered one is back as soon as it answers.
    this.healthTimer = setInterval(() => this.checkConnectivity(), opts.healthIntervalMs ?? 2000);
    this.healthTimer.unref();
    const ping = opts.pingIntervalMs ?? 15000;
    if (ping > 0) {
      this.pingTimer = setInterval(() => this.pingIdle(ping), ping);
      this.pingTimer.unref();
    }
  }

  send(query: Buffer, ctx: QueryContext, handler: UpstreamHandler, deadline: number): UpstreamCall {
    const now = performance.now();
    this.stats.requests++;
    this.stats.inflight++;
    const req = new DohRequest(this, this.noConnection, ctx, handler, now, deadline, null, query);
    this.pending.add(req);
    this.dispatch(req);
    return req;
  }

  /** Puts a request on a live (or new) connection. */
  private dispatch(req: DohRequest): void {
    const conn = this.closed ? null : this.pickConnection();
    if (!conn) { this.fail(req, this.closed ? 'closed' : 'over_capacity'); return; }
    let stream: http2.ClientHttp2Stream;
    try {
      stream = conn.session!.request({
        [HTTP2_HEADER_METHOD]: 'POST',
        [HTTP2_HEADER_PATH]: this.path,
        [HTTP2_HEADER_CONTENT_TYPE]: 'application/dns-message',
        accept: 'application/dns-message',
        'content-length': req.query.length,
      });
    } catch {
      conn.dead = true;
      if (this.replay(req)) return;
      this.fail(req, 'closed');
      return;
    }
    conn.active++;
    conn.lastUsed = performance.now();
    req.conn = conn;
    req.stream = stream;
    (stream as TaggedStream)[kRequest] = req;
    stream.on('response', onResponse);
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onStreamError);
    stream.on('close', onClose);
    stream.end(req.query);
  }

  /**
   * The connection under `req` died before it was answered: send it again on a fresh connection when
   * the connection had been up (a GOAWAY, reset or restart, not a refused connect) and time remains.
   */
  replay(req: DohRequest): boolean {
    if (req.done || this.closed || req.replays >= MAX_REPLAYS || performance.now() >= req.deadline - 1) return false;
    const old = req.conn;
    if (old !== this.noConnection && !old.connected) return false;
    old.dead = true;
    if (req.stream) {
      old.active = Math.max(0, old.active - 1);
      const s = req.stream;
      req.stream = null;
      if (!s.destroyed) s.close(http2.constants.NGHTTP2_CANCEL);
    }
    req.replays++;
    this.replays++;
    req.chunks = []; req.bytes = 0; req.status = 0; req.contentType = '';
    req.conn = this.noConnection;
    this.dispatch(req);
    return true;
  }

  /**
   * The least-loaded live connection under the stream cap; a new one only when all are at the cap, so
   * a steady load rides one TLS session (fewer handshakes, better batching of frames).
   */
  private pickConnection(): DohConnection | null {
    let best: DohConnection | null = null;
    let live = 0;
    for (let i = this.conns.length - 1; i >= 0; i--) {
      const c = this.conns[i];
      if (c.dead || !c.session || c.session.destroyed || c.session.closed) {
        if (c.active === 0) { this.conns.splice(i, 1); c.session?.destroy(); }
        continue;
      }
      live++;
      if (!best || c.active < best.active) best = c;
    }
    if (best && best.active < this.maxStreams) return best;
    if (live < this.maxConns) return this.connect();
    // Every connection is at the cap: nghttp2 queues the stream until one frees up.
    return best;
  }

  private connect(): DohConnection {
    const conn = new DohConnection(this);
    this.connectionsOpened++;
    const session = http2.connect(this.origin, { ...this.tls, lookup: this.lookup, peerMaxConcurrentStreams: this.maxStreams });
    conn.session = session;
    const timer = setTimeout(() => {
      if (conn.connected || session.destroyed) return;
      conn.dead = true;
      conn.sessionError = 'ETIMEDOUT';
      session.destroy();
      if (!this.hasLiveConnection()) this.connectivity?.(false);
    }, this.connectTimeoutMs);
    timer.unref();
    session.on('connect', () => { clearTimeout(timer); conn.connected = true; this.connectivity?.(true); });
    session.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      conn.dead = true;
      conn.sessionError = err?.code ?? 'ERR';
      if (!conn.connected) {
        // The address may be stale: resolve again before the next attempt.
        this.bootstrap?.invalidate(this.hostname);
        if (!this.hasLiveConnection()) this.connectivity?.(false);
      }
      // Dropped at once: no new stream goes to a session that has failed.
      if (!session.destroyed) session.destroy();
    });
    // GOAWAY: streams the server accepted finish; no new ones go here.
    session.on('goaway', () => { conn.dead = true; });
    session.on('close', () => { clearTimeout(timer); conn.dead = true; this.prune(); });
    this.conns.push(conn);
    return conn;
  }

  /** Forgets dead connections that carry no stream. */
  private prune(): void {
    for (let i = this.conns.length - 1; i >= 0; i--) {
      const c = this.conns[i];
      if (c.dead && c.active === 0) { this.conns.splice(i, 1); if (c.session && !c.session.destroyed) c.session.destroy(); }
    }
  }

  /** Withdrawn by the forward stage (answered elsewhere): the handler is not called. */
  cancel(req: DohRequest): void {
    if (req.done) return;
    req.done = true;
    this.pending.delete(req);
    req.conn.active = Math.max(0, req.conn.active - (req.stream ? 1 : 0));
    this.stats.inflight--;
    const s = req.stream;
    if (s && !s.destroyed) s.close(http2.constants.NGHTTP2_CANCEL);
  }

  /** Answers or errors exactly once per request. */
  finish(req: DohRequest, body: Buffer | null, error: UpstreamErrorReason | null): void {
    if (req.done) return;
    req.done = true;
    this.pending.delete(req);
    req.conn.active = Math.max(0, req.conn.active - (req.stream ? 1 : 0));
    this.stats.inflight--;
    const ms = performance.now() - req.started;
    if (error) {
      this.stats.error(error);
      this.consecutiveFailures++;
    } else {
      this.stats.answers++;
      this.stats.observe(ms);
      this.consecutiveFailures = 0;
    }
    req.handler.onUpstreamResult(req.ctx, this, body, error, ms);
  }

  fail(req: DohRequest, reason: UpstreamErrorReason): void {
    const s = req.stream;
    this.finish(req, null, reason);
    if (s && !s.destroyed) s.close(http2.constants.NGHTTP2_CANCEL);
  }

  private hasLiveConnection(): boolean {
    return this.conns.some((c) => !c.dead && c.session !== null && !c.session.destroyed && !c.session.closed);
  }

  private checkConnectivity(): void {
    if (this.closed || this.hasLiveConnection()) return;
    this.pickConnection();
  }

  private sweep(): void {
    if (this.pending.size === 0) return;
    const now = performance.now();
    for (const req of this.pending) if (now >= req.deadline) this.fail(req, 'timeout');
  }

  private pingIdle(interval: number): void {
    const now = performance.now();
    for (const c of this.conns) {
      const s = c.session;
      if (!s || c.dead || s.destroyed || now - c.lastUsed < interval) continue;
      // A PING that is not answered within the interval means the path is dead: drop the connection
      // now rather than when the next query times out on it.
      const timer = setTimeout(() => { c.dead = true; s.destroy(); }, Math.min(interval, 5000));
      timer.unref();
      try { s.ping(() => clearTimeout(timer)); } catch { clearTimeout(timer); c.dead = true; }
    }
  }

  /** Connections currently open (for tests and stats). */
  get connections(): number { return this.conns.filter((c) => !c.dead).length; }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweepTimer);
    clearInterval(this.healthTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    for (const req of [...this.pending]) this.fail(req, 'closed');
    for (const c of this.conns) c.session?.close();
  }
}

function onResponse(this: TaggedStream, headers: http2.IncomingHttpHeaders): void {
  const req = this[kRequest];
  if (req.stream !== this) return;
  req.status = Number(headers[HTTP2_HEADER_STATUS]);
  req.contentType = String(headers[HTTP2_HEADER_CONTENT_TYPE] ?? '');
}

function onData(this: TaggedStream, chunk: Buffer): void {
  const req = this[kRequest];
  if (req.done || req.stream !== this) return;
  req.bytes += chunk.length;
  if (req.bytes > req.upstream['maxAnswer']) { req.upstream.fail(req, 'too_large'); return; }
  req.chunks.push(chunk);
}

function onEnd(this: TaggedStream): void {
  const req = this[kRequest];
  if (req.done || req.stream !== this) return;
  // Ended without response headers: the connection went away under the stream.
  if (req.status === 0) { if (!req.upstream.replay(req)) req.upstream.finish(req, null, req.conn.connected ? 'closed' : 'connect'); return; }
  if (req.status !== 200) { req.upstream.finish(req, null, 'http_status'); return; }
  if (!req.contentType.toLowerCase().startsWith('application/dns-message')) { req.upstream.finish(req, null, 'content_type'); return; }
  const body = req.chunks.length === 1 ? req.chunks[0] : Buffer.concat(req.chunks, req.bytes);
  req.upstream.finish(req, body, null);
}

function onStreamError(this: TaggedStream, err: NodeJS.ErrnoException): void {
  const req = this[kRequest];
  if (req.done || req.stream !== this) return;
  // A stream cancelled because its session failed (TLS, refused) reports the session's reason.
  const code = req.conn.sessionError || ((err?.cause as NodeJS.ErrnoException | undefined)?.code ?? err?.code ?? '');
  const reason: UpstreamErrorReason = code === 'ERR_HTTP2_GOAWAY_SESSION' ? 'goaway'
    : code.startsWith('ERR_HTTP2_STREAM') || code === 'ECONNRESET' ? 'reset'
      : code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code.startsWith('ERR_TLS') || code.includes('CERT') || code.includes('SELF_SIGNED') || code === 'ETIMEDOUT' || code === 'ENETUNREACH' ? 'connect'
        : 'reset';
  req.conn.dead = req.conn.dead || reason !== 'reset';
  if (reason !== 'connect' && req.upstream.replay(req)) return;
  req.upstream.finish(req, null, reason);
}

function onClose(this: TaggedStream): void {
  const req = this[kRequest];
  if (req.done || req.stream !== this) return;
  // Closed without an answer: the connection went away under it (or the server reset the stream).
  if (req.upstream.replay(req)) return;
  req.upstream.finish(req, null, req.conn.connected ? (req.status ? 'reset' : 'closed') : 'connect');
}

function isIp(host: string): boolean { return /^[\d.]+$/.test(host) || host.includes(':'); }

function fixedLookup(ip: string): http2.SecureClientSessionOptions['lookup'] {
  return new BootstrapResolver([]).lookup(ip);
}

/** An extra CA adds to the system roots rather than replacing them. */
function tlsRootCertificates(): readonly string[] { return tls.rootCertificates; }
