// The SQLite query history, synchronous. It runs inside the store's worker thread (sqlite-worker.ts)
// so that neither fsync nor a long search ever blocks the event loop that answers DNS.
//
// Layout, chosen for bytes per record and for the search shapes of the API:
// - q: one narrow row per query. Strings repeat a lot (client, destination, qname, and the
//   combination of transport/device/decision/upstream), so they are interned: `str` holds clients,
//   destinations and the JSON "info" combos, `name` holds qnames.
// - name_fts: an FTS5 trigram index over the *distinct* qnames (not the rows), so a substring search
//   finds the matching name ids in the dictionary and then reads rows by the (name, t) index.
// - agg_min / agg_client / agg_name: rollups maintained at ingest, so 24 h statistics read a few
//   thousand rows instead of millions.
// - Rows are ordered by (t, id): cursors are "t:id" and stay stable while new records arrive.
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import type { ClientEntry, QueryRecord, SearchQuery, SearchResult, StatsQuery, StatsResult, StoredRecord, TopEntry } from './types.js';
import { QTYPE_NAMES } from '../metrics/counters.js';

export interface SqliteOptions {
  path: string;
  /** Records older than this are deleted; 0 keeps them. */
  retentionDays?: number;
  /** Upper bound of the database (file + WAL); the oldest records go first. 0: no bound. */
  maxBytes?: number;
  /** SQLite page cache cap, KiB (bounds process RSS). */
  cacheKiB?: number;
  /** Newest rows a name-substring search probes before using the trigram index (tests lower it). */
  nameProbeRows?: number;
}

const KINDS = ['query', 'dropped', 'bypass'] as const;
const BY = ['', 'cache', 'stale', 'upstream', 'local', 'forward', 'blocked'] as const;
const BY_BLOCKED = 6;
const BY_CACHE = 1;
const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'YXDOMAIN', 'YXRRSET', 'NXRRSET', 'NOTAUTH', 'NOTZONE'];
const QTYPE_NUM: Record<string, number> = Object.fromEntries(Object.entries(QTYPE_NAMES).map(([k, v]) => [v, Number(k)]));
const HOUR = 3_600_000;
const MINUTE = 60_000;
const DAY = 86_400_000;
/** Newest rows a name-substring search reads before it asks the trigram index. */
const NAME_PROBE_ROWS = 20_000;
/** Names kept per completed hour in the name rollup (by count, and by blocked count): the top lists. */
export const ROLLUP_NAMES_PER_HOUR = 1000;
/** Interning caches are cleared past this size (the database stays the source of truth). */
const INTERN_CACHE_MAX = 200_000;

/** res column: kind (2 bits) | answeredBy (3 bits) << 2 | (rcode + 1) (5 bits) << 5. */
function encodeRes(r: QueryRecord): number {
  const k = Math.max(0, KINDS.indexOf(r.kind));
  const by = r.answeredBy ? Math.max(0, BY.indexOf(r.answeredBy)) : 0;
  let rc = 0;
  if (r.rcode !== undefined) { const i = RCODES.indexOf(r.rcode); rc = i >= 0 ? i + 1 : 31; }
  return k | (by << 2) | (rc << 5);
}

export function qtypeNumber(s: string): number {
  const n = QTYPE_NUM[s];
  if (n !== undefined) return n;
  const m = /^TYPE(\d+)$/.exec(s);
  return m ? Number(m[1]) : 0;
}
function qtypeText(n: number): string { return n === 0 ? '' : QTYPE_NAMES[n] ?? `TYPE${n}`; }

/** Fields of low cardinality kept together as one interned JSON string. */
interface Info {
  tr?: string; dev?: { id?: string; name?: string; mac?: string }; g?: string; l?: string; r?: string; dr?: string; up?: string;
}

export function encodeCursor(t: number, id: number): string { return `${t}.${id}`; }
export function decodeCursor(c: string | undefined): { t: number; id: number } | null {
  if (!c) return null;
  const m = /^(\d{1,16})\.(\d{1,16})$/.exec(c);
  return m ? { t: Number(m[1]), id: Number(m[2]) } : null;
}

/** Result filter → SQL condition on res. Unknown values are a caller error. */
export function resultCondition(result: string): { mask: number; value: number } {
  const by = BY.indexOf(result as never);
  if (by > 0) return { mask: 7 << 2, value: by << 2 };
  const k = KINDS.indexOf(result as never);
  if (k >= 0) return { mask: 3, value: k };
  const rc = RCODES.indexOf(result.toUpperCase());
  if (rc >= 0) return { mask: 31 << 5, value: (rc + 1) << 5 };
  throw new RangeError(`unknown result filter "${result}" (one of ${[...BY.slice(1), ...KINDS, ...RCODES].join(', ')})`);
}

export class SqliteDb {
  readonly db: Database.Database;
  private readonly strIds = new Map<string, number>();
  private readonly nameIds = new Map<string, number>();
  private readonly st: Record<string, Database.Statement>;
  private readonly insertBatch: (records: QueryRecord[]) => void;
  retentionDays: number;
  maxBytes: number;
  /** Rows deleted by retention (age + size). */
  retired = 0;
  /** Records refused for a missing or non-numeric time. */
  skipped = 0;

  constructor(private readonly opts: SqliteOptions) {
    fs.mkdirSync(path.dirname(opts.path), { recursive: true });
    this.retentionDays = opts.retentionDays ?? 0;
    this.maxBytes = opts.maxBytes ?? 0;
    const db = new Database(opts.path);
    this.db = db;
    // auto_vacuum must be set before the first table exists; it lets size retention give pages back.
    db.pragma('auto_vacuum = INCREMENTAL');
    db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode: a process crash loses nothing committed; a power loss at most the last commits.
    db.pragma('synchronous = NORMAL');
    db.pragma(`cache_size = -${opts.cacheKiB ?? 16384}`);
    db.pragma('temp_store = MEMORY');
    db.pragma('busy_timeout = 5000');
    // Checkpoint often enough that the WAL stays small next to maxBytes.
    db.pragma('wal_autocheckpoint = 1000');
    db.exec(`
      CREATE TABLE IF NOT EXISTS str(id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE);
      -- AUTOINCREMENT: a pruned name's id is never reused, so a rollup row left pointing at it can never name another.
      CREATE TABLE IF NOT EXISTS name(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT NOT NULL UNIQUE);
      CREATE VIRTUAL TABLE IF NOT EXISTS name_fts USING fts5(v, content='name', content_rowid='id', tokenize='trigram');
      CREATE TABLE IF NOT EXISTS q(
        id INTEGER PRIMARY KEY, t INTEGER NOT NULL, client INTEGER NOT NULL, name INTEGER NOT NULL,
        qtype INTEGER NOT NULL, res INTEGER NOT NULL, dest INTEGER NOT NULL, dport INTEGER NOT NULL,
        info INTEGER NOT NULL, cport INTEGER, lat INTEGER, ulat INTEGER, ans TEXT);
      CREATE INDEX IF NOT EXISTS q_t ON q(t);
      CREATE INDEX IF NOT EXISTS q_client_t ON q(client, t);
      CREATE INDEX IF NOT EXISTS q_name_t ON q(name, t);
      CREATE TABLE IF NOT EXISTS agg_min(m INTEGER PRIMARY KEY, total INTEGER NOT NULL, blocked INTEGER NOT NULL, cache INTEGER NOT NULL, dropped INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS agg_client(h INTEGER NOT NULL, client INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY(h, client)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS agg_name(h INTEGER NOT NULL, name INTEGER NOT NULL, n INTEGER NOT NULL, b INTEGER NOT NULL, PRIMARY KEY(h, name)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS client_seen(client INTEGER PRIMARY KEY, last INTEGER NOT NULL, dev_id TEXT, dev_name TEXT, mac TEXT);
      CREATE INDEX IF NOT EXISTS client_seen_name ON client_seen(dev_name COLLATE NOCASE);
    `);
    const p = (sql: string) => db.prepare(sql);
    this.st = {
      strGet: p('SELECT id FROM str WHERE v = ?'),
      strIns: p('INSERT INTO str(v) VALUES (?)'),
      nameGet: p('SELECT id FROM name WHERE v = ?'),
      nameIns: p('INSERT INTO name(v) VALUES (?)'),
      ftsIns: p('INSERT INTO name_fts(rowid, v) VALUES (?, ?)'),
      qIns: p('INSERT INTO q(t, client, name, qtype, res, dest, dport, info, cport, lat, ulat, ans) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)'),
      minUp: p(`INSERT INTO agg_min(m, total, blocked, cache, dropped) VALUES (?,?,?,?,?)
        ON CONFLICT(m) DO UPDATE SET total = total + excluded.total, blocked = blocked + excluded.blocked,
          cache = cache + excluded.cache, dropped = dropped + excluded.dropped`),
      clientUp: p('INSERT INTO agg_client(h, client, n) VALUES (?,?,?) ON CONFLICT(h, client) DO UPDATE SET n = n + excluded.n'),
      nameUp: p('INSERT INTO agg_name(h, name, n, b) VALUES (?,?,?,?) ON CONFLICT(h, name) DO UPDATE SET n = n + excluded.n, b = b + excluded.b'),
      seenUp: p(`INSERT INTO client_seen(client, last, dev_id, dev_name, mac) VALUES (?,?,?,?,?)
        ON CONFLICT(client) DO UPDATE SET last = max(last, excluded.last), dev_id = coalesce(excluded.dev_id, dev_id),
          dev_name = coalesce(excluded.dev_name, dev_name), mac = coalesce(excluded.mac, mac)`),
    };
    this.insertBatch = db.transaction((records: QueryRecord[]) => this.insertRows(records));
  }

  private str(v: string): number {
    let id = this.strIds.get(v);
    if (id !== undefined) return id;
    const row = this.st.strGet.get(v) as { id: number } | undefined;
    id = row ? row.id : Number(this.st.strIns.run(v).lastInsertRowid);
    if (this.strIds.size >= INTERN_CACHE_MAX) this.strIds.clear();
    this.strIds.set(v, id);
    return id;
  }

  private name(v: string): number {
    let id = this.nameIds.get(v);
    if (id !== undefined) return id;
    const row = this.st.nameGet.get(v) as { id: number } | undefined;
    if (row) id = row.id;
    else {
      id = Number(this.st.nameIns.run(v).lastInsertRowid);
      this.st.ftsIns.run(id, v);
    }
    if (this.nameIds.size >= INTERN_CACHE_MAX) this.nameIds.clear();
    this.nameIds.set(v, id);
    return id;
  }

  /** One transaction; throws if the disk refuses (the caller counts the batch as lost). */
  append(records: QueryRecord[]): void {
    if (records.length) this.insertBatch(records);
  }

  private insertRows(records: QueryRecord[]): void {
    const mins = new Map<number, number[]>();
    const clients = new Map<string, number>();
    const names = new Map<string, number[]>();
    const seen = new Map<number, { last: number; dev?: QueryRecord['device'] }>();
    for (const r of records) {
      // A record from another component with a missing field must not cost the whole batch.
      if (typeof r.time !== 'number' || !Number.isFinite(r.time)) { this.skipped++; continue; }
      const info: Info = { tr: String(r.transport ?? '') };
      if (r.device) info.dev = r.device;
      if (r.group) info.g = r.group;
      if (r.list) info.l = r.list;
      if (r.rule) info.r = r.rule;
      if (r.dropReason) info.dr = r.dropReason;
      if (r.upstream) info.up = r.upstream;
      const client = this.str(String(r.client ?? ''));
      const name = this.name(String(r.qname ?? ''));
      const res = encodeRes(r);
      const blocked = r.answeredBy === 'blocked' ? 1 : 0;
      const cached = r.answeredBy === 'cache' || r.answeredBy === 'stale' ? 1 : 0;
      const dropped = r.kind === 'dropped' ? 1 : 0;
      const ans = Array.isArray(r.answers) && r.answers.length ? r.answers.join('\n') : null;
      this.st.qIns.run(r.time, client, name, qtypeNumber(String(r.qtype ?? '')), res, this.str(String(r.server ?? '')), r.serverPort | 0,
        this.str(JSON.stringify(info)), r.clientPort || null, r.latencyMs !== undefined ? Math.round(r.latencyMs * 1000) : null,
        r.upstreamLatencyMs !== undefined ? Math.round(r.upstreamLatencyMs * 1000) : null,
        ans);
      const m = Math.floor(r.time / MINUTE);
      let a = mins.get(m);
      if (!a) mins.set(m, (a = [0, 0, 0, 0]));
      a[0]++; a[1] += blocked; a[2] += cached; a[3] += dropped;
      const h = Math.floor(r.time / HOUR);
      const ck = `${h}|${client}`;
      clients.set(ck, (clients.get(ck) ?? 0) + 1);
      const nk = `${h}|${name}`;
      let nn = names.get(nk);
      if (!nn) names.set(nk, (nn = [0, 0]));
      nn[0]++; nn[1] += blocked;
      const s = seen.get(client);
      if (!s) seen.set(client, { last: r.time, dev: r.device });
      else { if (r.time > s.last) s.last = r.time; if (r.device) s.dev = r.device; }
    }
    for (const [m, a] of mins) this.st.minUp.run(m, a[0], a[1], a[2], a[3]);
    for (const [k, n] of clients) { const i = k.indexOf('|'); this.st.clientUp.run(Number(k.slice(0, i)), Number(k.slice(i + 1)), n); }
    for (const [k, a] of names) { const i = k.indexOf('|'); this.st.nameUp.run(Number(k.slice(0, i)), Number(k.slice(i + 1)), a[0], a[1]); }
    for (const [c, s] of seen) this.st.seenUp.run(c, s.last, s.dev?.id ?? null, s.dev?.name ?? null, s.dev?.mac ?? null);
  }

  /** Client ids matching an address or a device name. */
  private clientIds(client: string): number[] {
    const ids = new Set<number>();
    const a = this.db.prepare('SELECT id FROM str WHERE v = ?').get(client) as { id: number } | undefined;
    if (a) ids.add(a.id);
    for (const r of this.db.prepare('SELECT client FROM client_seen WHERE dev_name = ? COLLATE NOCASE OR dev_id = ?').all(client, client) as { client: number }[]) ids.add(r.client);
    return [...ids];
  }

  /** Name ids containing `sub`: trigram index for 3+ characters, a dictionary scan below that. */
  private nameIdsSql(sub: string): { sql: string; args: unknown[] } {
    const s = sub.toLowerCase();
    if ([...s].length >= 3) return { sql: 'SELECT rowid FROM name_fts WHERE name_fts MATCH ?', args: [`"${s.replace(/"/g, '""')}"`] };
    return { sql: "SELECT id FROM name WHERE instr(v, ?) > 0", args: [s] };
  }

  search(q: SearchQuery): SearchResult {
    const limit = Math.min(Math.max(1, q.limit ?? 100), 1000);
    // Everything but the name: it has its own strategies below.
    const base: string[] = [];
    const args: unknown[] = [];
    if (q.client !== undefined && q.client !== '') {
      const ids = this.clientIds(q.client);
      if (!ids.length) return { items: [], nextCursor: null };
      base.push(`q.client IN (${ids.map(() => '?').join(',')})`);
      args.push(...ids);
    }
    if (q.type) { base.push('q.qtype = ?'); args.push(qtypeNumber(q.type.toUpperCase())); }
    if (q.result) { const c = resultCondition(q.result); base.push('(q.res & ?) = ?'); args.push(c.mask, c.value); }
    if (q.from !== undefined) { base.push('q.t >= ?'); args.push(q.from); }
    if (q.to !== undefined) { base.push('q.t < ?'); args.push(q.to); }
    const cur = decodeCursor(q.cursor);
    if (q.cursor && !cur) throw new RangeError('bad cursor');
    if (cur) { base.push('(q.t < ? OR (q.t = ? AND q.id < ?))'); args.push(cur.t, cur.t, cur.id); }
    const cols = 'q.id, q.t, q.qtype, q.res, q.dport, q.cport, q.lat, q.ulat, q.ans, c.v AS client, n.v AS qname, d.v AS dest, i.v AS info';
    const joins = 'JOIN str c ON c.id = q.client JOIN name n ON n.id = q.name JOIN str d ON d.id = q.dest JOIN str i ON i.id = q.info';
    const W = (conds: string[]) => (conds.length ? 'WHERE ' + conds.join(' AND ') : '');
    let rows: Row[] | null = null;
    if (q.name !== undefined && q.name !== '') {
      const sub = q.name.toLowerCase();
      const probeRows = this.opts.nameProbeRows ?? NAME_PROBE_ROWS;
      // A common substring ("google") matches tens of thousands of names, and the trigram index is slow
      // to list them; the newest rows find enough matches sooner. Probe a bounded window of the newest
      // rows first; the result is complete if it filled the page or the window held every candidate row.
      const probe = this.db.prepare(`SELECT ${cols} FROM (SELECT * FROM q ${W(base)} ORDER BY t DESC, id DESC LIMIT ${probeRows}) q ${joins}
        WHERE instr(n.v, ?) > 0 ORDER BY q.t DESC, q.id DESC LIMIT ?`).all(...args, sub, limit + 1) as Row[];
      if (probe.length > limit) rows = probe;
      else {
        const window = this.db.prepare(`SELECT count(*) FROM (SELECT 1 FROM q ${W(base)} ORDER BY t DESC, id DESC LIMIT ${probeRows})`).pluck().get(...args) as number;
        if (window < probeRows) rows = probe;
      }
      if (!rows) {
        const n = this.nameIdsSql(q.name);
        const ids = (this.db.prepare(`${n.sql} LIMIT 1001`).raw().all(...n.args) as number[][]).map((r) => r[0]);
        if (!ids.length) return { items: [], nextCursor: null };
        const cond = ids.length <= 1000
          // Few matching names: read their rows through the (name, t) index. With a client filter too,
          // the unary + leaves the index choice to the client side.
          ? `${q.client ? '+' : ''}q.name IN (${ids.map(() => '?').join(',')})`
          // Many: walk newest first and test each row's name.
          : `+q.name IN (${n.sql})`;
        const nameArgs = ids.length <= 1000 ? ids : n.args;
        rows = this.db.prepare(`SELECT ${cols} FROM q ${joins} ${W([...base, cond])} ORDER BY q.t DESC, q.id DESC LIMIT ?`).all(...args, ...nameArgs, limit + 1) as Row[];
      }
    } else {
      rows = this.db.prepare(`SELECT ${cols} FROM q ${joins} ${W(base)} ORDER BY q.t DESC, q.id DESC LIMIT ?`).all(...args, limit + 1) as Row[];
    }
    const more = rows.length > limit;
    if (more) rows.pop();
    const items = rows.map(rowToRecord);
    const last = rows[rows.length - 1];
    return { items, nextCursor: more && last ? encodeCursor(last.t, last.id) : null };
  }

  stats(q: StatsQuery, now = Date.now()): StatsResult {
    const to = q.to ?? now;
    const from = q.from ?? to - DAY;
    const span = Math.max(1, to - from);
    // Buckets are whole minutes (the rollup grain); about 100 of them unless asked otherwise.
    const step = Math.max(MINUTE, Math.ceil((q.step ?? span / 100) / MINUTE) * MINUTE);
    const top = Math.min(Math.max(1, q.top ?? 10), 100);
    const mFrom = Math.floor(from / MINUTE), mTo = Math.ceil(to / MINUTE);
    const rows = this.db.prepare('SELECT m, total, blocked, cache, dropped FROM agg_min WHERE m >= ? AND m < ?').raw().all(mFrom, mTo) as number[][];
    const base = Math.floor(from / step) * step;
    const nb = Math.max(1, Math.ceil((to - base) / step));
    const series = Array.from({ length: nb }, (_, i) => ({ time: base + i * step, total: 0, blocked: 0, cacheHits: 0 }));
    let total = 0, blocked = 0, cacheHits = 0, dropped = 0;
    for (const [m, t, b, c, d] of rows) {
      total += t; blocked += b; cacheHits += c; dropped += d;
      const i = Math.floor((m * MINUTE - base) / step);
      const p = series[Math.min(Math.max(i, 0), nb - 1)];
      p.total += t; p.blocked += b; p.cacheHits += c;
    }
    // Top lists come from hourly rollups: the edges of the range round out to whole hours.
    const hFrom = Math.floor(from / HOUR), hTo = Math.ceil(to / HOUR);
    const topClients = this.db.prepare(`SELECT s.v AS key, x.count, cs.dev_name AS name FROM (
        SELECT client, sum(n) AS count FROM agg_client WHERE h >= ? AND h < ? GROUP BY client ORDER BY count DESC LIMIT ?) x
      JOIN str s ON s.id = x.client LEFT JOIN client_seen cs ON cs.client = x.client ORDER BY x.count DESC`).all(hFrom, hTo, top) as TopEntry[];
    const topNames = this.db.prepare(`SELECT nm.v AS key, x.count FROM (
        SELECT name, sum(n) AS count FROM agg_name WHERE h >= ? AND h < ? GROUP BY name ORDER BY count DESC LIMIT ?) x
      JOIN name nm ON nm.id = x.name ORDER BY x.count DESC`).all(hFrom, hTo, top) as TopEntry[];
    const topBlocked = this.db.prepare(`SELECT nm.v AS key, x.count FROM (
        SELECT name, sum(b) AS count FROM agg_name WHERE h >= ? AND h < ? AND b > 0 GROUP BY name ORDER BY count DESC LIMIT ?) x
      JOIN name nm ON nm.id = x.name ORDER BY x.count DESC`).all(hFrom, hTo, top) as TopEntry[];
    for (const e of topClients) if (e.name === null) delete e.name;
    return { from, to, step, total, blocked, cacheHits, dropped, series, topClients, topNames, topBlocked };
  }

  /** Clients seen in the store, with their query count over the last 24 h (hourly grain). */
  clients(now = Date.now()): ClientEntry[] {
    const h = Math.floor((now - DAY) / HOUR);
    const rows = this.db.prepare(`SELECT s.v AS address, cs.last, cs.dev_id, cs.dev_name, cs.mac,
        coalesce((SELECT sum(n) FROM agg_client a WHERE a.client = cs.client AND a.h >= ?), 0) AS n
      FROM client_seen cs JOIN str s ON s.id = cs.client ORDER BY cs.last DESC LIMIT 10000`).all(h) as
      { address: string; last: number; dev_id: string | null; dev_name: string | null; mac: string | null; n: number }[];
    return rows.map((r) => {
      const e: ClientEntry = { id: r.dev_id ?? `ip:${r.address}`, addresses: [r.address], lastSeen: r.last, queries24h: r.n };
      if (r.dev_name) e.name = r.dev_name;
      if (r.mac) e.mac = r.mac;
      return e;
    });
  }

  /** Bytes the database occupies: the main file's used pages plus the WAL. */
  sizeBytes(): number {
    const pageSize = this.db.pragma('page_size', { simple: true }) as number;
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const free = this.db.pragma('freelist_count', { simple: true }) as number;
    let wal = 0;
    try { wal = fs.statSync(this.opts.path + '-wal').size; } catch { /* no WAL yet */ }
    return (pages - free) * pageSize + wal;
  }

  /**
   * Retention by age, then by size. Deletes in chunks so that the writer is never held for long;
   * returns the rows deleted. Called by the worker about once a minute and by tests with a fixed `now`.
   */
  maintain(now = Date.now(), maxChunks = 50): number {
    let deleted = 0;
    let pruned = false;
    const hourNow = Math.floor(now / HOUR);
    this.pruneRollups(hourNow - 3, hourNow);
    const delOld = this.db.prepare('DELETE FROM q WHERE id IN (SELECT id FROM q WHERE t < ? ORDER BY t LIMIT 10000)');
    if (this.retentionDays > 0) {
      const cutoff = now - this.retentionDays * DAY;
      for (let i = 0; i < maxChunks; i++) {
        const n = delOld.run(cutoff).changes;
        deleted += n;
        if (n < 10000) break;
      }
      this.db.prepare('DELETE FROM agg_min WHERE m < ?').run(Math.floor(cutoff / MINUTE));
      this.db.prepare('DELETE FROM agg_client WHERE h < ?').run(Math.floor(cutoff / HOUR));
      this.db.prepare('DELETE FROM agg_name WHERE h < ?').run(Math.floor(cutoff / HOUR));
      this.db.prepare('DELETE FROM client_seen WHERE last < ?').run(cutoff);
    }
    if (this.maxBytes > 0) {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
      for (let i = 0; i < maxChunks && this.sizeBytes() > this.maxBytes; i++) {
        const rows = (this.db.prepare('SELECT count(*) AS n FROM q').get() as { n: number }).n;
        if (rows === 0) break;
        const size = this.sizeBytes();
        // Delete the oldest share that brings the size 10 % under the bound (the estimate assumes
        // rows dominate the file), at least 100 rows so small stores converge.
        const share = Math.min(1, (size - this.maxBytes * 0.9) / size);
        const n = Math.max(100, Math.ceil(rows * share));
        const oldest = this.db.prepare('SELECT t FROM q ORDER BY t LIMIT 1 OFFSET ?').get(Math.min(n, rows) - 1) as { t: number };
        deleted += this.db.prepare('DELETE FROM q WHERE t <= ?').run(oldest.t).changes;
        this.db.prepare('DELETE FROM agg_min WHERE m < ?').run(Math.floor(oldest.t / MINUTE));
        this.db.prepare('DELETE FROM agg_client WHERE h < ?').run(Math.floor(oldest.t / HOUR));
        this.db.prepare('DELETE FROM agg_name WHERE h < ?').run(Math.floor(oldest.t / HOUR));
        this.pruneNames(true);
        pruned = true;
        this.db.pragma('incremental_vacuum');
        this.db.pragma('wal_checkpoint(TRUNCATE)');
      }
    }
    if (deleted > 0) {
      if (!pruned) this.pruneNames();
      this.db.pragma('incremental_vacuum');
    }
    this.retired += deleted;
    return deleted;
  }

  /**
   * Removes names no record refers to any more (and their trigram entries): with many one-off names
   * the dictionary is a large part of the file, and size retention could not converge without this.
   */
  pruneNames(compact = false): number {
    const find = this.db.prepare('SELECT id, v FROM name WHERE NOT EXISTS (SELECT 1 FROM q WHERE q.name = name.id) LIMIT 20000');
    const ftsDel = this.db.prepare("INSERT INTO name_fts(name_fts, rowid, v) VALUES ('delete', ?, ?)");
    const del = this.db.prepare('DELETE FROM name WHERE id = ?');
    let n = 0;
    for (let round = 0; round < 1000; round++) {
      const dead = find.all() as { id: number; v: string }[];
      if (!dead.length) break;
      this.db.transaction(() => { for (const d of dead) { ftsDel.run(d.id, d.v); del.run(d.id); } })();
      n += dead.length;
      if (dead.length < 20000) break;
    }
    if (n) {
      this.nameIds.clear();
      // FTS5 deletes are tombstones until segments merge: 'optimize' rewrites the index (size
      // retention must see the space back now), 'merge' does a bounded share of that work.
      if (compact) this.db.exec("INSERT INTO name_fts(name_fts) VALUES ('optimize')");
      else this.db.exec("INSERT INTO name_fts(name_fts, rank) VALUES ('merge', 200)");
    }
    return n;
  }

  /**
   * Keeps, for each completed hour in [hFrom, hTo), only the names among the hour's top
   * ROLLUP_NAMES_PER_HOUR by queries or by blocked queries. A busy office asks ~5,000 distinct names an
   * hour; summing all of them made a 24 h top list read ~150k rows. Top lists become approximate (a name
   * never in any hour's top 1,000 is not counted); totals and the time series stay exact.
   */
  pruneRollups(hFrom: number, hTo: number): number {
    // Ranked, not thresholded: most names of an hour tie at one query, and a threshold would keep them all.
    const del = this.db.prepare(`DELETE FROM agg_name WHERE h = ?
      AND name NOT IN (SELECT name FROM agg_name WHERE h = ? ORDER BY n DESC LIMIT ${ROLLUP_NAMES_PER_HOUR})
      AND name NOT IN (SELECT name FROM agg_name WHERE h = ? AND b > 0 ORDER BY b DESC LIMIT ${ROLLUP_NAMES_PER_HOUR})`);
    let n = 0;
    for (let h = hFrom; h < hTo; h++) n += del.run(h, h, h).changes;
    return n;
  }

  count(): number { return (this.db.prepare('SELECT count(*) AS n FROM q').get() as { n: number }).n; }

  close(): void {
    try { this.db.pragma('wal_checkpoint(TRUNCATE)'); } catch { /* closing anyway */ }
    this.db.close();
  }
}

interface Row {
  id: number; t: number; qtype: number; res: number; dport: number; cport: number | null; lat: number | null; ulat: number | null; ans: string | null;
  client: string; qname: string; dest: string; info: string;
}

function rowToRecord(r: Row): StoredRecord {
  const info = JSON.parse(r.info) as Info;
  const kind = KINDS[r.res & 3] ?? 'query';
  const by = BY[(r.res >> 2) & 7];
  const rc = (r.res >> 5) & 31;
  const out: StoredRecord = {
    id: encodeCursor(r.t, r.id), time: r.t, client: r.client, server: r.dest, serverPort: r.dport,
    transport: (info.tr ?? 'udp') as StoredRecord['transport'], qname: r.qname, qtype: qtypeText(r.qtype), kind,
  };
  if (r.cport !== null) out.clientPort = r.cport;
  if (r.ans !== null) out.answers = r.ans.split('\n');
  if (info.dev) out.device = info.dev;
  if (rc > 0) out.rcode = RCODES[rc - 1] ?? `RCODE${rc - 1}`;
  if (by) out.answeredBy = by;
  if (info.g) out.group = info.g;
  if (info.l) out.list = info.l;
  if (info.r) out.rule = info.r;
  if (info.dr) out.dropReason = info.dr;
  if (info.up) out.upstream = info.up;
  if (r.lat !== null) out.latencyMs = r.lat / 1000;
  if (r.ulat !== null) out.upstreamLatencyMs = r.ulat / 1000;
  return out;
}

export { BY_BLOCKED, BY_CACHE };
