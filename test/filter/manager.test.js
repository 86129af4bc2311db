import t from 'tap';
import http from 'node:http';
import { writeFileSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { FilterManager } from '../../dist/filter/index.js';

const verdict = (mgr, name) => {
  const d = mgr.engine.decide(name, 1, 0);
  return d === null ? 'pass' : d.kind;
};

t.test('hot reload swaps engines; a bad new file leaves the old engine in force', async (t) => {
  const dir = t.testdir({ 'a.txt': '||one.example^\n' });
  const logs = [];
  const cfg = { filter: { lists: [{ name: 'a', path: 'a.txt' }] } };
  const mgr = await FilterManager.create(cfg, { stateDir: join(dir, 'state'), baseDir: dir, log: (l, m, f) => logs.push([l, m, f]) });
  t.teardown(() => mgr.close());
  t.equal(verdict(mgr, 'one.example'), 'block');
  const first = mgr.engine;

  writeFileSync(join(dir, 'a.txt'), '||two.example^\nbad line here\n');
  let r = await mgr.reload();
  t.equal(r.ok, true);
  t.not(mgr.engine, first, 'new engine swapped in');
  t.equal(verdict(mgr, 'one.example'), 'pass');
  t.equal(verdict(mgr, 'two.example'), 'block');
  t.equal(first.decide('one.example', 1, 0)?.kind, 'block', 'old engine object is untouched (immutable)');
  t.match(mgr.stats.lists[0], { name: 'a', rules: 1, badLines: 1 });
  t.match(mgr.stats.badLineSamples[0], { source: 'a', line: 2, text: 'bad line here' });
  t.ok(logs.some(([l, m]) => l === 'warn' && /1 bad line/.test(m)), 'bad lines logged');

  const second = mgr.engine;
  unlinkSync(join(dir, 'a.txt'));
  r = await mgr.reload();
  t.equal(r.ok, false);
  t.match(r.error.message, /list "a": cannot read .*a\.txt: ENOENT/);
  t.equal(mgr.engine, second, 'old engine still in force');
  t.equal(verdict(mgr, 'two.example'), 'block');
  t.equal(mgr.stats.reloadFailures, 1);
  t.match(mgr.stats.lists[0], { lastError: /ENOENT/, failures: 1 });
  t.ok(logs.some(([l]) => l === 'error'));

  // reload with a new config object
  writeFileSync(join(dir, 'b.txt'), 'three.example\n');
  r = await mgr.reload({ filter: { lists: [{ name: 'b', path: join(dir, 'b.txt') }], block: ['four.example'] } });
  t.equal(r.ok, true);
  t.equal(verdict(mgr, 'three.example'), 'block');
  t.equal(verdict(mgr, 'four.example'), 'block');

  // a config error also keeps the old engine
  r = await mgr.reload({ filter: { lists: [{ name: 'b', path: join(dir, 'b.txt') }] }, groups: [{ name: 'g', clients: ['nope'] }] });
  t.equal(r.ok, false);
  t.equal(verdict(mgr, 'four.example'), 'block');

  // block counters survive engine swaps
  const before = mgr.stats.blockedByList.inline ?? 0;
  mgr.engine.decide('four.example', 1, 0);
  await mgr.reload();
  t.equal(mgr.stats.blockedByList.inline, before + 1);
});

t.test('concurrent reloads are serialised; queries see complete engines only', async (t) => {
  // 120,000 lines: the build yields to the event loop every 50,000 lines, so queries run in the middle
  // of each build, not only between them.
  const dir = t.testdir({ 'a.txt': Array.from({ length: 120_000 }, (_, i) => `d${i}.example`).join('\n') });
  const mgr = await FilterManager.create({ filter: { lists: [{ name: 'a', path: 'a.txt' }] } }, { stateDir: dir, baseDir: dir });
  t.teardown(() => mgr.close());
  let checks = 0;
  let bad = 0;
  const engines = new Set();
  let running = true;
  const check = () => {
    if (!running) return;
    const e = mgr.engine;
    engines.add(e);
    checks++;
    if (e.decide('d119999.example', 1, 0)?.kind !== 'block' || e.decide('d0.example', 1, 0)?.kind !== 'block') bad++;
    setImmediate(check);
  };
  const first = mgr.engine;
  setImmediate(check);
  const res = await Promise.all([mgr.reload(), mgr.reload(), mgr.reload()]);
  running = false;
  t.same(res.map((r) => r.ok), [true, true, true]);
  t.equal(mgr.stats.reloads, 3);
  // The checks ran, and ran across the swaps: they saw the first engine and at least one rebuilt one.
  t.ok(checks >= 3, `${checks} checks ran during the reloads`);
  t.ok(engines.has(first), 'checks saw the engine in force before the reloads');
  t.ok(engines.size >= 2, `checks saw ${engines.size} engines (the swaps happened while they ran)`);
  t.equal(bad, 0, `no half-built engine seen in ${checks} checks`);
});

t.test('url lists: ETag/304, failure keeps old rules, restart loads from disk cache', async (t) => {
  const dir = t.testdir();
  const stateDir = join(dir, 'state');
  let body = '||remote.example^\n';
  let etag = '"v1"';
  const seen = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url, inm: req.headers['if-none-match'] ?? null });
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { etag });
      return res.end();
    }
    res.writeHead(200, { 'content-type': 'text/plain', etag, 'last-modified': new Date(0).toUTCString() });
    res.end(body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}/list.txt`;
  const cfg = { filter: { lists: [{ name: 'remote', url, allowInsecure: true, refresh: '1h' }] } };
  const logs = [];
  const opts = { stateDir, baseDir: dir, fetchTimeoutMs: 2000, log: (l, m) => logs.push(`${l}: ${m}`) };

  const mgr = await FilterManager.create(cfg, opts);
  t.teardown(() => mgr.close());
  t.equal(verdict(mgr, 'x.remote.example'), 'block');
  t.equal(seen.length, 1);
  t.equal(seen[0].inm, null);
  t.equal(readdirSync(join(stateDir, 'filter-lists')).length, 2, 'data + meta cached on disk');
  let st = mgr.stats.lists[0];
  t.match(st, { name: 'remote', type: 'url', rules: 1, fetches: 1, notModified: 0, failures: 0, lastError: null, fromCache: false });
  t.type(st.lastRefresh, 'number');

  // second fetch: conditional GET -> 304, counted, engine unchanged
  const eng1 = mgr.engine;
  await mgr.refreshNow();
  t.equal(seen.length, 2);
  t.equal(seen[1].inm, '"v1"', 'If-None-Match sent');
  st = mgr.stats.lists[0];
  t.equal(st.notModified, 1);
  t.equal(st.fetches, 2);
  t.equal(mgr.engine, eng1, 'no rebuild on 304');

  // changed content -> 200 -> rebuild
  body = '||remote2.example^\n';
  etag = '"v2"';
  await mgr.refreshNow('remote');
  t.equal(verdict(mgr, 'remote2.example'), 'block');
  t.equal(verdict(mgr, 'remote.example'), 'pass');
  const okAt = mgr.stats.lists[0].lastSuccess;
  t.type(okAt, 'number', 'a successful download records its time');

  // server goes away -> refresh fails, stats record it, old rules keep matching
  await new Promise((r) => server.close(r));
  const eng2 = mgr.engine;
  await mgr.refreshNow();
  st = mgr.stats.lists[0];
  t.equal(st.failures, 1);
  t.type(st.lastError, 'string');
  t.equal(st.lastSuccess, okAt, 'a failed refresh leaves the time of the last success');
  t.ok(st.lastRefresh <= okAt, 'nor counts as a refresh');
  t.equal(mgr.engine, eng2);
  t.equal(verdict(mgr, 'remote2.example'), 'block');
  t.ok(logs.some((l) => /^warn: list remote: download failed/.test(l)), 'failure reported via log');

  // SIGHUP-style reload does not need the network
  t.equal((await mgr.reload()).ok, true);
  t.equal(verdict(mgr, 'remote2.example'), 'block');
  mgr.close();

  // restart with the server still down: content comes from the disk cache
  const mgr2 = await FilterManager.create(cfg, opts);
  t.teardown(() => mgr2.close());
  t.equal(verdict(mgr2, 'remote2.example'), 'block');
  t.match(mgr2.stats.lists[0], { fromCache: true, rules: 1 });

  // restart with a stale cache (refresh elapsed) and the server down: download fails, cache still used
  const mgr3 = await FilterManager.create({ filter: { lists: [{ name: 'remote', url, allowInsecure: true, refresh: '1ms' }] } }, { ...opts, retryMs: 3_600_000 });
  t.teardown(() => mgr3.close());
  t.equal(verdict(mgr3, 'remote2.example'), 'block');
  st = mgr3.stats.lists[0];
  t.equal(st.failures, 1);
  t.match(st, { fromCache: true, lastError: /./ });
  mgr3.close();
});

t.test('url list unavailable and no cache: engine still builds, error recorded', async (t) => {
  const dir = t.testdir();
  const server = http.createServer((req, res) => {
    res.writeHead(500);
    res.end('boom');
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${server.address().port}/x`;
  const mgr = await FilterManager.create(
    { filter: { lists: [{ name: 'r', url, allowInsecure: true }], block: ['local.example'] } },
    { stateDir: join(dir, 's'), baseDir: dir, fetchTimeoutMs: 1000 },
  );
  t.teardown(() => mgr.close());
  t.equal(verdict(mgr, 'local.example'), 'block');
  t.match(mgr.stats.lists[0], { name: 'r', rules: 0, failures: 1, lastError: 'HTTP 500' });
});

t.test('download timeout: the request is abandoned and the failure recorded', async (t) => {
  const dir = t.testdir();
  const requests = [];
  const server = http.createServer((req) => {
    /* never answer */
    requests.push(new Promise((resolve) => req.socket.once('close', resolve)));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `http://127.0.0.1:${server.address().port}/slow`;
  const mgr = await FilterManager.create({ filter: { lists: [{ name: 'slow', url, allowInsecure: true }], block: ['local.example'] } }, { stateDir: join(dir, 's'), baseDir: dir, fetchTimeoutMs: 300, retryMs: 3_600_000 });
  t.teardown(() => mgr.close());
  t.match(mgr.stats.lists[0], { failures: 1, lastError: /timeout after 300 ms/ });
  t.equal(verdict(mgr, 'local.example'), 'block', 'the engine was built without the list');
  t.equal(requests.length, 1, 'one request was made');
  // The server never answers, so only the client can have closed the connection: it gave up.
  await requests[0];
  t.pass('the client closed the connection it timed out on');
});

t.test('unreadable local file at startup is an error', async (t) => {
  const dir = t.testdir();
  await t.rejects(FilterManager.create({ filter: { lists: [{ name: 'x', path: 'missing.txt' }] } }, { stateDir: dir, baseDir: dir }), /list "x": cannot read/);
});

t.test('stats shape', async (t) => {
  const dir = t.testdir({ 'a.txt': '||a.example^\n' });
  const mgr = await FilterManager.create({ filter: { lists: [{ name: 'a', path: 'a.txt' }], block: ['b.example'] } }, { stateDir: dir, baseDir: dir });
  t.teardown(() => mgr.close());
  mgr.engine.decide('a.example', 1, 0);
  mgr.engine.decide('b.example', 1, 0);
  mgr.engine.decide('b.example', 1, 0);
  const s = mgr.stats;
  t.same(s.blockedByList, { a: 1, inline: 2 });
  t.match(s.engine, { entries: 2, builtAt: Number, buildMs: Number });
  t.same(s.lists.map((l) => [l.name, l.rules]), [['a', 1], ['inline', 1]]);
});
