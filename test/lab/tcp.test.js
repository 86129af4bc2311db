// Issue "DNS over TCP through TPROXY, truncation and EDNS done right": TCP answers come from the address
// the client asked, large answers truncate over UDP and complete over TCP, many parallel and pipelined
// TCP clients are all answered, and a slow client is cut at the read deadline while others are served.
import t from 'tap';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { openLab, SERVER_V4, SERVER_V6, ROOT, nsExec } from './lib.js';

const lab = openLab(t);
if (lab) {
  await lab.startUnbound();
  // All lab clients share one address, so the per-client cap is raised for the 200-connection test.
  const cfg = lab.writeConfig('tcp.yaml', `listen:
  tproxy:
    udp: "[::]:53"
    tcp: "[::]:53"
  tcp:
    readTimeoutMs: 1000
    idleTimeoutMs: 10000
    maxConnectionsPerClient: 512
upstreams:
  - url: "https://127.0.0.1:${lab.unbound.port}/dns-query"
    ca: "${lab.unbound.ca}"
metrics:
  listen: "127.0.0.1:9153"
`);
  const srv = await lab.startServer(cfg);
  t.teardown(() => lab.stop(srv));

  const metric = (kind) => {
    const text = nsExec(lab.gw, process.execPath, ['-e', 'fetch("http://127.0.0.1:9153/metrics").then(r=>r.text()).then(t=>process.stdout.write(t))']);
    const m = new RegExp(`dns_tproxy_tcp_connections_total\\{[^}]*kind="${kind}"[^}]*\\} (\\d+)`).exec(text);
    return m ? Number(m[1]) : NaN;
  };

  t.test('dig +tcp on v4 and v6 answers from the original address', async (t) => {
    const v4 = lab.dig([`@${SERVER_V4}`, '+tcp', 'a.lab.test', 'A', '+tries=1', '+time=3']);
    t.match(v4, /status: NOERROR/);
    t.match(v4, /a\.lab\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.1/);
    t.match(v4, /SERVER: 198\.51\.100\.53#53\(198\.51\.100\.53\) \(TCP\)/);
    const v6 = lab.dig([`@${SERVER_V6}`, '+tcp', 'a.lab.test', 'AAAA', '+tries=1', '+time=3']);
    t.match(v6, /a\.lab\.test\.\s+\d+\s+IN\s+AAAA\s+2001:db8::1/);
    t.match(v6, /SERVER: 2001:db8:53::53#53\(2001:db8:53::53\) \(TCP\)/);
  });

  t.test('edns-tcp-keepalive over TCP only', async (t) => {
    const tcp = lab.dig([`@${SERVER_V4}`, '+tcp', '+keepalive', 'a.lab.test', 'A', '+tries=1', '+time=3']);
    t.match(tcp, /TCP.KEEPALIVE: 10\.0 secs/, 'our idle timeout, 10 s');
    const udp = lab.dig([`@${SERVER_V4}`, '+notcp', '+keepalive', 'a.lab.test', 'A', '+tries=1', '+time=3']);
    t.match(udp, /status: NOERROR/);
    t.notMatch(udp, /KEEPALIVE/, 'never over UDP');
  });

  t.test('big answer: TC over UDP without EDNS, complete over TCP', async (t) => {
    const trunc = lab.dig([`@${SERVER_V4}`, '+noedns', '+ignore', 'big.test', 'TXT', '+tries=1', '+time=3']);
    t.match(trunc, /flags: qr[^;]* tc/, 'TC set');
    t.match(trunc, /ANSWER: 0,/);
    const full = lab.dig([`@${SERVER_V4}`, '+noedns', 'big.test', 'TXT', '+tries=1', '+time=3']);
    t.match(full, /Truncated, retrying in TCP mode/);
    t.match(full, /ANSWER: 12,/);
    t.equal((full.match(/big\.test\.\s+\d+\s+IN\s+TXT/g) ?? []).length, 12, 'all 12 records');
    t.match(full, /\(TCP\)/);
    const v6 = lab.dig([`@${SERVER_V6}`, '+noedns', 'big.test', 'TXT', '+tries=1', '+time=3']);
    t.match(v6, /ANSWER: 12,/);
  });

  t.test('200 parallel TCP clients, and pipelined connections', async (t) => {
    for (const server of [SERVER_V4, SERVER_V6]) {
      const r = lab.tool(['tcp', server, '53', '200', `p${server.length}-`, '--timeout', '15000']);
      t.equal(r.answered, 200, `200 connections to ${server} all answered (${JSON.stringify({ ...r, peers: undefined })})`);
      t.equal(r.noerror, 200);
      t.equal(r.failedConns, 0);
      t.same(r.peers, [server], 'every connection was with the original address');
    }
    const p = lab.tool(['tcp', SERVER_V4, '53', '5', 'pipe-', '--pipeline', '50', '--timeout', '15000']);
    t.equal(p.answered, 250, `5 connections x 50 pipelined queries all answered (${JSON.stringify(p)})`);
    t.equal(p.wrong, 0);
  });

  t.test('a slow client is cut at the read deadline while others are served', async (t) => {
    const before = metric('read_timeout');
    const idleBefore = metric('idle_closed');
    const slow = promisify(execFile)('ip', ['netns', 'exec', lab.client, process.execPath,
      path.join(ROOT, 'test/lab/tools/client.js'), 'slowtcp', SERVER_V4, '53', '5000'], { encoding: 'utf8' });
    // Served meanwhile.
    for (let i = 0; i < 3; i++) {
      t.match(lab.dig([`@${SERVER_V4}`, '+tcp', `meanwhile${i}.wild.test`, 'A', '+tries=1', '+time=2']), /status: NOERROR/);
    }
    const r = JSON.parse((await slow).stdout);
    t.equal(r.closed, true, 'server closed the slow connection');
    // Which timer cut it is the property (read deadline, not the idle timer), not how fast: the time
    // is only reported.
    t.comment(`closed after ${r.afterMs} ms (readTimeoutMs 1000, idleTimeoutMs 10000)`);
    t.equal(metric('read_timeout'), before + 1, 'counted as read_timeout');
    t.equal(metric('idle_closed'), idleBefore, 'not by the idle timer');
    t.ok(metric('accepted') > 400, 'connections counted');
  });
}
