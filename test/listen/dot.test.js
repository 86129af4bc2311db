// DNS over TLS listener (RFC 7858) on 127.0.0.1 with a stand-in chain: framing, pipelining, the 'dot'
// transport label, limits before the handshake, and certificate reload.
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { DotListener, TlsCredentials } from '../../dist/listen/dot.js';
import { ContextPool } from '../../dist/pipeline/context.js';
import { dnsPacket, query } from '../helpers.js';
import { LIMITS, makeCert, fakeChain, once } from './tls-fixture.js';

async function listener(t, limits = {}, certOpts = {}) {
  const cert = makeCert(t, certOpts.cn);
  const creds = new TlsCredentials(cert.cert, cert.key);
  const pool = new ContextPool(1024);
  const chain = fakeChain(pool);
  const l = new DotListener('dot-test', '127.0.0.1:0', { ...LIMITS, ...limits }, chain, pool, creds);
  await l.listen();
  t.teardown(() => l.close());
  return { l, pool, chain, cert, creds, port: l.port };
}

function frame(msg) {
  const b = Buffer.alloc(2 + msg.length);
  b.writeUInt16BE(msg.length, 0);
  msg.copy(b, 2);
  return b;
}

/** Connects with TLS, sends `msgs` in one write, collects `want` framed answers. */
async function exchange(port, ca, msgs, want = msgs.length, opts = {}) {
  const s = tls.connect({ host: '127.0.0.1', port, ca, ALPNProtocols: ['dot'], servername: undefined, ...opts });
  await once(s, 'secureConnect');
  const alpn = s.alpnProtocol;
  const cert = s.getPeerCertificate();
  s.write(Buffer.concat(msgs.map(frame)));
  const out = [];
  let buf = Buffer.alloc(0);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${out.length}/${want} answers`)), 10_000);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length >= want) { clearTimeout(timer); resolve(); }
    });
    s.on('error', reject);
  });
  s.destroy();
  return { out, alpn, cert };
}

t.test('answers framed queries over TLS, pipelined, labelled dot, with ALPN "dot"', async (t) => {
  const { chain, cert, port } = await listener(t);
  const { out, alpn } = await exchange(port, cert.ca, [query('d30.a.test', 'A', { id: 1 }), query('b.test', 'A', { id: 2 })]);
  t.equal(alpn, 'dot');
  t.same(out.map((p) => p.id).sort(), [1, 2]);
  // Pipelined: the quick one is not held back behind the slow one.
  t.equal(out[0].id, 2, 'out of order: b.test answered first');
  t.equal(out[1].answers[0].data, '192.0.2.1');
  t.equal(chain.runs, 2);
  t.same(chain.seen.map((s) => s.transport), ['dot', 'dot']);
  t.equal(chain.seen[0].where.client, '127.0.0.1');
});

t.test('a client that sends no ALPN is served too', async (t) => {
  const { cert, port } = await listener(t);
  const { out, alpn } = await exchange(port, cert.ca, [query('c.test', 'A', { id: 7 })], 1, { ALPNProtocols: undefined });
  t.equal(alpn, false);
  t.equal(out[0].id, 7);
});

t.test('per-client cap counts connections still in the handshake', async (t) => {
  const { l, port } = await listener(t, { maxConnectionsPerClient: 2 });
  const raw = [];
  for (let i = 0; i < 2; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    await once(s, 'connect');
    raw.push(s);
  }
  const third = net.connect(port, '127.0.0.1');
  third.on('error', () => {});
  await once(third, 'close');
  t.equal(l.stats.rejectedPerClient, 1, 'third raw connection refused');
  for (const s of raw) s.destroy();
});

t.test('a handshake that never finishes is cut at the read timeout', async (t) => {
  const { l, port } = await listener(t, { readTimeoutMs: 200 });
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  // Silence: no ClientHello at all.
  await once(s, 'close', 10_000);
  t.equal(l.handshakeFailures, 1, 'closed by the server as a failed handshake');
  t.equal(l.stats.accepted, 0, 'never reached the DNS side');
});

t.test('a malformed frame is skipped, the connection stays usable', async (t) => {
  const { l, cert, port } = await listener(t);
  const { out } = await exchange(port, cert.ca, [Buffer.from([1, 2, 3]), query('ok.test', 'A', { id: 9 })], 1);
  t.equal(out[0].id, 9);
  t.equal(l.stats.malformed, 1);
});

t.test('certificate reload: new connections get the new certificate, a bad pair keeps the old one', async (t) => {
  const { cert, creds, port } = await listener(t, {}, { cn: 'first.test' });
  const a = await exchange(port, cert.ca, [query('x.test', 'A', { id: 1 })]);
  t.equal(a.cert.subject.CN, 'first.test');
  makeCert(t, 'second.test', cert.dir);
  t.equal(creds.reload(), true);
  const b = await exchange(port, fs.readFileSync(cert.cert), [query('x.test', 'A', { id: 2 })]);
  t.equal(b.cert.subject.CN, 'second.test');
  fs.writeFileSync(cert.key, 'garbage');
  t.equal(creds.reload(), false);
  t.equal(creds.reloadFailures, 1);
  const c = await exchange(port, fs.readFileSync(cert.cert), [query('x.test', 'A', { id: 3 })]);
  t.equal(c.cert.subject.CN, 'second.test', 'still served with the last good pair');
});

t.test('a certificate file that does not exist is a clear error naming the key', async (t) => {
  t.throws(() => new TlsCredentials('/nonexistent/cert.pem', '/nonexistent/key.pem'), /listen\.tlsCert \/nonexistent\/cert\.pem/);
});
