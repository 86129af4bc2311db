// End-to-end TPROXY lab for the native addon alone (root only), on test/lab/lib.js's topology:
//
//   client ns (10.77.0.2, fd00:77::2) --veth-- gateway ns (10.77.0.1, fd00:77::1) --veth-- far ns
//
// The gateway steers UDP/TCP port 53 with nft `tproxy ... to :PORT` and the usual fwmark/local-route
// policy routing. The client asks documentation addresses (198.51.100.53, 2001:db8:53::53), owned by the
// far namespace, which runs no DNS server; the client only gets an answer if the TransparentUdpSocket in
// the gateway replies *from* those addresses and port 53, because the client uses a connected UDP socket.
import t from 'tap';
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import readline from 'node:readline';
import { Lab, needRootAndTools } from '../lab/lib.js';

const serverScript = fileURLToPath(new URL('./helpers/lab-server.js', import.meta.url));
const clientScript = fileURLToPath(new URL('./helpers/lab-client.js', import.meta.url));

// Only the addon is under test here: no unbound or dns-tproxy build needed, just namespaces, nft and dig.
const skipReason = needRootAndTools(['ip', 'nft', 'dig']);

if (skipReason) {
  // Reported as a skip with its reason (never as a pass): CI installs all of these.
  t.skip(`TPROXY lab: ${skipReason}`);
} else {
  runLab();
}

function runLab() {
  const lab = new Lab().up();
  t.teardown(() => lab.down());
  const { gw: gateway, client } = lab;

  async function startServer(udpPort, tcpPort) {
    const child = spawn('ip', ['netns', 'exec', gateway, process.execPath, serverScript, String(udpPort), String(tcpPort)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    lab.procs.push(child); // the lab's teardown kills what a failed test left running
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const lines = readline.createInterface({ input: child.stdout });
    const pending = [];
    const queued = [];
    lines.on('line', (line) => {
      const message = JSON.parse(line);
      const waiter = pending.shift();
      if (waiter) waiter(message);
      else queued.push(message);
    });
    const next = (what) =>
      new Promise((resolve, reject) => {
        if (queued.length) return resolve(queued.shift());
        const timer = setTimeout(() => reject(new Error(`lab server: no ${what} line; stderr: ${stderr}`)), 5000);
        pending.push((message) => {
          clearTimeout(timer);
          resolve(message);
        });
        child.once('exit', (code) => reject(new Error(`lab server exited ${code}: ${stderr}`)));
      });
    const ready = await next('ready');
    return {
      ready,
      async finish() {
        child.stdin.write('stats\n');
        let message = await next('stats');
        while (!message.stats) message = await next('stats');
        await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
        return message;
      },
    };
  }

  function query(mode, host, timeoutMs = 3000) {
    return new Promise((resolve) => {
      const child = spawn('ip', ['netns', 'exec', client, process.execPath, clientScript, mode, host, '53', String(timeoutMs)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      lab.procs.push(child); // the lab's teardown kills what a failed test left running
      let output = '';
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
      child.on('exit', () => {
        try {
          resolve(JSON.parse(output.trim().split('\n').pop()));
        } catch {
          resolve({ ok: false, error: output });
        }
      });
    });
  }

  for (const udpPort of [53, 15353]) {
    const tcpPort = udpPort + 1000;
    const sameport = udpPort === 53;
    t.test(`listener on :${udpPort} (${sameport ? 'same port: PKTINFO on the listener' : 'other port: reply sockets'})`, async (t) => {
      lab.setTproxyPort(udpPort, tcpPort);
      const server = await startServer(udpPort, tcpPort);
      t.equal(server.ready.family, 6, 'dual-stack [::] socket');

      const v4 = await query('udp', '198.51.100.53');
      t.match(v4, { ok: true, from: '198.51.100.53:53' }, 'IPv4 answer over a connected socket');
      t.same(v4.txt, [`dtp listener=${udpPort} origdst=198.51.100.53:53`], 'server saw the original destination');

      const v6 = await query('udp', '2001:db8:53::53');
      t.match(v6, { ok: true, from: '2001:db8:53::53:53' }, 'IPv6 answer over a connected socket');
      t.same(v6.txt, [`dtp listener=${udpPort} origdst=[2001:db8:53::53]:53`]);

      const tcp4 = await query('tcp', '198.51.100.53');
      t.same(tcp4, { ok: true, server: { localAddress: '198.51.100.53', localPort: 53 } }, 'TCP v4 accepted as the original destination');
      const tcp6 = await query('tcp', '2001:db8:53::53');
      t.same(tcp6, { ok: true, server: { localAddress: '2001:db8:53::53', localPort: 53 } }, 'TCP v6 accepted as the original destination');

      let localAnswer = null;
      if (!sameport) {
        // The gateway's own address: a reply socket there would also take
        // that address's real port-53 traffic, so the reply is refused.
        localAnswer = await query('udp', '10.77.0.1', 1000);
        t.match(localAnswer, { ok: false, error: 'timeout' }, 'no reply from a local original destination');
      }

      const { stats, seen } = await server.finish();
      t.ok(seen.some((s) => s.client.startsWith('10.77.0.2:')), 'IPv4 client reported as family 4 address');
      t.ok(seen.some((s) => s.client.startsWith('[fd00:77::2]:')), 'IPv6 client address');
      t.equal(stats.sendErrors, 0, 'no send errors');
      t.equal(stats.droppedEagain, 0);
      t.equal(stats.callbackErrors, 0);
      if (sameport) {
        t.equal(stats.sent, 2);
        t.equal(stats.replySocketsOpened, 0, 'same port: no reply sockets');
      } else {
        t.equal(stats.sent, 2);
        t.ok(stats.replySocketsOpened > 0, `other port: reply sockets opened (${stats.replySocketsOpened})`);
        t.equal(stats.replySocketsOpened, 2, 'one per original destination (v4 and v6)');
        t.equal(stats.droppedLocalOrigDst, 1, 'local original destination refused and counted');
      }
    });
  }

  t.test('dig from the client namespace', async (t) => {
    lab.setTproxyPort(15353, 16353);
    const server = await startServer(15353, 16353);
    for (const host of ['198.51.100.53', '2001:db8:53::53']) {
      const output = execFileSync(
        'ip',
        ['netns', 'exec', client, 'dig', '+tries=1', '+time=2', '+short', `@${host}`, 'lab.example.test', 'TXT'],
        { encoding: 'utf8' },
      );
      t.match(output, /dtp listener=15353 origdst=/, `dig @${host}`);
    }
    await server.finish();
  });
}
