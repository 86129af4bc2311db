// The fleet store: several gateways write to one PostgreSQL, each row tagged with its gateway. The
// table is partitioned by day (declarative range partitions on the time column), created ahead and
// dropped whole for retention — no row-by-row DELETE on a big table. Substring search on names uses a
// pg_trgm GIN index when the extension is available.
import pg from 'pg';
import { BatchingStore, type BatchingOptions } from './batching.js';
import type { ClientEntry, QueryRecord, SearchQuery, SearchResult, StatsQuery, StatsResult, StoredRecord, TopEntry } from './types.js';
import type { DeviceResolver } from '../devices/types.js';
import { mergeClients, type GroupOf } from './clients.js';
import { decodeCursor, encodeCursor } from './sqlite-db.js';

export interface PgStoreOptions extends BatchingOptions {
  url: string;
  retentionDays?: number;
  gatewayId: string;
  devices?: DeviceResolver | null;
  groupOf?: GroupOf;
  /** Table name prefix (tests use their own). */
  table?: string;
  /** Partition upkeep interval, ms (0: only at open). */
  maintainEveryMs?: number;
  /** Wall clock for partition upkeep (tests fix it). */
  clock?: () => number;
}

const DAY = 86_400_000;
const MINUTE = 60_000;
/** Days of partitions created ahead of today. */
const DAYS_AHEAD = 2;
const COLUMNS = ['t', 'gateway', 'client', 'client_port', 'device_id', 'device_name', 'mac', 'server', 'server_port', 'transport', 'qname', 'qtype',
  'kind', 'rcode', 'answered_by', 'grp', 'list', 'rule', 'drop_reason', 'upstream', 'upstream_ms', 'latency_ms', 'answers'] as const;
const TYPES = ['int8', 'text', 'text', 'int4', 'text', 'text', 'text', 'text', 'int4', 'text', 'text', 'text',
  'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'float4', 'float4', 'text'];
const RESULTS_BY = ['cache', 'stale', 'upstream', 'local', 'forward', 'blocked'];
const KINDS = ['query', 'dropped', 'bypass'];
const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'YXDOMAIN', 'YXRRSET', 'NXRRSET', 'NOTAUTH', 'NOTZONE'];

function ident(s: string): string {
  if (!/^[a-z_][a-z0-9_]{0,40}$/.test(s)) throw new Error(`bad table name "${s}"`);
  return s;
}

function dayName(table: string, dayStart: number): string {
  return `${table}_p${new Date(dayStart).toISOString().slice(0, 10).replace(/-/g, '')}`;
}

export class PgStore extends BatchingStore {
  readonly backend = 'postgres' as const;
  private readonly table: string;
  private readonly upkeepTimer: NodeJS.Timeout | null;
  private trigram = false;
  devices: DeviceResolver | null;
  partitionsDropped = 0;

  private constructor(readonly opts: PgStoreOptions, private readonly pool: pg.Pool) {
    super(opts);
    this.table = ident(opts.table ?? 'dns_queries');
    this.devices = opts.devices ?? null;
    const every = opts.maintainEveryMs ?? 3_600_000;
    this.upkeepTimer = every > 0 ? setInterval(() => { void this.maintain().catch((e: Error) => opts.onError?.(e)); }, every) : null;
    this.upkeepTimer?.unref();
  }

  static async open(opts: PgStoreOptions): Promise<PgStore> {
    const pool = new pg.Pool({ connectionString: opts.url, max: 4, connectionTimeoutMillis: 10_000, statement_timeout: 30_000 } as pg.PoolConfig);
    // An idle client losing its connection must not crash the process.
    pool.on('error', (e) => opts.onError?.(e));
    const s = new PgStore(opts, pool);
    try {
      await s.setup();
      await s.maintain();
    } catch (e) {
      await pool.end().catch(() => {});
      throw new Error(`cannot open query store ${redact(opts.url)}: ${(e as Error).message}`);
    }
    return s;
  }

  private async setup(): Promise<void> {
    const T = this.table;
    await this.transaction(async (c) => {
      // One gateway at a time creates the schema.
      await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [T]);
      try {
        await c.query('CREATE EXTENSION IF NOT EXISTS pg_trgm');
      } catch {
        // Not installed or not permitted: substring search falls back to a scan.
        await c.query('ROLLBACK'); await c.query('BEGIN'); await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [T]);
      }
      this.trigram = ((await c.query("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).rowCount ?? 0) > 0;
      await c.query(`CREATE SEQUENCE IF NOT EXISTS ${T}_id_seq`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${T} (
        id int8 NOT NULL DEFAULT nextval('${T}_id_seq'), t int8 NOT NULL, gateway text NOT NULL, client text NOT NULL, client_port int4,
        device_id text, device_name text, mac text, server text NOT NULL, server_port int4 NOT NULL, transport text NOT NULL,
        qname text NOT NULL, qtype text NOT NULL, kind text NOT NULL, rcode text, answered_by text, grp text, list text, rule text,
        drop_reason text, upstream text, upstream_ms float4, latency_ms float4, answers text
      ) PARTITION BY RANGE (t)`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${T}_default PARTITION OF ${T} DEFAULT`);
      await c.query(`CREATE INDEX IF NOT EXISTS ${T}_t ON ${T} (t)`);
      await c.query(`CREATE INDEX IF NOT EXISTS ${T}_client_t ON ${T} (client, t)`);
      if (this.trigram) await c.query(`CREATE INDEX IF NOT EXISTS ${T}_qname_trgm ON ${T} USING gin (qname gin_trgm_ops)`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${T}_clients (gateway text NOT NULL, client text NOT NULL, last int8 NOT NULL,
        device_id text, device_name text, mac text, PRIMARY KEY (gateway, client))`);
    });
  }

  /** Runs `fn` in one transaction on one pooled connection: committed, or rolled back if it throws. */
  private async transaction<R>(fn: (c: pg.PoolClient) => Promise<R>): Promise<R> {
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      const result = await fn(c);
      await c.query('COMMIT');
      return result;
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      c.release();
    }
  }

  /** Creates today's and the next days' partitions; drops those past retention. Returns partitions dropped. */
  async maintain(now = (this.opts.clock ?? Date.now)()): Promise<number> {
    const T = this.table;
    const today = Math.floor(now / DAY) * DAY;
    let dropped = 0;
    await this.transaction(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [T]);
      for (let d = -1; d <= DAYS_AHEAD; d++) {
        const start = today + d * DAY;
        const name = dayName(T, start);
        const exists = await c.query('SELECT 1 FROM pg_class WHERE relname = $1', [name]);
        if (exists.rowCount) continue;
        // Rows already in the default partition for that day would block the new partition: move them.
        await c.query(`CREATE TABLE ${name} (LIKE ${T} INCLUDING DEFAULTS)`);
        await c.query(`WITH moved AS (DELETE FROM ${T}_default WHERE t >= $1 AND t < $2 RETURNING *) INSERT INTO ${name} SELECT * FROM moved`, [start, start + DAY]);
        await c.query(`ALTER TABLE ${T} ATTACH PARTITION ${name} FOR VALUES FROM (${start}) TO (${start + DAY})`);
      }
      const retention = this.opts.retentionDays ?? 0;
      if (retention > 0) {
        const cutoff = today - retention * DAY;
        const parts = await c.query(`SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1`, [T]);
        for (const r of parts.rows as { relname: string; bound: string }[]) {
          const m = /TO \('?(\d+)'?\)/.exec(r.bound);
          if (m && Number(m[1]) <= cutoff) { await c.query(`DROP TABLE ${ident(r.relname)}`); dropped++; }
        }
        await c.query(`DELETE FROM ${T}_default WHERE t < $1`, [cutoff]);
        await c.query(`DELETE FROM ${T}_clients WHERE last < $1`, [cutoff]);
      }
    });
    this.partitionsDropped += dropped;
    return dropped;
  }

  protected async writeBatch(all: QueryRecord[]): Promise<void> {
    // A record from another component with a missing time must not cost the whole batch.
    const records = all.filter((r) => typeof r.time === 'number' && Number.isFinite(r.time));
    if (!records.length) return;
    const cols: unknown[][] = COLUMNS.map(() => new Array(records.length));
    const gw = this.opts.gatewayId;
    const seen = new Map<string, { last: number; dev?: QueryRecord['device'] }>();
    records.forEach((r, i) => {
      const v = [r.time, gw, String(r.client ?? ''), r.clientPort ?? null, r.device?.id ?? null, r.device?.name ?? null, r.device?.mac ?? null, String(r.server ?? ''), r.serverPort | 0,
        String(r.transport ?? ''), String(r.qname ?? ''), String(r.qtype ?? ''), String(r.kind ?? 'query'), r.rcode ?? null, r.answeredBy ?? null, r.group ?? null, r.list ?? null, r.rule ?? null,
        r.dropReason ?? null, r.upstream ?? null, r.upstreamLatencyMs ?? null, r.latencyMs ?? null, Array.isArray(r.answers) && r.answers.length ? r.answers.join('\n') : null];
      for (let k = 0; k < v.length; k++) cols[k][i] = v[k];
      const s = seen.get(r.client);
      if (!s) seen.set(r.client, { last: r.time, dev: r.device });
      else { s.last = Math.max(s.last, r.time); if (r.device) s.dev = r.device; }
    });
    const T = this.table;
    await this.transaction(async (c) => {
      await c.query(`INSERT INTO ${T} (${COLUMNS.join(',')}) SELECT * FROM unnest(${TYPES.map((t, i) => `$${i + 1}::${t}[]`).join(',')})`, cols);
      const cl = [...seen.entries()];
      await c.query(`INSERT INTO ${T}_clients (gateway, client, last, device_id, device_name, mac)
        SELECT $1, * FROM unnest($2::text[], $3::int8[], $4::text[], $5::text[], $6::text[]) ORDER BY 1
        ON CONFLICT (gateway, client) DO UPDATE SET last = greatest(${T}_clients.last, excluded.last),
          device_id = coalesce(excluded.device_id, ${T}_clients.device_id), device_name = coalesce(excluded.device_name, ${T}_clients.device_name),
          mac = coalesce(excluded.mac, ${T}_clients.mac)`,
      [gw, cl.map((e) => e[0]), cl.map((e) => e[1].last), cl.map((e) => e[1].dev?.id ?? null), cl.map((e) => e[1].dev?.name ?? null), cl.map((e) => e[1].dev?.mac ?? null)]);
    });
  }

  async search(q: SearchQuery): Promise<SearchResult> {
    const T = this.table;
    const limit = Math.min(Math.max(1, q.limit ?? 100), 1000);
    const where: string[] = [];
    const args: unknown[] = [];
    const arg = (v: unknown) => { args.push(v); return `$${args.length}`; };
    if (q.client) {
      const a = arg(q.client);
      where.push(`client IN (SELECT ${a}::text UNION SELECT client FROM ${T}_clients WHERE lower(device_name) = lower(${a}) OR device_id = ${a})`);
    }
    if (q.name) where.push(`qname LIKE ${arg(`%${q.name.toLowerCase().replace(/[\\%_]/g, (m) => '\\' + m)}%`)}`);
    if (q.type) where.push(`qtype = ${arg(q.type.toUpperCase())}`);
    if (q.result) {
      const r = q.result;
      if (RESULTS_BY.includes(r)) where.push(`answered_by = ${arg(r)}`);
      else if (KINDS.includes(r)) where.push(`kind = ${arg(r)}`);
      else if (RCODES.includes(r.toUpperCase())) where.push(`rcode = ${arg(r.toUpperCase())}`);
      else throw new RangeError(`unknown result filter "${r}" (one of ${[...RESULTS_BY, ...KINDS, ...RCODES].join(', ')})`);
    }
    if (q.from !== undefined) where.push(`t >= ${arg(q.from)}`);
    if (q.to !== undefined) where.push(`t < ${arg(q.to)}`);
    const cur = decodeCursor(q.cursor);
    if (q.cursor && !cur) throw new RangeError('bad cursor');
    if (cur) where.push(`(t, id) < (${arg(cur.t)}, ${arg(cur.id)})`);
    const res = await this.pool.query(`SELECT * FROM ${T} ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY t DESC, id DESC LIMIT ${arg(limit + 1)}`, args);
    const rows = res.rows as PgRow[];
    const more = rows.length > limit;
    if (more) rows.pop();
    const last = rows[rows.length - 1];
    return { items: rows.map(pgRowToRecord), nextCursor: more && last ? encodeCursor(Number(last.t), Number(last.id)) : null };
  }

  async stats(q: StatsQuery): Promise<StatsResult> {
    const T = this.table;
    const to = q.to ?? Date.now();
    const from = q.from ?? to - DAY;
    const step = Math.max(MINUTE, Math.ceil((q.step ?? (to - from) / 100) / MINUTE) * MINUTE);
    const top = Math.min(Math.max(1, q.top ?? 10), 100);
    const base = Math.floor(from / step) * step;
    const nb = Math.max(1, Math.ceil((to - base) / step));
    const series = Array.from({ length: nb }, (_, i) => ({ time: base + i * step, total: 0, blocked: 0, cacheHits: 0 }));
    const [buckets, tc, tn, tb] = await Promise.all([
      this.pool.query(`SELECT (t - $3::int8) / $4::int8 AS b, count(*)::int8 AS total, count(*) FILTER (WHERE answered_by = 'blocked')::int8 AS blocked,
          count(*) FILTER (WHERE answered_by IN ('cache', 'stale'))::int8 AS cache, count(*) FILTER (WHERE kind = 'dropped')::int8 AS dropped
        FROM ${T} WHERE t >= $1 AND t < $2 GROUP BY 1`, [from, to, base, step]),
      this.pool.query(`SELECT x.client AS key, x.count, c.device_name AS name FROM (SELECT client, count(*)::int8 AS count FROM ${T}
          WHERE t >= $1 AND t < $2 GROUP BY client ORDER BY 2 DESC LIMIT $3) x
        LEFT JOIN LATERAL (SELECT device_name FROM ${T}_clients c WHERE c.client = x.client AND device_name IS NOT NULL LIMIT 1) c ON true ORDER BY x.count DESC`, [from, to, top]),
      this.pool.query(`SELECT qname AS key, count(*)::int8 AS count FROM ${T} WHERE t >= $1 AND t < $2 GROUP BY qname ORDER BY 2 DESC LIMIT $3`, [from, to, top]),
      this.pool.query(`SELECT qname AS key, count(*)::int8 AS count FROM ${T} WHERE t >= $1 AND t < $2 AND answered_by = 'blocked' GROUP BY qname ORDER BY 2 DESC LIMIT $3`, [from, to, top]),
    ]);
    let total = 0, blocked = 0, cacheHits = 0, dropped = 0;
    for (const r of buckets.rows as { b: string; total: string; blocked: string; cache: string; dropped: string }[]) {
      const p = series[Math.min(Math.max(Number(r.b), 0), nb - 1)];
      p.total += Number(r.total); p.blocked += Number(r.blocked); p.cacheHits += Number(r.cache);
      total += Number(r.total); blocked += Number(r.blocked); cacheHits += Number(r.cache); dropped += Number(r.dropped);
    }
    const topList = (rows: { key: string; count: string; name?: string | null }[]): TopEntry[] => rows.map((r) => {
      const e: TopEntry = { key: r.key, count: Number(r.count) };
      if (r.name) e.name = r.name;
      return e;
    });
    return { from, to, step, total, blocked, cacheHits, dropped, series, topClients: topList(tc.rows), topNames: topList(tn.rows), topBlocked: topList(tb.rows) };
  }

  async clients(now = Date.now()): Promise<ClientEntry[]> {
    const T = this.table;
    const res = await this.pool.query(`SELECT c.client, max(c.last) AS last, max(c.device_id) AS device_id, max(c.device_name) AS device_name, max(c.mac) AS mac,
        coalesce((SELECT count(*) FROM ${T} q WHERE q.client = c.client AND q.t >= $1), 0)::int8 AS n
      FROM ${T}_clients c GROUP BY c.client ORDER BY 2 DESC LIMIT 10000`, [now - DAY]);
    const seen = (res.rows as { client: string; last: string; device_id: string | null; device_name: string | null; mac: string | null; n: string }[]).map((r) => {
      const e: ClientEntry = { id: r.device_id ?? `ip:${r.client}`, addresses: [r.client], lastSeen: Number(r.last), queries24h: Number(r.n) };
      if (r.device_name) e.name = r.device_name;
      if (r.mac) e.mac = r.mac;
      return e;
    });
    return mergeClients(seen, this.devices, this.opts.groupOf);
  }

  async count(): Promise<number> {
    return Number((await this.pool.query(`SELECT count(*) AS n FROM ${this.table}`)).rows[0].n);
  }

  protected async closeBackend(): Promise<void> {
    if (this.upkeepTimer) clearInterval(this.upkeepTimer);
    await this.pool.end();
  }
}

interface PgRow {
  id: string; t: string; gateway: string; client: string; client_port: number | null; device_id: string | null; device_name: string | null; mac: string | null;
  server: string; server_port: number; transport: string; qname: string; qtype: string; kind: string; rcode: string | null; answered_by: string | null;
  grp: string | null; list: string | null; rule: string | null; drop_reason: string | null; upstream: string | null; upstream_ms: number | null;
  latency_ms: number | null; answers: string | null;
}

function pgRowToRecord(r: PgRow): StoredRecord {
  const out: StoredRecord = {
    id: encodeCursor(Number(r.t), Number(r.id)), time: Number(r.t), client: r.client, server: r.server, serverPort: r.server_port,
    transport: r.transport, qname: r.qname, qtype: r.qtype, kind: r.kind as StoredRecord['kind'], gateway: r.gateway,
  };
  if (r.client_port !== null) out.clientPort = r.client_port;
  if (r.device_id || r.device_name || r.mac) {
    out.device = {};
    if (r.device_id) out.device.id = r.device_id;
    if (r.device_name) out.device.name = r.device_name;
    if (r.mac) out.device.mac = r.mac;
  }
  if (r.rcode) out.rcode = r.rcode;
  if (r.answered_by) out.answeredBy = r.answered_by as StoredRecord['answeredBy'];
  if (r.grp) out.group = r.grp;
  if (r.list) out.list = r.list;
  if (r.rule) out.rule = r.rule;
  if (r.drop_reason) out.dropReason = r.drop_reason;
  if (r.upstream) out.upstream = r.upstream;
  if (r.upstream_ms !== null) out.upstreamLatencyMs = r.upstream_ms;
  if (r.latency_ms !== null) out.latencyMs = r.latency_ms;
  if (r.answers) out.answers = r.answers.split('\n');
  return out;
}

/** The URL without its password, for messages. */
function redact(url: string): string {
  try { const u = new URL(url); if (u.password) u.password = '***'; return u.toString(); } catch { return 'postgres://…'; }
}
