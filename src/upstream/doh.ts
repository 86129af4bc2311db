// DNS over HTTPS (RFC 8484) on node:http2: POST application/dns-message, ID 0 on the wire. node:http2
// was measured at several times undici's HTTP/2 request rate on this path (see README), so the query
// path uses it; undici serves list downloads.
import http2 from 'node:http2';
import fs from 'node:fs';
import tls from 'node:tls';
import type { QueryContext } from '../pipeline/context.js';
import { Upstream, UpstreamHandler, UpstreamStats, UpstreamErrorReason } from './types.js';

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
}

const MAX_DNS_MESSAGE = 65535;
const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE } = http2.constants;

/** One in-flight request. Stream handlers are shared functions that find this through the stream. */
class DohRequest {
  chunks: Buffer[] = [];
  bytes = 0;
  status = 0;
  contentType = '';
  done = false;
  constructor(readonly upstream: DohUpstream, readonly conn: DohConnection, readonly ctx: QueryContext,
    readonly handler: UpstreamHandler, readonly started: number, readonly deadline: number,
    public stream: http2.ClientHttp2Stream | null) {}
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

  constructor(opts: DohOptions) {
    const u = new URL(opts.url);
    if (u.protocol !== 'https:') throw new TypeError(`DoH upstream must be https: ${opts.url}`);
    this.name = opts.url;
    this.origin = u.origin;
    this.path = u.pathname + u.search;
    this.tls = { ca: opts.ca ? [...tlsRootCertificates(), fs.readFileSync(opts.ca, 'utf8')] : undefined, servername: isIp(u.hostname) ? undefined : u.hostname };
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

  send(query: Buffer, ctx: QueryContext, handler: UpstreamHandler, deadline: number): void {
    const now = performance.now();
    this.stats.requests++;
    this.stats.inflight++;
    const conn = this.pickConnection();
    const req = new DohRequest(this, conn ?? this.noConnection, ctx, handler, now, deadline, null);
    this.pending.add(req);
    if (!conn) { this.fail(req, 'over_capacity'); return; }
    let stream: http2.ClientHttp2Stream;
    try {
      stream = conn.session!.request({
        [HTTP2_HEADER_METHOD]: 'POST',
        [HTTP2_HEADER_PATH]: this.path,
        [HTTP2_HEADER_CONTENT_TYPE]: 'application/dns-message',
        accept: 'application/dns-message',
        'content-length': query.length,
      });
    } catch {
      conn.dead = true;
      this.fail(req, 'closed');
      return;
    }
    conn.active++;
    conn.lastUsed = now;
    req.stream = stream;
    (stream as TaggedStream)[kRequest] = req;
    stream.on('response', onResponse);
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onStreamError);
    stream.on('close', onClose);
    stream.end(query);
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
    const session = http2.connect(this.origin, { ...this.tls, peerMaxConcurrentStreams: this.maxStreams });
    conn.session = session;
    const markDead = () => { conn.dead = true; };
    session.on('connect', () => this.connectivity?.(true));
    session.on('error', (err: NodeJS.ErrnoException) => {
      conn.dead = true;
      conn.sessionError = err?.code ?? 'ERR';
      if (!this.hasLiveConnection()) this.connectivity?.(false);
    });
    session.on('goaway', markDead);
    session.on('close', markDead);
    this.conns.push(conn);
    return conn;
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
  req.status = Number(headers[HTTP2_HEADER_STATUS]);
  req.contentType = String(headers[HTTP2_HEADER_CONTENT_TYPE] ?? '');
}

function onData(this: TaggedStream, chunk: Buffer): void {
  const req = this[kRequest];
  if (req.done) return;
  req.bytes += chunk.length;
  if (req.bytes > req.upstream['maxAnswer']) { req.upstream.fail(req, 'too_large'); return; }
  req.chunks.push(chunk);
}

function onEnd(this: TaggedStream): void {
  const req = this[kRequest];
  if (req.done) return;
  if (req.status !== 200) { req.upstream.finish(req, null, 'http_status'); return; }
  if (!req.contentType.toLowerCase().startsWith('application/dns-message')) { req.upstream.finish(req, null, 'content_type'); return; }
  const body = req.chunks.length === 1 ? req.chunks[0] : Buffer.concat(req.chunks, req.bytes);
  req.upstream.finish(req, body, null);
}

function onStreamError(this: TaggedStream, err: NodeJS.ErrnoException): void {
  const req = this[kRequest];
  // A stream cancelled because its session failed (TLS, refused) reports the session's reason.
  const code = req.conn.sessionError || ((err?.cause as NodeJS.ErrnoException | undefined)?.code ?? err?.code ?? '');
  const reason: UpstreamErrorReason = code === 'ERR_HTTP2_GOAWAY_SESSION' ? 'goaway'
    : code.startsWith('ERR_HTTP2_STREAM') || code === 'ECONNRESET' ? 'reset'
      : code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code.startsWith('ERR_TLS') || code.includes('CERT') || code.includes('SELF_SIGNED') || code === 'ETIMEDOUT' || code === 'ENETUNREACH' ? 'connect'
        : 'reset';
  req.conn.dead = req.conn.dead || reason !== 'reset';
  req.upstream.finish(req, null, reason);
}

function onClose(this: TaggedStream): void {
  const req = this[kRequest];
  if (!req.done) req.upstream.finish(req, null, req.status ? 'reset' : 'closed');
}

function isIp(host: string): boolean { return /^[\d.]+$/.test(host) || host.includes(':'); }

/** An extra CA adds to the system roots rather than replacing them. */
function tlsRootCertificates(): readonly string[] { return tls.rootCertificates; }
