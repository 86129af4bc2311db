// Issue "Transparent DNS gateway, end to end": a client asks 198.51.100.53 / 2001:db8:53::53 (where no
// DNS server runs); the gateway intercepts with nft TPROXY, forwards over DoH to a real unbound, and
// the reply must come from the address and port the client asked.
import t from 'tap';
import fs from 'node:fs';
import { openLab, baseConfig, SERVER_V4, SERVER_V6, sleep, waitFor } from './lib.js';

// kdig is a second, independent stub implementation: required (CI installs knot-dnsutils), so a
// machine without it reports a skip with the reason instead of passing with fewer checks.
const lab = openLab(t, ['kdig']);
if (lab) {
  await lab.startUnbound();

  t.test('listener port equal to the intercepted port (53)', async (t) => {
    const cfg = lab.writeConfig('same-port.yaml', baseConfig(lab, { port: 53 }));
    lab.setTproxyPort(53);
    const srv = await lab.startServer(cfg);
    t.teardown(() => lab.stop(srv));

    const v4 = lab.dig([`@${SERVER_V4}`, 'a.lab.test', 'A', '+tries=1', '+time=3']);
    t.match(v4, /status: NOERROR/);
    t.match(v4, /a\.lab\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.1/);
    t.match(v4, /SERVER: 198\.51\.100\.53#53/);
    const v6 = lab.dig([`@${SERVER_V6}`, 'a.lab.test', 'AAAA', '+tries=1', '+time=3']);
    t.match(v6, /a\.lab\.test\.\s+\d+\s+IN\s+AAAA\s+2001:db8::1/);
    t.match(v6, /SERVER: 2001:db8:53::53#53/);

    for (const server of [SERVER_V4, SERVER_V6]) {
      const r = lab.tool(['query', server, '53', 'a.lab.test', 'A', '--connected']);
      t.equal(r.timeout, undefined, `connected socket to ${server} got an answer`);
      t.equal(r.from, server, 'from the original address');
      t.equal(r.fromPort, 53, 'from the original port');
      t.ok(r.idMatches);
      t.same(r.answers, ['A 192.0.2.1']);
    }
    // kdig too, as a second real stub implementation, over UDP and TCP, v4 and v6.
    for (const [server, type, want, proto] of [[SERVER_V4, 'A', /a\.lab\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.1/, '+notcp'],
      [SERVER_V4, 'A', /a\.lab\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.1/, '+tcp'],
      [SERVER_V6, 'AAAA', /a\.lab\.test\.\s+\d+\s+IN\s+AAAA\s+2001:db8::1/, '+notcp'],
      [SERVER_V6, 'AAAA', /a\.lab\.test\.\s+\d+\s+IN\s+AAAA\s+2001:db8::1/, '+tcp']]) {
      const k = lab.kdig([`@${server}`, 'a.lab.test', type, proto]);
      t.match(k, /status: NOERROR/, `kdig @${server} ${type} ${proto}`);
      t.match(k, want, 'with the upstream\'s record');
      t.match(k, new RegExp(`From ${server.replace(/\./g, '\\.')}@53\\(${proto === '+tcp' ? 'TCP' : 'UDP'}\\)`), 'from the address and port asked, over that protocol');
    }
  });

  t.test('listener port different from the intercepted port (15353)', async (t) => {
    const cfg = lab.writeConfig('other-port.yaml', baseConfig(lab, { port: 15353 }));
    lab.setTproxyPort(15353);
    t.teardown(() => lab.setTproxyPort(53));
    const srv = await lab.startServer(cfg);
    t.teardown(() => lab.stop(srv));
    for (const server of [SERVER_V4, SERVER_V6]) {
      const r = lab.tool(['query', server, '53', 'a.lab.test', 'A', '--connected']);
      t.equal(r.timeout, undefined, `connected socket to ${server} got an answer`);
      t.equal(r.from, server);
      t.equal(r.fromPort, 53, 'source port 53 although the listener is on 15353');
    }
    t.match(lab.dig([`@${SERVER_V6}`, 'a.lab.test', 'A', '+tries=1', '+time=3']), /192\.0\.2\.1/);
  });

  t.test('1000 concurrent distinct queries, malformed floods, upstream down', async (t) => {
    lab.setTproxyPort(53);
    const cfg = lab.writeConfig('load.yaml', baseConfig(lab, { port: 53 }));
    const srv = await lab.startServer(cfg);
    t.teardown(() => lab.stop(srv));

    const burst = lab.tool(['burst', SERVER_V4, '53', '1000', 'c', '--timeout', '15000']);
    t.equal(burst.answered, 1000, `all 1000 answered (${JSON.stringify(burst)})`);
    t.equal(burst.noerror, 1000, 'all with the redirect answer');

    const g = lab.tool(['garbage', SERVER_V4, '53', '3000']);
    t.equal(g.sent, 3000);
    await sleep(300);
    t.equal(srv.exitCode, null, 'still running after 3000 malformed datagrams');
    t.match(lab.dig([`@${SERVER_V4}`, 'after-garbage.wild.test', 'A', '+tries=1', '+time=3']), /status: NOERROR/, 'still answering');

    // Upstream down: SERVFAIL (with EDE) well before the client gives up, never silence.
    await lab.stop(lab.unbound.proc, 'SIGKILL');
    const started = Date.now();
    const r = lab.dig([`@${SERVER_V4}`, 'down.wild.test', 'A', '+tries=1', '+time=8']);
    const took = Date.now() - started;
    t.match(r, /status: SERVFAIL/);
    t.match(r, /EDE: 2[23]/, 'Extended DNS Error 22/23');
    t.comment(`SERVFAIL after ${took} ms (upstream timeout 2000 ms)`);
    await lab.startUnbound();
  });

  t.test('SIGHUP with a new upstream list switches upstreams without a restart', async (t) => {
    lab.setTproxyPort(53);
    const cfg = lab.writeConfig('reload.yaml', baseConfig(lab, { port: 53 }));
    const srv = await lab.startServer(cfg);
    t.teardown(() => lab.stop(srv));
    const second = await lab.startUnbound({ port: 8444, name: 'unbound2' });
    t.match(lab.dig([`@${SERVER_V4}`, 'before-hup.wild.test', 'A', '+tries=1', '+time=3']), /status: NOERROR/);
    await sleep(200);
    t.equal(lab.unboundQueries('before-hup.wild.test', 'unbound'), 1, 'first upstream used before the reload');
    lab.writeConfig('reload.yaml', baseConfig(lab, { port: 53, upstreams: [`  - url: "https://127.0.0.1:8444/dns-query"\n    ca: "${second.ca}"`] }));
    srv.kill('SIGHUP');
    // The config loads on a worker thread (a few hundred ms); wait for the server to say it took it.
    await waitFor(() => fs.readFileSync(srv.logPath, 'utf8').includes('config reloaded'), 10_000, 'the reload');
    t.match(lab.dig([`@${SERVER_V4}`, 'after-hup.wild.test', 'A', '+tries=1', '+time=3']), /status: NOERROR/);
    await sleep(200);
    t.equal(lab.unboundQueries('after-hup.wild.test', 'unbound2'), 1, 'the new upstream answered');
    t.equal(lab.unboundQueries('after-hup.wild.test', 'unbound'), 0, 'the old one was not asked');
    await lab.stop(second.proc);
  });
}
