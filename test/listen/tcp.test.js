// DNS over TCP listener (RFC 7766 framing, RFC 7828 keepalive, limits) on a plain 127.0.0.1 listener
// with a fake chain, so only the transport is under test.
import t from 'tap';
import net from 'node:net';
import crypto from 'node:crypto';
import { TcpListener } from '../../dist/listen/tcp.js';
import { ContextPool } from '../../dist/pipeline/context.js';
import { readQuery, writeHeaderOnlyReply } from '../../dist/dns/wire.js';
import { dnsPacket, query, answer } from '../helpers.js';

const LIMITS = { idleTimeoutMs: 10_000, readTimeoutMs: 5_000, maxConnections: 100, maxConnectionsPerClient: 50, maxQueriesPerConnection: 1000, maxWriteBufferBytes: 256 * 1024 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A stand-in for the pipeline: parses like validate, answers FORMERR to malformed queries, otherwise
 * answers `<name> A 192.0.2.1` after the delay encoded in the first label (`d30` = 30 ms), or with
 * `size` bytes of filler when the name starts with `big`.
 */
function fakeChain(pool) {
  const chain = {
    runs: 0,
    run(ctx) {
      chain.runs++;
      const st = readQuery(ctx.buf, 0, ctx.len, ctx.q);
      if (st !== 0 /* OK */) {
        const out = Buffer.alloc(600);
        const n = writeHeaderOnlyReply(ctx.buf, 0, ctx.q, 1, out, 0);
        ctx.responder.send(ctx, out, 0, n);
        pool.release(ctx);
        return;
      }
      const p = dnsPacket.decode(Buffer.from(ctx.buf.subarray(0, ctx.len)));
      const name = p.questions[0].name;
      const edns = p.additionals.some((a) => a.type === 'OPT');
      let wire;
      if (name.startsWith('big')) wire = Buffer.concat([answer(name, 'A', [], { id: p.id, edns: false }), Buffer.alloc(60_000)]);
      else wire = answer(name, 'A', [{ type: 'A', name, ttl: 60, data: '192.0.2.1' }], { id: p.id, edns });
      const delay = /^d(\d+)\./.exec(name);
      const reply = () => { ctx.responder.send(ctx, wire, 0, wire.length); pool.release(ctx); };
      if (delay) setTimeout(reply, Number(delay[1])); else reply();
    },
  };
  return chain;
}

async function listener(t, limits = {}) {
  const pool = new ContextPool(1024);
  const chain = fakeChain(pool);
  const l = new TcpListener('test', '127.0.0.1:0', false, { ...LIMITS, ...limits }, chain, pool);
  await l.listen();
  t.teardown(() => l.close());
  return { l, pool, chain, port: l.server.address().port };
}

function frame(msg) {
  const b = Buffer.alloc(2 + msg.length);
  b.writeUInt16BE(msg.length, 0);
  msg.copy(b, 2);
  return b;
}

/** A client that decodes every framed answer and records when the server closed. */
function client(port, { localAddress } = {}) {
  const s = net.connect({ port, host: '127.0.0.1', localAddress });
  const c = { s, answers: [], closed: false, ended: false, buf: Buffer.alloc(0), waiters: [] };
  s.on('data', (d) => {
    c.buf = Buffer.concat([c.buf, d]);
    while (c.buf.length >= 2 && c.buf.length >= 2 + c.buf.readUInt16BE(0)) {
      const len = c.buf.readUInt16BE(0);
      c.answers.push(dnsPacket.decode(c.buf.subarray(2, 2 + len)));
      c.buf = c.buf.subarray(2 + len);
    }
    c.check();
  });
  s.on('end', () => { c.ended = true; c.check(); });
  s.on('close', () => { c.closed = true; c.check(); });
  s.on('error', () => {});
  c.check = () => { c.waiters = c.waiters.filter((w) => !w()); };
  c.until = (pred, ms = 3000) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out; answers=${c.answers.length} closed=${c.closed}`)), ms);
    const w = () => { if (pred(c)) { clearTimeout(timer); resolve(c); return true; } return false; };
    if (!w()) c.waiters.push(w);
  });
  c.connected = new Promise((r) => s.once('connect', r));
  return c;
}

t.test('a frame split across writes byte by byte', async (t) => {
  const { port, l } = await listener(t);
  const c = client(port);
  t.teardown(() => c.s.destroy());
  await c.connected;
  const f = frame(query('split.test', 'A', { id: 0x4242 }));
  for (const byte of f) { c.s.write(Buffer.from([byte])); await sleep(2); }
  await c.until((c) => c.answers.length === 1);
  t.equal(c.answers[0].id, 0x4242);
  t.equal(c.answers[0].answers[0].data, '192.0.2.1');
  t.equal(l.stats.readTimeouts, 0);
});

t.test('pipelined queries in one write, answered out of order', async (t) => {
  const { port } = await listener(t);
  const c = client(port);
  t.teardown(() => c.s.destroy());
  await c.connected;
  const delays = [80, 10, 50, 0, 30];
  c.s.write(Buffer.concat(delays.map((d, i) => frame(query(`d${d}.q${i}.test`, 'A', { id: 100 + i })))));
  await c.until((c) => c.answers.length === delays.length);
  t.same(c.answers.map((a) => a.id), [103, 101, 104, 102, 100], 'each answer as it completes');
  for (const a of c.answers) t.equal(a.questions[0].name, `d${delays[a.id - 100]}.q${a.id - 100}.test`, 'answer matches its query');
  // A frame whose end arrives with the start of the next one.
  const two = Buffer.concat([frame(query('x1.test', 'A', { id: 1 })), frame(query('x2.test', 'A', { id: 2 }))]);
  c.s.write(two.subarray(0, 20));
  await sleep(10);
  c.s.write(two.subarray(20, two.length - 5));
  await sleep(10);
  c.s.write(two.subarray(two.length - 5));
  await c.until((c) => c.answers.length === 7);
  t.same(c.answers.slice(5).map((a) => a.id), [1, 2]);
});

t.test('zero-length, response and garbage frames', async (t) => {
  const { port, l, pool } = await listener(t, { idleTimeoutMs: 300 });
  const c = client(port);
  t.teardown(() => c.s.destroy());
  await c.connected;
  const resp = query('resp.test', 'A', { id: 7 });
  resp[2] |= 0x80;
  const garbage = crypto.randomBytes(65535);
  garbage[2] = 0x01; garbage[3] = 0; garbage[4] = 0; garbage[5] = 1; // QR=0, QDCOUNT=1, rest noise
  c.s.write(Buffer.concat([Buffer.from([0, 0]), frame(resp), frame(Buffer.alloc(5)), frame(garbage), frame(query('ok.test', 'A', { id: 9 }))]));
  await c.until((c) => c.answers.length === 2);
  t.equal(l.stats.malformed, 3, 'zero-length, response and short frames skipped and counted');
  t.equal(c.answers[0].rcode, 'FORMERR', 'a 64 KiB garbage query gets FORMERR');
  t.equal(c.answers[1].id, 9, 'the connection still works afterwards');
  t.equal(pool.inUse, 0, 'no context leaked');
  // Nothing is left outstanding, so the idle timeout still applies.
  await c.until((c) => c.closed, 2000);
  t.equal(l.stats.idleClosed, 1);
});

t.test('edns-tcp-keepalive: echoed with our idle timeout only when asked', async (t) => {
  const { port, l } = await listener(t, { idleTimeoutMs: 12_345 });
  const c = client(port);
  t.teardown(() => c.s.destroy());
  await c.connected;
  c.s.write(frame(query('ka.test', 'A', { id: 1, edns: true, options: [{ code: 11 }] })));
  c.s.write(frame(query('noka.test', 'A', { id: 2, edns: true })));
  c.s.write(frame(query('noedns.test', 'A', { id: 3, options: [] })));
  // Client-supplied TIMEOUT (not allowed from clients) is ignored, not echoed.
  c.s.write(frame(query('d20.ka2.test', 'A', { id: 4, edns: true, options: [{ code: 11, timeout: 999 }, { code: 65001, data: Buffer.from('zz') }] })));
  await c.until((c) => c.answers.length === 4);
  const byId = Object.fromEntries(c.answers.map((a) => [a.id, a]));
  const ka = (a) => a.additionals.find((r) => r.type === 'OPT')?.options.filter((o) => o.code === 11) ?? null;
  t.same(ka(byId[1]).map((o) => o.timeout), [123], '12345 ms in units of 100 ms');
  t.equal(byId[1].answers[0].data, '192.0.2.1', 'answer intact');
  t.equal(byId[1].additionals.length, 1);
  t.same(ka(byId[2]), [], 'no keepalive unless asked');
  t.equal(ka(byId[3]), null, 'no OPT at all without EDNS');
  t.same(ka(byId[4]).map((o) => o.timeout), [123]);
  t.equal(l.stats.keepalives, 2);
});

t.test('query limit per connection: answers first, then close', async (t) => {
  const { port, l } = await listener(t, { maxQueriesPerConnection: 3 });
  const c = client(port);
  t.teardown(() => c.s.destroy());
  await c.connected;
  c.s.write(Buffer.concat([1, 2, 3, 4, 5].map((i) => frame(query(`d${30 - i * 5}.n${i}.test`, 'A', { id: i })))));
  await c.until((c) => c.ended);
  t.same(c.answers.map((a) => a.id).sort(), [1, 2, 3], 'the first three answered, even those still pending');
  t.equal(l.stats.queryLimitClosed, 1);
});

t.test('client half-close: every answer still arrives', async (t) => {
  const { port } = await listener(t);
  const c = client(port);
  t.teardown(() => c.s.destroy());
  await c.connected;
  c.s.end(Buffer.concat([frame(query('d40.h1.test', 'A', { id: 1 })), frame(query('h2.test', 'A', { id: 2 }))]));
  await c.until((c) => c.ended);
  t.same(c.answers.map((a) => a.id), [2, 1]);
});

t.test('connection limits: per client and overall', async (t) => {
  const { port, l } = await listener(t, { maxConnectionsPerClient: 2, maxConnections: 3 });
  const a = [client(port), client(port), client(port)];
  t.teardown(() => a.forEach((c) => c.s.destroy()));
  await a[2].until((c) => c.closed);
  t.equal(l.stats.rejectedPerClient, 1, 'third connection from 127.0.0.1 refused');
  t.notOk(a[0].closed || a[1].closed);
  const b = [client(port, { localAddress: '127.0.0.2' }), client(port, { localAddress: '127.0.0.3' })];
  t.teardown(() => b.forEach((c) => c.s.destroy()));
  await b[1].until((c) => c.closed);
  t.equal(l.stats.rejectedTotal, 1, 'fourth connection overall dropped');
  a[0].s.write(frame(query('still.test', 'A', { id: 5 })));
  await a[0].until((c) => c.answers.length === 1);
  // Closing frees the per-client slot.
  a[1].s.destroy();
  await sleep(50);
  const again = client(port);
  t.teardown(() => again.s.destroy());
  await again.connected;
  again.s.write(frame(query('again.test', 'A', { id: 6 })));
  await again.until((c) => c.answers.length === 1);
  t.equal(l.stats.rejectedPerClient, 1);
  t.equal(l.stats.open, 3);
});

t.test('slowloris: one byte then silence is cut at the read deadline; others are served', async (t) => {
  const { port, l } = await listener(t, { readTimeoutMs: 400, idleTimeoutMs: 5000 });
  const slow = client(port);
  const good = client(port);
  t.teardown(() => { slow.s.destroy(); good.s.destroy(); });
  await slow.connected;
  slow.s.write(Buffer.from([1])); // a 256+ byte frame announced, one byte at a time
  // A dribbler that keeps sending cannot push the deadline: it counts from the frame's first byte.
  // Were it pushed by every byte (50 ms apart, under both the 400 ms read deadline and the 5 s idle
  // timeout), the connection would never be cut; that it is, by the read deadline and not the idle
  // timer, is the property, whatever the machine's speed (the speed of the cut is not asserted).
  let dribbled = 0;
  const dribble = setInterval(() => { if (!slow.closed) { slow.s.write(Buffer.from([0])); dribbled++; } }, 50);
  t.teardown(() => clearInterval(dribble));
  await sleep(100);
  good.s.write(frame(query('good.test', 'A', { id: 1 })));
  await good.until((c) => c.answers.length === 1);
  await slow.until((c) => c.closed, 10_000);
  clearInterval(dribble);
  t.ok(dribbled >= 1, `the client kept dribbling until it was cut (${dribbled} bytes)`);
  t.equal(l.stats.readTimeouts, 1, 'cut by the read deadline');
  t.notOk(good.closed, 'the well-behaved client is still connected');
  t.equal(l.stats.idleClosed, 0);
});

t.test('idle timeout, not while an answer is pending', async (t) => {
  const { port, l } = await listener(t, { idleTimeoutMs: 200 });
  const c = client(port);
  t.teardown(() => c.s.destroy());
  await c.connected;
  c.s.write(frame(query('d400.slow.test', 'A', { id: 1 })));
  await c.until((c) => c.answers.length === 1 || c.closed, 2000);
  t.equal(c.answers.length, 1, 'the slow answer arrived although it took longer than the idle timeout');
  await c.until((c) => c.closed, 2000);
  t.equal(l.stats.idleClosed, 1);
});

t.test('write buffer bound: a client that never reads is cut, counted', async (t) => {
  const { port, l } = await listener(t, { maxWriteBufferBytes: 64 * 1024 });
  const c = client(port);
  t.teardown(() => c.s.destroy());
  await c.connected;
  c.s.pause(); // never reads
  const queries = Buffer.concat(Array.from({ length: 400 }, (_, i) => frame(query(`big${i}.test`, 'A', { id: i }))));
  c.s.write(queries);
  for (let i = 0; i < 100 && l.stats.writeBufferOverflows === 0; i++) await sleep(50);
  t.equal(l.stats.writeBufferOverflows, 1);
  await sleep(50);
  t.equal(l.stats.open, 0, 'connection closed');
});

t.test('close(): stops accepting, finishes pending answers', async (t) => {
  const pool = new ContextPool(16);
  const l = new TcpListener('test', '127.0.0.1:0', false, LIMITS, fakeChain(pool), pool);
  await l.listen();
  const c = client(l.server.address().port);
  await c.connected;
  c.s.write(frame(query('d100.closing.test', 'A', { id: 3 })));
  await sleep(20);
  await l.close();
  t.equal(c.answers.length, 1, 'pending answer written before the close');
  await c.until((c) => c.ended);
});
