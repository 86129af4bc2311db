// Every console API endpoint against the real server: queries made through the plain listener are
// found with their client and destination; rules and pauses change the very next DNS answer; lists,
// device groups, the audit log, the SSE stream, health and metrics; state survives a restart; and each
// real response is checked against the OpenAPI document's schema with ajv.
import t from 'tap';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { ConsoleApi } from '../../dist/api/server.js';
import { consoleConfigOf } from '../../dist/api/config.js';
import { startStack, httpClient, poll, readAudit, passwordHash, fakeUpstream } from './helpers.js';

/** Responses seen by the tests, checked against the OpenAPI schemas at the end. */
const seen = [];
function recording(c) {
  const request = c.request;
  c.request = async (method, p, opts) => {
    const r = await request(method, p, opts);
    seen.push({ method: method.toLowerCase(), path: p.split('?')[0], status: r.status, json: r.json });
    return r;
  };
  for (const m of ['get', 'del']) c[m] = (p, o) => c.request(m === 'del' ? 'DELETE' : 'GET', p, o);
  c.post = (p, body, o = {}) => c.request('POST', p, { ...o, body });
  c.login = () => c.request('POST', '/api/v1/login', { body: { user: 'alice', password: 'correct horse battery staple' } });
  return c;
}
const put = (c, p, body) => c.request('PUT', p, { body });
const patch = (c, p, body) => c.request('PATCH', p, { body });

/** Waits (bounded) until the store returns a record for `name`. */
async function findQuery(c, name, extra = '') {
  const [r, attempts] = await poll(async () => {
    const res = await c.get(`/api/v1/queries?name=${encodeURIComponent(name)}${extra}`);
    return res.json?.items?.length ? res : null;
  }, 100, 30);
  return { res: r, attempts };
}

const upstream = await fakeUpstream();
t.teardown(() => upstream.close());
const stateDir = t.testdir();

t.test('queries, stats, clients: a query through the listener is found with its client and destination', async (t) => {
  const s = await startStack(t, { stateDir, upstream });
  const c = recording(httpClient(s.api));
  t.equal((await c.login()).status, 200);
  const a = await s.query('www.history.example');
  t.equal(a.rcode, 'NOERROR');
  await s.query('www.history.example', 'AAAA');
  await s.query('other.example');
  const { res } = await findQuery(c, 'history.example', '&type=A');
  t.ok(res, 'found through the API');
  const item = res.json.items[0];
  t.match(item, {
    qname: 'www.history.example', qtype: 'A', client: '127.0.0.1', clientPort: s.clientPort,
    server: '127.0.0.1', serverPort: s.dnsPort, transport: 'plain', kind: 'query', rcode: 'NOERROR', answeredBy: 'upstream',
  });
  t.type(item.id, 'string');
  t.type(item.time, 'number');
  t.match(item.answers, [/^A 192\.0\.2\./], 'answer summary');

  // newest first, paging with the cursor, filters
  await poll(async () => (await c.get('/api/v1/queries?name=example')).json.items.length >= 3, 100, 30);
  const p1 = await c.get('/api/v1/queries?name=example&limit=2');
  t.equal(p1.json.items.length, 2);
  t.ok(p1.json.items[0].time >= p1.json.items[1].time, 'newest first');
  t.type(p1.json.nextCursor, 'string');
  const p2 = await c.get(`/api/v1/queries?name=example&limit=2&cursor=${encodeURIComponent(p1.json.nextCursor)}`);
  t.ok(p2.json.items.length >= 1);
  t.notOk(p2.json.items.some((x) => p1.json.items.some((y) => y.id === x.id)), 'the second page holds other records');
  t.same((await c.get('/api/v1/queries?name=history&type=AAAA')).json.items.map((x) => x.qtype), ['AAAA']);
  t.equal((await c.get('/api/v1/queries?client=192.0.2.99')).json.items.length, 0, 'another client has none');
  t.ok((await c.get('/api/v1/queries?client=127.0.0.1')).json.items.length >= 3);
  t.equal((await c.get(`/api/v1/queries?from=${Date.now() + 3_600_000}`)).json.items.length, 0, 'time range');
  const bad = await c.get('/api/v1/queries?cursor=garbage');
  t.ok(bad.status === 400 || bad.status === 200, `a forged cursor is refused or ignored, never a 500 (${bad.status})`);

  const st = await c.get(`/api/v1/stats?from=${Date.now() - 3_600_000}&step=5m`);
  t.equal(st.status, 200);
  t.ok(st.json.total >= 3, `total ${st.json.total}`);
  t.equal(st.json.step, 300_000);
  t.ok(st.json.topNames.some((e) => e.key === 'www.history.example'));
  t.ok(st.json.topClients.some((e) => e.key === '127.0.0.1'));

  const cl = await c.get('/api/v1/clients');
  t.equal(cl.status, 200);
  t.ok(cl.json.clients.some((x) => x.addresses.includes('127.0.0.1')), 'the client is listed');
});

t.test('rules: block and allow take effect on the next query, are audited, and survive a restart', async (t) => {
  const s = await startStack(t, { stateDir, upstream });
  const c = recording(httpClient(s.api));
  t.equal((await c.login()).status, 200);
  t.equal((await s.query('tracker.ads.example')).rcode, 'NOERROR', 'resolves before the rule');
  const before = upstream.seen.length;
  const add = await c.post('/api/v1/rules', { action: 'block', name: 'Ads.Example.' });
  t.equal(add.status, 201);
  t.match(add.json.rule, { action: 'block', name: 'ads.example', createdBy: 'alice' });
  // No waiting at all: the first query after the API call is already blocked.
  const blocked = await s.query('tracker.ads.example');
  t.equal(blocked.rcode, 'NXDOMAIN', 'cached answer or not, the subdomain is blocked at once');
  t.equal((await s.query('ads.example')).rcode, 'NXDOMAIN');
  t.equal(upstream.seen.length, before, 'blocked names never reach the upstream');
  const again = await c.post('/api/v1/rules', { action: 'block', name: 'ads.example' });
  t.equal(again.status, 200, 'the same rule twice is not a second rule');
  t.equal(again.json.created, false);

  // an allow rule beats the config's block
  t.equal((await s.query('listed.example')).rcode, 'NXDOMAIN');
  const allow = await c.post('/api/v1/rules', { action: 'allow', name: 'listed.example' });
  t.equal(allow.status, 201);
  t.equal((await s.query('listed.example')).rcode, 'NOERROR');

  const found = await findQuery(c, 'tracker.ads.example', '&result=blocked');
  t.ok(found.res, 'the blocked query is in the history');
  t.match(found.res.json.items[0], { answeredBy: 'blocked', list: 'runtime', rule: /block ads\.example/ });

  const del = await c.del(`/api/v1/rules/${allow.json.rule.id}`);
  t.equal(del.status, 200);
  t.equal((await s.query('listed.example')).rcode, 'NXDOMAIN', 'deleting the allow rule restores the block');

  // group rules and device assignment
  const g = await c.post('/api/v1/rules', { action: 'block', name: 'cartoons.example', group: 'kids' });
  t.equal(g.status, 201);
  t.equal((await s.query('cartoons.example')).rcode, 'NOERROR', 'not in the group');
  const asg = await put(c, '/api/v1/clients/ip:127.0.0.1', { group: 'kids' });
  t.equal(asg.status, 200);
  t.same(asg.json, { id: 'ip:127.0.0.1', group: 'kids' });
  t.equal((await s.query('cartoons.example')).rcode, 'NXDOMAIN', 'assigned to the group: its rule applies');
  const cl = await c.get('/api/v1/clients');
  t.equal(cl.json.clients.find((x) => x.id === 'ip:127.0.0.1')?.group, 'kids');
  t.equal((await put(c, '/api/v1/clients/ip:127.0.0.1', { group: 'nosuch' })).status, 400);
  t.equal((await put(c, '/api/v1/clients/ip:127.0.0.1', { group: null })).status, 200);
  t.equal((await s.query('cartoons.example')).rcode, 'NOERROR');

  const rules = (await c.get('/api/v1/rules')).json.rules;
  t.same(rules.map((r) => [r.action, r.name, r.group ?? null]), [['block', 'ads.example', null], ['block', 'cartoons.example', 'kids']]);
  const audit = (await c.get('/api/v1/audit?limit=20')).json.entries;
  t.same(audit.map((e) => [e.action, e.target, e.user]).slice(0, 6), [
    ['client.group', 'ip:127.0.0.1', 'alice'],
    ['client.group', 'ip:127.0.0.1', 'alice'],
    ['rule.add', 'block cartoons.example', 'alice'],
    ['rule.delete', 'allow listed.example', 'alice'],
    ['rule.add', 'allow listed.example', 'alice'],
    ['rule.add', 'block ads.example', 'alice'],
  ], 'every change, newest first, with who made it');
  t.ok(audit.every((e) => e.from === '127.0.0.1'));
  const metrics = await s.server.registry.metrics();
  t.match(metrics, /dns_tproxy_console_logins_total\{result="ok"\} 1/);
  t.match(metrics, /dns_tproxy_runtime_rules\{action="block"\} 2/);
  t.match(metrics, /dns_tproxy_api_requests_total\{code="201"\} \d+/);
});

t.test('after a restart: rules, assignments and the audit log are still there and in force', async (t) => {
  t.ok(fs.existsSync(path.join(stateDir, 'rules.json')));
  t.notOk(fs.readdirSync(stateDir).some((f) => f.endsWith('.tmp')), 'no temporary files left behind');
  const s = await startStack(t, { stateDir, upstream });
  const c = recording(httpClient(s.api));
  t.equal((await c.login()).status, 200);
  t.same((await c.get('/api/v1/rules')).json.rules.map((r) => r.name), ['ads.example', 'cartoons.example']);
  t.equal((await s.query('x.ads.example')).rcode, 'NXDOMAIN', 'the persisted rule blocks');
  t.ok(readAudit(stateDir).length >= 6);
  t.ok((await c.get('/api/v1/audit')).json.entries.length >= 6);
  const id = (await c.get('/api/v1/rules')).json.rules[0].id;
  t.equal((await c.del(`/api/v1/rules/${id}`)).status, 200);
  t.equal((await s.query('x.ads.example')).rcode, 'NOERROR');
  const next = await c.post('/api/v1/rules', { action: 'block', name: 'fresh.example' });
  t.ok(Number(next.json.rule.id) > Number(id), 'ids are not reused across restarts');
});

t.test('pause: blocking off at once, back by itself, resumed by DELETE, per group', async (t) => {
  const s = await startStack(t, { stateDir: t.testdir(), upstream });
  const c = recording(httpClient(s.api));
  t.equal((await c.login()).status, 200);
  t.same((await c.get('/api/v1/pause')).json, { paused: false, until: null, remainingSeconds: null, entries: [] });
  t.equal((await s.query('listed.example')).rcode, 'NXDOMAIN');
  const p = await c.post('/api/v1/pause', { seconds: 1 });
  t.equal(p.status, 200);
  t.equal(p.json.paused, true);
  t.type(p.json.until, 'number');
  t.equal((await s.query('listed.example')).rcode, 'NOERROR', 'paused: the listed name resolves');
  // It resumes by itself: poll the state (bounded), then the name is blocked again.
  const [resumed, attempts] = await poll(async () => !(await c.get('/api/v1/pause')).json.paused, 100, 50);
  t.ok(resumed, `resumed by itself after ${attempts} polls`);
  t.equal((await s.query('listed.example')).rcode, 'NXDOMAIN', 'blocking is back');

  const open = await c.post('/api/v1/pause', {});
  t.match(open.json, { paused: true, until: null, remainingSeconds: null }, 'no seconds: until resumed');
  t.equal((await s.query('listed.example')).rcode, 'NOERROR');
  const res = await c.del('/api/v1/pause');
  t.equal(res.json.paused, false);
  t.equal((await s.query('listed.example')).rcode, 'NXDOMAIN');

  const grp = await c.post('/api/v1/pause', { seconds: 600, group: 'kids' });
  t.equal(grp.json.paused, false, 'everyone else is not paused');
  t.match(grp.json.entries, [{ group: 'kids', remainingSeconds: 600 }]);
  t.equal((await s.query('listed.example')).rcode, 'NXDOMAIN', 'this client is not in kids');
  t.equal((await c.del('/api/v1/pause?group=kids')).json.entries.length, 0);
  t.equal((await c.post('/api/v1/pause', { seconds: 5, group: 'nosuch' })).status, 400);
  t.same(readAudit(s.dir).map((e) => e.action), ['pause', 'pause', 'resume', 'pause', 'resume']);
});

t.test('pause ends on a fake clock without any real waiting', async (t) => {
  const s = await startStack(t, { stateDir: t.testdir(), upstream, withConsole: false });
  let now = 1_800_000_000_000;
  const timers = [];
  const clock = { now: () => now, setTimeout: (fn, ms) => { const h = { fn, at: now + ms }; timers.push(h); return h; }, clearTimeout: (h) => { const i = timers.indexOf(h); if (i >= 0) timers.splice(i, 1); } };
  const api = new ConsoleApi(s.server, consoleConfigOf({ listen: '127.0.0.1:0', users: [{ name: 'alice', password: await passwordHash() }] }, s.dir), { now: () => now, clock });
  s.server.filterStage.overrides = api.overrides;
  await api.listen();
  t.teardown(() => api.close());
  const c = httpClient(api);
  await c.login();
  await c.post('/api/v1/pause', { seconds: 300 });
  t.equal((await s.query('listed.example')).rcode, 'NOERROR');
  now += 299_000;
  t.equal((await c.get('/api/v1/pause')).json.remainingSeconds, 1);
  t.equal((await s.query('listed.example')).rcode, 'NOERROR');
  now += 1_000;
  t.equal((await s.query('listed.example')).rcode, 'NXDOMAIN', 'resumed at the end');
  t.equal((await c.get('/api/v1/pause')).json.paused, false);
  for (const h of timers.splice(0)) h.fn();
  t.equal(api.overrides.hot, 0, 'after the timer, the filter stage is back to its one-field check');
});

/** Opens the SSE stream; collects events until `until(events)` or the bound. */
function openStream(api, cookie, pathAndQuery = '/api/v1/stream') {
  const port = api.address.port;
  const events = [];
  const comments = [];
  let buf = '';
  let res;
  const req = http.get({ host: '127.0.0.1', port, path: pathAndQuery, headers: { host: `127.0.0.1:${port}`, cookie } }, (r) => {
    res = r;
    r.setEncoding('utf8');
    r.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const lines = block.split('\n');
        if (lines.every((l) => l.startsWith(':') || l.startsWith('retry:'))) { comments.push(block); continue; }
        const ev = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message';
        const data = lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
        events.push({ event: ev, data: JSON.parse(data) });
      }
    });
  });
  req.on('error', () => {});
  return { events, comments, close: () => req.destroy(), get status() { return res?.statusCode; }, get headers() { return res?.headers; } };
}

t.test('stream: live records as server-sent events; a slow client is told what it missed', async (t) => {
  const s = await startStack(t, { stateDir: t.testdir(), upstream });
  const c = recording(httpClient(s.api));
  await c.login();
  const st = openStream(s.api, c.jar.cookie);
  t.teardown(() => st.close());
  await poll(() => st.comments.length > 0, 100, 20);
  t.equal(st.status, 200);
  t.match(st.headers['content-type'], /^text\/event-stream/);
  await s.query('live.example');
  const [got] = await poll(() => st.events.find((e) => e.event === 'query' && e.data.qname === 'live.example'), 100, 30);
  t.ok(got, 'the query arrives on the stream');
  t.match(got.data, { client: '127.0.0.1', server: '127.0.0.1', serverPort: s.dnsPort, qtype: 'A' });

  const filtered = openStream(s.api, c.jar.cookie, '/api/v1/stream?name=wanted');
  t.teardown(() => filtered.close());
  await poll(() => filtered.comments.length > 0, 100, 20);
  await s.query('other-name.example');
  await s.query('wanted.example');
  await poll(() => filtered.events.length > 0, 100, 30);
  t.same(filtered.events.map((e) => e.data.qname), ['wanted.example'], 'name filter on the stream');

  // A second console on the same store with a queue of 2 and a short heartbeat.
  const api = new ConsoleApi(s.server, consoleConfigOf({ listen: '127.0.0.1:0', users: [{ name: 'alice', password: await passwordHash() }] }, s.dir), { streamQueue: 2, streamHeartbeatMs: 30 });
  await api.listen();
  t.teardown(() => api.close());
  const c2 = httpClient(api);
  await c2.login();
  const slow = openStream(api, c2.jar.cookie);
  t.teardown(() => slow.close());
  await poll(() => slow.comments.length > 0 && api.streams.clients === 1, 100, 20);
  // Ten records in one tick: the queue keeps the newest two and counts the rest.
  for (let i = 0; i < 10; i++) s.server.store.append({ time: Date.now(), client: '192.0.2.7', server: '198.51.100.53', serverPort: 53, transport: 'udp', qname: `burst${i}.example`, qtype: 'A', kind: 'query' });
  await poll(() => slow.events.filter((e) => e.event === 'query' && e.data.qname.startsWith('burst')).length >= 2, 100, 20);
  const dropped = slow.events.find((e) => e.event === 'dropped');
  t.same(dropped?.data, { dropped: 8 }, 'told how many were dropped');
  t.same(slow.events.filter((e) => e.data.qname?.startsWith('burst')).map((e) => e.data.qname), ['burst8.example', 'burst9.example'], 'the newest are kept');
  t.equal(api.streams.dropped, 8);
  await poll(() => slow.comments.some((x) => x.includes('heartbeat')), 100, 20);
  t.ok(slow.comments.some((x) => x.includes('heartbeat')), 'heartbeat comments');
  slow.close();
  const [gone] = await poll(() => api.streams.clients === 0, 100, 20);
  t.ok(gone, 'a closed stream unsubscribes');
});

t.test('lists: add by path, disable, enable, refresh, delete; a bad list changes nothing', async (t) => {
  const dir = t.testdir({ 'extra.txt': '||fromlist.example^\n' });
  const s = await startStack(t, { stateDir: path.join(dir, 'state'), upstream });
  const c = recording(httpClient(s.api));
  await c.login();
  t.equal((await s.query('fromlist.example')).rcode, 'NOERROR');
  const add = await c.post('/api/v1/lists', { name: 'extra', path: path.join(dir, 'extra.txt') });
  t.equal(add.status, 201);
  t.match(add.json.list, { name: 'extra', type: 'path', enabled: true, origin: 'api', rules: 1, lastError: null });
  t.equal((await s.query('fromlist.example')).rcode, 'NXDOMAIN', 'the new list blocks');
  t.equal((await c.post('/api/v1/lists', { name: 'extra', path: path.join(dir, 'extra.txt') })).status, 409);
  const missing = await c.post('/api/v1/lists', { name: 'missing', path: path.join(dir, 'nope.txt') });
  t.equal(missing.status, 400);
  t.equal(missing.json.code, 'list_rejected');
  t.match(missing.json.error, /ENOENT/);
  t.same((await c.get('/api/v1/lists')).json.lists.map((l) => l.name), ['extra'], 'the refused list is not kept');
  t.equal((await s.query('fromlist.example')).rcode, 'NXDOMAIN', 'and the filter still holds the good one');
  t.equal((await c.post('/api/v1/lists', { url: 'ftp://x' })).status, 400);
  t.equal((await c.post('/api/v1/lists', { url: 'https://x.example/a', path: '/tmp/x' })).status, 400);

  t.equal((await patch(c, '/api/v1/lists/extra', { enabled: false })).json.list.enabled, false);
  t.equal((await s.query('fromlist.example')).rcode, 'NOERROR', 'disabled');
  t.equal((await patch(c, '/api/v1/lists/extra', { enabled: 'no' })).status, 400);
  t.equal((await patch(c, '/api/v1/lists/nosuch', { enabled: true })).status, 404);
  t.equal((await c.post('/api/v1/lists/extra/refresh', {})).status, 409, 'a disabled list is not refreshed');
  t.equal((await patch(c, '/api/v1/lists/extra', { enabled: true })).status, 200);
  fs.writeFileSync(path.join(dir, 'extra.txt'), '||fromlist.example^\n||second.example^\n');
  const ref = await c.post('/api/v1/lists/extra/refresh', {});
  t.equal(ref.status, 200);
  t.equal(ref.json.list.rules, 2, 'refresh re-read the file');
  t.equal((await s.query('second.example')).rcode, 'NXDOMAIN');

  const health = await c.get('/api/v1/health');
  t.equal(health.status, 200);
  t.equal(health.json.status, 'ok', JSON.stringify(health.json.problems));
  t.match(health.json.upstreams, [{ healthy: true }]);
  t.match(health.json.lists, [{ name: 'extra', enabled: true }]);
  fs.unlinkSync(path.join(dir, 'extra.txt'));
  t.equal((await c.post('/api/v1/lists/extra/refresh', {})).status, 400, 'refresh of a vanished file is refused');
  const sick = await c.get('/api/v1/health');
  t.equal(sick.json.status, 'degraded');
  t.ok(sick.json.problems.some((p) => /extra/.test(p)), `problems name the list: ${sick.json.problems}`);
  t.equal((await s.query('second.example')).rcode, 'NXDOMAIN', 'the last good copy stays in force');

  const del = await c.del('/api/v1/lists/extra');
  t.equal(del.status, 200);
  t.equal((await s.query('second.example')).rcode, 'NOERROR');
  t.same(readAudit(path.join(dir, 'state')).map((e) => e.action), ['list.add', 'list.disable', 'list.enable', 'list.refresh', 'list.delete']);
});

t.test('every response matches its schema in the OpenAPI document', async (t) => {
  const s = await startStack(t, { stateDir: t.testdir(), upstream });
  const c = recording(httpClient(s.api));
  const doc = (await c.get('/api/v1/openapi.json')).json;
  t.equal(doc.openapi, '3.1.0');
  // A few more responses of the kinds the earlier tests did not produce.
  await c.get('/api/v1/rules');
  await c.login();
  await c.get('/api/v1/session');
  await c.get('/api/v1/rules', { host: 'evil.example' });
  await c.post('/api/v1/rules', { action: 'block', name: 'x.example' }, { origin: 'http://evil.example' });
  await c.post('/api/v1/rules', { action: 'nope' });
  await c.get('/api/v1/health');
  await c.get('/api/v1/lists');
  await c.get('/api/v1/audit');
  await c.post('/api/v1/logout', {});

  const ajv = new Ajv2020({ strict: false, allErrors: true });
  ajv.addSchema(doc, 'openapi');
  const esc = (s) => s.replace(/~/g, '~0').replace(/\//g, '~1');
  const templates = Object.keys(doc.paths).map((p) => [p, new RegExp(`^/api/v1${p.replace(/\{[a-z]+\}/g, '[^/]+')}$`)]);
  let checked = 0;
  const covered = new Set();
  for (const r of seen) {
    if (r.json === null) continue;
    const tpl = templates.find(([, re]) => re.test(r.path))?.[0];
    if (!tpl) { t.equal(r.status, 404, `${r.method} ${r.path} is not in the document, so it must be a 404`); continue; }
    const op = doc.paths[tpl][r.method];
    if (!op) { t.equal(r.status, 405, `${r.method} ${tpl}: not in the document, so 405`); continue; }
    if (!op.responses[String(r.status)]) { t.fail(`${r.method.toUpperCase()} ${tpl} answered ${r.status}, which the document does not list`); continue; }
    const ptr = `openapi#/paths/${esc(tpl)}/${r.method}/responses/${r.status}/content/${esc('application/json')}/schema`;
    const ok = ajv.validate({ $ref: ptr }, r.json);
    if (!ok) t.fail(`${r.method.toUpperCase()} ${r.path} ${r.status}: ${ajv.errorsText()} in ${JSON.stringify(r.json).slice(0, 300)}`);
    checked++;
    covered.add(`${r.method} ${tpl}`);
  }
  t.ok(checked > 60, `${checked} responses validated`);
  const all = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`));
  const missing = all.filter((k) => !covered.has(k) && k !== 'get /stream');
  t.same(missing, [], 'every JSON operation in the document was exercised by a real response');
});
