// DNS over HTTPS (RFC 8484): POST application/dns-message, ID 0 on the wire, over our own minimal HTTP/2
// client (h2.ts). It replaced node:http2, which measured ~3× slower per request on this path, and
// node:http2 in turn carried several times undici's HTTP/2 rate (README); undici serves list downloads.
//
// Resilience: a connection that errors, closes or receives GOAWAY is marked dead at once and never
// picked again; the requests it still carried are replayed (up to twice) on a fresh connection if the
// deadline allows, instead of failing, so an upstream restart or a GOAWAY loses no query. Only when a new
// connection cannot be made does the request fail with `connect` (and the forward stage goes to the next
// upstream). Idle connections are PINGed so a dead path is found before a query needs it.
import fs from 'node:fs';
import tls from 'node:tls';
import type { QueryContext } from '../pipeline/context.js';
import { Upstream, UpstreamHandler, UpstreamStats, UpstreamErrorReason, UpstreamCall } from './types.js';
import { BootstrapResolver } from './bootstrap.js';
import { H2Connection, type H2Events, type H2Failure } from './h2.js';
import { DeadlineSweeper, type DeadlineOptions } from './deadlines.js';

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
  /** Fake clock and timers for the request deadlines (tests). */
  deadlines?: DeadlineOptions;
}

const MAX_DNS_MESSAGE = 65535;

/** Silence, with queries outstanding, after which a connection is PINGed (and the PING's own timeout). */
const STALL_MS = 2000;

/** Replays of one request after its connection died under it. */
const MAX_REPLAYS = 2;

/** One in-flight request; it is its own tag on the HTTP/2 connection. */
class DohRequest implements UpstreamCall {
  done = false;
  replays = 0;
  /** Sent on `conn` and not yet answered there. */
  onWire = false;
  readonly due: number;
  constructor(readonly upstream: DohUpstream, public conn: DohConnection, readonly ctx: QueryContext,
    readonly handler: UpstreamHandler, readonly started: number, readonly deadline: number, readonly query: Buffer) { this.due = deadline; }

  cancel(): void { this.upstream.cancel(this); }
}

class DohConnection implements H2Events<DohRequest> {
  h2: H2Connection<DohRequest> | null = null;
  dead = false;
  lastUsed = 0;
  /** The TLS handshake completed (requests lost after this are replayed; before it, `connect`). */
  connected = false;
  connectTimer: NodeJS.Timeout | null = null;
  /** A health PING is outstanding. */
  probing = false;
  constructor(readonly owner: DohUpstream) {}

  get live(): boolean { return !this.dead && this.h2 !== null && !this.h2.draining; }
  get active(): number { return this.h2?.active ?? 0; }

  onConnect(): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connected = true;
    this.owner.connectivity?.(true);
  }

  onResponse(req: DohRequest, status: number, contentType: string, body: Buffer): void {
    req.onWire = false;
    if (req.done || req.conn !== this) return;
    if (status !== 200) { this.owner.finish(req, null, 'http_status'); return; }
    if (!contentType.toLowerCase().startsWith('application/dns-message')) { this.owner.finish(req, null, 'content_type'); return; }
    this.owner.finish(req, body, null);
  }

  onFailure(req: DohRequest, why: H2Failure): void {
    req.onWire = false;
    if (req.done || req.conn !== this) return;
    if (why === 'too_large') { this.owner.finish(req, null, 'too_large'); return; }
    const reason: UpstreamErrorReason = !this.connected ? 'connect'
      : why === 'goaway' ? 'goaway' : why === 'closed' ? 'closed' : 'reset';
    // DNS queries are idempotent: one lost with its connection (GOAWAY, reset, restart) is sent again on
    // a fresh connection rather than failed. A connection that never came up is a `connect` failure.
    if (reason !== 'connect' && this.owner.replay(req)) return;
    this.owner.finish(req, null, reason);
  }

  onClose(error: string | null): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.dead = true;
    this.owner.connectionClosed(this, error);
  }
}

export class DohUpstream implements Upstream {
  readonly name: string;
  readonly stats = new UpstreamStats();
  healthy = true;
  private readonly host: string;
  private readonly port: number;
  private readonly authority: string;
  private readonly path: string;
  private readonly secureContext: tls.SecureContext;
  private readonly servername: string | undefined;
  private readonly conns: DohConnection[] = [];
  /** Requests in flight, by deadline: one timer, armed only while some are. */
  private readonly pending: DeadlineSweeper<DohRequest>;
  private readonly maxStreams: number;
  private readonly maxConns: number;
  private readonly maxAnswer: number;
  private pingTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Stands in for a connection on requests refused before one was picked. */
  private readonly noConnection = new DohConnection(this);
  /** Told when a connection comes up or fails, so health follows the transport even without queries. */
  connectivity: ((ok: boolean) => void) | null = null;
  private readonly healthTimer: NodeJS.Timeout;
  /** Consecutive failures; the pool uses it for passive health. */
  consecutiveFailures = 0;

  private readonly lookup: tls.ConnectionOptions['lookup'];
  private readonly connectTimeoutMs: number;
  private readonly bootstrap: BootstrapResolver | undefined;
  replays = 0;
  /** TLS sessions dialled, for metrics: a steady load should not need new ones. */
  connectionsOpened = 0;

  constructor(opts: DohOptions) {
    const u = new URL(opts.url);
    if (u.protocol !== 'https:') throw new TypeError(`DoH upstream must be https: ${opts.url}`);
    this.name = opts.url;
    this.authority = u.host;
    this.path = u.pathname + u.search;
    this.host = u.hostname.replace(/^\[|\]$/g, '');
    this.port = u.port ? Number(u.port) : 443;
    // One secure context for every connection: building it parses the whole CA bundle, which is too
    // slow to repeat on each reconnect.
    this.secureContext = tls.createSecureContext({ ca: opts.ca ? [...tlsRootCertificates(), fs.readFileSync(opts.ca, 'utf8')] : undefined });
    this.servername = isIp(this.host) ? undefined : this.host;
    // A hostname is never given to the system resolver (it may be us): a fixed IP or the bootstrap
    // servers supply the address; without either, connecting fails with `connect`.
    this.bootstrap = opts.bootstrap;
    this.lookup = isIp(this.host) ? undefined
      : opts.ip ? fixedLookup(opts.ip)
        : (opts.bootstrap ?? new BootstrapResolver([])).lookup();
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
    this.maxStreams = opts.maxStreamsPerConnection ?? 100;
    this.maxConns = opts.maxConnections ?? 4;
    this.maxAnswer = opts.maxAnswerBytes ?? MAX_DNS_MESSAGE;
    // One sweeper for every deadline instead of a timer per query.
    this.pending = new DeadlineSweeper<DohRequest>((req) => this.fail(req, 'timeout'), { resolutionMs: 25, ...opts.deadlines });
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
    const req = new DohRequest(this, this.noConnection, ctx, handler, now, deadline, query);
    this.pending.add(req);
    this.dispatch(req);
    return req;
  }

  /** Puts a request on a live (or new) connection. */
  private dispatch(req: DohRequest): void {
    const conn = this.closed ? null : this.pickConnection();
    if (!conn) { this.fail(req, this.closed ? 'closed' : 'over_capacity'); return; }
    req.conn = conn;
    if (!conn.h2!.request(req.query, req)) {
      conn.dead = true;
      if (this.replay(req)) return;
      this.fail(req, 'closed');
      return;
    }
    req.onWire = true;
    conn.lastUsed = performance.now();
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
    if (req.onWire) { req.onWire = false; old.h2?.cancel(req); }
    req.replays++;
    this.replays++;
    req.conn = this.noConnection;
    this.dispatch(req);
    return true;
  }

  /**
   * The least-loaded live connection under the stream cap; a new one only when all are at the cap, so
   * a steady load rides one TLS session (fewer handshakes, every query of a batch in one TLS write).
   */
  private pickConnection(): DohConnection | null {
    let best: DohConnection | null = null;
    let live = 0;
    for (let i = this.conns.length - 1; i >= 0; i--) {
      const c = this.conns[i];
      if (!c.live) {
        if (c.active === 0) { this.conns.splice(i, 1); c.h2?.destroy(null); }
        continue;
      }
      live++;
      if (!best || c.active < best.active) best = c;
    }
    if (best && best.active < this.maxStreams) return best;
    if (live < this.maxConns) return this.connect();
    // Every connection is at the cap: the connection queues the request until a stream frees up.
    return best;
  }

  private connect(): DohConnection {
    const conn = new DohConnection(this);
    this.connectionsOpened++;
    conn.h2 = new H2Connection<DohRequest>({
      host: this.host, port: this.port, servername: this.servername, secureContext: this.secureContext,
      lookup: this.lookup, authority: this.authority, path: this.path, maxAnswerBytes: this.maxAnswer,
    }, conn);
    conn.connectTimer = setTimeout(() => {
      if (!conn.connected) conn.h2?.destroy('ETIMEDOUT');
    }, this.connectTimeoutMs);
    conn.connectTimer.unref();
    this.conns.push(conn);
    return conn;
  }

  /** A connection ended; forget it, and report the upstream unreachable if nothing else is up. */
  connectionClosed(conn: DohConnection, error: string | null): void {
    if (error && !conn.connected) {
      // The address may be stale: resolve again before the next attempt.
      this.bootstrap?.invalidate(this.host);
      if (!this.hasLiveConnection()) this.connectivity?.(false);
    }
    const i = this.conns.indexOf(conn);
    if (i >= 0) this.conns.splice(i, 1);
  }

  /** Withdrawn by the forward stage (answered elsewhere): the handler is not called. */
  cancel(req: DohRequest): void {
    if (req.done) return;
    req.done = true;
    this.pending.delete(req);
    this.stats.inflight--;
    if (req.onWire) { req.onWire = false; req.conn.h2?.cancel(req); }
  }

  /** Answers or errors exactly once per request. */
  finish(req: DohRequest, body: Buffer | null, error: UpstreamErrorReason | null): void {
    if (req.done) return;
    req.done = true;
    this.pending.delete(req);
    this.stats.inflight--;
    if (req.onWire) { req.onWire = false; req.conn.h2?.cancel(req); }
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
    this.finish(req, null, reason);
  }

  private hasLiveConnection(): boolean {
    return this.conns.some((c) => c.live);
  }

  private checkConnectivity(): void {
    if (this.closed) return;
    this.probeStalled();
    if (this.hasLiveConnection()) return;
    this.pickConnection();
  }

  /**
   * A connection with queries outstanding that has received nothing for a while may belong to a frozen
   * server (its kernel still ACKs): PING it. The re-dial that follows a drop then fails its handshake,
   * which marks the upstream down even when hedging keeps queries away from it.
   */
  private probeStalled(): void {
    const now = performance.now();
    for (const c of this.conns) {
      if (c.h2 && c.h2.active > 0 && now - c.h2.lastReceived >= STALL_MS) this.probe(c, STALL_MS);
    }
  }

  /** PINGs a live connection and drops it if the answer does not come within `timeoutMs`. */
  private probe(c: DohConnection, timeoutMs: number): void {
    const h2 = c.h2;
    if (!h2 || !c.live || !c.connected || c.probing) return;
    c.probing = true;
    const timer = setTimeout(() => { c.dead = true; h2.destroy('ETIMEDOUT'); }, timeoutMs);
    timer.unref();
    h2.ping(() => { clearTimeout(timer); c.probing = false; });
  }

  /** Runs the deadline check now (fake-clock tests). */
  sweep(): void { this.pending.run(); }

  /** Whether a deadline timer is armed (tests: none while nothing is in flight). */
  get timerArmed(): boolean { return this.pending.armed; }

  private pingIdle(interval: number): void {
    const now = performance.now();
    // An idle PING not answered within the interval (5 s at most) means the path is dead: drop the
    // connection now rather than when the next query times out on it.
    for (const c of this.conns) if (now - c.lastUsed >= interval) this.probe(c, Math.min(interval, 5000));
  }

  /** Connections currently open (for tests and stats). */
  get connections(): number { return this.conns.filter((c) => c.live).length; }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.healthTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    for (const req of this.pending.values()) this.fail(req, 'closed');
    this.pending.clear();
    // A copy: a connection with nothing in flight closes at once and leaves `conns`.
    for (const c of [...this.conns]) c.h2?.close();
  }
}

function isIp(host: string): boolean { return /^[\d.]+$/.test(host) || host.includes(':'); }

function fixedLookup(ip: string): tls.ConnectionOptions['lookup'] {
  return new BootstrapResolver([]).lookup(ip);
}

/** An extra CA adds to the system roots rather than replacing them. */
function tlsRootCertificates(): readonly string[] { return tls.rootCertificates; }
