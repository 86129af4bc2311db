// Builds a running server from a config: pipeline, listeners, upstreams, metrics. Also owns reload
// (SIGHUP) and drain (SIGTERM).
import type http from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Config } from './config/types.js';
import { ContextPool, QueryContext, Responder } from './pipeline/context.js';
import { ValidateStage } from './pipeline/validate.js';
import { CacheStage } from './pipeline/cache-stage.js';
import { ForwardStage, type ForwardOptions } from './pipeline/forward.js';
import { AnswerSender } from './pipeline/finish.js';
import { buildChain, ChainRef } from './pipeline/build.js';
import type { Chain } from './pipeline/chain.js';
import { PacketCache } from './cache/packet-cache.js';
import { ServerCounters } from './metrics/counters.js';
import { createUpstream, createUpstreams, poolOptions } from './upstream/create.js';
import { BootstrapResolver } from './upstream/bootstrap.js';
import { UpstreamPool } from './upstream/pool.js';
import { UdpListener } from './listen/udp.js';
import { TcpListener } from './listen/tcp.js';
import { DotListener, TlsCredentials } from './listen/dot.js';
import { DohListener, registerDohMetrics } from './listen/doh.js';
import type { BypassStage } from './pipeline/bypass-stage.js';
import { bypassStageFor, startBypass, registerBypassMetrics, type BypassController, type HistorySink } from './network/bypass.js';
import { ClientAcl } from './listen/acl.js';
import { IngressAcl } from './network/ingress.js';
import { resolveNetworkConfig, type NetworkConfig } from './network/config.js';
import { startHttp } from './metrics/http.js';
import { registerServerMetrics } from './metrics/server-metrics.js';
import { carryOverUpstreamStats, carryOverForwardCounters } from './metrics/carry-over.js';
import { ListenError } from './errors.js';
import { QueryLog, type QueryLogConfig } from './log/query-log.js';
import { Anonymizer } from './log/anonymize.js';
import type { DnstapWriter, DnstapConfig } from './log/dnstap.js';
import { AuditObserver } from './pipeline/audit.js';
import { TopK } from './metrics/topk.js';
import { FilterStage, CnameInspectStage, type ZoneForwarder } from './pipeline/filter-stage.js';
import { FilterManager } from './filter/manager.js';
import type { ConsoleApi } from './api/server.js';
import { consoleConfigOf } from './api/config.js';
import type { FilterConfig } from './filter/config.js';
import { releaseFreedHeap } from '../native/lib/index.js';
import type { QueryStore } from './store/types.js';
import type { StoreObserver } from './store/observer.js';
import type { DeviceTable } from './devices/table.js';
import { createRateLimitStage, type RateLimitStage, type LimitsConfig } from './pipeline/ratelimit.js';

export type LogFn = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export const defaultLog: LogFn = (level, msg, fields) => {
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }) + '\n');
};

/**
 * How this process serves: alone, or as one of several workers that share the listening ports through
 * SO_REUSEPORT (the kernel spreads flows across them). Transparent TCP, a small share of DNS, stays on
 * one worker; HTTP (metrics, admin) is served by the primary process, which aggregates the workers.
 */
export interface ServerRole { reusePort: boolean; tcp: boolean; http: boolean }
export const SINGLE_PROCESS: ServerRole = { reusePort: false, tcp: true, http: true };

/** A responder for background refreshes: their answers feed the cache and go nowhere else. */
const internalResponder: Responder = {
  transport: 'internal' as never,
  send() { /* nothing to send: no client */ },
  describe() { return { client: 'internal', clientPort: 0, server: '', serverPort: 0, family: 4 }; },
};

/** Twice a minute keeps RSS near the live size; the trim itself runs off the event loop. */
const HEAP_TRIM_INTERVAL_MS = 30_000;

export class DnsServer {
  readonly counters = new ServerCounters();
  readonly pool: ContextPool;
  readonly sender: AnswerSender;
  readonly validate: ValidateStage;
  readonly cache: PacketCache | null;
  readonly cacheStage: CacheStage | null;
  readonly filterStage: FilterStage | null;
  readonly rateLimit: RateLimitStage | null;
  readonly cnameStage: CnameInspectStage | null;
  /** Encrypted-DNS bypass control (#19): the DNS-side stage and the nft-side controller. */
  readonly bypassStage: BypassStage | null;
  bypass: BypassController | null = null;
  /** The query history (src/store), when one is attached: bypass attempts are recorded there. */
  private readonly history: HistorySink = () => (this as unknown as { store?: { append(r: Record<string, unknown>): void } | null }).store;
  private zoneBootstrap: BootstrapResolver | null = null;
  private readonly zoneForwarders = new Map<string, { stage: ForwardStage; pool: UpstreamPool }>();
  forward: ForwardStage;
  upstreams: UpstreamPool;
  readonly chain: Chain;
  readonly udp: UdpListener[] = [];
  readonly tcp: TcpListener[] = [];
  /** DoH listeners (listen.doh); DoT listeners (listen.dot) are TCP listeners behind TLS and sit in `tcp`. */
  readonly doh: DohListener[] = [];
  /** listen.tlsCert/tlsKey, shared by the DoT and DoH listeners; null without either. */
  tls: TlsCredentials | null = null;
  /** The transparent listeners' ingress ACL (LAN side only; #15.3), null without transparent listeners. */
  ingressAcl: IngressAcl | null = null;
  readonly registry = new Registry();
  private http: http.Server | null = null;
  /** The console's HTTP API and web app (`console:`), served by the process that serves HTTP. */
  console: ConsoleApi | null = null;
  private readonly ref = new ChainRef();
  queryLog: QueryLog | null = null;
  dnstap: DnstapWriter | null = null;
  top: { clients: TopK; names: TopK; sampleEvery: number } | null = null;
  private audit: AuditObserver | null = null;
  /** Query history (issue 17): null when `store: false` or it could not be opened. */
  store: QueryStore | null = null;
  /** Client address → device (leases, neighbour table, config names); null with `devices: false`. */
  devices: DeviceTable | null = null;
  private storeObserver: StoreObserver | null = null;
  drainTimeouts = 0;
  heapTrims = 0;
  private heapTrimTimer: NodeJS.Timeout | null = null;
  reloads = 0;
  reloadFailures = 0;

  constructor(public config: Config, readonly log: LogFn = defaultLog, readonly role: ServerRole = SINGLE_PROCESS) {
    const up = config.upstream;
    // Waiting queries (upstream in flight + coalesced waiters) are bounded by the pool; the forward
    // stage's own cap keeps upstream load bounded within that.
    this.pool = new ContextPool(up.maxInflight * 2 + 256);
    this.sender = new AnswerSender(this.pool, this.counters);
    this.validate = new ValidateStage(this.ref.respond, (ctx) => this.sender.drop(ctx), config.listen.udpMaxSize);
    this.cache = config.cache.enabled ? new PacketCache(config.cache) : null;
    this.cacheStage = this.cache ? new CacheStage(this.cache, this.ref.respond, this.pool, internalResponder) : null;
    this.upstreams = new UpstreamPool(createUpstreams(config), poolOptions(config));
    this.forward = new ForwardStage(this.upstreams, this.ref.respond, forwardOptions(config));
    this.setupAudit(config);
    // The console's runtime rules and pause live in the filter stage, so it runs whenever the console does.
    const filtering = filterConfigOf(config) !== null || consoleConfigOf(config.console, config.baseDir) !== null;
    this.filterStage = filtering ? new FilterStage(this.ref.respond, (url) => this.zoneForwarder(url)) : null;
    this.cnameStage = this.filterStage ? new CnameInspectStage(this.filterStage) : null;
    const limits = config.limits as Partial<LimitsConfig> | undefined;
    // Over-limit drops are not malformed input: release without counting them as such.
    this.rateLimit = limits ? createRateLimitStage(limits, this.ref.respond, (ctx) => this.sender.drop(ctx, 'ratelimit')) : null;
    this.bypassStage = bypassStageFor(this, this.ref.respond, this.history, () => this.bypass);
    this.chain = buildChain({
      ratelimit: this.rateLimit, validate: this.validate, bypass: this.bypassStage, filter: this.filterStage, cache: this.cacheStage, cname: this.cnameStage, forward: this.forward,
    }, this.sender);
    this.ref.chain = this.chain;
  }

  private setupAudit(config: Config): void {
    const logCfg = config.log as QueryLogConfig | undefined;
    // log.anonymize is the privacy setting for every client address we hand out (log, /stats/top, dnstap).
    const anonymizer = logCfg?.anonymize && logCfg.anonymize.mode !== 'none' ? new Anonymizer(logCfg.anonymize) : null;
    if (logCfg && logCfg.mode !== 'off') {
      this.queryLog = new QueryLog({ ...logCfg, mode: logCfg.mode ?? 'all', output: logCfg.output ?? 'stdout' }, {
        onError: (e) => this.log('warn', 'query log write failed; dropping entries until it recovers', { error: e.message }),
        anonymizer: anonymizer ?? undefined,
      });
    }
    const stats = (config.stats ?? {}) as { topK?: number; sampleEvery?: number };
    const k = stats.topK ?? 200;
    if (k > 0) this.top = { clients: new TopK(k), names: new TopK(k), sampleEvery: stats.sampleEvery ?? 32 };
    this.audit = new AuditObserver(this.queryLog, null, this.top);
    this.audit.anonymizer = anonymizer;
    if (this.queryLog || this.top) this.sender.observers.push(this.audit);
  }

  /** dnstap pulls in protobufjs, so it loads only when configured. */
  private async setupDnstap(config: Config): Promise<void> {
    const tapCfg = config.dnstap as DnstapConfig | undefined;
    if (!tapCfg) return;
    const { DnstapWriter } = await import('./log/dnstap.js');
    const tap = new DnstapWriter(tapCfg);
    this.dnstap = tap;
    this.audit!.tap = tap;
    if (!this.sender.observers.includes(this.audit!)) this.sender.observers.push(this.audit!);
    this.forward.onForwarded = (upstream, q, a, t0, t1) => {
      tap.forwarderQuery(t0, upstream, q);
      if (a) tap.forwarderResponse(t0, t1, upstream, q, a);
    };
  }

  /** A forward stage of its own for each conditional-forwarding target, made on first use. */
  private zoneForwarder(url: string): ZoneForwarder {
    let z = this.zoneForwarders.get(url);
    if (!z) {
      this.zoneBootstrap ??= new BootstrapResolver(this.config.bootstrap ?? []);
      const up = createUpstream({ url }, this.config, this.zoneBootstrap);
      const pool = new UpstreamPool([up], { strategy: 'failover' });
      // Padding only means something on encrypted transports.
      const encrypted = url.startsWith('https:') || url.startsWith('tls:');
      z = { pool, stage: new ForwardStage(pool, this.ref.respond, { ...forwardOptions(this.config), paddingBlock: encrypted ? this.config.upstream.paddingBlock : 0 }) };
      this.zoneForwarders.set(url, z);
    }
    return z.stage;
  }

  get filter(): FilterManager | null { return this.filterStage?.manager ?? null; }

  async start(): Promise<void> {
    const cfg = this.config;
    await this.setupDnstap(cfg);
    await this.setupHistory(cfg);
    const consoleCfg = this.role.http ? consoleConfigOf(cfg.console, cfg.baseDir) : null;
    // With workers the primary serves HTTP but holds no pipeline for the runtime rules: say so once.
    if (!this.role.http && this.role.tcp && consoleConfigOf(cfg.console, cfg.baseDir)) this.log('warn', 'console: is not served with workers > 1; set workers: 1 to use the console');
    if (consoleCfg) {
      const { ConsoleApi } = await import('./api/server.js');
      this.console = new ConsoleApi(this, consoleCfg);
    }
    // Lists added or switched through the console are laid over the config's.
    const fcfg = this.console ? this.console.filterConfig(filterConfigOf(cfg)) : filterConfigOf(cfg);
    if (this.filterStage && fcfg) {
      // Lists load before any listener opens: no query is ever answered by a half-built policy.
      this.filterStage.manager = await FilterManager.create(fcfg, { stateDir: cfg.stateDir, baseDir: cfg.baseDir, log: (level, msg, fields) => this.log(level, msg, fields as Record<string, unknown>) });
      if (this.console) this.filterStage.overrides = this.console.overrides;
    }
    // Listed DoH hostnames are blocked from the first query on (their addresses follow in the background).
    this.bypass = await startBypass(this, this.bypassStage, this.history);
    const plainAcl = new ClientAcl(cfg.listen.plainAllow);
    if (cfg.listen.tproxy.udp || cfg.listen.tproxy.tcp) {
      this.ingressAcl = new IngressAcl(resolveNetworkConfig(cfg.network as NetworkConfig | undefined),
        (e) => this.log('warn', 'cannot read interfaces and routes for the ingress ACL; keeping the last list', { error: e.message }));
      void this.ingressAcl.refresh();
      this.ingressAcl.start();
    }
    const tproxyAcl = this.ingressAcl?.acl ?? null;
    try {
      const reusePort = this.role.reusePort;
      if (cfg.listen.tproxy.udp) this.udp.push(new UdpListener('tproxy-udp', { address: cfg.listen.tproxy.udp, transparent: true, acl: tproxyAcl, reusePort }, this.chain, this.pool));
      for (const a of cfg.listen.plain) this.udp.push(new UdpListener(`plain-udp ${a}`, { address: a, transparent: false, acl: plainAcl, reusePort }, this.chain, this.pool));
      if (cfg.listen.tproxy.tcp && this.role.tcp) {
        const l = new TcpListener('tproxy-tcp', cfg.listen.tproxy.tcp, true, cfg.listen.tcp, this.chain, this.pool, tproxyAcl);
        await l.listen();
        this.tcp.push(l);
      }
      for (const a of this.role.tcp ? cfg.listen.plainTcp : []) {
        const l = new TcpListener(`plain-tcp ${a}`, a, false, cfg.listen.tcp, this.chain, this.pool, plainAcl);
        await l.listen();
        this.tcp.push(l);
      }
      if (this.role.tcp) await this.startEncrypted(cfg, plainAcl);
    } catch (e) {
      await this.close();
      const err = e as NodeJS.ErrnoException;
      throw new ListenError(`cannot listen: ${err.message}`, String(err.syscall ?? ''), e);
    }
    registerServerMetrics(this);
    if (this.store || this.devices) (await import('./store/index.js')).registerStoreMetrics(this.registry, () => this.store, () => this.devices);
    if (this.bypassStage || this.bypass) registerBypassMetrics(this.registry, () => this.bypass, this.bypassStage);
    // The event-loop lag histogram samples with a libuv timer: prom-client's default 10 ms precision woke
    // an idle process 100 times a second (issue #20); 1 s keeps the figure with 1 wakeup.
    collectDefaultMetrics({ register: this.registry, prefix: 'dns_tproxy_', eventLoopMonitoringPrecision: 1000 });
    // prom-client names these gauges *_total, which Prometheus reserves for counters (promtool rejects it).
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      this.registry.removeSingleMetric(`dns_tproxy_${name}`);
    }
    if (cfg.metrics.listen && this.role.http) {
      this.http = await startHttp(cfg.metrics.listen, {
        registry: this.registry,
        ready: () => this.readiness(),
        flushCache: (name) => this.cache?.flush(name) ?? 0,
        json: { '/stats/top': () => this.topSnapshot() },
        adminToken: cfg.metrics.adminToken, hosts: cfg.metrics.hosts,
      });
    }
    if (this.console) {
      this.console.registerMetrics(this.registry);
      try { await this.console.listen(); } catch (e) {
        await this.close();
        throw new ListenError(`cannot listen on console.listen: ${(e as Error).message}`, String((e as NodeJS.ErrnoException).syscall ?? ''), e);
      }
    }
    // Freed malloc memory (TLS records, Buffer stores freed on other threads' arenas) otherwise stays
    // resident after every burst: measured 142 → 101 MiB RSS with 100k cache entries (README "Memory").
    this.heapTrimTimer = setInterval(() => {
      releaseFreedHeap().then((released) => { if (released) this.heapTrims++; }, () => { /* nothing to count */ });
    }, HEAP_TRIM_INTERVAL_MS);
    this.heapTrimTimer.unref();
    this.log('info', 'listening', {
      udp: this.udp.map((u) => u.name), tcp: this.tcp.map((t) => t.name), upstreams: cfg.upstreams.map((u) => u.url),
      metrics: cfg.metrics.listen ?? null,
    });
  }

  /** DoT and DoH listeners for LAN clients: the same chain as the others, behind the gateway's certificate. */
  private async startEncrypted(cfg: Config, acl: ClientAcl): Promise<void> {
    const l = cfg.listen;
    if (l.dot.length + l.doh.length === 0) return;
    if (!l.tlsCert || !l.tlsKey) throw new Error('listen.dot and listen.doh need listen.tlsCert and listen.tlsKey');
    this.tls = new TlsCredentials(l.tlsCert, l.tlsKey, this.log);
    this.tls.watch();
    for (const a of l.dot) {
      const d = new DotListener(`dot ${a}`, a, l.tcp, this.chain, this.pool, this.tls, acl);
      await d.listen();
      this.tcp.push(d);
    }
    for (const a of l.doh) {
      const d = new DohListener(`doh ${a}`, a, l.tcp, this.chain, this.pool, this.tls, acl);
      await d.listen();
      this.doh.push(d);
    }
    if (this.doh.length) registerDohMetrics(this.registry, this.doh);
  }

  topSnapshot(): { sampleEvery: number; clients: unknown[]; names: unknown[] } {
    const d = this.devices;
    // Clients stay keyed by address; the device name rides along when known.
    const clients = (this.top?.clients.top(50) ?? []).map((e) => { const n = d?.lookup(e.key).name; return n ? { ...e, name: n } : e; });
    return { sampleEvery: this.top?.sampleEvery ?? 0, clients, names: this.top?.names.top(50) ?? [] };
  }

  /** Device table and query store, before any listener opens (the first queries are recorded). */
  private async setupHistory(cfg: Config): Promise<void> {
    if (cfg.store === false && cfg.devices === undefined) return;
    const { createStore, createDevices } = await import('./store/index.js');
    const { StoreObserver } = await import('./store/observer.js');
    const log = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => this.log(level, msg, fields);
    this.devices = await createDevices(cfg.devices, { baseDir: cfg.baseDir, log });
    if (this.audit) this.audit.devices = this.devices;
    const groupOf = (ip: string): string | undefined => {
      const e = this.filter?.engine;
      return e ? e.groupName(e.groupOfIp(ip)) : undefined;
    };
    this.store = await createStore(cfg.store, { stateDir: cfg.stateDir, baseDir: cfg.baseDir, log, devices: this.devices, groupOf });
    if (this.store) {
      this.storeObserver = new StoreObserver(this.store, this.devices);
      this.sender.observers.push(this.storeObserver);
    }
  }

  readiness(): { ready: boolean; reasons: string[] } {
    const reasons: string[] = [];
    if (this.udp.length + this.tcp.length === 0) reasons.push('no listener bound');
    if (!this.upstreams.anyHealthy) reasons.push('no healthy upstream');
    return { ready: reasons.length === 0, reasons };
  }

  /** Queries accepted and not yet answered. */
  get inflight(): number { return this.pool.inUse; }

  /**
   * SIGHUP: swap in a new upstream set from a re-read config. Listener addresses need a restart; a bad
   * config leaves everything as it was.
   */
  reload(next: Config): void {
    const fm = this.filter;
    const fcfg = this.console ? this.console.filterConfig(filterConfigOf(next)) : filterConfigOf(next);
    if (fm && fcfg) {
      // Built off to the side and swapped atomically by the manager; a bad list keeps the old engine.
      void fm.reload(fcfg).then((r) => {
        if (!r.ok) { this.reloadFailures++; this.log('error', 'filter reload failed; keeping the previous lists', { error: r.error?.message }); }
        else this.log('info', 'filter lists reloaded', { rules: fm.stats.lists.reduce((a, l) => a + l.rules, 0) });
      });
    }
    const old = this.upstreams;
    const pool = new UpstreamPool(createUpstreams(next), poolOptions(next));
    const forward = new ForwardStage(pool, this.ref.respond, forwardOptions(next));
    // In-flight queries finish on the old stage (it keeps its pool open until they are done).
    const oldForward = this.chain.replaceStage('forward', forward) as ForwardStage;
    forward.onForwarded = oldForward.onForwarded;
    // Counters continue across the swap: a reload must not look like a restart to Prometheus.
    carryOverUpstreamStats(old.upstreams, pool.upstreams);
    carryOverForwardCounters(oldForward, forward);
    this.forward = forward;
    this.upstreams = pool;
    this.config = next;
    if (this.ingressAcl) {
      try { void this.ingressAcl.refresh(resolveNetworkConfig(next.network as NetworkConfig | undefined)); } catch (e) {
        this.log('error', 'network config rejected; the ingress ACL keeps the previous one', { error: (e as Error).message });
      }
    }
    this.tls?.reload();
    void this.bypass?.refresh();
    this.reloads++;
    const retire = setInterval(() => { if (oldForward.inflight <= 0) { clearInterval(retire); old.close(); } }, 200);
    retire.unref();
  }

  /** SIGTERM: stop accepting, answer what is in flight (up to `timeoutMs`), then close. */
  async drain(timeoutMs = 5000): Promise<void> {
    for (const t of this.tcp) t.server.close();
    for (const u of this.udp) u.stopAccepting();
    const until = Date.now() + timeoutMs;
    while (this.pool.inUse > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    if (this.pool.inUse > 0) this.drainTimeouts++;
    await this.close();
  }

  async close(): Promise<void> {
    if (this.heapTrimTimer) clearInterval(this.heapTrimTimer);
    this.ingressAcl?.close();
    for (const u of this.udp) u.close();
    await Promise.all(this.tcp.map((t) => t.close()));
    await Promise.all(this.doh.map((d) => d.close()));
    this.tls?.close();
    this.upstreams.close();
    for (const z of this.zoneForwarders.values()) z.pool.close();
    this.filter?.close();
    this.bypass?.close();
    await this.queryLog?.close();
    await this.dnstap?.close();
    this.devices?.close();
    // After the listeners: what was answered until now is written.
    await this.store?.close();
    if (this.http) await new Promise<void>((r) => this.http!.close(() => r()));
    this.http = null;
    await this.console?.close();
  }
}

export type { QueryContext };

function forwardOptions(c: Config): ForwardOptions {
  const u = c.upstream;
  return { timeoutMs: u.timeoutMs, maxInflight: u.maxInflight, ecs: u.ecs, paddingBlock: u.paddingBlock };
}

/** The filter-owned keys of a config, or null when none is set (no filter stage at all). */
function filterConfigOf(c: Config): FilterConfig | null {
  if (c.filter === undefined && c.groups === undefined && c.local === undefined && c.forward === undefined) return null;
  return { filter: c.filter, groups: c.groups, local: c.local, forward: c.forward } as FilterConfig;
}
