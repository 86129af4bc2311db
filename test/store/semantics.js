// The search/stats/clients contract, checked the same way on every QueryStore (SQLite, PostgreSQL):
// a deterministic set of records goes in, and each answer is compared with the same question asked of
// the plain array in JavaScript.
const MIN = 60_000;
const HOUR = 3_600_000;

export const TV = { id: 'mac:02:00:00:00:00:01', name: 'tv', mac: '02:00:00:00:00:01' };
const CLIENTS = ['192.0.2.10', '192.0.2.11', '2001:db8::5'];
const NAMES = ['www.example.com', 'ads.tracker.example', 'a.co', 'mail.example.org'];

export function makeRecords(t0, n = 300) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const client = CLIENTS[i % 3];
    const qname = NAMES[i % 4];
    const r = {
      time: t0 + i * MIN, client, clientPort: 40000 + i, server: '198.51.100.53', serverPort: 53, transport: i % 10 === 0 ? 'tcp' : 'udp',
      qname, qtype: i % 2 ? 'AAAA' : 'A', kind: 'query', rcode: 'NOERROR', latencyMs: 1.25,
    };
    if (client !== '192.0.2.11') r.device = TV;
    if (qname === 'ads.tracker.example') { r.answeredBy = 'blocked'; r.group = 'kids'; r.list = 'ads'; r.rule = '||tracker.example^'; r.rcode = 'NXDOMAIN'; }
    else if (i % 5 === 0) r.answeredBy = 'cache';
    else { r.answeredBy = 'upstream'; r.upstream = 'udp://192.0.2.53:53'; r.upstreamLatencyMs = 0.75; r.answers = ['A 192.0.2.1', 'A 192.0.2.2']; }
    if (i % 50 === 49) { r.kind = 'dropped'; r.dropReason = 'ratelimit'; delete r.rcode; delete r.answeredBy; delete r.answers; delete r.upstream; delete r.upstreamLatencyMs; }
    out.push(r);
  }
  return out;
}

const newestFirst = (a) => [...a].sort((x, y) => y.time - x.time);

/** Runs the contract on `store` after appending `records` (made by makeRecords(t0)). */
export async function checkSemantics(t, store, records, t0) {
  const all = await store.search({ limit: 1000 });
  t.equal(all.items.length, records.length, 'every record is found');
  t.equal(all.nextCursor, null, 'no further page');
  t.same(all.items.map((r) => r.time), newestFirst(records).map((r) => r.time), 'newest first');

  const expectAll = newestFirst(records)[0];
  const got = all.items[0];
  for (const k of ['client', 'clientPort', 'server', 'serverPort', 'transport', 'qname', 'qtype', 'kind', 'device', 'latencyMs']) {
    t.same(got[k], expectAll[k], `field ${k} round-trips`);
  }
  const blockedIn = records.find((r) => r.answeredBy === 'blocked');
  const blockedOut = (await store.search({ result: 'blocked', limit: 1000 })).items.find((r) => r.time === blockedIn.time);
  t.same([blockedOut.group, blockedOut.list, blockedOut.rule, blockedOut.rcode], [blockedIn.group, blockedIn.list, blockedIn.rule, blockedIn.rcode], 'decision round-trips');
  const upIn = records.find((r) => r.answeredBy === 'upstream');
  const upOut = (await store.search({ from: upIn.time, to: upIn.time + 1 })).items[0];
  t.same([upOut.upstream, upOut.upstreamLatencyMs, upOut.answers], [upIn.upstream, upIn.upstreamLatencyMs, upIn.answers], 'upstream and answers round-trip');
  const dropIn = records.find((r) => r.kind === 'dropped');
  const dropOut = (await store.search({ from: dropIn.time, to: dropIn.time + 1 })).items[0];
  t.same([dropOut.kind, dropOut.dropReason, dropOut.rcode], ['dropped', 'ratelimit', undefined], 'a dropped record keeps its reason');

  const cases = [
    [{ client: '192.0.2.11' }, (r) => r.client === '192.0.2.11'],
    [{ client: 'TV' }, (r) => r.device?.name === 'tv'],
    [{ client: '198.51.100.99' }, () => false],
    [{ name: 'tracker' }, (r) => r.qname.includes('tracker')],
    [{ name: 'EXAMPLE.C' }, (r) => r.qname.includes('example.c')],
    [{ name: 'co' }, (r) => r.qname.includes('co')],
    [{ name: 'zz-none' }, () => false],
    [{ type: 'AAAA' }, (r) => r.qtype === 'AAAA'],
    [{ result: 'blocked' }, (r) => r.answeredBy === 'blocked'],
    [{ result: 'cache' }, (r) => r.answeredBy === 'cache'],
    [{ result: 'NXDOMAIN' }, (r) => r.rcode === 'NXDOMAIN'],
    [{ result: 'dropped' }, (r) => r.kind === 'dropped'],
    [{ from: t0 + 10 * MIN, to: t0 + 20 * MIN }, (r) => r.time >= t0 + 10 * MIN && r.time < t0 + 20 * MIN],
    [{ client: 'tv', name: 'example', type: 'A', from: t0 + HOUR }, (r) => r.device?.name === 'tv' && r.qname.includes('example') && r.qtype === 'A' && r.time >= t0 + HOUR],
  ];
  for (const [q, pred] of cases) {
    const res = await store.search({ ...q, limit: 1000 });
    t.same(res.items.map((r) => r.time), newestFirst(records.filter(pred)).map((r) => r.time), `search ${JSON.stringify(q)}`);
  }

  // Pages: no record twice, none missing, and a page boundary between equal timestamps holds.
  const seen = [];
  let cursor;
  for (let page = 0; page < 100; page++) {
    const res = await store.search({ client: 'tv', limit: 7, cursor });
    seen.push(...res.items.map((r) => r.id));
    if (!res.nextCursor) break;
    cursor = res.nextCursor;
  }
  const tvAll = (await store.search({ client: 'tv', limit: 1000 })).items.map((r) => r.id);
  t.same(seen, tvAll, 'paging by 7 yields the same records in the same order');
  t.equal(new Set(seen).size, seen.length, 'no record on two pages');

  await t.rejects(store.search({ cursor: 'not-a-cursor' }), RangeError, 'a bad cursor is a RangeError');
  await t.rejects(store.search({ result: 'sideways' }), RangeError, 'an unknown result filter is a RangeError');

  const st = await store.stats({ from: t0, to: t0 + 5 * HOUR, step: HOUR });
  const inRange = records.filter((r) => r.time >= t0 && r.time < t0 + 5 * HOUR);
  t.equal(st.total, inRange.length, 'stats total');
  t.equal(st.blocked, inRange.filter((r) => r.answeredBy === 'blocked').length, 'stats blocked');
  t.equal(st.cacheHits, inRange.filter((r) => r.answeredBy === 'cache' || r.answeredBy === 'stale').length, 'stats cache hits');
  t.equal(st.dropped, inRange.filter((r) => r.kind === 'dropped').length, 'stats dropped');
  t.same(st.series.map((p) => p.total), [0, 1, 2, 3, 4].map((h) => inRange.filter((r) => Math.floor((r.time - t0) / HOUR) === h).length), 'series per hour');
  t.same(st.series.map((p) => p.time), [0, 1, 2, 3, 4].map((h) => t0 + h * HOUR), 'series bucket times');
  const count = (key) => { const m = new Map(); for (const r of inRange) m.set(key(r), (m.get(key(r)) ?? 0) + 1); return m; };
  const clientCounts = count((r) => r.client);
  t.same(new Map(st.topClients.map((e) => [e.key, e.count])), clientCounts, 'top clients with counts');
  t.equal(st.topClients.find((e) => e.key === '192.0.2.10').name, 'tv', 'top clients carry the device name');
  t.same(new Map(st.topNames.map((e) => [e.key, e.count])), count((r) => r.qname), 'top names with counts');
  t.same(st.topBlocked.map((e) => [e.key, e.count]), [['ads.tracker.example', inRange.filter((r) => r.answeredBy === 'blocked').length]], 'top blocked names');
  const counts = st.topNames.map((e) => e.count);
  t.same(counts, [...counts].sort((a, b) => b - a), 'top names in descending order');

  const clients = await store.clients();
  const tv = clients.find((c) => c.name === 'tv');
  t.ok(tv, 'the tv is one client');
  t.same([...tv.addresses].sort(), ['192.0.2.10', '2001:db8::5'], 'both of its addresses fold into it (same MAC)');
  t.equal(tv.mac, TV.mac);
  t.equal(tv.queries24h, records.filter((r) => r.device).length, 'queries in the last 24 h');
  t.equal(tv.lastSeen, Math.max(...records.filter((r) => r.device).map((r) => r.time)), 'last seen');
  const plain = clients.find((c) => c.addresses.includes('192.0.2.11'));
  t.equal(plain.name, undefined, 'an unnamed client has no name');
  t.equal(clients.length, 2, 'two clients in all');
}
