// Issue "Packet cache": hits never reach the upstream, misses coalesce, stale answers when the
// upstream is gone, flush over the admin endpoint, and the same with two workers.
import t from 'tap';
import fs from 'node:fs';
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

  t.test('two workers (SO_REUSEPORT) both serve, and /metrics is the sum of the two', async (t) => {
    await lab.stop(srv);
    // sampleEvery 1: each worker's /stats/top counts every answer it sent, per client: the per-worker
    // figures the summed /metrics is checked against.
    const cfg2 = lab.writeConfig('workers.yaml', baseConfig(lab, { extra: 'workers: 2\nstats:\n  topK: 100\n  sampleEvery: 1\n' }));
    // Two workers each compile the config validator and open their sockets: on a loaded 2-core CI
    // machine that can take longer than startServer's own 20 s bound, so wait (bounded) here.
    const s2 = await lab.startServer(cfg2, { wait: false });
    t.teardown(() => lab.stop(s2));
    await waitFor(() => {
      if (s2.exitCode !== null) throw new Error(`dns-tproxy exited: ${fs.readFileSync(s2.logPath, 'utf8')}`);
      return /"msg":"workers started"/.test(fs.readFileSync(s2.logPath, 'utf8')) &&
        /status: NOERROR/.test(lab.dig([`@${SERVER_V4}`, 'a.lab.test', 'A', '+tries=1', '+time=1'], true));
    }, 90_000, 'two workers answering');
    const ss = nsExec(lab.gw, 'ss', ['-lunpH', 'sport = :53']);
    t.equal(ss.trim().split('\n').length, 2, 'two sockets bound to :53');
    // SO_REUSEPORT hashes each flow (source address and port) to one socket: 400 queries from one
    // socket would all land on one worker. Send them from 64 sockets (64 source ports).
    const sender = lab.writeConfig('many-ports.mjs', MANY_PORTS_SENDER);
    const burst = JSON.parse(nsExec(lab.client, process.execPath, [sender, SERVER_V4, '53', '400', '64', `w${lab.id}`], { timeout: 60_000 }));
    t.equal(burst.answered, 400, `all 400 answered (${JSON.stringify(burst)})`);
    const metricsText = () => nsExec(lab.gw, 'curl', ['-s', 'http://127.0.0.1:9153/metrics']);
    const answersTotal = (text) => text.split('\n').filter((l) => l.startsWith('dns_tproxy_answers_total{')).reduce((a, l) => a + Number(l.split(' ').pop()), 0);
    const perWorker = () => {
      const top = JSON.parse(nsExec(lab.gw, 'curl', ['-s', 'http://127.0.0.1:9153/stats/top']));
      return top.workers.map((w) => (w?.clients ?? []).reduce((a, c) => a + c.count, 0));
    };
    // /stats/top is polled from the workers once a second: wait for it to include the burst.
    let counts = [];
    await waitFor(() => { counts = perWorker(); return counts.reduce((a, b) => a + b, 0) >= 400; }, 10_000, 'per-worker counts to include the burst');
    const total = answersTotal(metricsText());
    t.comment(`answers per worker ${JSON.stringify(counts)}, /metrics answers_total ${total}`);
    t.equal(counts.length, 2, 'two workers report');
    t.ok(counts[0] > 0 && counts[1] > 0, `both workers served some (${counts.join(' + ')})`);
    t.equal(total, counts[0] + counts[1], 'the total in /metrics equals the sum of the per-worker figures');
  });
}

// Sends COUNT distinct queries round-robin over SOCKETS UDP sockets (one source port each) and
// counts the answers (matched by ID and socket); waits at most 10 s for the last one.
const MANY_PORTS_SENDER = `
import dgram from 'node:dgram';
const [server, port, count, sockets, tag] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]), process.argv[6]];
function query(id, name) {
  const labels = name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
  return Buffer.concat([Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}
let answered = 0, sent = 0;
const socks = await Promise.all(Array.from({ length: sockets }, () => new Promise((resolve) => {
  const s = dgram.createSocket('udp4');
  s.pending = new Set();
  s.on('message', (m) => { const id = m.readUInt16BE(0); if (s.pending.delete(id)) answered++; });
  s.bind(0, () => resolve(s));
})));
for (let i = 0; i < count; i++) {
  const s = socks[i % sockets];
  const id = i + 1;
  s.pending.add(id);
  s.send(query(id, tag + '-' + i + '.wild.test'), port, server);
  sent++;
  if (i % 50 === 49) await new Promise((r) => setTimeout(r, 5));
}
const until = Date.now() + 10000;
while (answered < sent && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
for (const s of socks) s.close();
process.stdout.write(JSON.stringify({ sent, answered, sockets }) + '\\n');
`;
