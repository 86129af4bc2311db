// The console's HTTP server: the JSON API under /api/v1/ (issue 17) and, for everything else, the web
// console's static handler (src/console/static.ts). One listener, `console.listen`, optionally HTTPS.
//
// Every request: security headers; Host must be the listen address, a configured name, or the address
// the client connected to (DNS rebinding: 421). API requests: a session cookie (401 without), and for
// state-changing methods an Origin equal to our own (403). Bodies are JSON, capped at 64 KiB.
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import net from 'node:net';
import type { Registry } from 'prom-client';
import { parseHostPort } from '../config/address.js';
import { parseDuration, type FilterConfig, type ListConfig } from '../filter/config.js';
import type { FilterManager } from '../filter/manager.js';
import { RuntimeOverrides, invalidRuleName, normalizeRuleName, type Clock, type OverrideRule, type PauseEntry } from '../filter/overrides.js';
import type { QueryRecord, QueryStore, SearchQuery, StatsQuery } from '../store/types.js';
import type { DeviceResolver } from '../devices/types.js';
import type { Upstream } from '../upstream/types.js';
import { CollectedMetric, type Sample } from '../metrics/collected.js';
import { LoginLimiter, Sessions, Users, parseHash, type Session } from './auth.js';
import { AuditLog } from './audit.js';
import { LIST_NAME_RE, RuntimeLists, type RuntimeListsState } from './lists.js';
import { serveStream, StreamStats } from './stream.js';
import { openApiDocument } from './openapi.js';
import type { ConsoleConfig } from './config.js';

export { consoleConfigOf, type ConsoleConfig } from './config.js';

/** What the API needs from the running DNS server (DnsServer provides it; tests may too). */
export interface ApiHost {
  readonly config: { stateDir: string; baseDir: string; [k: string]: unknown };
  readonly filter: FilterManager | null;
  readonly upstreams: { readonly upstreams: readonly Upstream[]; readonly strategy: string };
  readonly registry: Registry;
  readiness(): { ready: boolean; reasons: string[] };
  log(level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void;
  /** The query store and device names (issue 17, src/store/ and src/devices/), when configured. */
  readonly store?: QueryStore | null;
  readonly devices?: DeviceResolver | null;
  readonly cache?: { flush(name?: string): number } | null;
}

export interface ConsoleApiOptions {
  /** Wall clock for sessions and rate limits (tests pass a fake one). */
  now?: () => number;
  /** Clock for pause expiry. */
  clock?: Clock;
  streamHeartbeatMs?: number;
  streamQueue?: number;
}

const BODY_MAX = 64 * 1024;
const COOKIE = 'dns_tproxy_session';
const MAX_STREAMS = 32;

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly headers: Record<string, string> = {}) { super(message); }
}

type Handler = (c: RequestContext) => Promise<unknown> | unknown;
interface Route { method: string; pattern: RegExp; handler: Handler; auth: boolean }

interface RequestContext {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  url: URL;
  params: string[];
  session: Session | null;
  client: string;
  body(): Promise<Record<string, unknown>>;
}

/** JSON result with a status other than 200. */
class Reply { constructor(readonly status: number, readonly body: unknown, readonly headers: Record<string, string> = {}) {} }

export class ConsoleApi {
  readonly overrides: RuntimeOverrides;
  readonly lists: RuntimeLists;
  readonly audit: AuditLog;
  readonly sessions: Sessions;
  readonly limiter: LoginLimiter;
  readonly streams = new StreamStats();
  /** Counters for metrics. */
  loginsOk = 0;
  loginsFailed = 0;
  loginsLimited = 0;
  readonly requestsByStatus = new Map<number, number>();
  private readonly users: Users;
  private readonly now: () => number;
  private server: http.Server | https.Server | null = null;
  private port = 0;
  private consoleHandler: ((req: http.IncomingMessage, res: http.ServerResponse) => boolean) | null = null;
  private readonly routes: Route[] = [];
  /** Filter build errors of list changes this API refused (health does not report them as problems). */
  private readonly refusedByApi = new Set<string>();
  private readonly https: boolean;
  private readonly sweepTimer: NodeJS.Timeout;

  constructor(private readonly host: ApiHost, readonly cfg: ConsoleConfig, private readonly opts: ConsoleApiOptions = {}) {
    this.now = opts.now ?? Date.now;
    const stateDir = host.config.stateDir;
    for (const u of cfg.users) {
      const bad = parseHash(u.password);
      if (typeof bad === 'string') throw new Error(`console.users: user "${u.name}": password ${bad}`);
    }
    this.users = new Users(cfg.users);
    this.sessions = new Sessions(cfg.sessionTtlSeconds * 1000, cfg.sessionMaxSeconds * 1000, this.now);
    this.limiter = new LoginLimiter(this.now);
    this.audit = new AuditLog(stateDir, this.now);
    this.lists = new RuntimeLists(stateDir);
    this.lists.load();
    this.overrides = new RuntimeOverrides({
      stateDir,
      clock: opts.clock,
      addressesOf: (id) => this.host.devices?.list().find((d) => d.id === id)?.addresses ?? [],
      // A cached answer for the name (a CNAME-blocked one, say) must not outlive the rule change.
      onRuleChange: (name) => { this.host.cache?.flush(name); },
    });
    this.overrides.load();
    this.https = Boolean(cfg.tlsCert && cfg.tlsKey);
    if (cfg.users.length === 0) host.log('warn', 'console.users is empty: nobody can log in to the console');
    this.sweepTimer = setInterval(() => this.sessions.sweep(), 60_000);
    this.sweepTimer.unref();
    this.defineRoutes();
  }

  /** The config's filter keys with the API's lists laid over them (start, SIGHUP and list changes use it). */
  filterConfig(base: FilterConfig | null, state?: RuntimeListsState): FilterConfig {
    return this.lists.merge(base, state);
  }

  private baseFilterConfig(): FilterConfig {
    const c = this.host.config as Record<string, unknown>;
    return { filter: c.filter, groups: c.groups, local: c.local, forward: c.forward } as FilterConfig;
  }

  get address(): { host: string; port: number } { return { host: parseHostPort(this.cfg.listen).host, port: this.port }; }
  get origin(): string { const { host, port } = this.address; return `${this.https ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`; }

  async listen(): Promise<void> {
    try {
      const mod = (await import(new URL('../console/static.js', import.meta.url).href)) as { createConsoleHandler?: (o?: object) => (req: http.IncomingMessage, res: http.ServerResponse) => boolean };
      if (mod.createConsoleHandler) this.consoleHandler = mod.createConsoleHandler();
    } catch (e) {
      this.host.log('warn', 'web console assets unavailable; serving the API only', { error: (e as Error).message });
    }
    const { host, port } = parseHostPort(this.cfg.listen);
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => { void this.handle(req, res); };
    const server = this.https
      ? https.createServer({ cert: fs.readFileSync(this.cfg.tlsCert!), key: fs.readFileSync(this.cfg.tlsKey!) }, handler)
      : http.createServer(handler);
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    server.maxHeadersCount = 100;
    server.on('clientError', (_e, socket) => { if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n'); else socket.destroy(); });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => { server.off('error', reject); resolve(); });
    });
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
    this.host.log('info', 'console listening', { url: this.origin });
  }

  async close(): Promise<void> {
    clearInterval(this.sweepTimer);
    this.overrides.close();
    const s = this.server;
    this.server = null;
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }

  registerMetrics(registry: Registry): void {
    const add = (name: string, help: string, type: 'counter' | 'gauge', read: () => Sample[]) =>
      registry.registerMetric(new CollectedMetric(`dns_tproxy_${name}`, help, type, read) as never);
    add('console_logins_total', 'Console login attempts, by result.', 'counter', () => [
      { labels: { result: 'ok' }, value: this.loginsOk },
      { labels: { result: 'failed' }, value: this.loginsFailed },
      { labels: { result: 'rate_limited' }, value: this.loginsLimited },
    ]);
    add('api_requests_total', 'Console HTTP API requests, by status code.', 'counter', () =>
      [...this.requestsByStatus].map(([code, v]) => ({ labels: { code: String(code) }, value: v })));
    add('api_sessions', 'Console sessions held.', 'gauge', () => [{ value: this.sessions.size }]);
    add('api_stream_clients', 'Clients connected to the live query stream.', 'gauge', () => [{ value: this.streams.clients }]);
    add('api_stream_dropped_total', 'Live records dropped because a stream client could not keep up.', 'counter', () => [{ value: this.streams.dropped }]);
    add('runtime_rules', 'Block/allow rules set through the API, by action.', 'gauge', () => {
      const l = this.overrides.list();
      return [{ labels: { action: 'block' }, value: l.filter((r) => r.action === 'block').length }, { labels: { action: 'allow' }, value: l.filter((r) => r.action === 'allow').length }];
    });
    add('runtime_rule_decisions_total', 'Queries decided by an API rule (block) or let through against the lists (allow).', 'counter', () => [
      { labels: { action: 'block' }, value: this.overrides.blockedByRule },
      { labels: { action: 'allow' }, value: this.overrides.allowedByRule },
    ]);
    add('blocking_paused', 'Pauses of blocking in force (everyone or one group).', 'gauge', () => [{ value: this.overrides.pauses().length }]);
  }

  // ------------------------------------------------------------------ request handling

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    let status = 500;
    try {
      const url = new URL(req.url ?? '/', 'http://x');
      if (!this.hostAllowed(req)) throw new ApiError(421, 'bad_host', 'the Host header names neither this console\'s address nor a configured console.names entry');
      if (url.pathname !== '/api' && !url.pathname.startsWith('/api/')) {
        if (this.consoleHandler?.(req, res)) { status = res.statusCode; return; }
        throw new ApiError(404, 'not_found', 'not found');
      }
      res.setHeader('cache-control', 'no-store');
      const result = await this.route(req, res, url);
      if (result === STREAMING) { status = 200; return; }
      const r = result instanceof Reply ? result : new Reply(200, result);
      status = r.status;
      this.sendJson(res, r.status, r.body, r.headers);
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(500, 'internal', 'internal error');
      if (!(e instanceof ApiError)) this.host.log('error', 'console API request failed', { url: req.url, error: (e as Error).stack ?? String(e) });
      status = err.status;
      if (!res.headersSent) this.sendJson(res, err.status, { error: err.message, code: err.code }, err.headers);
      else res.destroy();
    } finally {
      this.requestsByStatus.set(status, (this.requestsByStatus.get(status) ?? 0) + 1);
    }
  }

  private sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (status === 204) { res.writeHead(204, headers).end(); return; }
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  /** DNS rebinding: a page on evil.example that resolves to us must not be served. */
  private hostAllowed(req: http.IncomingMessage): boolean {
    const h = req.headers.host;
    if (!h || h.length > 300) return false;
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(h);
    if (!m) return false;
    const hostname = m[1]!.replace(/^\[|\]$/g, '').toLowerCase().replace(/\.$/, '');
    const port = m[2] === undefined ? (this.https ? 443 : 80) : Number(m[2]);
    if (port !== this.port) return false;
    const listenHost = parseHostPort(this.cfg.listen).host.toLowerCase();
    if (hostname === listenHost && !isWildcard(listenHost)) return true;
    if (this.cfg.names.includes(hostname)) return true;
    // An IP literal naming the address the client reached us on cannot be a rebinding attack.
    const local = (req.socket.localAddress ?? '').replace(/^::ffff:/, '').toLowerCase();
    if (net.isIP(hostname) && hostname === local) return true;
    if (hostname === 'localhost' && isLoopbackHost(listenHost)) return true;
    return false;
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<unknown> {
    const path = url.pathname;
    const method = req.method ?? 'GET';
    let pathMatched = false;
    for (const r of this.routes) {
      const m = r.pattern.exec(path);
      if (!m) continue;
      pathMatched = true;
      if (r.method !== method && !(r.method === 'GET' && method === 'HEAD')) continue;
      if (method !== 'GET' && method !== 'HEAD') this.checkOrigin(req);
      const session = this.sessions.get(cookieOf(req));
      if (r.auth && !session) throw new ApiError(401, 'unauthenticated', 'log in first (POST /api/v1/login)');
      let bodyPromise: Promise<Record<string, unknown>> | null = null;
      const params = m.slice(1).map((p) => { try { return decodeURIComponent(p); } catch { throw new ApiError(400, 'bad_path', 'malformed percent-encoding in the path'); } });
      const ctx: RequestContext = {
        req, res, url, params, session, client: (req.socket.remoteAddress ?? '').replace(/^::ffff:/, ''),
        body: () => (bodyPromise ??= readJsonBody(req)),
      };
      return r.handler(ctx);
    }
    if (pathMatched) throw new ApiError(405, 'method_not_allowed', `${method} is not allowed on ${path}`);
    throw new ApiError(404, 'not_found', `no API endpoint ${path}`);
  }

  /** Cross-site request forgery: a state change must come from a page of this very console. */
  private checkOrigin(req: http.IncomingMessage): void {
    const origin = req.headers.origin;
    const own = `${this.https ? 'https' : 'http'}://${req.headers.host ?? ''}`.toLowerCase();
    if (!origin) throw new ApiError(403, 'origin_required', 'state-changing requests must carry an Origin header');
    if (origin.toLowerCase() !== own) throw new ApiError(403, 'bad_origin', `Origin ${origin} is not this console (${own})`);
  }

  private add(method: string, path: string, handler: Handler, auth = true): void {
    // "{id}" segments become capture groups.
    const pattern = new RegExp(`^/api/v1${path.replace(/\{[a-z]+\}/g, '([^/]+)')}$`);
    this.routes.push({ method, pattern, handler, auth });
  }

  private defineRoutes(): void {
    this.add('GET', '/openapi.json', () => openApiDocument(), false);
    this.add('POST', '/login', (c) => this.login(c), false);
    this.add('POST', '/logout', (c) => {
      this.sessions.delete(cookieOf(c.req));
      return new Reply(200, { ok: true }, { 'set-cookie': this.cookie('', 0) });
    }, false);
    this.add('GET', '/session', (c) => ({ user: c.session!.user, expiresAt: this.sessions.expiresAt(c.session!) }));
    this.add('GET', '/queries', (c) => this.queries(c));
    this.add('GET', '/stats', (c) => this.stats(c));
    this.add('GET', '/clients', () => this.clients());
    this.add('PUT', '/clients/{id}', (c) => this.assignClient(c));
    this.add('GET', '/rules', () => ({ rules: this.overrides.list() }));
    this.add('POST', '/rules', (c) => this.addRule(c));
    this.add('DELETE', '/rules/{id}', (c) => this.deleteRule(c));
    this.add('GET', '/audit', (c) => {
      const limit = intParam(c.url, 'limit', 1, 1000) ?? 100;
      const before = timeParam(c.url, 'before');
      return { entries: this.audit.read(limit, before) };
    });
    this.add('GET', '/pause', () => this.pauseState());
    this.add('POST', '/pause', (c) => this.pause(c));
    this.add('DELETE', '/pause', (c) => this.resume(c));
    this.add('GET', '/stream', (c) => this.stream(c));
    this.add('GET', '/health', () => this.health());
    this.add('GET', '/lists', () => ({ lists: this.listInfo() }));
    this.add('POST', '/lists', (c) => this.addList(c));
    this.add('PATCH', '/lists/{name}', (c) => this.patchList(c));
    this.add('DELETE', '/lists/{name}', (c) => this.deleteList(c));
    this.add('POST', '/lists/{name}/refresh', (c) => this.refreshList(c));
  }

  private cookie(value: string, maxAgeSeconds: number): string {
    return `${COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${this.https ? '; Secure' : ''}`;
  }

  // ------------------------------------------------------------------ endpoints

  private async login(c: RequestContext): Promise<Reply> {
    const wait = this.limiter.take(c.client);
    if (wait > 0) {
      this.loginsLimited++;
      throw new ApiError(429, 'rate_limited', `too many login attempts; retry in ${wait} s`, { 'retry-after': String(wait) });
    }
    const b = await c.body();
    const user = b.user;
    const password = b.password;
    if (typeof user !== 'string' || typeof password !== 'string' || user.length === 0 || user.length > 128 || password.length > 1024) {
      throw new ApiError(400, 'bad_request', 'body must be {"user": string, "password": string}');
    }
    if (!(await this.users.check(user, password))) {
      this.loginsFailed++;
      this.host.log('warn', 'console login failed', { user, from: c.client });
      throw new ApiError(401, 'bad_credentials', 'wrong user or password');
    }
    this.loginsOk++;
    const { token, session } = this.sessions.create(user);
    return new Reply(200, { user, expiresAt: this.sessions.expiresAt(session) }, { 'set-cookie': this.cookie(token, this.cfg.sessionMaxSeconds) });
  }

  private store(): QueryStore {
    const s = this.host.store;
    if (!s) throw new ApiError(503, 'no_store', 'the query store is off (store: false)');
    return s;
  }

  private async queries(c: RequestContext): Promise<unknown> {
    const u = c.url;
    const q: SearchQuery = {};
    const client = strParam(u, 'client', 256);
    if (client !== undefined) q.client = client;
    const name = strParam(u, 'name', 255);
    if (name !== undefined) q.name = name;
    const type = strParam(u, 'type', 16);
    if (type !== undefined) {
      if (!/^([A-Za-z0-9]+)$/.test(type)) throw new ApiError(400, 'bad_parameter', 'type must be a query type such as A, AAAA or TYPE65');
      q.type = type.toUpperCase();
    }
    const result = strParam(u, 'result', 32);
    if (result !== undefined) {
      if (!/^[A-Za-z0-9_-]+$/.test(result)) throw new ApiError(400, 'bad_parameter', 'result must be blocked, cache, stale, upstream, local, forward, dropped or an RCODE name');
      q.result = result;
    }
    const from = timeParam(u, 'from');
    const to = timeParam(u, 'to');
    if (from !== undefined) q.from = from;
    if (to !== undefined) q.to = to;
    if (from !== undefined && to !== undefined && from > to) throw new ApiError(400, 'bad_parameter', 'from is after to');
    const limit = intParam(u, 'limit', 1, 1000);
    if (limit !== undefined) q.limit = limit;
    const cursor = strParam(u, 'cursor', 200);
    if (cursor !== undefined) q.cursor = cursor;
    try {
      return await this.store().search(q);
    } catch (e) {
      if (e instanceof ApiError) throw e;
      // The store rejects what it cannot read (a forged cursor) with a RangeError.
      if (e instanceof RangeError) throw new ApiError(400, 'bad_parameter', e.message);
      throw e;
    }
  }

  private async stats(c: RequestContext): Promise<unknown> {
    const u = c.url;
    const q: StatsQuery = {};
    const from = timeParam(u, 'from');
    const to = timeParam(u, 'to');
    if (from !== undefined) q.from = from;
    if (to !== undefined) q.to = to;
    if (from !== undefined && to !== undefined && from >= to) throw new ApiError(400, 'bad_parameter', 'from must be before to');
    const step = u.searchParams.get('step');
    if (step !== null) {
      let ms: number;
      try { ms = /^\d+$/.test(step) ? Number(step) : parseDuration(step, 0); } catch { throw new ApiError(400, 'bad_parameter', 'step must be milliseconds or a duration such as 5m or 1h'); }
      if (!(ms >= 1000)) throw new ApiError(400, 'bad_parameter', 'step must be at least 1000 ms');
      const span = (q.to ?? this.now()) - (q.from ?? (q.to ?? this.now()) - 86_400_000);
      if (span / ms > 10_000) throw new ApiError(400, 'bad_parameter', 'step gives more than 10000 points for this range');
      q.step = ms;
    }
    const top = intParam(u, 'top', 1, 100);
    if (top !== undefined) q.top = top;
    try {
      return await this.store().stats(q);
    } catch (e) {
      if (e instanceof RangeError) throw new ApiError(400, 'bad_parameter', e.message);
      throw e;
    }
  }

  private async clients(): Promise<unknown> {
    const s = this.host.store;
    const assigned = this.overrides.assignmentsList();
    let entries: Array<{ id: string; group?: string; addresses: string[] }>;
    if (s) entries = await s.clients();
    else entries = (this.host.devices?.list() ?? []).map((d) => ({ ...d, lastSeen: 0, queries24h: 0 }));
    return { clients: entries.map((e) => (assigned[e.id] !== undefined ? { ...e, group: assigned[e.id] } : e)) };
  }

  private groupNames(): string[] {
    return this.host.filter?.engine.groups.map((g) => g.name) ?? ['default'];
  }

  private checkGroup(group: unknown): string | undefined {
    if (group === undefined || group === null) return undefined;
    if (typeof group !== 'string') throw new ApiError(400, 'bad_request', 'group must be a string');
    if (!this.groupNames().includes(group)) throw new ApiError(400, 'unknown_group', `no group "${group}" (configured: ${this.groupNames().join(', ')})`);
    return group;
  }

  private async assignClient(c: RequestContext): Promise<unknown> {
    const id = c.params[0]!;
    if (id.length > 200 || !/^(mac|name|ip):.+$/.test(id)) throw new ApiError(400, 'bad_parameter', 'client id must be mac:<MAC>, name:<name> or ip:<address>');
    if (id.startsWith('ip:') && net.isIP(id.slice(3)) === 0) throw new ApiError(400, 'bad_parameter', `${id.slice(3)} is not an IP address`);
    const b = await c.body();
    if (!('group' in b)) throw new ApiError(400, 'bad_request', 'body must be {"group": name} or {"group": null}');
    const group = this.checkGroup(b.group) ?? null;
    const before = this.overrides.assignmentOf(id) ?? null;
    this.overrides.assign(id, group);
    this.record(c, 'client.group', id, { group, before });
    return { id, group };
  }

  private async addRule(c: RequestContext): Promise<Reply> {
    const b = await c.body();
    if (b.action !== 'block' && b.action !== 'allow') throw new ApiError(400, 'bad_request', 'action must be "block" or "allow"');
    if (typeof b.name !== 'string') throw new ApiError(400, 'bad_request', 'name must be a domain name (it covers its subdomains)');
    const name = normalizeRuleName(b.name);
    const why = invalidRuleName(name);
    if (why) throw new ApiError(400, 'bad_name', why);
    const group = this.checkGroup(b.group);
    const { rule, created } = this.overrides.add(b.action, name, group, c.session!.user);
    if (created) this.record(c, 'rule.add', `${rule.action} ${rule.name}`, { id: rule.id, group: rule.group });
    return new Reply(created ? 201 : 200, { rule, created });
  }

  private deleteRule(c: RequestContext): unknown {
    const rule = this.overrides.remove(c.params[0]!);
    if (!rule) throw new ApiError(404, 'not_found', `no rule ${c.params[0]}`);
    this.record(c, 'rule.delete', `${rule.action} ${rule.name}`, { id: rule.id, group: rule.group });
    return { rule };
  }

  private pauseState(): unknown {
    const entries = this.overrides.pauses().map((e) => pauseView(e, this.now()));
    const global = entries.find((e) => e.group === null) ?? null;
    return { paused: global !== null, until: global?.until ?? null, remainingSeconds: global?.remainingSeconds ?? null, entries };
  }

  private async pause(c: RequestContext): Promise<unknown> {
    const b = await c.body();
    let seconds: number | null = null;
    if (b.seconds !== undefined && b.seconds !== null) {
      if (typeof b.seconds !== 'number' || !Number.isInteger(b.seconds) || b.seconds < 1 || b.seconds > 30 * 86400) {
        throw new ApiError(400, 'bad_request', 'seconds must be an integer from 1 to 2592000 (omit it to pause until resumed)');
      }
      seconds = b.seconds;
    }
    const group = this.checkGroup(b.group) ?? null;
    this.overrides.pause(group, seconds);
    this.record(c, 'pause', group ?? 'everyone', { seconds });
    return this.pauseState();
  }

  private resume(c: RequestContext): unknown {
    const g = c.url.searchParams.get('group');
    const group = g === null ? null : this.checkGroup(g)!;
    // Without ?group= every pause ends: "resume blocking" means everywhere.
    const had = this.overrides.resume(group, group === null);
    if (had) this.record(c, 'resume', group ?? 'everyone', {});
    return this.pauseState();
  }

  private stream(c: RequestContext): typeof STREAMING {
    const store = this.store();
    if (this.streams.clients >= MAX_STREAMS) throw new ApiError(503, 'too_many_streams', `at most ${MAX_STREAMS} live streams at once`);
    const client = strParam(c.url, 'client', 256)?.toLowerCase();
    const name = strParam(c.url, 'name', 255)?.toLowerCase();
    const filter = client === undefined && name === undefined ? undefined : (r: QueryRecord) =>
      (client === undefined || r.client === client || r.device?.name?.toLowerCase() === client) && (name === undefined || r.qname.includes(name));
    serveStream(c.req, c.res, store, this.streams, { filter, heartbeatMs: this.opts.streamHeartbeatMs, maxQueue: this.opts.streamQueue });
    return STREAMING;
  }

  private health(): unknown {
    const problems: string[] = [];
    const ready = this.host.readiness();
    problems.push(...ready.reasons);
    const upstreams = this.host.upstreams.upstreams.map((u) => {
      const s = u.stats;
      if (!u.healthy) problems.push(`upstream ${u.name} is down`);
      return {
        name: u.name, healthy: u.healthy, requests: s.requests, answers: s.answers,
        errors: Object.fromEntries(s.errors), avgLatencyMs: s.latencyCount ? (s.latencySum / s.latencyCount) * 1000 : null,
      };
    });
    const lists = this.listInfo();
    for (const l of lists) if (l.enabled && l.lastError) problems.push(`list ${l.name}: ${l.lastError}`);
    const fs = this.host.filter?.stats;
    // A list this API refused was answered with a 400 and changed nothing: not a problem of the gateway.
    if (fs?.lastReloadError && !this.refusedByApi.has(fs.lastReloadError)) problems.push(`last filter rebuild failed: ${fs.lastReloadError}`);
    const store = this.host.store;
    if (store && store.droppedUnwritten > 0) problems.push(`query store dropped ${store.droppedUnwritten} record(s) it could not write in time`);
    return {
      status: problems.length === 0 ? 'ok' : 'degraded',
      problems,
      upstreams,
      lists,
      pause: this.pauseState(),
      store: store ? { backend: store.backend, written: store.written, droppedUnwritten: store.droppedUnwritten, queueDepth: store.queueDepth } : null,
      rules: this.overrides.list().length,
    };
  }

  private listInfo(): Array<Record<string, unknown> & { name: string; enabled: boolean; lastError: string | null }> {
    const stats = this.host.filter?.stats.lists ?? [];
    return this.lists.all(this.baseFilterConfig()).map((l) => {
      const s = stats.find((x) => x.name === l.name);
      return {
        name: l.name, type: l.url ? 'url' : 'path', source: (l.url ?? l.path)!, enabled: l.enabled !== false, origin: l.origin,
        rules: s?.rules ?? 0, badLines: s?.badLines ?? 0, unsupported: s?.unsupported ?? 0,
        lastRefresh: s?.lastRefresh ?? null, lastSuccess: s?.lastSuccess ?? null, lastError: s?.lastError ?? null,
        failures: s?.failures ?? 0, fromCache: s?.fromCache ?? false,
      };
    });
  }

  private manager(): FilterManager {
    const m = this.host.filter;
    if (!m) throw new ApiError(503, 'no_filter', 'filtering is not running');
    return m;
  }

  /** Rebuild the filter with a candidate list state; commit it only if the build succeeds. */
  private async applyLists(state: RuntimeListsState): Promise<void> {
    const r = await this.manager().reload(this.filterConfig(this.baseFilterConfig(), state));
    if (!r.ok) {
      if (r.error) { this.refusedByApi.add(r.error.message); if (this.refusedByApi.size > 100) this.refusedByApi.delete(this.refusedByApi.values().next().value!); }
      throw new ApiError(400, 'list_rejected', r.error?.message ?? 'the filter rejected the list');
    }
    this.lists.commit(state);
  }

  private findList(name: string): ListConfig & { origin: 'config' | 'api' } {
    const l = this.lists.all(this.baseFilterConfig()).find((x) => x.name === name);
    if (!l) throw new ApiError(404, 'not_found', `no list "${name}"`);
    return l;
  }

  private async addList(c: RequestContext): Promise<Reply> {
    const b = await c.body();
    const url = b.url;
    const path = b.path;
    if ((url === undefined) === (path === undefined)) throw new ApiError(400, 'bad_request', 'give exactly one of url or path');
    const l: ListConfig = { name: '' };
    if (url !== undefined) {
      if (typeof url !== 'string' || url.length > 2048 || !/^https?:\/\//.test(url)) throw new ApiError(400, 'bad_request', 'url must be an http(s) URL');
      try { new URL(url); } catch { throw new ApiError(400, 'bad_request', 'url is not a valid URL'); }
      l.url = url;
    } else {
      if (typeof path !== 'string' || path.length === 0 || path.length > 4096 || path.includes('\0')) throw new ApiError(400, 'bad_request', 'path must be a file path');
      l.path = path;
    }
    const name = b.name ?? deriveListName(String(url ?? path));
    if (typeof name !== 'string' || !LIST_NAME_RE.test(name)) throw new ApiError(400, 'bad_request', 'name may hold letters, digits and _ . : - (at most 64)');
    if (this.lists.all(this.baseFilterConfig()).some((x) => x.name === name)) throw new ApiError(409, 'exists', `a list named "${name}" exists`);
    l.name = name;
    if (b.refresh !== undefined) {
      if (typeof b.refresh !== 'string' && typeof b.refresh !== 'number') throw new ApiError(400, 'bad_request', 'refresh must be a duration such as 24h');
      try { parseDuration(b.refresh, 0); } catch (e) { throw new ApiError(400, 'bad_request', (e as Error).message); }
      l.refresh = b.refresh;
    }
    if (b.enabled !== undefined) {
      if (typeof b.enabled !== 'boolean') throw new ApiError(400, 'bad_request', 'enabled must be true or false');
      l.enabled = b.enabled;
    }
    await this.applyLists(this.lists.withAdded(l));
    this.record(c, 'list.add', name, { url: l.url, path: l.path });
    return new Reply(201, { list: this.listInfo().find((x) => x.name === name) });
  }

  private async patchList(c: RequestContext): Promise<unknown> {
    const l = this.findList(c.params[0]!);
    const b = await c.body();
    if (typeof b.enabled !== 'boolean') throw new ApiError(400, 'bad_request', 'body must be {"enabled": true|false}');
    await this.applyLists(this.lists.withEnabled(l.name, b.enabled));
    this.record(c, b.enabled ? 'list.enable' : 'list.disable', l.name, {});
    return { list: this.listInfo().find((x) => x.name === l.name) };
  }

  private async deleteList(c: RequestContext): Promise<unknown> {
    const l = this.findList(c.params[0]!);
    if (l.origin !== 'api') throw new ApiError(409, 'config_list', `list "${l.name}" comes from the config file; disable it instead (PATCH {"enabled": false})`);
    await this.applyLists(this.lists.withRemoved(l.name));
    this.record(c, 'list.delete', l.name, {});
    return { deleted: l.name };
  }

  private async refreshList(c: RequestContext): Promise<unknown> {
    const l = this.findList(c.params[0]!);
    if (l.enabled === false) throw new ApiError(409, 'disabled', `list "${l.name}" is disabled`);
    const m = this.manager();
    if (l.url) await m.refreshNow(l.name);
    else {
      const r = await m.reload(this.filterConfig(this.baseFilterConfig()));
      if (!r.ok) throw new ApiError(400, 'list_rejected', r.error?.message ?? 'reload failed');
    }
    this.record(c, 'list.refresh', l.name, {});
    return { list: this.listInfo().find((x) => x.name === l.name) };
  }

  private record(c: RequestContext, action: string, target: string, detail: Record<string, unknown>): void {
    try {
      this.audit.record({ user: c.session?.user ?? '-', action, target, detail, from: c.client });
    } catch (e) {
      this.host.log('error', 'cannot write the audit log', { error: (e as Error).message, action, target });
      throw new ApiError(500, 'audit_failed', `the change was made but could not be recorded in the audit log: ${(e as Error).message}`);
    }
  }
}

const STREAMING = Symbol('streaming');

function pauseView(e: PauseEntry, now: number): { group: string | null; until: number | null; remainingSeconds: number | null } {
  return { group: e.group, until: e.until, remainingSeconds: e.until === null ? null : Math.max(0, Math.ceil((e.until - now) / 1000)) };
}

function cookieOf(req: http.IncomingMessage): string | undefined {
  const h = req.headers.cookie;
  if (!h) return undefined;
  for (const part of h.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === COOKIE) return part.slice(i + 1).trim();
  }
  return undefined;
}

async function readJsonBody(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  const declared = Number(req.headers['content-length'] ?? 'NaN');
  if (declared > BODY_MAX) { req.resume(); throw new ApiError(413, 'body_too_large', `request bodies are limited to ${BODY_MAX} bytes`); }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > BODY_MAX) { req.resume(); throw new ApiError(413, 'body_too_large', `request bodies are limited to ${BODY_MAX} bytes`); }
    chunks.push(chunk);
  }
  if (size === 0) return {};
  if (type !== 'application/json') throw new ApiError(415, 'unsupported_media_type', 'send the body as application/json');
  let v: unknown;
  try { v = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch (e) { throw new ApiError(400, 'bad_json', `body is not valid JSON: ${(e as Error).message}`); }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ApiError(400, 'bad_json', 'body must be a JSON object');
  return v as Record<string, unknown>;
}

function strParam(u: URL, key: string, max: number): string | undefined {
  const v = u.searchParams.get(key);
  if (v === null || v === '') return undefined;
  if (v.length > max) throw new ApiError(400, 'bad_parameter', `${key} is longer than ${max} characters`);
  return v;
}

function intParam(u: URL, key: string, min: number, max: number): number | undefined {
  const v = u.searchParams.get(key);
  if (v === null || v === '') return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new ApiError(400, 'bad_parameter', `${key} must be an integer from ${min} to ${max}`);
  return Number(v);
}

/** Milliseconds since the epoch, or an ISO 8601 date. */
function timeParam(u: URL, key: string): number | undefined {
  const v = u.searchParams.get(key);
  if (v === null || v === '') return undefined;
  const t = /^\d+$/.test(v) ? Number(v) : /^\d{4}-\d\d-\d\d/.test(v) ? Date.parse(v) : NaN;
  if (!Number.isFinite(t) || t > 8.64e15) throw new ApiError(400, 'bad_parameter', `${key} must be milliseconds since 1970 or an ISO 8601 date`);
  return t;
}

function deriveListName(source: string): string {
  let base: string;
  try {
    const u = new URL(source);
    base = `${u.hostname}-${u.pathname.split('/').filter(Boolean).pop() ?? 'list'}`;
  } catch {
    base = source.split('/').filter(Boolean).pop() ?? 'list';
  }
  return base.replace(/[^A-Za-z0-9_.:-]+/g, '-').slice(0, 64) || 'list';
}

function isWildcard(h: string): boolean { return h === '0.0.0.0' || h === '::'; }
function isLoopbackHost(h: string): boolean { return h === '::1' || h.startsWith('127.'); }

export type { OverrideRule };
