// FilterManager: owns the current immutable FilterEngine, loads list
// sources, refreshes url lists, and swaps in rebuilt engines atomically.
import { execFile } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { parseDuration, type FilterConfig, type ListConfig } from './config.js';
import { buildEngine, FilterEngine, type ListInput, type NeighbourEntry } from './engine.js';
import { fetchList, readCacheMeta, urlRefusal, writeCache, writeCacheMeta, type CacheMeta } from './sources.js';
import type { BadLine, LogFn } from './types.js';

export interface FilterManagerOptions {
  /** directory for the url-list cache (stateDir/filter-lists/) */
  stateDir: string;
  /** base for relative `path:` lists */
  baseDir: string;
  log?: LogFn;
  /** per-download timeout (default 30 s) */
  fetchTimeoutMs?: number;
  /** override the neighbour-table reader (tests, non-Linux) */
  readNeighbours?: () => Promise<NeighbourEntry[]>;
  /** neighbour table refresh period (default 30 s) */
  neighbourRefreshMs?: number;
  /** retry delay after a failed download (default min(refresh, 10 min)) */
  retryMs?: number;
  /** undici dispatcher for list downloads (e.g. an Agent that trusts a private CA); default: the global one */
  fetchDispatcher?: import('undici').Dispatcher;
}

/** How a list's source has fared: the part of ListStats that a URL list's state carries too. */
export interface SourceHealth {
  /** last time the content was (re)loaded or confirmed fresh (ms epoch) */
  lastRefresh: number | null;
  /** last successful download or 304 (url lists) */
  lastSuccess: number | null;
  lastError: string | null;
  failures: number;
  fetches: number;
  notModified: number;
  /** current content came from the disk cache */
  fromCache: boolean;
}

const noHealth = (): SourceHealth => ({
  lastRefresh: null, lastSuccess: null, lastError: null, failures: 0, fetches: 0, notModified: 0, fromCache: false,
});

/** The SourceHealth fields alone (a URL list's state also holds its timer and content). */
function healthOf(h: SourceHealth): SourceHealth {
  return {
    lastRefresh: h.lastRefresh, lastSuccess: h.lastSuccess, lastError: h.lastError, failures: h.failures,
    fetches: h.fetches, notModified: h.notModified, fromCache: h.fromCache,
  };
}

export interface ListStats extends SourceHealth {
  name: string;
  type: 'path' | 'url';
  source: string;
  /** rules loaded from the list in the current engine */
  rules: number;
  badLines: number;
  unsupported: number;
}

export interface FilterStats {
  lists: ListStats[];
  blockedByList: Record<string, number>;
  badLineSamples: BadLine[];
  engine: FilterEngine['info'] & { builtAt: number; buildMs: number };
  reloads: number;
  reloadFailures: number;
  lastReloadError: string | null;
  neighbours: number;
}

interface UrlState extends SourceHealth {
  name: string;
  url: string;
  allowInsecure: boolean;
  etag: string | null;
  lastModified: string | null;
  fetchedAt: number;
  /** content kept in memory only when the disk cache could not be written */
  mem: Buffer | null;
  hasData: boolean;
  refreshMs: number;
  timer: NodeJS.Timeout | null;
}

interface PathState {
  lastRefresh: number | null;
  lastError: string | null;
  failures: number;
}

const DEFAULT_REFRESH = 24 * 3600_000;
const MAX_TIMER = 2 ** 31 - 1;

export class FilterManager {
  private _engine!: FilterEngine;
  private cfg: FilterConfig = {};
  private readonly urls = new Map<string, UrlState>();
  private readonly paths = new Map<string, PathState>();
  private chain: Promise<unknown> = Promise.resolve();
  private readonly totals = new Map<string, number>();
  private reloads = 0;
  private reloadFailures = 0;
  private lastReloadError: string | null = null;
  private closed = false;
  private neighbours: NeighbourEntry[] = [];
  private neighTimer: NodeJS.Timeout | null = null;
  private readonly log: LogFn;
  private readonly timeoutMs: number;

  private constructor(private readonly opts: FilterManagerOptions) {
    this.log = opts.log ?? (() => {});
    this.timeoutMs = opts.fetchTimeoutMs ?? 30_000;
  }

  /** Load everything and build the first engine. Throws on configuration errors or unreadable local files. */
  static async create(cfg: FilterConfig, opts: FilterManagerOptions): Promise<FilterManager> {
    const m = new FilterManager(opts);
    await m.apply(cfg);
    return m;
  }

  /** The current engine. Grab it once per query; it never changes under you. */
  get engine(): FilterEngine {
    return this._engine;
  }

  /**
   * Rebuild from `cfg` (or the current config): local files are re-read, url
   * lists come from memory/disk cache (new url lists are fetched). On failure
   * the previous engine stays in force.
   */
  reload(cfg?: FilterConfig): Promise<{ ok: boolean; error?: Error }> {
    return this.serial(async () => {
      try {
        await this.apply(cfg ?? this.cfg);
        this.reloads++;
        return { ok: true };
      } catch (e) {
        const error = e instanceof Error ? e : new Error(String(e));
        this.reloadFailures++;
        this.lastReloadError = error.message;
        this.log('error', 'filter reload failed; keeping previous rules', { error: error.message });
        return { ok: false, error };
      }
    });
  }

  /** Download url lists now (all, or the named one); rebuilds the engine if any content changed. */
  refreshNow(name?: string): Promise<void> {
    return this.serial(async () => {
      let changed = false;
      for (const st of this.urls.values()) {
        if (name !== undefined && st.name !== name) continue;
        if (await this.refreshOne(st)) changed = true;
      }
      if (changed) {
        try {
          await this.apply(this.cfg);
        } catch (e) {
          this.reloadFailures++;
          this.lastReloadError = (e as Error).message;
          this.log('error', 'filter rebuild after list refresh failed; keeping previous rules', { error: (e as Error).message });
        }
      }
    });
  }

  /** Re-read the neighbour table (IP -> MAC) now. */
  async refreshNeighbours(): Promise<void> {
    try {
      this.neighbours = await (this.opts.readNeighbours ?? readSystemNeighbours)();
      this._engine.setNeighbours(this.neighbours);
    } catch (e) {
      this.log('warn', 'reading neighbour table failed', { error: (e as Error).message });
    }
  }

  close(): void {
    this.closed = true;
    for (const st of this.urls.values()) if (st.timer) clearTimeout(st.timer);
    if (this.neighTimer) clearInterval(this.neighTimer);
    this.neighTimer = null;
  }

  get stats(): FilterStats {
    const eng = this._engine;
    const blocked: Record<string, number> = {};
    for (const [k, v] of this.totals) blocked[k] = v;
    for (const [k, v] of Object.entries(eng.blockedByList())) blocked[k] = (blocked[k] ?? 0) + v;
    const lists: ListStats[] = [];
    const samples: BadLine[] = [];
    for (const s of eng.sources) for (const b of s.samples) if (samples.length < 100) samples.push(b);
    for (const l of this.enabledLists(this.cfg)) {
      const src = eng.sources.find((s) => s.name === l.name);
      const base = { name: l.name, rules: src?.rules ?? 0, badLines: src?.badLines ?? 0, unsupported: src?.unsupported ?? 0 };
      if (l.url) {
        const st = this.urls.get(l.name);
        lists.push({ ...base, type: 'url', source: l.url, ...(st ? healthOf(st) : noHealth()) });
      } else {
        const st = this.paths.get(l.name);
        const lastRefresh = st?.lastRefresh ?? null;
        lists.push({
          ...base, type: 'path', source: l.path!, ...noHealth(),
          lastRefresh, lastSuccess: lastRefresh, lastError: st?.lastError ?? null, failures: st?.failures ?? 0,
        });
      }
    }
    for (const s of eng.sources) {
      if (s.name === 'inline' || s.name.startsWith('group:')) {
        if (s.rules + s.badLines + s.unsupported === 0) continue;
        lists.push({
          name: s.name, type: 'path', source: 'config', rules: s.rules, badLines: s.badLines, unsupported: s.unsupported,
          ...noHealth(), lastRefresh: eng.builtAt, lastSuccess: eng.builtAt,
        });
      }
    }
    return {
      lists,
      blockedByList: blocked,
      badLineSamples: samples,
      engine: { ...eng.info, builtAt: eng.builtAt, buildMs: eng.buildMs },
      reloads: this.reloads,
      reloadFailures: this.reloadFailures,
      lastReloadError: this.lastReloadError,
      neighbours: this.neighbours.length,
    };
  }

  // ------------------------------------------------------------------ internals

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => {});
    return p;
  }

  private enabledLists(cfg: FilterConfig): ListConfig[] {
    return (cfg.filter?.lists ?? []).filter((l) => l.enabled !== false);
  }

  private async apply(cfg: FilterConfig): Promise<void> {
    const lists = this.enabledLists(cfg);
    const inputs: ListInput[] = [];
    const maxBytes = cfg.filter?.maxListBytes ?? 64 * 1024 * 1024;
    const names = new Set<string>();
    for (const l of lists) {
      if (names.has(l.name)) throw new Error(`duplicate list name "${l.name}"`);
      names.add(l.name);
      if (!!l.path === !!l.url) throw new Error(`list "${l.name}": set exactly one of path or url`);
      if (l.url) {
        const refused = urlRefusal(l.url, l.allowInsecure === true);
        if (refused !== null) throw new Error(`list "${l.name}": ${refused}`);
      }
      let data: Buffer | null;
      let file: string | undefined;
      if (l.path) {
        file = isAbsolute(l.path) ? l.path : resolve(this.opts.baseDir, l.path);
        const st = this.paths.get(l.name) ?? { lastRefresh: null, lastError: null, failures: 0 };
        this.paths.set(l.name, st);
        try {
          // Checked here so that a missing file fails the load with its name; read (in chunks) by the build.
          const info = await stat(file);
          if (!info.isFile()) throw Object.assign(new Error('not a file'), { code: 'EISDIR' });
          await access(file, fsConstants.R_OK);
          data = null;
          st.lastRefresh = Date.now();
          st.lastError = null;
        } catch (e) {
          st.lastError = (e as Error).message;
          st.failures++;
          throw new Error(`list "${l.name}": cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
      } else {
        ({ data, file } = await this.urlData(l, maxBytes));
      }
      inputs.push({ name: l.name, data, file, ede: l.ede, hosts: l.hosts });
    }
    const engine = await buildEngine(cfg, inputs, { regexMaxLength: cfg.filter?.regexMaxLength });
    if (this.neighbours.length) engine.setNeighbours(this.neighbours);
    // swap
    const old = this._engine;
    if (old) for (const [k, v] of Object.entries(old.blockedByList())) if (v) this.totals.set(k, (this.totals.get(k) ?? 0) + v);
    this._engine = engine;
    this.cfg = cfg;
    // url state housekeeping
    for (const [name, st] of this.urls) {
      const l = lists.find((x) => x.name === name);
      if (!l || l.url !== st.url) {
        if (st.timer) clearTimeout(st.timer);
        this.urls.delete(name);
      }
    }
    for (const st of this.urls.values()) if (!st.timer) this.schedule(st, Math.max(0, st.fetchedAt + st.refreshMs - Date.now()));
    this.setupNeighbours();
    let bad = 0;
    for (const s of engine.sources) bad += s.badLines;
    this.log('info', 'filter rules loaded', {
      entries: engine.info.entries, buildMs: Math.round(engine.buildMs), lists: lists.length, badLines: bad,
    });
    for (const s of engine.sources) {
      if (s.badLines > 0) {
        const first = s.samples.find((x) => x.kind === 'bad');
        this.log('warn', `list ${s.name}: ${s.badLines} bad line(s)`, first ? { first: `${first.source}:${first.line}: ${first.reason}: ${first.text}` } : undefined);
      }
    }
  }

  private setupNeighbours(): void {
    if (this._engine.usesMac && !this.neighTimer && !this.closed) {
      void this.refreshNeighbours();
      this.neighTimer = setInterval(() => void this.refreshNeighbours(), this.opts.neighbourRefreshMs ?? 30_000);
      this.neighTimer.unref();
    } else if (!this._engine.usesMac && this.neighTimer) {
      clearInterval(this.neighTimer);
      this.neighTimer = null;
    }
  }

  private schedule(st: UrlState, delay: number): void {
    if (this.closed) return;
    if (st.timer) clearTimeout(st.timer);
    st.timer = setTimeout(() => {
      st.timer = null;
      void this.refreshNow(st.name).finally(() => {
        if (!st.timer && this.urls.get(st.name) === st) {
          const retry = this.opts.retryMs ?? Math.min(st.refreshMs, 600_000);
          this.schedule(st, st.lastError !== null ? retry : st.refreshMs);
        }
      });
    }, Math.min(MAX_TIMER, delay));
    st.timer.unref();
  }

  /**
   * Content for a url list during a build: the cache file to read in chunks, or the copy in memory
   * when the cache could not be written. New lists: disk cache if fresh, else download (falling back
   * to the cache).
   */
  private async urlData(l: ListConfig, maxBytes: number): Promise<{ data: Buffer | null; file?: string }> {
    const url = l.url!;
    const refreshMs = parseDuration(l.refresh, DEFAULT_REFRESH);
    let st = this.urls.get(l.name);
    if (st && st.url === url) {
      st.refreshMs = refreshMs;
      st.allowInsecure = l.allowInsecure === true;
      if (!st.hasData) {
        // never had content: try again now
        await this.refreshOne(st);
      }
      if (st.mem) return { data: st.mem };
      if (!st.hasData) return { data: null };
      const c = await readCacheMeta(this.opts.stateDir, l.name, url);
      if (!c) throw new Error(`list "${l.name}": cached copy of ${url} is missing`);
      return { data: null, file: c.file };
    }
    st = {
      name: l.name, url, allowInsecure: l.allowInsecure === true, etag: null, lastModified: null, fetchedAt: 0, mem: null, hasData: false,
      ...noHealth(), refreshMs, timer: null,
    };
    this.urls.set(l.name, st);
    const cache = await readCacheMeta(this.opts.stateDir, l.name, url);
    if (cache) {
      st.etag = cache.meta.etag;
      st.lastModified = cache.meta.lastModified;
      st.fetchedAt = cache.meta.fetchedAt;
      st.hasData = true;
      st.fromCache = true;
      if (Date.now() - cache.meta.fetchedAt < refreshMs) {
        st.lastRefresh = cache.meta.fetchedAt;
        st.lastSuccess = cache.meta.fetchedAt;
        return { data: null, file: cache.file };
      }
    }
    await this.refreshOne(st, maxBytes);
    if (st.mem) return { data: st.mem };
    if (!st.hasData) {
      this.log('warn', `list ${l.name}: no content available (download failed, no cache)`, { url, error: st.lastError });
      return { data: null };
    }
    if (st.fromCache && cache) return { data: null, file: cache.file };
    const c = await readCacheMeta(this.opts.stateDir, l.name, url);
    return c ? { data: null, file: c.file } : { data: null };
  }

  /** One conditional download. Returns true when new content arrived. Never throws. */
  private async refreshOne(st: UrlState, maxBytes = this.cfg.filter?.maxListBytes ?? 64 * 1024 * 1024): Promise<boolean> {
    st.fetches++;
    const now = Date.now();
    try {
      const r = await fetchList(st.url, st.hasData ? { etag: st.etag, lastModified: st.lastModified } : null, this.timeoutMs, maxBytes, {
        allowInsecure: st.allowInsecure, dispatcher: this.opts.fetchDispatcher,
      });
      st.lastRefresh = now;
      st.lastSuccess = now;
      st.lastError = null;
      if (r.status === 'not-modified') {
        st.notModified++;
        st.fetchedAt = now;
        const meta: CacheMeta = { url: st.url, etag: st.etag, lastModified: st.lastModified, fetchedAt: now, bytes: -1 };
        // refresh the cache timestamp (content unchanged)
        if (!st.mem) {
          const c = await readCacheMeta(this.opts.stateDir, st.name, st.url);
          if (c) await writeCacheMeta(this.opts.stateDir, st.name, { ...meta, bytes: c.meta.bytes }).catch(() => {});
        }
        this.log('info', `list ${st.name}: not modified`, { url: st.url });
        return false;
      }
      st.etag = r.etag;
      st.lastModified = r.lastModified;
      st.fetchedAt = now;
      st.hasData = true;
      st.fromCache = false;
      try {
        await writeCache(this.opts.stateDir, st.name, { url: st.url, etag: r.etag, lastModified: r.lastModified, fetchedAt: now, bytes: r.data.length }, r.data);
        st.mem = null;
      } catch (e) {
        st.mem = r.data;
        this.log('warn', `list ${st.name}: cannot write cache; keeping copy in memory`, { error: (e as Error).message });
      }
      this.log('info', `list ${st.name}: downloaded`, { url: st.url, bytes: r.data.length });
      return true;
    } catch (e) {
      st.failures++;
      st.lastError = (e as Error).message;
      this.log('warn', `list ${st.name}: download failed; keeping last good copy`, { url: st.url, error: st.lastError, failures: st.failures });
      return false;
    }
  }
}

/** Linux: /proc/net/arp (IPv4) and `ip -6 neigh` (IPv6). Missing sources are ignored. */
export async function readSystemNeighbours(): Promise<NeighbourEntry[]> {
  const out: NeighbourEntry[] = [];
  try {
    const arp = await readFile('/proc/net/arp', 'utf8');
    for (const line of arp.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 4 && f[3] !== '00:00:00:00:00:00') out.push({ ip: f[0]!, mac: f[3]! });
    }
  } catch {
    /* not Linux or no access */
  }
  const v6 = await new Promise<string>((res) => {
    execFile('ip', ['-6', 'neigh', 'show'], { timeout: 2000 }, (err, stdout) => res(err ? '' : stdout));
  });
  for (const line of v6.split('\n')) {
    const m = /^(\S+)\s.*\blladdr\s+([0-9a-f:]{17})/i.exec(line);
    if (m) out.push({ ip: m[1]!, mac: m[2]! });
  }
  return out;
}
