// Issue "Upstream resilience": two real unbound DoH upstreams (8443, 8444) behind dns-tproxy on the
// TPROXY path. (a) one is SIGKILLed in the middle of a 5,000-query dnsperf run: nothing is lost;
// (b) one is frozen (SIGSTOP): answers keep coming well under the deadline, it is reported unhealthy,
// and it recovers after SIGCONT; (c) all down: SERVFAIL with EDE within the deadline, stale when cached;
// (d) a restarted upstream is used again without restarting dns-tproxy.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { openLab, baseConfig, nsExec, SERVER_V4, sleep, waitFor } from './lib.js';

const lab = openLab(t, ['dnsperf', 'curl']);
if (lab) {
  const u1 = await lab.startUnbound({ port: 8443, name: 'unbound' });
  const u2 = await lab.startUnbound({ port: 8444, name: 'unbound2' });
  const url = (u) => `https://127.0.0.1:${u.port}/dns-query`;
  const cfg = lab.writeConfig('two.yaml', baseConfig(lab, {
    port: 53,
    upstreams: [u1, u2].map((u) => `  - url: "${url(u)}"\n    ca: "${u.ca}"`),
  }));
  const srv = await lab.startServer(cfg);
  const metrics = () => nsExec(lab.gw, 'curl', ['-s', 'http://127.0.0.1:9153/metrics']);
  const healthy = (u) => {
    const m = new RegExp(`^dns_tproxy_upstream_healthy\\{upstream="${url(u).replace(/[.]/g, '\\.')}"\\} (\\d)`, 'm').exec(metrics());
    return m ? Number(m[1]) : -1;
  };
  const requests = (u) => Number(new RegExp(`^dns_tproxy_upstream_requests_total\\{upstream="${url(u).replace(/[.]/g, '\\.')}"\\} (\\d+)`, 'm').exec(metrics())?.[1] ?? -1);
  const dig = (name, extra = []) => {
    const t0 = Date.now();
    const out = lab.dig([`@${SERVER_V4}`, name, 'A', '+tries=1', '+time=5', ...extra], true);
    return { out, ms: Date.now() - t0 };
  };
  let seq = 0;
  /** Runs dnsperf in the client namespace with `n` unique wild.test names (at most `qps` a second when
   * given); resolves with its stdout. */
  const dnsperf = (n, qps = 0) => {
    const file = path.join(lab.dir, `q${seq}.txt`);
    const tag = `r${seq++}`;
    fs.writeFileSync(file, Array.from({ length: n }, (_, i) => `${tag}-${i}.wild.test A`).join('\n') + '\n');
    const log = path.join(lab.dir, `dnsperf-${tag}.log`);
    const proc = lab.spawnIn(lab.client, 'dnsperf', ['-s', SERVER_V4, '-d', file, '-n', '1', '-q', '200', '-t', '5', ...(qps ? ['-Q', String(qps)] : [])], log);
    return { proc, done: new Promise((r) => proc.once('exit', () => r(fs.readFileSync(log, 'utf8')))) };
  };

  t.test('both upstreams carry traffic and are healthy', async (t) => {
    const out = await dnsperf(2000).done;
    t.match(out, /Queries lost:\s+0 /);
    t.equal(healthy(u1), 1);
    t.equal(healthy(u2), 1);
    t.ok(requests(u1) > 0 && requests(u2) > 0, `both used (${requests(u1)}, ${requests(u2)})`);
  });

  t.test('(a) first upstream SIGKILLed mid-run: 5000 queries, 0 lost, all NOERROR', async (t) => {
    const before = requests(u1);
    // Paced so that the run lasts ~1.25 s: unpaced, a fast server finished all 5000 before the kill.
    const run = dnsperf(5000, 4000);
    // The kill must land mid-run: wait until this run's queries reach the first upstream, then note
    // (as an order of events, not a time) that dnsperf is still running when it dies.
    await waitFor(() => requests(u1) > before || run.proc.exitCode !== null, 20_000, 'the run reaching the first upstream');
    const runningAtKill = run.proc.exitCode === null;
    const askedBeforeKill = requests(u1) - before;
    await lab.stop(u1.proc, 'SIGKILL');
    const out = await run.done;
    t.comment(out.split('\n').filter((l) => /Queries|Response codes|Run time|Average Latency|Latency StdDev/.test(l)).join('\n'));
    t.ok(runningAtKill, 'the kill happened while dnsperf was still running');
    t.ok(askedBeforeKill > 0, `the killed upstream was carrying this run's queries (${askedBeforeKill})`);
    t.match(out, /Queries completed:\s+5000 /, 'all completed');
    t.match(out, /Queries lost:\s+0 /, 'zero lost');
    t.match(out, /Response codes:\s+NOERROR 5000 \(100\.00%\)/, 'all NOERROR');
    await waitFor(() => healthy(u1) === 0, 5000, 'killed upstream reported unhealthy');
    t.equal(healthy(u1), 0, 'upstream_healthy 0 for the killed one');
    t.equal(healthy(u2), 1);
  });

  t.test('(d) the killed upstream restarts: used again without restarting dns-tproxy', async (t) => {
    await lab.startUnbound({ port: 8443, name: 'unbound' });
    // The transport re-dials every 2 s while it has no connection.
    await waitFor(() => healthy(u1) === 1, 10_000, 'restarted upstream healthy again');
    t.equal(healthy(u1), 1);
    const before = requests(u1);
    const out = await dnsperf(1000).done;
    t.match(out, /Queries lost:\s+0 /);
    t.ok(requests(u1) > before, `restarted upstream gets queries again (${requests(u1) - before})`);
    t.equal(srv.exitCode, null, 'same dns-tproxy process');
  });

  t.test('(b) one upstream frozen (SIGSTOP): its queries are rescued before the deadline; unhealthy; recovers after SIGCONT', async (t) => {
    const frozen = lab.unbound2;
    const hedges = () => Number(/^dns_tproxy_upstream_hedges_total (\d+)/m.exec(metrics())?.[1] ?? -1);
    const asked0 = requests(u2);
    const hedges0 = hedges();
    frozen.proc.kill('SIGSTOP');
    t.teardown(() => { try { frozen.proc.kill('SIGCONT'); } catch { /* gone */ } });
    // The precondition: queries are actually sent to the frozen upstream (with `fastest` it may not be
    // the favourite, but exploration reaches it). Query in batches of ten until it has been asked at
    // least three of them, bounded by 40 batches.
    let sent = 0, noerror = 0, other = 0;
    const times = [];
    for (let b = 0; b < 40 && requests(u2) - asked0 < 3; b++) {
      const names = Array.from({ length: 10 }, () => `frozen-${seq++}.wild.test`);
      const r = dig(names[0], names.slice(1).flatMap((n) => [n, 'A']));
      sent += names.length;
      noerror += (r.out.match(/status: NOERROR/g) ?? []).length;
      other += (r.out.match(/status: (?!NOERROR)\w+/g) ?? []).length;
      times.push(r.ms);
    }
    const asked = requests(u2) - asked0;
    t.comment(`${sent} queries while frozen, ${asked} sent to the frozen upstream, ${hedges() - hedges0} hedges; per batch of ten ${Math.min(...times)}..${Math.max(...times)} ms`);
    t.ok(asked >= 3, `the frozen upstream was asked ${asked} of ${sent} queries`);
    // A query left on the frozen upstream would end in SERVFAIL at the 2 s deadline: every one answered
    // NOERROR means each was rescued by the other upstream, whatever the machine's speed.
    t.equal(noerror, sent, 'every query answered NOERROR');
    t.equal(other, 0, 'no SERVFAIL or other status');
    t.ok(hedges() > hedges0, 'rescued by hedging to the other upstream');
    // The frozen one is marked down by the hedges (3 consecutive), but with `fastest` it only sees the
    // exploration share of queries (5 %). One query per poll gave ~150 queries in 20 s, and when half of
    // the explores still landed on the favourite, too few to be sure of 3 (it failed about one run in
    // four). Ten per poll make ~1,000.
    const burst = () => Array.from({ length: 9 }, () => [`frozen-w${seq++}.wild.test`, 'A']).flat();
    try {
      await waitFor(async () => { dig(`frozen-w${seq++}.wild.test`, burst()); return healthy(u2) === 0; }, 20_000, 'frozen upstream unhealthy');
    } catch (e) {
      // Seen once in CI and a few times locally, never with this dump yet: what the pool saw.
      t.comment(metrics().split('\n').filter((l) => /^dns_tproxy_upstream/.test(l) && !l.includes('_bucket')).join('\n'));
      throw e;
    }
    t.equal(healthy(u2), 0, 'dns_tproxy_upstream_healthy 0 for the frozen upstream');
    const r = dig('while-down.wild.test');
    t.match(r.out, /status: NOERROR/, 'still answered while the frozen upstream is out of rotation');
    frozen.proc.kill('SIGCONT');
    await waitFor(async () => { dig(`recover-${seq++}.wild.test`); await sleep(200); return healthy(u2) === 1; }, 45_000, 'frozen upstream healthy after SIGCONT');
    t.equal(healthy(u2), 1, 'recovered');
  });

  t.test('(c) all upstreams down: SERVFAIL with EDE within the deadline; stale when cached', async (t) => {
    // short.lab.test has TTL 2: cache it now, let it expire, then serve it stale.
    t.match(dig('short.lab.test').out, /status: NOERROR/);
    await lab.stop(lab.unbound.proc, 'SIGKILL');
    await lab.stop(lab.unbound2.proc, 'SIGKILL');
    await sleep(2500);
    const r = dig('down-1.wild.test');
    t.match(r.out, /status: SERVFAIL/, 'SERVFAIL, not silence');
    t.match(r.out, /EDE: 2[23]/, 'with an Extended DNS Error');
    // The SERVFAIL+EDE is what the 2 s deadline produces; dig waits 5 s, so an answer at all shows the
    // deadline fired first. How fast it came is the benchmark's business, not this test's.
    t.comment(`SERVFAIL after ${r.ms} ms`);
    const stale = dig('short.lab.test');
    t.match(stale.out, /status: NOERROR/, 'expired entry served stale');
    t.match(stale.out, /short\.lab\.test\.\s+30\s+IN\s+A\s+192\.0\.2\.2/, 'stale TTL 30');
    t.equal(healthy(u1), 0);
    t.equal(healthy(u2), 0);
  });
}
