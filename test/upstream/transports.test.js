// Transports against local servers made in the test: DoT (RFC 7858) over node:tls, plain DNS with the
// truncation → TCP fallback, DoH replays on GOAWAY / reset, and hostname upstreams resolved through
// bootstrap servers (never the system resolver) with SNI and the certificate check on the hostname.
import t from 'tap';
import tls from 'node:tls';
import net from 'node:net';
import dgram from 'node:dgram';
import http2 from 'node:http2';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { DotUpstream } from '../../dist/upstream/dot.js';
import { DohUpstream } from '../../dist/upstream/doh.js';
import { PlainDnsUpstream } from '../../dist/upstream/plain.js';
import { BootstrapResolver } from '../../dist/upstream/bootstrap.js';
import { createUpstreams } from '../../dist/upstream/create.js';
import { query, answer, ctxFor, dnsPacket } from '../helpers.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'transports-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${dir}/k.pem`, '-out', `${dir}/c.pem`, '-days', '1',
  '-subj', '/CN=dns.test', '-addext', 'subjectAltName=DNS:dns.test,IP:127.0.0.1'], { stdio: 'ignore' });
const key = fs.readFileSync(`${dir}/k.pem`), cert = fs.readFileSync(`${dir}/c.pem`);
const ca = `${dir}/c.pem`;

/** An answer to `q` (wire, any ID) with the same ID. */
function reply(q, { data = '192.0.2.53', tc = false, txt = 0 } = {}) {
  const p = dnsPacket.decode(q);
  const name = p.questions[0].name;
  const answers = txt ? Array.from({ length: txt }, (_, i) => ({ type: 'TXT', name, ttl: 60, data: `${i}-${'x'.repeat(200)}` }))
    : [{ type: 'A', name, ttl: 60, data }];
  return dnsPacket.encode({ type: 'response', id: p.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (tc ? dnsPacket.TRUNCATED_RESPONSE : 0),
    questions: p.questions, answers: tc ? [] : answers });
}

function ask(up, name = 'x.test', timeoutMs = 2000) {
  return new Promise((resolve) => {
    const q = query(name, 'A', { edns: true });
    q[0] = 0; q[1] = 0;
    up.send(q, ctxFor(query(name)), { onUpstreamResult: (_c, _u, body, err) => resolve({ body, err }) }, performance.now() + timeoutMs);
  });
}

t.test('DoT: pipelined framing, random IDs mapped to 0, reconnect and replay, certificate checked', async (t) => {
  const ids = [];
  let behave = 'ok';
  const sockets = new Set();
  const server = tls.createServer({ key, cert, ALPNProtocols: ['dot'] }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    let buf = Buffer.alloc(0);
    s.on('error', () => {});
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const batch = [];
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const q = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + q.length);
        ids.push(q.readUInt16BE(0));
        if (behave === 'drop') { s.destroy(); return; }
        batch.push(q);
      }
      // Answer out of order, all in one write: framing must split them.
      const out = batch.reverse().map((q) => { const a = reply(q); const l = Buffer.alloc(2); l.writeUInt16BE(a.length); return Buffer.concat([l, a]); });
      if (out.length) s.write(Buffer.concat(out));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = server.address().port;
  const up = new DotUpstream({ url: `tls://127.0.0.1:${port}`, ca });
  t.teardown(() => up.close());
  const one = await ask(up);
  t.equal(one.err, null);
  t.equal(one.body.readUInt16BE(0), 0, 'answer handed back with ID 0');
  t.equal(dnsPacket.decode(one.body).answers[0].data, '192.0.2.53');
  const many = await Promise.all(Array.from({ length: 200 }, (_, i) => ask(up, `n${i}.test`)));
  t.equal(many.filter((m) => m.err === null).length, 200, '200 pipelined queries answered');
  const misrouted = many.map((m, i) => (m.body && dnsPacket.decode(m.body).questions[0].name === `n${i}.test` ? null : i)).filter((i) => i !== null);
  t.same(misrouted, [], 'each got the answer to its own question (answers came back out of order)');
  t.equal(up.connects, 1, 'one connection for all');
  t.ok(new Set(ids).size > 150, 'random IDs on the wire');
  // The server drops the connection: the query is replayed once on a new connection.
  for (const s of sockets) s.destroy();
  await new Promise((r) => setTimeout(r, 50));
  const after = await ask(up);
  t.equal(after.err, null, 'answered after the server closed the connection');
  behave = 'drop';
  const dropped = await ask(up);
  t.equal(dropped.err, 'reset', 'a connection that keeps dying fails the query after one replay');
  t.ok(up.replays >= 1);
  behave = 'ok';
  const untrusted = new DotUpstream({ url: `tls://127.0.0.1:${port}` });
  t.teardown(() => untrusted.close());
  t.equal((await ask(untrusted)).err, 'connect', 'self-signed without the CA is refused');
  // Cancel: no callback afterwards, inflight released.
  let called = false;
  const q = query('c.test', 'A'); q[0] = 0; q[1] = 0;
  const call = up.send(q, ctxFor(query('c.test')), { onUpstreamResult: () => { called = true; } }, performance.now() + 1000);
  call.cancel();
  await new Promise((r) => setTimeout(r, 100));
  t.equal(called, false, 'cancelled request never calls back');
  t.equal(up.stats.inflight, 0);
});

t.test('DoT: connection refused → connect error, unreachable reported', async (t) => {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  await new Promise((r) => srv.close(r));
  const up = new DotUpstream({ url: `tls://127.0.0.1:${port}`, ca });
  t.teardown(() => up.close());
  const seen = [];
  up.connectivity = (ok) => seen.push(ok);
  t.equal((await ask(up)).err, 'connect');
  t.same(seen, [false]);
});

t.test('plain DNS: UDP with random ID, truncated answer retried over TCP', async (t) => {
  const udp = dgram.createSocket('udp4');
  await new Promise((r) => udp.bind(0, '127.0.0.1', r));
  const port = udp.address().port;
  const tcp = net.createServer((s) => {
    s.on('data', (d) => {
      const q = d.subarray(2, 2 + d.readUInt16BE(0));
      const a = reply(q, { txt: 10 });
      const l = Buffer.alloc(2); l.writeUInt16BE(a.length);
      s.end(Buffer.concat([l, a]));
    });
  });
  await new Promise((r) => tcp.listen(port, '127.0.0.1', r));
  t.teardown(() => { udp.close(); tcp.close(); });
  const udpIds = [];
  udp.on('message', (msg, rinfo) => {
    udpIds.push(msg.readUInt16BE(0));
    const big = dnsPacket.decode(msg).questions[0].name.toLowerCase().startsWith('big'); // 0x20: any case
    udp.send(reply(msg, { tc: big }), rinfo.port, rinfo.address);
  });
  const up = new PlainDnsUpstream(`udp://127.0.0.1:${port}`);
  t.teardown(() => up.close());
  const small = await ask(up, 'small.test');
  t.equal(small.err, null);
  t.equal(small.body.readUInt16BE(0), 0, 'ID mapped back to 0');
  t.not(udpIds[0], 0, 'random ID on the wire');
  const big = await ask(up, 'big.test');
  t.equal(big.err, null, 'truncated UDP answer retried over TCP');
  const p = dnsPacket.decode(big.body);
  t.equal(p.answers.length, 10, 'full answer from TCP');
  t.equal(p.flags & dnsPacket.TRUNCATED_RESPONSE, 0, 'not truncated');
  t.throws(() => new PlainDnsUpstream('udp://dns.test:53'), /IP address/, 'hostnames are not resolved');
  t.ok(new PlainDnsUpstream('udp://dns.test:53', { ip: '127.0.0.1' }), 'unless a fixed ip is given');
});

/** A DoH server whose behaviour per request is chosen by `h2.mode`. */
async function dohServer() {
  const state = { mode: 'ok', requests: 0, sessions: new Set(), held: [] };
  const server = http2.createSecureServer({ key, cert });
  server.on('session', (s) => { state.sessions.add(s); s.on('close', () => state.sessions.delete(s)); s.on('error', () => {}); });
  server.on('stream', (stream, headers) => {
    const chunks = [];
    stream.on('error', () => {});
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => {
      state.requests++;
      state.lastHost = headers[':authority'];
      const mode = state.mode;
      // A server going away without finishing the stream it had accepted (a restart).
      if (mode === 'goaway-once') { state.mode = 'ok'; const ss = stream.session; ss.goaway(http2.constants.NGHTTP2_NO_ERROR, 0); setTimeout(() => ss.destroy(), 30); return; }
      if (mode === 'goaway-after') {
        state.mode = 'ok';
        stream.respond({ ':status': 200, 'content-type': 'application/dns-message' });
        stream.end(reply(Buffer.concat(chunks)));
        stream.session.goaway(http2.constants.NGHTTP2_NO_ERROR);
        return;
      }
      if (mode === 'destroy-once') { state.mode = 'ok'; stream.session.destroy(); return; }
      if (mode === 'rst-once') { state.mode = 'ok'; stream.close(http2.constants.NGHTTP2_REFUSED_STREAM); return; }
      // Accepted and never answered: the query stays in flight until the connection goes.
      if (mode === 'hold') { state.held.push(stream); return; }
      stream.respond({ ':status': 200, 'content-type': 'application/dns-message' });
      stream.end(reply(Buffer.concat(chunks)));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  state.server = server;
  state.port = server.address().port;
  return state;
}

t.test('DoH: GOAWAY, a reset connection and a refused stream are replayed, not failed', async (t) => {
  const s = await dohServer();
  t.teardown(() => { for (const x of s.sessions) x.destroy(); s.server.close(); });
  const up = new DohUpstream({ url: `https://127.0.0.1:${s.port}/dns-query`, ca });
  t.teardown(() => up.close());
  t.equal((await ask(up)).err, null, 'warm');
  s.mode = 'goaway-after';
  t.equal((await ask(up)).err, null, 'answered, then GOAWAY');
  const sessionsBefore = s.sessions.size;
  t.equal((await ask(up)).err, null, 'the next query goes to a new connection');
  t.ok(up.connections >= 1 && sessionsBefore >= 1);
  for (const mode of ['goaway-once', 'destroy-once', 'rst-once']) {
    s.mode = mode;
    const before = up.replays;
    const r = await ask(up);
    t.equal(r.err, null, `${mode}: answered`);
    t.ok(up.replays > before, `${mode}: replayed`);
  }
  // Everything in flight on a connection that dies is replayed.
  s.mode = 'hold';
  const replaysBefore = up.replays;
  const many = Array.from({ length: 50 }, (_, i) => ask(up, `h${i}.test`, 10_000));
  for (let i = 0; i < 500 && s.held.length < 50; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(s.held.length, 50, 'the server holds all 50 queries, unanswered');
  s.mode = 'ok';
  for (const x of s.sessions) x.destroy();
  const res = await Promise.all(many);
  t.equal(res.filter((r) => r.err === null).length, 50, 'all 50 in-flight queries answered after the connection reset');
  t.equal(up.replays - replaysBefore, 50, 'each of them replayed once on a new connection');
  const names = res.map((r) => r.body && dnsPacket.decode(r.body).questions[0].name);
  t.same(names, Array.from({ length: 50 }, (_, i) => `h${i}.test`), 'each with its own answer');
  // Upstream gone for good: connect error, reported as unreachable.
  const seen = [];
  up.connectivity = (ok) => seen.push(ok);
  for (const x of s.sessions) x.destroy();
  await new Promise((r) => s.server.close(r));
  const gone = await ask(up, 'gone.test');
  t.equal(gone.err, 'connect', 'refused after the restart replay: connect error');
  t.ok(seen.includes(false), 'unreachable reported');
});

t.test('hostname upstream: bootstrap DNS or fixed ip, SNI and certificate on the hostname', async (t) => {
  const s = await dohServer();
  t.teardown(() => { for (const x of s.sessions) x.destroy(); s.server.close(); });
  // A bootstrap server that knows dns.test.
  const boot = dgram.createSocket('udp4');
  await new Promise((r) => boot.bind(0, '127.0.0.1', r));
  t.teardown(() => boot.close());
  let bootQueries = 0;
  boot.on('message', (msg, rinfo) => {
    bootQueries++;
    const p = dnsPacket.decode(msg);
    const q = p.questions[0];
    const answers = q.name === 'dns.test' && q.type === 'A' ? [{ type: 'A', name: q.name, ttl: 300, data: '127.0.0.1' }] : [];
    boot.send(dnsPacket.encode({ type: 'response', id: p.id, flags: dnsPacket.RECURSION_DESIRED, questions: p.questions, answers }), rinfo.port, rinfo.address);
  });
  const resolver = new BootstrapResolver([`127.0.0.1:${boot.address().port}`]);
  t.same(await resolver.resolve('dns.test'), [{ address: '127.0.0.1', family: 4 }]);
  const up = new DohUpstream({ url: `https://dns.test:${s.port}/dns-query`, ca, bootstrap: resolver });
  t.teardown(() => up.close());
  const r = await ask(up);
  t.equal(r.err, null, 'connected to the bootstrap-resolved address');
  t.equal(s.lastHost, `dns.test:${s.port}`, ':authority is the hostname');
  t.ok(bootQueries >= 1);
  const fixed = new DohUpstream({ url: `https://dns.test:${s.port}/dns-query`, ca, ip: '127.0.0.1' });
  t.teardown(() => fixed.close());
  t.equal((await ask(fixed)).err, null, 'fixed ip');
  // The certificate is checked against the hostname, not the address.
  const wrong = new DohUpstream({ url: `https://other.test:${s.port}/dns-query`, ca, ip: '127.0.0.1' });
  t.teardown(() => wrong.close());
  t.equal((await ask(wrong)).err, 'connect', 'certificate for dns.test does not pass for other.test');
  // No bootstrap and no ip: never the system resolver.
  const none = new DohUpstream({ url: `https://localhost:${s.port}/dns-query`, ca });
  t.teardown(() => none.close());
  t.equal((await ask(none)).err, 'connect', 'localhost not resolved through the system');
  // DoT with a hostname too.
  const base = { upstream: { maxStreamsPerConnection: 100, maxConnections: 4, pingIntervalMs: 15000 } };
  t.throws(() => createUpstreams({ ...base, bootstrap: [], upstreams: [{ url: 'https://dns.test/dns-query' }] }), /needs "ip:"/);
  t.throws(() => createUpstreams({ ...base, bootstrap: ['not-an-ip'], upstreams: [{ url: 'https://127.0.0.1/dns-query' }] }), /bootstrap/);
  const made = createUpstreams({ ...base, bootstrap: ['192.0.2.53'], upstreams: [{ url: 'https://dns.test/dns-query' }, { url: 'tls://dns.test' }, { url: 'udp://10.0.0.1' }] });
  t.same(made.map((u) => u.constructor.name), ['DohUpstream', 'DotUpstream', 'PlainDnsUpstream']);
  for (const m of made) m.close();
});
