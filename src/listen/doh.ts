// DNS over HTTPS for LAN clients (RFC 8484): GET (?dns=base64url) and POST (application/dns-message) on
// /dns-query, over HTTP/2 and HTTP/1.1, served by node:http2 with allowHTTP1. Measured against the
// alternatives before choosing it (README "DoH listener" and bench/encrypted.mjs): its h2 core API
// serves dnsperf -m doh cache hits faster than dnsdist's DoH frontend on the same machine, so a
// hand-written server would not pay for itself.
//
// h2 requests are served from the core 'stream' event (no compat request/response objects per query);
// HTTP/1.1 requests arrive as 'request' events. Registering a 'request' listener normally makes node
// also route h2 streams through its compatibility layer, so that hook is removed first (see below).
//
// Limits as for TCP (listen.tcp): total connections, per-client connections (handshakes included),
// idle timeout, queries per connection (then GOAWAY / Connection: close), a bounded body.
import http2 from 'node:http2';
import type http from 'node:http';
import type net from 'node:net';
import type { QueryContext, Responder, ContextPool, Transport } from '../pipeline/context.js';
import type { Chain } from '../pipeline/chain.js';
import type { TcpLimits } from '../config/types.js';
import { parseHostPort } from '../config/address.js';
import { ParsedQuery, readQuery, ReadStatus, writeHeaderOnlyReply, Rcode } from '../dns/wire.js';
import type { ClientAcl } from './acl.js';
import type { Registry } from 'prom-client';
import { CollectedMetric, type Sample } from '../metrics/collected.js';
import { ClientConnectionCap, type TlsCredentials } from './dot.js';

export const DOH_PATH = '/dns-query';
const CONTENT_TYPE = 'application/dns-message';
/** A DNS message is at most 65535 bytes (RFC 8484 is silent; the TCP length prefix is the bound). */
const MAX_MESSAGE = 65535;
/** base64url of 65535 bytes. */
const MAX_GET_PARAM = Math.ceil(MAX_MESSAGE / 3) * 4;
const BASE64URL = /^[A-Za-z0-9_-]+={0,2}$/;

export class DohStats {
  accepted = 0;
  open = 0;
  requests = 0;
  queries = 0;
  rejectedTotal = 0;
  rejectedPerClient = 0;
  rejectedAcl = 0;
  idleClosed = 0;
  queryLimitClosed = 0;
  handshakeFailures = 0;
  droppedBusy = 0;
  /** Answers to requests that were not a DNS query, by status. */
  readonly badRequests = new Map<number, number>();
  http1 = 0;
  http2 = 0;
  /** h2 requests that also went through node's compatibility layer (should stay 0: wasted work). */
  h2ViaCompat = 0;
}

/** One DoH request waiting for its answer; what ctx.conn holds. */
class DohExchange {
  constructor(readonly clientIp: string, readonly clientPort: number, readonly serverIp: string, readonly serverPort: number,
    readonly stream: http2.ServerHttp2Stream | null, readonly res: http.ServerResponse | null) {}
}

export class DohListener implements Responder {
  readonly transport: Transport = 'doh';
  readonly server: http2.Http2SecureServer;
  readonly stats = new DohStats();
  private readonly cap: ClientConnectionCap;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly sockets = new Set<net.Socket>();
  private readonly scratch = Buffer.allocUnsafe(512 + 64);
  private readonly scratchQuery = new ParsedQuery();

  constructor(readonly name: string, private readonly address: string, readonly limits: TcpLimits, readonly chain: Chain,
    readonly pool: ContextPool, readonly credentials: TlsCredentials, private readonly acl: ClientAcl | null = null) {
    this.cap = new ClientConnectionCap(limits.maxConnectionsPerClient);
    this.server = http2.createSecureServer({
      ...credentials.options,
      allowHTTP1: true,
      minVersion: 'TLSv1.2',
      // Streams per connection at once; more wait in the client.
      settings: { maxConcurrentStreams: 256 },
      // The whole session counts against this (headers, buffered bodies): a bound, not a tuning knob.
      maxSessionMemory: 16,
    });
    this.server.maxConnections = limits.maxConnections;
    // Idle connections (h2 sessions and HTTP/1.1 sockets alike) close after listen.tcp.idleTimeoutMs.
    this.server.setTimeout(limits.idleTimeoutMs);
    this.server.on('timeout', (s: http2.ServerHttp2Session | net.Socket) => {
      this.stats.idleClosed++;
      s.destroy();
    });
    this.server.on('drop', () => { this.stats.rejectedTotal++; });
    this.server.on('connection', (s: net.Socket) => {
      const ip = normaliseIp(s.remoteAddress ?? '');
      if (this.acl && !this.acl.allowsString(ip)) { this.stats.rejectedAcl++; s.destroy(); return; }
      if (!this.cap.admit(s)) { this.stats.rejectedPerClient++; return; }
      this.stats.accepted++;
      this.stats.open++;
      this.sockets.add(s);
      s.once('close', () => { this.stats.open--; this.sockets.delete(s); });
    });
    this.server.on('tlsClientError', () => { this.stats.handshakeFailures++; });
    this.server.on('session', (session) => {
      this.sessions.add(session);
      session.once('close', () => this.sessions.delete(session));
      (session as unknown as { dohQueries: number }).dohQueries = 0;
    });
    this.server.on('stream', (stream, headers) => this.onStream(stream, headers));
    // node:http2 adds its compatibility handler for h2 streams when the first 'request' listener is
    // added (a 'newListener' hook). Our h2 streams are served by onStream, so the hook must not run:
    // otherwise every h2 request would be answered twice. Verified by test/listen/doh.test.js (h2).
    this.server.removeAllListeners('newListener');
    this.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      // With the hook removed this never happens; if a node version brings it back, answer once anyway.
      if (req.httpVersionMajor !== 1) { this.stats.h2ViaCompat++; return; }
      this.onHttp1(req, res);
    });
    this.server.on('error', () => { /* surfaced by listen() */ });
    credentials.onChange((c) => this.server.setSecureContext(c));
  }

  listen(): Promise<void> {
    const { host, port } = parseHostPort(this.address);
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port, backlog: 1024 }, () => { this.server.off('error', reject); resolve(); });
    });
  }

  get port(): number { return (this.server.address() as net.AddressInfo).port; }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    this.stats.http2++;
    this.stats.requests++;
    stream.on('error', () => { /* the peer reset it; nothing to answer */ });
    const session = stream.session as (http2.ServerHttp2Session & { dohQueries: number }) | undefined;
    if (!session) { stream.close(); return; }
    if (++session.dohQueries >= this.limits.maxQueriesPerConnection && !session.closed) {
      // Last query of this connection: GOAWAY; it and the streams already open still get answers.
      this.stats.queryLimitClosed++;
      session.close();
    }
    const method = headers[':method'];
    const path = headers[':path'] ?? '';
    const sock = session.socket;
    const exchange = (): DohExchange => new DohExchange(normaliseIp(sock.remoteAddress ?? ''), sock.remotePort ?? 0,
      normaliseIp(sock.localAddress ?? ''), sock.localPort ?? 0, stream, null);
    const fail = (status: number) => this.h2Error(stream, status);
    if (method === 'GET') {
      const q = getQuery(path);
      if (typeof q === 'number') { fail(q); return; }
      this.run(exchange(), q);
      return;
    }
    if (method !== 'POST') { fail(pathOnly(path) === DOH_PATH ? 405 : 404); return; }
    if (pathOnly(path) !== DOH_PATH) { fail(404); return; }
    if (!isDnsMessage(headers['content-type'])) { fail(415); return; }
    const declared = Number(headers['content-length'] ?? 0);
    if (declared > MAX_MESSAGE) { fail(413); return; }
    readBody(stream, (body) => {
      if (body === null) { fail(413); return; }
      this.run(exchange(), body);
    });
  }

  private onHttp1(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.stats.http1++;
    this.stats.requests++;
    const sock = req.socket as net.Socket & { dohQueries?: number };
    sock.dohQueries = (sock.dohQueries ?? 0) + 1;
    if (sock.dohQueries >= this.limits.maxQueriesPerConnection) {
      this.stats.queryLimitClosed++;
      res.shouldKeepAlive = false;
    }
    const exchange = (): DohExchange => new DohExchange(normaliseIp(sock.remoteAddress ?? ''), sock.remotePort ?? 0,
      normaliseIp(sock.localAddress ?? ''), sock.localPort ?? 0, null, res);
    const fail = (status: number) => this.h1Error(req, res, status);
    const path = req.url ?? '';
    if (req.method === 'GET') {
      const q = getQuery(path);
      if (typeof q === 'number') { fail(q); return; }
      this.run(exchange(), q);
      return;
    }
    if (req.method !== 'POST') { fail(pathOnly(path) === DOH_PATH ? 405 : 404); return; }
    if (pathOnly(path) !== DOH_PATH) { fail(404); return; }
    if (!isDnsMessage(req.headers['content-type'])) { fail(415); return; }
    if (Number(req.headers['content-length'] ?? 0) > MAX_MESSAGE) { fail(413); return; }
    readBody(req, (body) => {
      if (body === null) { fail(413); return; }
      this.run(exchange(), body);
    });
  }

  /** Hands one DNS message to the chain; the answer comes back through send(). */
  private run(x: DohExchange, msg: Buffer): void {
    // Shorter than a header, or a response: not a query (mirrors readQuery's DROP cases).
    if (msg.length < 12 || (msg[2] & 0x80) !== 0) { this.respondError(x, 400); return; }
    const ctx = this.pool.acquire();
    if (ctx === null) {
      this.stats.droppedBusy++;
      const q = this.scratchQuery;
      if (readQuery(msg, 0, msg.length, q) === ReadStatus.DROP) { this.respondError(x, 400); return; }
      const n = writeHeaderOnlyReply(msg, 0, q, Rcode.SERVFAIL, this.scratch, 0);
      this.write(x, this.scratch.subarray(0, n));
      return;
    }
    this.stats.queries++;
    ctx.responder = this;
    ctx.conn = x;
    ctx.load(msg, 0, msg.length);
    ctx.started = performance.now();
    ctx.wallStarted = Date.now();
    this.chain.run(ctx);
  }

  send(ctx: QueryContext, wire: Uint8Array, off: number, len: number): void {
    // A copy: `wire` may be a scratch buffer reused by the next answer before the stream writes.
    this.write(ctx.conn as DohExchange, Buffer.from(wire.subarray(off, off + len)));
  }

  private write(x: DohExchange, body: Buffer): void {
    const headers = { 'content-type': CONTENT_TYPE, 'content-length': body.length, 'cache-control': `max-age=${minTtl(body)}` };
    if (x.stream) {
      const s = x.stream;
      if (s.destroyed || s.closed) return;
      s.respond({ ':status': 200, ...headers });
      s.end(body);
    } else if (x.res && !x.res.writableEnded && !x.res.destroyed) {
      x.res.writeHead(200, headers);
      x.res.end(body);
    }
  }

  private respondError(x: DohExchange, status: number): void {
    if (x.stream) this.h2Error(x.stream, status);
    else if (x.res) this.h1Error(null, x.res, status);
  }

  private countBad(status: number): void { this.stats.badRequests.set(status, (this.stats.badRequests.get(status) ?? 0) + 1); }

  private h2Error(stream: http2.ServerHttp2Stream, status: number): void {
    this.countBad(status);
    if (stream.destroyed || stream.closed || stream.headersSent) return;
    stream.respond({ ':status': status, 'content-length': 0 });
    stream.end();
  }

  private h1Error(req: http.IncomingMessage | null, res: http.ServerResponse, status: number): void {
    this.countBad(status);
    if (res.headersSent || res.destroyed) return;
    // An unread or oversize body would be left in the socket: close after this answer.
    if (req && !req.complete) res.shouldKeepAlive = false;
    res.writeHead(status, { 'content-length': 0 });
    res.end();
  }

  describe(ctx: QueryContext) {
    const x = ctx.conn as DohExchange;
    return { client: x.clientIp, clientPort: x.clientPort, server: x.serverIp, serverPort: x.serverPort, family: (x.clientIp.includes(':') ? 6 : 4) as 4 | 6 };
  }

  /** Stops accepting; open sessions get GOAWAY and finish their streams, then close (1 s at most). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const s of this.sessions) s.close();
      setTimeout(() => {
        for (const s of this.sessions) s.destroy();
        for (const s of this.sockets) s.destroy();
      }, 1000).unref();
    });
  }
}

function pathOnly(p: string): string {
  const i = p.indexOf('?');
  return i < 0 ? p : p.slice(0, i);
}

/** The query of a GET request, or the HTTP status to answer with. */
function getQuery(path: string): Buffer | number {
  const i = path.indexOf('?');
  if ((i < 0 ? path : path.slice(0, i)) !== DOH_PATH) return 404;
  if (i < 0) return 400;
  let param: string | null = null;
  for (const kv of path.slice(i + 1).split('&')) {
    if (kv.startsWith('dns=')) { param = kv.slice(4); break; }
  }
  if (param === null || param.length === 0) return 400;
  if (param.length > MAX_GET_PARAM) return 414;
  // Buffer.from(…, 'base64url') skips characters it does not know; a malformed parameter must be an
  // error, not a different query.
  if (!BASE64URL.test(param)) return 400;
  return Buffer.from(param, 'base64url');
}

function isDnsMessage(ct: string | string[] | undefined): boolean {
  if (typeof ct !== 'string') return false;
  const semi = ct.indexOf(';');
  return (semi < 0 ? ct : ct.slice(0, semi)).trim().toLowerCase() === CONTENT_TYPE;
}

/** Reads a body of at most MAX_MESSAGE bytes; null once it grows past that (and the rest is ignored). */
function readBody(src: NodeJS.ReadableStream, done: (body: Buffer | null) => void): void {
  const chunks: Buffer[] = [];
  let total = 0;
  let over = false;
  src.on('data', (c: Buffer) => {
    if (over) return;
    total += c.length;
    if (total > MAX_MESSAGE) { over = true; chunks.length = 0; done(null); return; }
    chunks.push(c);
  });
  src.on('end', () => { if (!over) done(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total)); });
  src.on('error', () => { /* reset by the peer: nothing to answer */ });
}

/**
 * The smallest TTL in the answer and authority sections (RFC 8484 5.1: freshness no longer than it),
 * 0 when the message cannot be walked. Reads record headers only.
 */
export function minTtl(m: Buffer): number {
  if (m.length < 12) return 0;
  const qd = m.readUInt16BE(4), rr = m.readUInt16BE(6) + m.readUInt16BE(8);
  let p = 12;
  const skipName = (): boolean => {
    while (p < m.length) {
      const l = m[p];
      if (l === 0) { p++; return true; }
      if ((l & 0xc0) === 0xc0) { p += 2; return p <= m.length; }
      p += l + 1;
    }
    return false;
  };
  for (let i = 0; i < qd; i++) { if (!skipName()) return 0; p += 4; }
  let min = -1;
  for (let i = 0; i < rr; i++) {
    if (!skipName() || p + 10 > m.length) return 0;
    const type = m.readUInt16BE(p);
    const ttl = m.readUInt32BE(p + 4);
    if (type !== 41 && (min < 0 || ttl < min)) min = ttl;
    p += 10 + m.readUInt16BE(p + 8);
  }
  return min < 0 ? 0 : min;
}

function normaliseIp(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

/** dns_tproxy_doh_* metrics, read from the listeners' plain counters at scrape time. */
export function registerDohMetrics(registry: Registry, listeners: readonly DohListener[]): void {
  const add = (name: string, help: string, type: 'counter' | 'gauge', read: () => Sample[]) =>
    registry.registerMetric(new CollectedMetric(`dns_tproxy_${name}`, help, type, read) as never);
  add('doh_connections_total', 'DoH listener connection events by kind.', 'counter', () => listeners.flatMap((l) => {
    const s = l.stats;
    return Object.entries({ accepted: s.accepted, rejected_total: s.rejectedTotal, rejected_per_client: s.rejectedPerClient,
      rejected_acl: s.rejectedAcl, idle_closed: s.idleClosed, query_limit: s.queryLimitClosed, handshake_failed: s.handshakeFailures })
      .map(([kind, value]) => ({ labels: { listener: l.name, kind }, value }));
  }));
  add('doh_connections_open', 'Open DoH connections.', 'gauge', () => listeners.map((l) => ({ labels: { listener: l.name }, value: l.stats.open })));
  add('doh_requests_total', 'DoH requests by HTTP version.', 'counter', () => listeners.flatMap((l) => [
    { labels: { listener: l.name, http: '1.1' }, value: l.stats.http1 }, { labels: { listener: l.name, http: '2' }, value: l.stats.http2 }]));
  add('doh_bad_requests_total', 'DoH requests answered with an HTTP error, by status.', 'counter', () => listeners.flatMap((l) =>
    [...l.stats.badRequests].map(([status, value]) => ({ labels: { listener: l.name, status }, value }))));
}
