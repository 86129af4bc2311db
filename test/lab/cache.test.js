// Issue "Packet cache": hits never reach the upstream, misses coalesce, stale answers when the
// upstream is gone, flush over the admin endpoint, and the same with two workers.
import t from 'tap';
import path from 'node:path';
import { openLab, baseConfig, SERVER_V4, nsExec, ROOT, sleep, waitFor } from './lib.js';

const lab = openLab(t, ['curl']);
if (lab) {
  await lab.startUnbound();
  const cfgPath = lab.writeConfig('cache.yaml', baseConfig(lab));
  const srv = await lab.startServer(cfgPath);
  t.teardown(() => lab.stop(srv));
  const dig = (name, type = 'A') => lab.dig([`@${SERVER_V4}`, name, type, '+tries=1', '+time=3']);
  const ttlOf = (out, name) => Number(new RegExp(`^${name.replace(/\./g, '\\.')}\\.\\s+(\\d+)\\s+IN`, 'm').exec(out)?.[1]);

  t.test('the second identical query is answered without reaching unbound', async (t) => {
    t.match(dig('once.wild.test'), /192\.0\.2\.20/);
    await sleep(200);
    const n = lab.unboundQueries('once.wild.test');
    t.equal(n, 1, 'unbound saw the first query');
    for (let i = 0; i < 5; i++) t.match(dig('ONCE.wild.TEST'), /status: NOERROR/);
    await sleep(200);
    t.equal(lab.unboundQueries('once.wild.test'), 1, 'and none of the next five (any case)');
  });

  t.test('100 concurrent identical misses send one upstream query', async (t) => {
    const r = lab.tool(['same', SERVER_V4, '53', '100', 'herd.wild.test']);
    t.equal(r.answered, 100, 'all 100 answered');
    await sleep(200);
    t.equal(lab.unboundQueries('herd.wild.test'), 1, 'one upstream query');
  });

  t.test('flush by name over the admin endpoint (CLI)', async (t) => {
    dig('flushme.wild.test');
    const out = nsExec(lab.gw, process.execPath, [path.join(ROOT, 'dist/cli.js'), 'cache', 'flush', 'flushme.wild.test', '--config', cfgPath]);
    t.match(out, /"flushed":1/);
    dig('flushme.wild.test');
    await sleep(200);
    t.equal(lab.unboundQueries('flushme.wild.test'), 2, 'asked upstream again after the flush');
  });

  t.test('upstream killed: expired entries are served stale with TTL 30', async (t) => {
    const first = dig('short.lab.test');
    t.match(first, /192\.0\.2\.2/);
    await sleep(3200); // TTL 2 has run out
    await lab.stop(lab.unbound.proc, 'SIGKILL');
    const stale = dig('short.lab.test');
    t.match(stale, /status: NOERROR/, 'answered despite the dead upstream');
    t.equal(ttlOf(stale, 'short.lab.test'), 30, 'TTL 30 (RFC 8767)');
    t.match(stale, /EDE: 3 \(Stale Answer\)/);
    const m = nsExec(lab.gw, 'curl', ['-s', 'http://127.0.0.1:9153/metrics']);
    t.match(m, /^dns_tproxy_cache_stale_total [1-9]/m);
    // How many of the 100 coalesced and how many arrived after the answer (hits) depends on timing; the
    // single upstream query above is what matters. The counter must exist.
    t.match(m, /^dns_tproxy_cache_coalesced_total \d+/m, 'coalesced counter exported');
    await lab.startUnbound();
  });

  t.test('two workers (SO_REUSEPORT) answer, and metrics are summed', async (t) => {
    await lab.stop(srv);
    const cfg2 = lab.writeConfig('workers.yaml', baseConfig(lab, { extra: 'workers: 2\n' }));
    const s2 = await lab.startServer(cfg2);
    t.teardown(() => lab.stop(s2));
    const burst = lab.tool(['burst', SERVER_V4, '53', '400', 'w']);
    t.equal(burst.answered, 400);
    await waitFor(() => /dns_tproxy_queries_total\{transport="udp",qtype="all"\} (4\d\d|[5-9]\d\d)/.test(nsExec(lab.gw, 'curl', ['-s', 'http://127.0.0.1:9153/metrics'])), 5000, 'aggregated metrics');
    t.pass('metrics aggregate both workers');
    const ss = nsExec(lab.gw, 'ss', ['-lunpH', 'sport = :53']);
    t.ok(ss.trim().split('\n').length >= 2, 'two sockets bound to :53');
  });
}
