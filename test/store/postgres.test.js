// The fleet store on a real PostgreSQL 15 started for this test (initdb + postgres on a loopback
// port): the same search/stats/clients contract as SQLite, two gateways in one table, day partitions
// created ahead and dropped for retention, and a reopen that keeps the history.
import t from 'tap';
import pg from 'pg';
import { PgStore } from '../../dist/store/postgres.js';
import { startPostgres, pgUnavailable } from './pg-server.js';
import { makeRecords, checkSemantics } from './semantics.js';

const HOUR = 3_600_000;
const DAY = 86_400_000;
const why = pgUnavailable();
if (why) {
  t.skip(why);
} else {
  const server = await startPostgres();
  t.teardown(() => server.stop());
  const open = async (t, opts = {}) => {
    const s = await PgStore.open({ url: server.url, gatewayId: 'gw-a', maintainEveryMs: 0, ...opts });
    t.teardown(() => s.close());
    return s;
  };

  t.test('search, stats and clients semantics', async (t) => {
    const s = await open(t, { table: 'sem' });
    const t0 = Math.floor(Date.now() / HOUR) * HOUR - 6 * HOUR;
    const records = makeRecords(t0);
    for (const r of records) s.append(r);
    await s.drain();
    t.equal(s.written, records.length);
    await checkSemantics(t, s, records, t0);
    const one = (await s.search({ limit: 1 })).items[0];
    t.equal(one.gateway, 'gw-a', 'records carry their gateway');
  });

  t.test('two gateways write to one table; each record keeps its gateway', async (t) => {
    const a = await open(t, { table: 'fleet', gatewayId: 'gw-a' });
    const b = await open(t, { table: 'fleet', gatewayId: 'gw-b' });
    const now = Date.now();
    const r = (client, i) => ({ time: now - i, client, server: '198.51.100.53', serverPort: 53, transport: 'udp', qname: `n${i}.example`, qtype: 'A', kind: 'query', rcode: 'NOERROR', answeredBy: 'upstream' });
    for (let i = 0; i < 50; i++) { a.append(r('192.0.2.1', i)); b.append(r('192.0.2.2', i)); }
    await Promise.all([a.drain(), b.drain()]);
    const all = (await a.search({ limit: 1000 })).items;
    t.equal(all.length, 100, 'either gateway reads the whole fleet');
    t.same(new Set(all.filter((x) => x.client === '192.0.2.2').map((x) => x.gateway)), new Set(['gw-b']));
    t.same(new Set(all.filter((x) => x.client === '192.0.2.1').map((x) => x.gateway)), new Set(['gw-a']));
  });

  t.test('day partitions: created ahead, dropped past retention, stray rows moved out of the default', async (t) => {
    const now = Date.UTC(2026, 10, 30, 12);
    const today = Math.floor(now / DAY) * DAY;
    // Backfill without retention; the retention round comes from a second store on the same table.
    const s = await open(t, { table: 'ret', clock: () => now });
    const c = new pg.Client({ connectionString: server.url });
    await c.connect();
    t.teardown(() => c.end());
    const partitions = async () => (await c.query("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'ret' ORDER BY 1")).rows.map((r) => r.relname);
    // Records over 6 days before `now`: those days have no partition yet, so they land in the default one.
    for (let h = 0; h < 6 * 24; h++) s.append({ time: now - h * HOUR, client: '192.0.2.1', server: '198.51.100.53', serverPort: 53, transport: 'udp', qname: `h${h}.example`, qtype: 'A', kind: 'query', rcode: 'NOERROR', answeredBy: 'upstream' });
    await s.drain();
    for (let d = 6; d >= 1; d--) await s.maintain(now - d * DAY);
    const before = await partitions();
    t.ok(before.includes(`ret_p${new Date(today - 5 * DAY).toISOString().slice(0, 10).replace(/-/g, '')}`), 'a partition for each past day');
    t.ok(before.includes(`ret_p${new Date(today + DAY).toISOString().slice(0, 10).replace(/-/g, '')}`), 'and the days ahead');
    const dflt = Number((await c.query('SELECT count(*) AS n FROM ret_default')).rows[0].n);
    t.equal(dflt, 0, 'rows that arrived before their partition were moved into it');
    const r = await open(t, { table: 'ret', retentionDays: 3, clock: () => now });
    t.ok(r.partitionsDropped >= 3, `the retention round at open dropped ${r.partitionsDropped} partitions`);
    t.equal(await r.maintain(now), 0, 'a second round drops nothing');
    const after = await partitions();
    t.notOk(after.some((p) => p.startsWith('ret_p') && p < `ret_p${new Date(today - 3 * DAY).toISOString().slice(0, 10).replace(/-/g, '')}`), 'no partition older than the retention');
    const kept = (await s.search({ limit: 1000 })).items;
    t.ok(kept.length > 0, 'recent records remain');
    t.ok(kept.every((r) => r.time >= today - 3 * DAY), 'nothing older than the retention remains');
    t.equal(kept.length, 6 * 24 - Math.ceil((today - 3 * DAY - (now - (6 * 24 - 1) * HOUR)) / HOUR), 'exactly the records of the retained days');
  });

  t.test('a reopen keeps the history', async (t) => {
    const a = await PgStore.open({ url: server.url, gatewayId: 'gw-a', table: 'reopen', maintainEveryMs: 0 });
    for (const r of makeRecords(Date.now() - HOUR, 20)) a.append(r);
    await a.close();
    const b = await open(t, { table: 'reopen' });
    t.equal(await b.count(), 20);
  });

  t.test('an unreachable database fails to open with a clear error (password not shown)', async (t) => {
    const err = await PgStore.open({ url: 'postgres://u:secret@127.0.0.1:1/db', gatewayId: 'x', maintainEveryMs: 0 }).then(() => null, (e) => e);
    t.ok(err, 'rejected');
    t.match(err.message, /^cannot open query store postgres:\/\/u:\*\*\*@127\.0\.0\.1:1\/db: /);
    t.notMatch(err.message, /secret/);
  });
}
