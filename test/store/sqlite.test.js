// The embedded store on a real SQLite file: the search/stats/clients contract, restart, retention by
// age (fixed clock) and by size, and the worker's handling of bad input.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../dist/store/sqlite.js';
import { makeRecords, checkSemantics } from './semantics.js';

const HOUR = 3_600_000;
const DAY = 86_400_000;
const t0 = () => Math.floor(Date.now() / HOUR) * HOUR - 6 * HOUR;

async function open(t, opts = {}) {
  const dir = opts.dir ?? t.testdir();
  const s = await SqliteStore.open({ path: path.join(dir, 'queries.db'), maintainEveryMs: 0, ...opts });
  t.teardown(() => s.close());
  return s;
}

t.test('search, stats and clients semantics', async (t) => {
  const s = await open(t);
  const start = t0();
  const records = makeRecords(start);
  for (const r of records) s.append(r);
  await s.drain();
  t.equal(s.written, records.length, 'all written');
  t.equal(s.droppedUnwritten, 0);
  t.ok(s.batches >= 1, 'in batches');
  await checkSemantics(t, s, records, start);
});

t.test('the same semantics when name searches go past the newest-rows probe to the trigram index', async (t) => {
  const s = await open(t, { nameProbeRows: 5 });
  const start = t0();
  const records = makeRecords(start);
  for (const r of records) s.append(r);
  await s.drain();
  await checkSemantics(t, s, records, start);
});

t.test('a restart keeps the history, and new records continue it', async (t) => {
  const dir = t.testdir();
  const start = t0();
  const records = makeRecords(start, 100);
  const a = await SqliteStore.open({ path: path.join(dir, 'queries.db'), maintainEveryMs: 0 });
  for (const r of records.slice(0, 60)) a.append(r);
  await a.close();
  const b = await open(t, { dir });
  t.equal(await b.count(), 60, 'history survives the restart');
  for (const r of records.slice(60)) b.append(r);
  await b.drain();
  const res = await b.search({ limit: 1000 });
  t.same(res.items.map((r) => r.time), records.map((r) => r.time).reverse(), 'old and new records in one history');
  const st = await b.stats({ from: start, to: start + 2 * HOUR, step: HOUR });
  t.equal(st.total, 100, 'rollups continue across the restart');
});

t.test('retention by age deletes old records and their rollups, keeps the rest', async (t) => {
  const s = await open(t, { retentionDays: 2 });
  const now = Date.UTC(2026, 10, 30, 12);
  // One record per hour over 5 days.
  const recs = [];
  for (let h = 0; h < 120; h++) recs.push({ time: now - (119 - h) * HOUR, client: '192.0.2.1', server: '198.51.100.1', serverPort: 53, transport: 'udp', qname: `h${h}.example`, qtype: 'A', kind: 'query', rcode: 'NOERROR', answeredBy: 'upstream' });
  for (const r of recs) s.append(r);
  await s.drain();
  const deleted = await s.maintain(now);
  const keep = recs.filter((r) => r.time >= now - 2 * DAY);
  t.equal(deleted, recs.length - keep.length, 'deleted exactly the records older than 2 days');
  t.equal(await s.count(), keep.length);
  const res = await s.search({ limit: 1000 });
  t.equal(Math.min(...res.items.map((r) => r.time)), Math.min(...keep.map((r) => r.time)), 'the oldest kept record is the first inside the window');
  const st = await s.stats({ from: now - 5 * DAY, to: now + 1, step: DAY });
  t.equal(st.total, keep.length, 'rollups older than the window are gone too');
  t.equal(await s.maintain(now), 0, 'a second round finds nothing to delete');
});

t.test('retention by size keeps the database under maxBytes and keeps the newest', async (t) => {
  const maxBytes = 1024 * 1024;
  const s = await open(t, { maxBytes });
  const now = Date.now();
  const n = 20_000;
  for (let i = 0; i < n; i++) {
    s.append({ time: now - (n - i) * 1000, client: `192.0.2.${i % 200}`, server: '198.51.100.53', serverPort: 53, transport: 'udp',
      qname: `host-${i}.some-longer-domain-name.example`, qtype: 'A', kind: 'query', rcode: 'NOERROR', answeredBy: 'upstream', answers: [`A 192.0.2.${i % 250}`] });
  }
  await s.drain();
  const before = await s.sizeBytes();
  t.ok(before > maxBytes, `the test data exceeds the bound (${before} > ${maxBytes})`);
  const deleted = await s.maintain(now);
  const after = await s.sizeBytes();
  t.ok(deleted > 0, `deleted ${deleted} records`);
  t.ok(after <= maxBytes, `size after retention ${after} <= ${maxBytes}`);
  const dbFile = fs.statSync(path.join(s.opts.path)).size;
  t.ok(dbFile <= maxBytes * 1.5, `the file itself shrank (${dbFile} bytes)`);
  const newest = (await s.search({ limit: 1 })).items[0];
  t.equal(newest.qname, `host-${n - 1}.some-longer-domain-name.example`, 'the newest record is kept');
  const left = await s.count();
  t.equal(left + deleted, n, 'every record either kept or deleted');
  const kept = [];
  let cursor;
  for (let page = 0; page < 100; page++) {
    const res = await s.search({ limit: 1000, cursor });
    kept.push(...res.items.map((r) => Number(r.qname.split('-')[1].split('.')[0])));
    if (!(cursor = res.nextCursor)) break;
  }
  t.same(kept, Array.from({ length: left }, (_, i) => n - 1 - i), 'what is left is exactly the newest records');
});

t.test('a record with missing fields does not cost its batch', async (t) => {
  const s = await open(t);
  const good = { time: Date.now(), client: '192.0.2.1', server: '198.51.100.1', serverPort: 53, transport: 'udp', qname: 'good.example', qtype: 'A', kind: 'query' };
  s.append({ kind: 'bypass', client: '192.0.2.1' });
  s.append({ time: Date.now(), kind: 'bypass', client: '192.0.2.1', answers: 'not an array' });
  s.append(good);
  await s.drain();
  t.equal(s.droppedUnwritten, 0, 'the batch was written');
  const items = (await s.search({ limit: 10 })).items;
  t.same(items.map((r) => r.qname).sort(), ['', 'good.example'], 'the record without a time is skipped; the others are kept');
});

t.test('a file that is not a database fails to open with a clear error', async (t) => {
  const dir = t.testdir({ 'queries.db': 'this is not sqlite, just text '.repeat(200) });
  await t.rejects(SqliteStore.open({ path: path.join(dir, 'queries.db') }), /cannot open query store .*queries\.db/);
});

t.test('the file is a plain WAL-mode SQLite database other tools can read', async (t) => {
  const dir = t.testdir();
  const s = await SqliteStore.open({ path: path.join(dir, 'queries.db'), maintainEveryMs: 0 });
  for (const r of makeRecords(t0(), 10)) s.append(r);
  await s.close();
  const db = new Database(path.join(dir, 'queries.db'), { readonly: true });
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  t.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  t.equal(db.prepare('SELECT count(*) AS n FROM q').get().n, 10);
  db.close();
});

t.test('name rollups keep each completed hour\'s top names (and every blocked one); totals stay exact', async (t) => {
  const s = await open(t);
  const hour = Math.floor(Date.UTC(2026, 10, 30, 10) / HOUR) * HOUR;
  const recs = [];
  // 1,500 distinct names once each, one name 50 times, one blocked name twice.
  for (let i = 0; i < 1500; i++) recs.push({ time: hour + i, client: '192.0.2.1', server: '198.51.100.1', serverPort: 53, transport: 'udp', qname: `once-${i}.example`, qtype: 'A', kind: 'query', rcode: 'NOERROR', answeredBy: 'upstream' });
  for (let i = 0; i < 50; i++) recs.push({ time: hour + 2000 + i, client: '192.0.2.1', server: '198.51.100.1', serverPort: 53, transport: 'udp', qname: 'popular.example', qtype: 'A', kind: 'query', rcode: 'NOERROR', answeredBy: 'cache' });
  for (let i = 0; i < 2; i++) recs.push({ time: hour + 3000 + i, client: '192.0.2.1', server: '198.51.100.1', serverPort: 53, transport: 'udp', qname: 'ads.example', qtype: 'A', kind: 'query', rcode: 'NXDOMAIN', answeredBy: 'blocked' });
  for (const r of recs) s.append(r);
  await s.drain();
  await s.maintain(hour + 2 * HOUR);
  const st = await s.stats({ from: hour, to: hour + HOUR, step: HOUR, top: 3 });
  t.equal(st.total, recs.length, 'the total counts every query');
  t.equal(st.topNames[0].key, 'popular.example');
  t.equal(st.topNames[0].count, 50);
  t.same(st.topBlocked, [{ key: 'ads.example', count: 2 }]);
  t.equal((await s.search({ name: 'once-1499' })).items.length, 1, 'records themselves are untouched');
  const db = new Database(s.opts.path, { readonly: true });
  const rows = db.prepare('SELECT count(*) AS n FROM agg_name WHERE h = ?').get(hour / HOUR).n;
  db.close();
  t.ok(rows <= 1002, `the hour's name rollup was cut to its top names (${rows} rows for 1,502 names)`);
});
