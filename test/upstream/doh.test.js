// The DoH client against a real local HTTP/2 TLS server with a throwaway CA.
import t from 'tap';
import http2 from 'node:http2';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import net from 'node:net';
import { execFileSync, spawn } from 'node:child_process';
import { DohUpstream } from '../../dist/upstream/doh.js';
import { H2Connection } from '../../dist/upstream/h2.js';
import { query, answer, ctxFor, dnsPacket } from '../helpers.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'doh-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${dir}/k.pem`, '-out', `${dir}/c.pem`, '-days', '1',
  '-subj', '/CN=doh.test', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });

let mode = 'ok';
const seen = [];
const server = http2.createSecureServer({ key: fs.readFileSync(`${dir}/k.pem`), cert: fs.readFileSync(`${dir}/c.pem`) });
server.on('stream', (stream, headers) => {
  const chunks = [];
  stream.on('data', (c) => chunks.push(c));
  stream.on('end', () => {
    const body = Buffer.concat(chunks);
    seen.push({ headers, body });
    if (mode === 'hang') return;
    if (mode === 'status') { stream.respond({ ':status': 503 }); stream.end(); return; }
    const ans = answer('doh.example', 'A', [{ type: 'A', name: 'doh.example', ttl: 60, data: '192.0.2.8' }], { id: body.readUInt16BE(0) });
    stream.respond({ ':status': 200, 'content-type': mode === 'ctype' ? 'text/html' : 'application/dns-message' });
    stream.end(ans);
  });
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
t.teardown(() => server.close());
const url = `https://127.0.0.1:${server.address().port}/dns-query`;

function ask(up, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const q = query('doh.example');
    q[0] = 0; q[1] = 0;
    up.send(q, ctxFor(query('doh.example')), { onUpstreamResult: (_c, _u, body, err) => resolve({ body, err }) }, performance.now() + timeoutMs);
  });
}

t.test('POSTs application/dns-message and returns the answer', async (t) => {
  const up = new DohUpstream({ url, ca: `${dir}/c.pem` });
  t.teardown(() => up.close());
  const { body, err } = await ask(up);
  t.equal(err, null);
  t.equal(body.readUInt16BE(0), 0, 'ID 0 round trip');
  const h = seen.at(-1).headers;
  t.equal(h[':method'], 'POST');
  t.equal(h['content-type'], 'application/dns-message');
  t.equal(up.stats.answers, 1);
  // A deadline far above any real latency: the claim is that all are answered, not how fast (a load average
  // of 20+ on this shared machine made 2 s deadlines fail).
  const many = await Promise.all(Array.from({ length: 300 }, () => ask(up, 15_000)));
  t.same(many.filter((m) => m.err !== null).map((m) => m.err), [], '300 concurrent requests answered');
  t.ok(up.connections <= 4, 'connections stay within the cap');
});

t.test('errors: status, content-type, timeout, untrusted certificate', async (t) => {
  const up = new DohUpstream({ url, ca: `${dir}/c.pem` });
  t.teardown(() => up.close());
  mode = 'status';
  t.equal((await ask(up)).err, 'http_status');
  mode = 'ctype';
  t.equal((await ask(up)).err, 'content_type');
  mode = 'hang';
  t.equal((await ask(up, 200)).err, 'timeout');
  mode = 'ok';
  const untrusted = new DohUpstream({ url });
  t.teardown(() => untrusted.close());
  t.equal((await ask(untrusted)).err, 'connect', 'a self-signed server without its CA is refused');
});

/** A raw TLS server speaking just enough HTTP/2 to hold a connection: its SETTINGS, the ACK of ours,
 *  and PING ACKs unless `frozen`. Counts the PINGs it receives and the connections it sees closed. */
async function pingServer({ frozen = false } = {}) {
  const state = { pings: 0, closed: 0, connections: 0 };
  const server = tls.createServer({ key: fs.readFileSync(`${dir}/k.pem`), cert: fs.readFileSync(`${dir}/c.pem`), ALPNProtocols: ['h2'] }, (s) => {
    state.connections++;
    s.on('error', () => {});
    s.on('close', () => state.closed++);
    s.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
    let buf = Buffer.alloc(0);
    let prefaceSeen = false;
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!prefaceSeen) { if (buf.length < 24) return; buf = buf.subarray(24); prefaceSeen = true; }
      while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
        const len = buf.readUIntBE(0, 3), type = buf[3], flags = buf[4];
        const payload = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === 4 && !(flags & 1)) s.write(Buffer.from([0, 0, 0, 4, 1, 0, 0, 0, 0]));
        if (type === 6 && !(flags & 1)) {
          state.pings++;
          if (!frozen) { const h = Buffer.from([0, 0, 8, 6, 1, 0, 0, 0, 0]); s.write(Buffer.concat([h, payload])); }
        }
      }
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  state.port = server.address().port;
  return state;
}

const until = async (cond, what, maxMs = 10_000) => {
  // A bound on failure, not a speed claim: polls until the condition holds.
  for (let waited = 0; !cond(); waited += 20) {
    if (waited > maxMs) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

t.test('an idle connection is PINGed (README), and one whose PING goes unanswered is dropped', async (t) => {
  const live = await pingServer();
  const up = new DohUpstream({ url: `https://127.0.0.1:${live.port}/dns-query`, ca: `${dir}/c.pem`, pingIntervalMs: 100, healthIntervalMs: 50 });
  t.teardown(() => up.close());
  await until(() => live.pings >= 3, 'three PINGs on the idle connection');
  t.ok(live.pings >= 3, `the silent connection was PINGed (${live.pings})`);
  t.equal(live.closed, 0, 'answered PINGs keep it open');
  t.equal(live.connections, 1, 'one connection');
  const frozen = await pingServer({ frozen: true });
  const up2 = new DohUpstream({ url: `https://127.0.0.1:${frozen.port}/dns-query`, ca: `${dir}/c.pem`, pingIntervalMs: 100, healthIntervalMs: 50 });
  t.teardown(() => up2.close());
  await until(() => frozen.closed >= 1, 'the unanswered connection to be dropped');
  t.ok(frozen.pings >= 1 && frozen.closed >= 1, `PINGed (${frozen.pings}) and dropped (${frozen.closed}) when the PING went unanswered`);
});

t.test('interoperates with a second HTTP/2 implementation: nghttpd (nghttp2)', async (t) => {
  const NGHTTPD = '/usr/sbin/nghttpd';
  if (!fs.existsSync(NGHTTPD)) { t.fail(`${NGHTTPD} is missing: install Debian's nghttp2-server (CI does)`); return; }
  const docroot = fs.mkdtempSync(path.join(dir, 'htdocs-'));
  const wire = answer('ng.example', 'A', [{ type: 'A', name: 'ng.example', ttl: 60, data: '192.0.2.77' }]);
  fs.writeFileSync(path.join(docroot, 'q.dnsmsg'), wire);
  const big = Buffer.alloc(900_000); for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  fs.writeFileSync(path.join(docroot, 'big.dnsmsg'), big);
  fs.writeFileSync(path.join(dir, 'mime.types'), 'application/dns-message dnsmsg\n');
  const port = await new Promise((r) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => r(p)); }); });
  // nghttpd answers a POST with the file at its path (the body is read and dropped), typed by extension.
  const ng = spawn(NGHTTPD, ['-a', '127.0.0.1', '-d', docroot, `--mime-types-file=${dir}/mime.types`, String(port), `${dir}/k.pem`, `${dir}/c.pem`], { stdio: 'ignore' });
  t.teardown(() => ng.kill());
  await until(() => { const c = net.connect(port, '127.0.0.1'); c.on('error', () => {}); c.on('connect', () => { c.destroy(); ngUp = true; }); return ngUp; }, 'nghttpd to listen');
  const up = new DohUpstream({ url: `https://127.0.0.1:${port}/q.dnsmsg`, ca: `${dir}/c.pem`, maxConnections: 1 });
  t.teardown(() => up.close());
  const asks = await Promise.all(Array.from({ length: 300 }, () => ask(up, 5000)));
  t.equal(asks.filter((r) => r.err === null).length, 300, '300 concurrent queries answered (over nghttpd\'s 100-stream limit: its SETTINGS honoured)');
  const decoded = dnsPacket.decode(asks[0].body);
  t.equal(decoded.answers[0].data, '192.0.2.77', 'a real DNS answer parsed from nghttpd\'s HPACK-coded response');
  t.ok(asks.every((r) => r.body.equals(wire)), 'every body intact');
  t.equal(up.connectionsOpened, 1, 'all on one connection');
  // Flow control: 900 kB is far past HTTP/2's default 65,535-byte window, so it arrives only if nghttpd
  // honours the larger windows our SETTINGS and WINDOW_UPDATE announced.
  const bigBody = await new Promise((resolve) => {
    const conn = new H2Connection({ host: '127.0.0.1', port, secureContext: tls.createSecureContext({ ca: fs.readFileSync(`${dir}/c.pem`) }),
      authority: `127.0.0.1:${port}`, path: '/big.dnsmsg', maxAnswerBytes: 1 << 20 }, {
      onResponse(_tag, status, contentType, body) { resolve({ status, contentType, body }); conn.close(); },
      onFailure(_tag, why) { resolve({ why }); conn.destroy(null); },
      onConnect() {}, onClose() {},
    });
    conn.request(Buffer.from([0, 0]), 1);
  });
  t.equal(bigBody.status, 200);
  t.equal(bigBody.contentType, 'application/dns-message', 'content-type decoded');
  t.ok(bigBody.body?.equals(big), '900 kB body received whole, byte for byte');
});
let ngUp = false;

t.test('a protocol violation closes the connection and its queries are answered on a new one', async (t) => {
  // First connection: a PING on stream 1 (PROTOCOL_ERROR). Later ones: a proper answer.
  const wire = answer('doh.example', 'A', [{ type: 'A', name: 'doh.example', ttl: 60, data: '192.0.2.9' }]);
  const fr = (type, flags, id, payload) => { const h = Buffer.alloc(9); h.writeUIntBE(payload.length, 0, 3); h[3] = type; h[4] = flags; h.writeUInt32BE(id, 5); return Buffer.concat([h, payload]); };
  let connections = 0;
  const server = tls.createServer({ key: fs.readFileSync(`${dir}/k.pem`), cert: fs.readFileSync(`${dir}/c.pem`), ALPNProtocols: ['h2'] }, (s) => {
    const n = connections++;
    s.on('error', () => {});
    s.write(fr(4, 0, 0, Buffer.alloc(0)));
    let buf = Buffer.alloc(0), preface = false;
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!preface) { if (buf.length < 24) return; buf = buf.subarray(24); preface = true; }
      while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
        const len = buf.readUIntBE(0, 3), type = buf[3], flags = buf[4], id = buf.readUInt32BE(5) & 0x7fffffff;
        buf = buf.subarray(9 + len);
        if (type !== 0 || !(flags & 1)) continue; // act on the end of each request
        if (n === 0) { s.write(fr(6, 0, id, Buffer.alloc(8))); continue; }
        const ct = Buffer.concat([Buffer.from([0x0f, 0x10, 23]), Buffer.from('application/dns-message')]);
        s.write(Buffer.concat([fr(1, 0x4, id, Buffer.concat([Buffer.from([0x88]), ct])), fr(0, 0x1, id, wire)]));
      }
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const up = new DohUpstream({ url: `https://127.0.0.1:${server.address().port}/dns-query`, ca: `${dir}/c.pem` });
  t.teardown(() => up.close());
  const r = await ask(up, 10_000);
  t.equal(r.err, null, 'answered');
  t.equal(dnsPacket.decode(r.body).answers[0].data, '192.0.2.9');
  t.equal(connections, 2, 'on a second connection');
  t.equal(up.replays, 1, 'replayed once');
});
