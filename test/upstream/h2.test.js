// The minimal HTTP/2 client (src/upstream/h2.ts): HPACK subset and Huffman against RFC 7541's examples,
// then real connections to node:http2 servers (padding, informational responses, trailers, split
// bodies, a low stream limit) and to a hostile TLS server that sends malformed frames.
import t from 'tap';
import http2 from 'node:http2';
import tls from 'node:tls';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { H2Connection, decodeResponseHeaders } from '../../dist/upstream/h2.js';
import { huffmanDecode } from '../../dist/upstream/hpack-huffman.js';

t.test('Huffman decoding: RFC 7541 Appendix C examples, and malformed input', async (t) => {
  const vectors = {
    'www.example.com': 'f1e3c2e5f23a6ba0ab90f4ff',
    'no-cache': 'a8eb10649cbf',
    'custom-key': '25a849e95ba97d7f',
    'custom-value': '25a849e95bb8e8b4bf',
    '302': '6402',
    private: 'aec3771a4b',
    'Mon, 21 Oct 2013 20:13:21 GMT': 'd07abe941054d444a8200595040b8166e082a62d1bff',
    'https://www.example.com': '9d29ad171863c78f0b97c8e9ae82ae43d3',
  };
  for (const [plain, hex] of Object.entries(vectors)) t.equal(huffmanDecode(Buffer.from(hex, 'hex')), plain, plain);
  t.equal(huffmanDecode(Buffer.from('07', 'hex')), '0', "'0' (00000) and three bits of padding");
  t.equal(huffmanDecode(Buffer.from('05', 'hex')), null, 'padding that is not all ones');
  t.equal(huffmanDecode(Buffer.from('07ff', 'hex')), null, 'padding of 8 bits or more');
  t.equal(huffmanDecode(Buffer.from('ffffffff', 'hex')), null, 'EOS inside the string');
  t.equal(huffmanDecode(Buffer.alloc(0)), '', 'empty');
});

t.test('response header decoding: what a DoH client reads, and what it must refuse', async (t) => {
  const h = (hex) => decodeResponseHeaders(Buffer.from(hex, 'hex'));
  t.same(h('88'), { status: 200, contentType: '' }, ':status 200 from the static table');
  t.same(h('8d'), { status: 404, contentType: '' });
  t.same(h('2088'), { status: 200, contentType: '' }, 'a table size update to 0 first is fine');
  const literalCt = Buffer.concat([Buffer.from([0x08, 3]), Buffer.from('503'), Buffer.from([0x0f, 0x10, 23]), Buffer.from('application/dns-message')]);
  t.same(decodeResponseHeaders(literalCt), { status: 503, contentType: 'application/dns-message' }, 'raw literals');
  t.same(h('48826402'), { status: 302, contentType: '' }, 'Huffman-coded :status with incremental indexing');
  t.equal(h('be'), null, 'index 62: the dynamic table we said we do not have');
  t.equal(h('3fe11f'), null, 'table size update above 0');
  t.equal(h('0803'), null, 'value runs past the block');
  t.equal(h('080361626'), null, 'odd hex: truncated');
  t.equal(h('0803616263'), null, ':status that is not three digits');
  t.equal(h('80'), null, 'index 0');
  t.equal(h('ff'), null, 'integer that never ends');
});

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'h2-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${dir}/k.pem`, '-out', `${dir}/c.pem`, '-days', '1',
  '-subj', '/CN=h2.test', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
const key = fs.readFileSync(`${dir}/k.pem`);
const cert = fs.readFileSync(`${dir}/c.pem`);
const secureContext = tls.createSecureContext({ ca: cert });

/** A connection whose events resolve per-request promises; `closed` resolves with the close error. */
function connect(port, { maxAnswerBytes = 65535 } = {}) {
  const waiters = new Map();
  const settled = new Map();
  const settle = (tag, v) => { settled.set(tag, (settled.get(tag) ?? 0) + 1); waiters.get(tag)(v); };
  let onUp;
  let onClosed;
  const up = new Promise((r) => (onUp = r));
  const closed = new Promise((r) => (onClosed = r));
  const conn = new H2Connection({ host: '127.0.0.1', port, secureContext, authority: `127.0.0.1:${port}`, path: '/dns-query', maxAnswerBytes }, {
    onResponse(tag, status, contentType, body) { settle(tag, { status, contentType, body: Buffer.from(body), raw: body }); },
    onFailure(tag, why, replayable) { settle(tag, { why, replayable }); },
    onConnect() { onUp(); },
    onClose(error) { onClosed(error); },
  });
  let seq = 0;
  const ask = (body) => new Promise((resolve) => {
    const tag = seq++;
    waiters.set(tag, resolve);
    if (!conn.request(body, tag)) resolve({ why: 'not accepted' });
  });
  /** Requests that got more than one outcome (must stay 0). */
  const twice = () => [...settled.values()].filter((n) => n > 1).length;
  return { conn, up, closed, ask, twice };
}

async function h2server(handler, options = {}) {
  const server = http2.createSecureServer({ key, cert, ...options });
  server.on('stream', (stream, headers) => { stream.on('error', () => {}); handler(stream, headers); });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  return server.address().port;
}

/** Echoes the request body back with the status and extras the request asks for in its first byte. */
function echo(stream, headers) {
  const chunks = [];
  stream.on('data', (c) => chunks.push(c));
  stream.on('end', () => {
    const body = Buffer.concat(chunks);
    const how = body[0];
    if (headers['content-type'] !== 'application/dns-message' || headers[':method'] !== 'POST' || headers[':path'] !== '/dns-query'
      || Number(headers['content-length']) !== body.length) {
      stream.respond({ ':status': 400 }); stream.end(); return;
    }
    if (how === 1) stream.additionalHeaders({ ':status': 103, link: '</x>; rel=preload' });
    stream.respond({ ':status': 200, 'content-type': 'application/dns-message', 'x-filler': 'y'.repeat(how === 4 ? 12000 : 1) },
      how === 2 ? { waitForTrailers: true } : {});
    if (how === 2) stream.on('wantTrailers', () => stream.sendTrailers({ 'x-done': '1' }));
    if (how === 3) { stream.write(body.subarray(0, 1)); setTimeout(() => stream.end(body.subarray(1)), 5); return; }
    if (how === 5) { stream.end(Buffer.alloc(3000, 7)); return; }
    stream.end(body);
  });
}

t.test('against node:http2: padding, 103, trailers, split body, CONTINUATION-sized headers, stream limit', async (t) => {
  for (const [label, options] of [['plain', {}], ['max padding', { paddingStrategy: http2.constants.PADDING_STRATEGY_MAX }]]) {
    const port = await h2server(echo, { ...options, settings: { maxConcurrentStreams: 3 } });
    const c = connect(port, { maxAnswerBytes: 2048 });
    await c.up;
    const bodies = Array.from({ length: 60 }, (_, i) => Buffer.from([[0, 1, 2, 3, 4][i % 5], i, 0xab, 0xcd]));
    const answers = await Promise.all(bodies.map((b) => c.ask(b)));
    const wrong = answers.map((a, i) => (a.status === 200 && a.body.equals(bodies[i]) ? null : { i, a })).filter(Boolean);
    t.same(wrong, [], `${label}: 60 requests over a 3-stream limit, every body echoed`);
    const kept = answers.filter((a, i) => !a.raw.equals(bodies[i])).length;
    t.equal(kept, 0, `${label}: bodies kept by the consumer are still intact after later reads (they are copies)`);
    t.ok(answers.every((a) => a.contentType === 'application/dns-message'), `${label}: content-type read`);
    const big = await c.ask(Buffer.from([5]));
    t.same(big, { why: 'too_large', replayable: false }, `${label}: an answer over maxAnswerBytes is refused`);
    const after = await c.ask(Buffer.from([0, 9]));
    t.equal(after.status, 200, `${label}: the connection survives a refused stream`);
    c.conn.close();
    t.equal(await c.closed, null, `${label}: graceful close`);
    const wide = connect(port);
    await wide.up;
    const large = Buffer.alloc(40000, 0x5a); large[0] = 0;
    const echoed = await wide.ask(large);
    t.ok(echoed.status === 200 && echoed.body.equals(large), `${label}: a body over one frame is split into DATA frames`);
    wide.conn.destroy(null);
  }
});

t.test('RST_STREAM: only REFUSED_STREAM is reported replayable', async (t) => {
  let n = 0;
  const port = await h2server((stream) => {
    n++;
    if (n === 1) { stream.close(http2.constants.NGHTTP2_REFUSED_STREAM); return; }
    if (n === 2) { stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR); return; }
    stream.respond({ ':status': 200 }); stream.end();
  });
  const c = connect(port);
  await c.up;
  t.same(await c.ask(Buffer.from([0])), { why: 'refused', replayable: true }, 'REFUSED_STREAM');
  t.same(await c.ask(Buffer.from([0])), { why: 'reset', replayable: false }, 'other resets are not promised unprocessed');
  t.equal((await c.ask(Buffer.from([0]))).status, 200, 'the connection goes on');
  c.conn.destroy(null);
});

/** A TLS server speaking ALPN h2 that answers the first request with `frames` (raw bytes); with
 * `dribble`, one byte per TLS record, so the client sees each frame in pieces, over many reads. */
async function hostile(frames, { dribble = false } = {}) {
  const server = tls.createServer({ key, cert, ALPNProtocols: ['h2'] }, (s) => {
    let seen = 0;
    s.on('error', () => {});
    s.write(fr(4, 0, 0, Buffer.alloc(0))); // the server's SETTINGS, which lets the client send requests
    s.on('data', (d) => {
      seen += d.length;
      // Past the preface, SETTINGS, WINDOW_UPDATE and the SETTINGS ack, the first request: now the "reply".
      if (seen > 24 + 9 + 18 + 13 + 9 && !s.sent) {
        s.sent = true;
        if (!dribble) { s.write(frames); return; }
        let i = 0;
        const next = () => { if (i < frames.length && !s.destroyed) { s.write(frames.subarray(i, i + 1)); i++; setImmediate(next); } };
        next();
      }
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  return server.address().port;
}

const fr = (type, flags, id, payload) => {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3); h[3] = type; h[4] = flags; h.writeUInt32BE(id, 5);
  return Buffer.concat([h, payload]);
};

t.test('GOAWAY: streams past the last id are replayable, the others still complete', async (t) => {
  const goaway = (last) => { const p = Buffer.alloc(8); p.writeUInt32BE(last, 0); return fr(7, 0, 0, p); };
  let c = connect(await hostile(goaway(0)));
  await c.up;
  t.same(await c.ask(Buffer.from([0])), { why: 'goaway', replayable: true }, 'stream 1 past last-stream-id 0');
  t.equal(c.conn.draining, true, 'no new requests after GOAWAY');
  t.same(await c.ask(Buffer.from([0])), { why: 'not accepted' });
  c.conn.destroy(null);
  const answer = Buffer.concat([goaway(1), fr(1, 0x4, 1, Buffer.from([0x88])), fr(0, 0x1, 1, Buffer.from('abc'))]);
  c = connect(await hostile(answer));
  await c.up;
  const r = await c.ask(Buffer.from([0]));
  t.equal(r.status, 200, 'stream 1 within last-stream-id 1 is answered');
  t.equal(r.body.toString(), 'abc');
  t.equal(await c.closed, null, 'then the connection ends cleanly');
});

t.test('frames dribbled one byte per TLS record: bodies and headers survive the reused read buffer', async (t) => {
  // HEADERS split by CONTINUATION, then a body in three DATA frames (one padded), every byte its own
  // record: the client must copy what it keeps, because its read buffer is overwritten by the next record.
  const ct = Buffer.concat([Buffer.from([0x0f, 0x10, 23]), Buffer.from('application/dns-message')]);
  const padded = Buffer.concat([Buffer.from([3]), Buffer.from('second,'), Buffer.alloc(3)]);
  const frames = Buffer.concat([
    fr(1, 0, 1, Buffer.concat([Buffer.from([0x88]), ct.subarray(0, 10)])),
    fr(9, 0x4, 1, ct.subarray(10)),
    fr(0, 0, 1, Buffer.from('first,')),
    fr(0, 0x8, 1, padded),
    fr(0, 0x1, 1, Buffer.from('third')),
  ]);
  const c = connect(await hostile(frames, { dribble: true }));
  await c.up;
  const r = await c.ask(Buffer.from([0]));
  t.equal(r.status, 200);
  t.equal(r.contentType, 'application/dns-message', 'header block reassembled from CONTINUATION pieces');
  t.equal(r.body.toString(), 'first,second,third', 'body reassembled, padding dropped');
  c.conn.destroy(null);
});

t.test('a hostile server: malformed frames end the connection, never the process', async (t) => {
  const cases = {
    'dynamic table reference': fr(1, 0x5, 1, Buffer.from([0xbe])),
    'PUSH_PROMISE': fr(5, 0x4, 1, Buffer.from([0, 0, 0, 2, 0x88])),
    'frame over the size limit': Buffer.concat([Buffer.from([0x01, 0, 0, 0, 0, 0, 0, 0, 1])]),
    'CONTINUATION for another stream': Buffer.concat([fr(1, 0, 1, Buffer.from([0x88])), fr(9, 0x4, 3, Buffer.alloc(0))]),
    'PING of the wrong size': fr(6, 0, 0, Buffer.alloc(3)),
    'bad padding': fr(1, 0x5 | 0x8, 1, Buffer.from([9, 0x88])),
    'garbage': Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'),
  };
  for (const [label, frames] of Object.entries(cases)) {
    const port = await hostile(frames);
    const c = connect(port);
    await c.up;
    const r = await c.ask(Buffer.from([0, 1, 2]));
    t.ok(r.why === 'closed' || r.why === 'protocol', `${label}: request failed (${r.why})`);
    t.ok(await c.closed, `${label}: connection closed with an error`);
  }
  // Random frames after a valid SETTINGS: whatever arrives, the client answers every request exactly once.
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) & 0xff;
  for (let i = 0; i < 40; i++) {
    const junk = Buffer.from(Array.from({ length: 5 + (rand() % 60) }, rand));
    if (i % 2) { junk[0] = 0; junk[1] = 0; junk[2] = junk.length - 9 > 0 ? junk.length - 9 : 0; junk[3] = rand() % 10; }
    const port = await hostile(junk);
    const c = connect(port);
    await c.up;
    const r = await Promise.race([c.ask(Buffer.from([0])), new Promise((res) => setTimeout(() => res({ why: 'pending' }), 100))]);
    c.conn.destroy(null);
    t.equal(c.twice(), 0, `junk ${i}: (${r.why ?? r.status}) no request settled twice, even after destroy`);
  }
});
