// Issue "Observability and audit": metrics, query log and dnstap on the real TPROXY path.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { openLab, baseConfig, SERVER_V4, SERVER_V6, nsExec, waitFor, sleep } from './lib.js';

const lab = openLab(t, ['promtool', 'dnstap-ldns', 'fstrm_capture', 'curl']);
if (lab) {
  await lab.startUnbound();
  const logFile = path.join(lab.dir, 'query.log');
  const tapSock = path.join(lab.dir, 'tap.sock');
  const tapOut = path.join(lab.dir, 'tap.fstrm');
  // The collector runs in the gateway namespace's filesystem view (shared), listening on a unix socket.
  const capture = spawn('fstrm_capture', ['-t', 'protobuf:dnstap.Dnstap', '-u', tapSock, '-w', tapOut], { stdio: 'ignore' });
  t.teardown(() => capture.kill('SIGKILL'));
  await waitFor(() => fs.existsSync(tapSock), 5000, 'fstrm_capture socket');
  const cfg = lab.writeConfig('obs.yaml', baseConfig(lab, {
    extra: `log:\n  mode: all\n  output: "${logFile}"\ndnstap:\n  socket: "${tapSock}"\n  identity: lab-gw\n  dohAsTcp: true\n`,
  }));
  const srv = await lab.startServer(cfg);
  t.teardown(() => lab.stop(srv));
  const metrics = () => nsExec(lab.gw, 'curl', ['-s', 'http://127.0.0.1:9153/metrics']);
  const metric = (text, re) => Number((re.exec(text) ?? [])[1] ?? NaN);
  const before = metrics();
  const q0 = metric(before, /^dns_tproxy_queries_total\{transport="udp"\} (\d+)/m);

  t.test('50 queries show up in metrics, the query log and dnstap', async (t) => {
    const { results } = lab.tool(['seq', `${SERVER_V4},${SERVER_V6}`, '53', '50', 'q']);
    t.equal(results.filter((r) => r.rcode === 'NOERROR' && r.idMatches).length, 50, '50 answered through TPROXY (v4 and v6)');
    const m = metrics();
    t.equal(metric(m, /^dns_tproxy_queries_total\{transport="udp"\} (\d+)/m) - q0, 50, 'queries_total grew by 50');
    t.ok(metric(m, /^dns_tproxy_upstream_latency_seconds_count\{upstream="[^"]+"\} (\d+)/m) >= 50, 'latency histogram observed');
    t.match(m, /^dns_tproxy_process_resident_memory_bytes \d+/m, 'process metrics');
    const promtool = execFileSync('promtool', ['check', 'metrics'], { input: m, encoding: 'utf8' });
    t.pass(`promtool check metrics passed${promtool.trim() ? `: ${promtool.trim()}` : ''}`);

    await waitFor(() => fs.existsSync(logFile) && fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => /q\d+\.wild\.test/.test(l)).length >= 50, 5000, 'query log lines');
    const lines = fs.readFileSync(logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => /^q\d+\.wild\.test$/.test(e.qname));
    t.equal(lines.length, 50, '50 valid JSON lines');
    t.ok(lines.every((e) => e.server === SERVER_V4 || e.server === SERVER_V6), 'each records the original destination');
    t.ok(lines.every((e) => e.serverPort === 53 && e.transport === 'udp' && e.cache === 'miss' && e.rcode === 'NOERROR'));
    t.ok(lines.every((e) => e.client === '10.77.0.2' || e.client === 'fd00:77::2'), 'client address');
    t.ok(lines.every((e) => Array.isArray(e.answers) && e.answers[0] === 'A 192.0.2.20'), 'answer summary');
    t.ok(lines.every((e) => typeof e.upstream === 'string' && typeof e.latencyMs === 'number'));

    const top = JSON.parse(nsExec(lab.gw, 'curl', ['-s', 'http://127.0.0.1:9153/stats/top']));
    t.ok(top.clients.length > 0, '/stats/top has clients');
  });

  t.test('dnstap-ldns decodes the frames', async (t) => {
    await lab.stop(srv); // flushes and sends STOP; fstrm_capture then finishes the file
    await sleep(300);
    capture.kill('SIGTERM');
    await sleep(300);
    const text = execFileSync('dnstap-ldns', ['-r', tapOut, '-q'], { encoding: 'utf8' });
    t.match(text, /CQ 10\.77\.0\.2 UDP .*q0\.wild\.test/, 'CLIENT_QUERY');
    t.match(text, /CR 10\.77\.0\.2 UDP .*q0\.wild\.test/, 'CLIENT_RESPONSE');
    t.match(text, /FQ .*q0\.wild\.test/, 'FORWARDER_QUERY');
    t.match(text, /CQ fd00:77::2 UDP .*q1\.wild\.test/, 'IPv6 client');
    const yaml = execFileSync('dnstap-ldns', ['-r', tapOut, '-y'], { encoding: 'utf8' });
    t.match(yaml, /response_address: "198\.51\.100\.53"/, 'original destination in the frame');
  });

  t.test('/readyz turns unready when the upstream is killed', async (t) => {
    const cfg2 = lab.writeConfig('ready.yaml', baseConfig(lab));
    const s2 = await lab.startServer(cfg2);
    t.teardown(() => lab.stop(s2));
    const ready = () => { try { nsExec(lab.gw, 'curl', ['-sf', 'http://127.0.0.1:9153/readyz']); return true; } catch { return false; } };
    t.equal(ready(), true, 'ready with a live upstream');
    await lab.stop(lab.unbound.proc, 'SIGKILL');
    await waitFor(() => !ready(), 20_000, '/readyz to fail');
    t.pass('unready after the upstream died');
    t.match(nsExec(lab.gw, 'curl', ['-s', 'http://127.0.0.1:9153/healthz']), /ok/, '/healthz still ok (process alive)');
    await lab.startUnbound();
    await waitFor(ready, 40_000, '/readyz to recover');
    t.pass('ready again after the upstream came back');
  });
}
