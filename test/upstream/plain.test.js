// Plain DNS upstream against spoofing (issue #15 §2): a fake server on loopback sends, before the real
// answer, answers from the wrong port, with the wrong ID, for the wrong question and in the wrong 0x20
// case; only the real one may be taken, and each other one is counted. Also: a fresh source port per
// query, the client's case restored, the off switch, sockets and timers released when idle, and the
// loop registry (sentByUs) that recognises our own queries.
import t from 'tap';
import dgram from 'node:dgram';
import * as plain from '../../dist/upstream/plain.js';

const { PlainDnsUpstream } = plain;
import { query, ctxFor, dnsPacket } from '../helpers.js';

const GOOD = '192.0.2.53', BAD = '203.0.113.66';

/** An answer to `q` (wire) with its ID and question bytes, unless overridden. */
function reply(q, { id, name, data = GOOD } = {}) {
  const p = dnsPacket.decode(q);
  const questions = name ? [{ ...p.questions[0], name }] : p.questions;
  const a = dnsPacket.encode({ type: 'response', id: id ?? p.id, flags: dnsPacket.RECURSION_AVAILABLE, questions,
    answers: [{ type: 'A', name: questions[0].name, ttl: 60, data }] });
  if (!name) q.copy(a, 12, 12, 12 + questionLength(q)); // the question exactly as asked (case included)
  return a;
}
const questionLength = (q) => { let p = 12; while (q[p]) p += q[p] + 1; return p + 5 - 12; };
const flipCase = (b) => { const c = Buffer.from(b); for (let i = 12; i < 12 + questionLength(c) - 4; i++) if (/[a-z]/i.test(String.fromCharCode(c[i]))) c[i] ^= 0x20; return c; };

async function udpServer(onQuery) {
  const s = dgram.createSocket('udp4');
  const other = dgram.createSocket('udp4'); // a second source port for spoofs
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  await new Promise((r) => other.bind(0, '127.0.0.1', r));
  const state = { sock: s, other, port: s.address().port, queries: [] };
  s.on('message', (msg, rinfo) => { state.queries.push({ msg: Buffer.from(msg), port: rinfo.port }); onQuery(msg, rinfo, state); });
  t.teardown(() => { s.close(); other.close(); });
  return state;
}

function ask(up, name, timeoutMs = 3000) {
  return new Promise((resolve) => {
    const q = query(name, 'A', { edns: true });
    q[0] = 0; q[1] = 0;
    up.send(q, ctxFor(query(name)), { onUpstreamResult: (_c, _u, body, err) => resolve({ body, err }) }, performance.now() + timeoutMs);
  });
}
const dataOf = (body) => dnsPacket.decode(body).answers[0]?.data;

t.test('spoofed answers (wrong port, ID, question, case) are dropped and counted; the real one is taken', async (t) => {
  const srv = await udpServer((msg, rinfo, st) => {
    const send = (buf, from = st.sock) => from.send(buf, rinfo.port, rinfo.address);
    send(reply(msg, { data: BAD }), st.other); // right everything, wrong source port
    const wrongId = reply(msg, { data: BAD }); wrongId.writeUInt16BE(msg.readUInt16BE(0) ^ 0x5a5a, 0); send(wrongId);
    send(reply(msg, { name: 'evil.example', data: BAD })); // another question
    send(flipCase(reply(msg, { data: BAD }))); // the right question, every letter's case inverted
    send(Buffer.from([1, 2, 3])); // not even a header
    setTimeout(() => send(reply(msg)), 20); // and the real answer, last
  });
  const up = new PlainDnsUpstream(`udp://127.0.0.1:${srv.port}`);
  t.teardown(() => up.close());
  const name = 'MixedCaseLetters.Spoof.Example';
  const r = await ask(up, name);
  t.equal(r.err, null, 'answered');
  t.equal(dataOf(r.body), GOOD, 'with the real answer, not a spoofed one');
  t.equal(r.body.readUInt16BE(0), 0, 'handed back with ID 0');
  t.equal(dnsPacket.decode(r.body).questions[0].name, name, "the question in the client's own case");
  t.equal(up.stats.mismatches, 5, 'all five bad datagrams counted');
  t.equal(up.stats.caseMismatches, 1, 'the wrong-case one counted as a case mismatch');
  const sent = srv.queries[0].msg;
  const sentName = dnsPacket.decode(sent).questions[0].name;
  t.equal(sentName.toLowerCase(), name.toLowerCase(), 'same name on the wire');
  t.not(sentName, name, '0x20: the case on the wire differs from the client\'s');
});

t.test('a fresh random source port and ID per query; sockets and timers released when idle', async (t) => {
  const srv = await udpServer((msg, rinfo, st) => st.sock.send(reply(msg), rinfo.port, rinfo.address));
  const up = new PlainDnsUpstream(`udp://127.0.0.1:${srv.port}`);
  t.teardown(() => up.close());
  for (let i = 0; i < 20; i++) t.equal((await ask(up, `seq${i}.example`)).err, null);
  const ports = new Set(srv.queries.map((q) => q.port));
  t.ok(ports.size >= 18, `20 sequential queries left from ${ports.size} distinct source ports`);
  const cases = new Set(srv.queries.map((q) => dnsPacket.decode(q.msg).questions[0].name.replace(/\d+/, '')));
  t.ok(cases.size >= 10, `${cases.size} distinct case patterns for the same name shape`);
  const burst = await Promise.all(Array.from({ length: 50 }, (_, i) => ask(up, `b${i}.example`)));
  t.ok(burst.every((r) => r.err === null), '50 concurrent queries answered');
  t.equal(up.openSockets, 0, 'every query socket closed once its query ended');
  t.equal(up.timerArmed, false, 'no deadline timer armed with nothing in flight');
  t.equal(up.stats.inflight, 0);
  t.equal(up.stats.mismatches, 0, 'no false mismatches');
});

t.test('0x20 off switch: a server that does not echo the case', async (t) => {
  const srv = await udpServer((msg, rinfo, st) => {
    const a = reply(msg);
    // Lower-cases the question in its answer, as some middleboxes do.
    for (let i = 12; i < 12 + questionLength(a) - 4; i++) if (a[i] >= 0x41 && a[i] <= 0x5a) a[i] |= 0x20;
    st.sock.send(a, rinfo.port, rinfo.address);
  });
  const strict = new PlainDnsUpstream(`udp://127.0.0.1:${srv.port}`);
  t.teardown(() => strict.close());
  const r1 = await ask(strict, 'abcdefghijklmnop.example', 300);
  t.equal(r1.err, 'timeout', 'with 0x20 on, the lower-cased answer is refused as a spoof');
  t.ok(strict.stats.caseMismatches >= 1, 'and counted');
  const lax = new PlainDnsUpstream(`udp://127.0.0.1:${srv.port}`, { use0x20: false });
  t.teardown(() => lax.close());
  const r2 = await ask(lax, 'AbcDefGhi.example');
  t.equal(r2.err, null, 'with 0x20 off, it is taken');
  t.equal(dnsPacket.decode(srv.queries.at(-1).msg).questions[0].name, 'AbcDefGhi.example', 'and the case is sent unchanged');
});

t.test('our own queries in flight are recognised (loop detection), and only while in flight', async (t) => {
  let held;
  const srv = await udpServer((msg, rinfo) => { held = { msg: Buffer.from(msg), port: rinfo.port }; });
  const up = new PlainDnsUpstream(`udp://127.0.0.1:${srv.port}`);
  t.teardown(() => up.close());
  const pending = ask(up, 'loop.example', 300);
  while (!held) await new Promise((r) => setTimeout(r, 5));
  const id = held.msg.readUInt16BE(0);
  const { sentByUs, mayBeOwnQuery } = plain;
  t.ok(mayBeOwnQuery(id), 'the ID is flagged');
  t.ok(sentByUs(id, held.port, held.msg, held.msg.length), 'the query as it arrives (from our port, with our ID) is ours');
  t.notOk(sentByUs(id, held.port ^ 1, held.msg, held.msg.length), 'not from another port');
  t.notOk(sentByUs(id ^ 1, held.port, held.msg, held.msg.length), 'not with another ID');
  const other = query('other.example', 'A', { id });
  t.notOk(sentByUs(id, held.port, other, other.length), 'not for another question');
  t.equal((await pending).err, 'timeout');
  t.notOk(sentByUs(id, held.port, held.msg, held.msg.length), 'forgotten once the query ended');
});

t.test('truncated over UDP: the TCP answer is checked as well', async (t) => {
  const net = await import('node:net');
  const srv = await udpServer((msg, rinfo, st) => {
    const a = reply(msg); a[2] |= 0x02; st.sock.send(a, rinfo.port, rinfo.address);
  });
  let mode = 'wrong';
  const tcp = net.createServer((s) => s.on('data', (d) => {
    const q = d.subarray(2, 2 + d.readUInt16BE(0));
    const a = mode === 'wrong' ? reply(q, { name: 'evil.example', data: BAD }) : reply(q);
    const l = Buffer.alloc(2); l.writeUInt16BE(a.length);
    s.end(Buffer.concat([l, a]));
  }));
  await new Promise((r) => tcp.listen(srv.port, '127.0.0.1', r));
  t.teardown(() => tcp.close());
  const up = new PlainDnsUpstream(`udp://127.0.0.1:${srv.port}`);
  t.teardown(() => up.close());
  const bad = await ask(up, 'Tc.Example');
  t.equal(bad.err, 'invalid_answer', 'a TCP answer for another question is refused');
  t.equal(up.stats.mismatches, 1);
  mode = 'right';
  const good = await ask(up, 'Tc.Example');
  t.equal(good.err, null);
  t.equal(dataOf(good.body), GOOD);
});
