// DoT upstream against a server that misbehaves (issue #15 §4): one that stops answering (stall
// detection closes the connection and replays its queries), one that stops reading (the write backlog is
// capped: further queries are refused, not queued), and one that dribbles an answer a byte at a time
// (each byte copied once). Also the deadline on a fake clock, and no timer armed while idle.
import t from 'tap';
import tls from 'node:tls';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { DotUpstream } from '../../dist/upstream/dot.js';
import { query, ctxFor, dnsPacket } from '../helpers.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dot-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${dir}/k.pem`, '-out', `${dir}/c.pem`, '-days', '1',
  '-subj', '/CN=dot.test', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
const key = fs.readFileSync(`${dir}/k.pem`), cert = fs.readFileSync(`${dir}/c.pem`);
const ca = `${dir}/c.pem`;

function reply(q) {
  const p = dnsPacket.decode(q);
  return dnsPacket.encode({ type: 'response', id: p.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: p.questions,
    answers: [{ type: 'A', name: p.questions[0].name, ttl: 60, data: '192.0.2.1' }] });
}
const framed = (m) => { const l = Buffer.alloc(2); l.writeUInt16BE(m.length); return Buffer.concat([l, m]); };

/** A DoT server; `behave(connectionIndex)` picks 'ok', 'silent' (reads, never answers), 'deaf' (never
 *  reads) or 'dribble' (answers one byte per write). */
async function dotServer(behave) {
  const state = { connections: 0, queries: 0 };
  const server = tls.createServer({ key, cert }, (s) => {
    const mode = behave(state.connections++);
    s.on('error', () => {});
    if (mode === 'deaf') { s.pause(); return; }
    let buf = Buffer.alloc(0);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const q = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + q.length);
        state.queries++;
        if (mode === 'silent') continue;
        const out = framed(reply(q));
        if (mode === 'ok') { s.write(out); continue; }
        let i = 0;
        const next = () => { if (i < out.length && !s.destroyed) { s.write(out.subarray(i, ++i)); setImmediate(next); } };
        next();
      }
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  state.port = server.address().port;
  return state;
}

function ask(up, name, timeoutMs = 5000, size = 0) {
  return new Promise((resolve) => {
    let q = query(name, 'A', { edns: true });
    if (size) q = Buffer.concat([q, Buffer.alloc(size - q.length)]);
    q[0] = 0; q[1] = 0;
    up.send(q, ctxFor(query(name)), { onUpstreamResult: (_c, _u, body, err) => resolve({ body, err }) }, performance.now() + timeoutMs);
  });
}

t.test('a connection that stops answering is closed and its queries replayed on a new one', async (t) => {
  const srv = await dotServer((i) => (i === 0 ? 'silent' : 'ok'));
  const up = new DotUpstream({ url: `tls://127.0.0.1:${srv.port}`, ca, stallTimeoutMs: 200 });
  t.teardown(() => up.close());
  const rs = await Promise.all([ask(up, 'a.example'), ask(up, 'b.example'), ask(up, 'c.example')]);
  t.same(rs.map((r) => r.err), [null, null, null], 'all three answered');
  t.same(rs.map((r) => dnsPacket.decode(r.body).questions[0].name), ['a.example', 'b.example', 'c.example']);
  t.equal(up.stalls, 1, 'one stalled connection closed');
  t.equal(up.connects, 2, 'and a second one opened');
  t.equal(up.replays, 3, 'the three queries replayed on it');
  t.equal(up.timerArmed, false, 'no timer armed once nothing is in flight');
});

t.test('a server that does not read: the write backlog is capped, further queries refused', async (t) => {
  const srv = await dotServer(() => 'deaf');
  const cap = 64 * 1024;
  const up = new DotUpstream({ url: `tls://127.0.0.1:${srv.port}`, ca, maxWriteBacklog: cap, stallTimeoutMs: 60_000 });
  t.teardown(() => up.close());
  // 400 queries of 60 kB (24 MB) against a peer that reads nothing: the kernel buffers take a few MB.
  const results = [];
  let maxBacklog = 0;
  for (let i = 0; i < 400; i++) {
    results.push(ask(up, `w${i}.example`, 2000, 60000));
    maxBacklog = Math.max(maxBacklog, up.writeBacklog);
    if (i % 20 === 0) await new Promise((r) => setImmediate(r));
  }
  const rs = await Promise.all(results);
  const refused = rs.filter((r) => r.err === 'over_capacity').length;
  t.ok(refused > 0, `${refused} queries refused once the backlog was full`);
  t.ok(maxBacklog <= cap + 60002, `write backlog peaked at ${maxBacklog} bytes (cap ${cap} + one message)`);
  t.ok(rs.every((r) => r.err !== null), 'none answered (the server never read)');
  t.equal(up.stats.inflight, 0);
});

t.test('an answer dribbled one byte per TLS record: each byte copied once', async (t) => {
  const srv = await dotServer(() => 'dribble');
  const up = new DotUpstream({ url: `tls://127.0.0.1:${srv.port}`, ca });
  t.teardown(() => up.close());
  const r = await ask(up, 'dribble.example');
  t.equal(r.err, null);
  t.equal(dnsPacket.decode(r.body).answers[0].data, '192.0.2.1');
  const size = framed(reply(query('dribble.example', 'A', { edns: true }))).length;
  t.ok(up.partialBytes > 0 && up.partialBytes <= size, `copied ${up.partialBytes} bytes for a ${size}-byte message`);
});

t.test('deadline on a fake clock: the query times out when the clock says so, not before', async (t) => {
  const srv = await dotServer(() => 'silent');
  const clock = { t: 0 };
  const timers = { pending: [], setTimeout(fn, ms) { const h = { fn, at: clock.t + ms }; this.pending.push(h); return h; },
    clearTimeout(h) { this.pending = this.pending.filter((x) => x !== h); } };
  const up = new DotUpstream({ url: `tls://127.0.0.1:${srv.port}`, ca, stallTimeoutMs: 1e9, deadlines: { now: () => clock.t, timers } });
  t.teardown(() => up.close());
  let result = null;
  const q = query('fake.example', 'A'); q[0] = 0; q[1] = 0;
  up.send(q, ctxFor(query('fake.example')), { onUpstreamResult: (_c, _u, body, err) => { result = err; } }, 1000);
  while (srv.queries === 0) await new Promise((r) => setTimeout(r, 5));
  t.equal(timers.pending.length, 1, 'one timer armed for the query');
  const fire = () => { const due = timers.pending.filter((h) => h.at <= clock.t); timers.pending = timers.pending.filter((h) => h.at > clock.t); for (const h of due) h.fn(); };
  clock.t = 999; fire();
  t.equal(result, null, 'not timed out at 999 ms');
  clock.t = 1002; fire();
  t.equal(result, 'timeout', 'timed out once the fake clock passed the deadline');
  t.equal(timers.pending.length, 0, 'and no timer left armed');
});
