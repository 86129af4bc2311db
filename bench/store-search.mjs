#!/usr/bin/env node
// node bench/store-search.mjs [--records 5000000] [--days 30] [--db PATH] [--keep] [--runs 100] [--cache-mib 16] [--gen-cache-mib 512] [--postgres]
//
// Search on a large synthetic query history (issue 17's targets are for 50 million records, "a month of
// a busy office"): 400 clients, 300k distinct names with a Zipf-like popularity, 8 % blocked, 30 % cache
// hits, spread evenly over --days. Generation writes through the store's own code (SqliteDb, the code the
// worker runs) in 20k-record transactions; a --db that already holds records is reused (--keep keeps it).
// Reported: generation rate, bytes per record on disk, and over --runs random queries each:
//   client + 24 h range (newest 100), name substring (newest 100), 24 h stats, the API's three search shapes;
// plus process RSS with the SQLite page cache capped at --cache-mib.
// --postgres runs the same on a throwaway PostgreSQL 15 (test/store/pg-server.js), through PgStore.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SqliteDb } from '../dist/store/sqlite-db.js';

const args = process.argv.slice(2);
const opt = (name, fallback) => { const i = args.indexOf(name); return i >= 0 ? args.splice(i, 2)[1] : fallback; };
const flag = (name) => { const i = args.indexOf(name); if (i >= 0) args.splice(i, 1); return i >= 0; };
const N = Number(opt('--records', '5000000'));
const DAYS = Number(opt('--days', '30'));
const RUNS = Number(opt('--runs', '100'));
const CACHE_MIB = Number(opt('--cache-mib', '16'));
const GEN_CACHE_MIB = Number(opt('--gen-cache-mib', '512'));
const usePg = flag('--postgres');
const keep = flag('--keep');
const dbPath = opt('--db', path.join(os.tmpdir(), `store-bench-${N}.db`));

const DAY = 86_400_000;
const CLIENTS = 400;
const NAMES = 300_000;
const end = Math.floor(Date.now() / 60_000) * 60_000;
const start = end - DAYS * DAY;

// Deterministic generator (xorshift) so runs compare.
let seed = 0x9e3779b9;
const rnd = () => { seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0; return seed / 4294967296; };
const words = ['api', 'cdn', 'img', 'static', 'edge', 'mail', 'login', 'push', 'telemetry', 'update', 'ads', 'track', 'media', 'video', 'auth', 'sync'];
const tlds = ['com', 'net', 'org', 'io', 'de', 'co.uk', 'example'];
const names = Array.from({ length: NAMES }, (_, i) => `${words[i % 16]}${i % 7 ? '-' + (i % 97) : ''}.${['google', 'apple', 'microsoft', 'amazon', 'netflix', 'zoom', 'corp', 'tracker', 'cloudflare', 'meta'][i % 10]}${Math.floor(i / 160)}.${tlds[i % 7]}`);
// Zipf-ish: index = floor(NAMES * u^3) puts most queries on few names and keeps a long tail.
const pickName = () => Math.floor(NAMES * rnd() ** 3);
const clients = Array.from({ length: CLIENTS }, (_, i) => (i < 300 ? `10.1.${i >> 8}.${i & 255}` : `2001:db8:1::${(i - 300).toString(16)}`));
const devices = clients.map((c, i) => (i % 3 === 0 ? { id: `mac:02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`, name: `host-${i}` } : undefined));

function record(i) {
  const ci = Math.floor(CLIENTS * rnd() ** 2);
  const ni = pickName();
  const blocked = ni % 12 === 7;
  const u = rnd();
  const r = {
    time: start + Math.floor((i / N) * (end - start)), client: clients[ci], clientPort: 1024 + Math.floor(rnd() * 60000), server: '198.51.100.53', serverPort: 53,
    transport: 'udp', qname: names[ni], qtype: u < 0.6 ? 'A' : u < 0.9 ? 'AAAA' : 'HTTPS', kind: 'query', rcode: blocked ? 'NXDOMAIN' : 'NOERROR',
    latencyMs: Math.round(rnd() * 40_000) / 1000,
  };
  if (devices[ci]) r.device = devices[ci];
  if (blocked) { r.answeredBy = 'blocked'; r.list = 'ads'; r.rule = `||${names[ni]}^`; }
  else if (u < 0.3) r.answeredBy = 'cache';
  else { r.answeredBy = 'upstream'; r.upstream = 'https://dns.example/dns-query'; r.upstreamLatencyMs = r.latencyMs * 0.8; r.answers = [`A 192.0.2.${ni & 255}`]; }
  return r;
}

function pct(xs, p) { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; }
async function timeRuns(label, fn) {
  const ts = [];
  let rows = 0;
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    rows += (await fn(i)) ?? 0;
    ts.push(performance.now() - t0);
  }
  console.log(`${label.padEnd(44)} p50 ${pct(ts, 0.5).toFixed(1).padStart(7)} ms  p95 ${pct(ts, 0.95).toFixed(1).padStart(7)} ms  max ${Math.max(...ts).toFixed(1).padStart(7)} ms  (avg ${(rows / RUNS).toFixed(0)} rows)`);
  return pct(ts, 0.95);
}
const rss = () => (fs.readFileSync('/proc/self/status', 'utf8').match(/VmRSS:\s+(\d+)/)[1] / 1024).toFixed(0);
const hwm = () => (fs.readFileSync('/proc/self/status', 'utf8').match(/VmHWM:\s+(\d+)/)[1] / 1024).toFixed(0);

async function generate(appendBatch) {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const B = 20_000;
  for (let i = 0; i < N; i += B) {
    const batch = [];
    for (let k = i; k < Math.min(N, i + B); k++) batch.push(record(k));
    await appendBatch(batch);
    if ((i / B) % 50 === 0) process.stderr.write(`\r${i}/${N} ${((i / ((performance.now() - t0) / 1000)) | 0)} rec/s   `);
  }
  process.stderr.write('\n');
  const s = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  console.log(`generated ${N} records in ${s.toFixed(0)} s (${(N / s).toFixed(0)} records/s; ${((cpu.user + cpu.system) / N).toFixed(1)} µs CPU per record incl. generation)`);
}

// Query mixes, the same for both backends.
const substrings = ['tracker', 'netflix1', 'telemetry', 'zoom12.', 'push-4', 'apple9', 'xyz-none', 'api.', 'amazon3', 'edge-5'];
const clientQ = (i) => clients[Math.floor(CLIENTS * ((i * 0.618) % 1))];
const dayStart = (i) => end - (1 + (i % (DAYS - 1))) * DAY;

async function runQueries(store, sync) {
  const call = async (f) => (sync ? f() : await f());
  const res = {};
  res.client = await timeRuns('client + 24 h range, newest 100', async (i) => (await call(() => store.search({ client: clientQ(i), from: dayStart(i), to: dayStart(i) + DAY, limit: 100 }))).items.length);
  res.clientName = await timeRuns('device name + 24 h range, newest 100', async (i) => (await call(() => store.search({ client: `host-${(i * 3) % 300}`, from: dayStart(i), to: dayStart(i) + DAY, limit: 100 }))).items.length);
  res.name = await timeRuns('name substring, newest 100', async (i) => (await call(() => store.search({ name: substrings[i % substrings.length], limit: 100 }))).items.length);
  res.nameRange = await timeRuns('name substring + 24 h range, newest 100', async (i) => (await call(() => store.search({ name: substrings[i % substrings.length], from: dayStart(i), to: dayStart(i) + DAY, limit: 100 }))).items.length);
  res.blocked = await timeRuns('result=blocked, newest 100', async () => (await call(() => store.search({ result: 'blocked', limit: 100 }))).items.length);
  const runs = RUNS;
  res.stats = await timeRuns('stats, last 24 h (step 15 min)', async () => (await call(() => store.stats({ from: end - DAY, to: end, step: 900_000 }))).total);
  void runs;
  return res;
}

if (!usePg) {
  const fresh = !fs.existsSync(dbPath);
  console.log(`SQLite ${dbPath} (${fresh ? 'new' : 'existing'}), page cache ${CACHE_MIB} MiB, ${os.cpus().length} CPUs, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  if (fresh) {
    // Generation may use a large page cache (random index inserts); the queries run with the cap.
    const gen = new SqliteDb({ path: dbPath, cacheKiB: GEN_CACHE_MIB * 1024 });
    await generate((b) => gen.append(b));
    gen.db.exec('ANALYZE');
    gen.close();
  }
  const db = new SqliteDb({ path: dbPath, cacheKiB: CACHE_MIB * 1024 });
  // What the worker's minute-by-minute maintenance does during ingestion (generation skips it).
  const pruned = db.pruneRollups(Math.floor(start / 3_600_000), Math.floor(end / 3_600_000));
  if (pruned) { db.db.pragma('wal_checkpoint(TRUNCATE)'); console.log(`name rollups pruned to each hour's top names (${pruned} rows)`); }
  const count = db.count();
  const bytes = fs.statSync(dbPath).size;
  console.log(`${count} records, ${(bytes / 2 ** 20).toFixed(0)} MiB on disk, ${(bytes / count).toFixed(1)} bytes/record; RSS ${rss()} MiB`);
  await runQueries(db, true);
  console.log(`RSS after queries ${rss()} MiB (peak ${hwm()} MiB), SQLite page cache cap ${CACHE_MIB} MiB`);
  db.close();
  if (!keep && fresh) for (const f of [dbPath, `${dbPath}-wal`, `${dbPath}-shm`]) fs.rmSync(f, { force: true });
} else {
  const { startPostgres } = await import('../test/store/pg-server.js');
  const { PgStore } = await import('../dist/store/postgres.js');
  const pg = await startPostgres();
  try {
    const store = await PgStore.open({ url: pg.url, gatewayId: 'bench', retentionDays: 0, maintainEveryMs: 0, queueMax: 10_000_000, batchMax: 5000 });
    // Partitions for the whole synthetic month.
    for (let d = DAYS + 1; d >= 0; d--) await store.maintain(end - d * DAY);
    console.log(`PostgreSQL 15 at ${pg.url}, ${os.cpus().length} CPUs`);
    await generate(async (b) => { for (const r of b) store.append(r); await store.drain(); });
    const { default: pgmod } = await import('pg');
    const c = new pgmod.Client({ connectionString: pg.url });
    await c.connect();
    await c.query('ANALYZE');
    const size = Number((await c.query("SELECT sum(pg_total_relation_size(c.oid)) AS s FROM pg_class c WHERE c.relname LIKE 'dns_queries%' AND c.relkind IN ('r', 'p')")).rows[0].s);
    await c.end();
    const count = await store.count();
    console.log(`${count} records, ${(size / 2 ** 20).toFixed(0)} MiB (tables + indexes), ${(size / count).toFixed(1)} bytes/record`);
    await runQueries(store, false);
    await store.close();
  } finally {
    await pg.stop();
  }
}
