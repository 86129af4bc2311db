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
  const asked = [];
  const refused = new Set();
  const ask = (body) => new Promise((resolve) => {
    const tag = seq++;
    asked.push(tag);
    waiters.set(tag, resolve);
    if (!conn.request(body, tag)) { refused.add(tag); resolve({ why: 'not accepted' }); }
  });
  /** Requests that got more than one outcome (must stay 0). */
  const twice = () => [...settled.values()].filter((n) => n > 1).length;
  /** Requests accepted by the connection that did not get exactly one outcome (must stay 0). */
  const notOnce = () => asked.filter((tag) => settled.get(tag) !== 1 && !refused.has(tag)).length;
  return { conn, up, closed, ask, twice, notOnce, refused };
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
    t.equal(c.notOnce(), 0, `junk ${i}: (${r.why ?? r.status}) the request settled exactly once, counting the destroy`);
  }
});

/**
 * A TLS server speaking h2 that answers the first request with `frames`, and records what the client
 * sends afterwards: `result` resolves, once the client's side ends, with the client's GOAWAY error code
 * (or null) and the RST_STREAM codes it sent.
 */
async function recordingHostile(frames) {
  let report;
  const result = new Promise((r) => (report = r));
  const server = tls.createServer({ key, cert, ALPNProtocols: ['h2'] }, (s) => {
    let seen = 0;
    const after = [];
    s.on('error', () => {});
    s.write(fr(4, 0, 0, Buffer.alloc(0)));
    s.on('data', (d) => {
      if (s.sent) { after.push(d); return; }
      seen += d.length;
      if (seen > 24 + 9 + 18 + 13 + 9) { s.sent = true; s.write(typeof frames === 'function' ? frames() : frames); }
    });
    const done = () => {
      const bytes = Buffer.concat(after);
      let goaway = null;
      const rst = [];
      for (let p = 0; p + 9 <= bytes.length;) {
        const len = bytes.readUIntBE(p, 3), type = bytes[p + 3];
        if (p + 9 + len > bytes.length) break;
        if (type === 7) goaway = bytes.readUInt32BE(p + 13);
        if (type === 3) rst.push(bytes.readUInt32BE(p + 9));
        p += 9 + len;
      }
      report({ goaway, rst });
      s.destroy();
    };
    s.on('end', done);
    s.on('close', done);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  return { port: server.address().port, result };
}

const E = { PROTOCOL: 1, FLOW_CONTROL: 3, ENHANCE_YOUR_CALM: 0xb };
const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32BE(v >>> 0); return b; };
const answer200 = (id) => Buffer.concat([fr(1, 0x4, id, Buffer.from([0x88])), fr(0, 0x1, id, Buffer.from('ok'))]);

t.test('hostile server, issue #15 §4: each violation closes the connection with the right GOAWAY code', async (t) => {
  const repeat = (n, f) => Buffer.concat(Array.from({ length: n }, () => f));
  const cases = {
    // After one HEADERS, empty CONTINUATIONs forever (here 20,000) and only then the end of the block:
    // the old client accepted all of them (it counted bytes, and they have none) and answered 200.
    'CONTINUATION flood': [() => Buffer.concat([fr(1, 0, 1, Buffer.from([0x88])), repeat(20000, fr(9, 0, 1, Buffer.alloc(0))),
      fr(9, 0x4, 1, Buffer.alloc(0)), fr(0, 0x1, 1, Buffer.from('ok'))]), E.ENHANCE_YOUR_CALM, 'ERR_HTTP2_HEADER_SIZE'],
    'PING flood': [() => Buffer.concat([repeat(5000, fr(6, 0, 0, Buffer.alloc(8))), answer200(1)]), E.ENHANCE_YOUR_CALM, 'ERR_HTTP2_ENHANCE_YOUR_CALM'],
    'SETTINGS flood': [() => Buffer.concat([repeat(5000, fr(4, 0, 0, Buffer.alloc(0))), answer200(1)]), E.ENHANCE_YOUR_CALM, 'ERR_HTTP2_ENHANCE_YOUR_CALM'],
    'empty DATA flood': [() => Buffer.concat([fr(1, 0x4, 1, Buffer.from([0x88])), repeat(5000, fr(0, 0, 1, Buffer.alloc(0))), fr(0, 0x1, 1, Buffer.from('ok'))]),
      E.ENHANCE_YOUR_CALM, 'ERR_HTTP2_ENHANCE_YOUR_CALM'],
    'WINDOW_UPDATE past 2^31-1 on the connection': [Buffer.concat([fr(8, 0, 0, u32(0x7fffffff)), answer200(1)]), E.FLOW_CONTROL, 'ERR_HTTP2_FLOW_CONTROL'],
    'WINDOW_UPDATE of 0 on the connection': [Buffer.concat([fr(8, 0, 0, u32(0)), answer200(1)]), E.PROTOCOL, 'ERR_HTTP2_PROTOCOL'],
    'SETTINGS on stream 1': [Buffer.concat([fr(4, 0, 1, Buffer.alloc(0)), answer200(1)]), E.PROTOCOL, 'ERR_HTTP2_PROTOCOL'],
    'PING on stream 1': [Buffer.concat([fr(6, 0, 1, Buffer.alloc(8)), answer200(1)]), E.PROTOCOL, 'ERR_HTTP2_PROTOCOL'],
    'GOAWAY on stream 1': [Buffer.concat([fr(7, 0, 1, Buffer.alloc(8)), answer200(1)]), E.PROTOCOL, 'ERR_HTTP2_PROTOCOL'],
    'DATA on stream 0': [Buffer.concat([fr(0, 0, 0, Buffer.from('x')), answer200(1)]), E.PROTOCOL, 'ERR_HTTP2_PROTOCOL'],
    'SETTINGS ACK with a payload': [Buffer.concat([fr(4, 1, 0, Buffer.alloc(6)), answer200(1)]), 6, 'ERR_HTTP2_FRAME_SIZE'],
  };
  for (const [label, [frames, code, error]] of Object.entries(cases)) {
    const h = await recordingHostile(frames);
    const c = connect(h.port);
    await c.up;
    const r = await c.ask(Buffer.from([0, 1, 2]));
    t.equal(r.why, 'closed', `${label}: the request fails with its connection (replayable: ${r.replayable})`);
    if (r.why !== 'closed') c.conn.destroy('still open'); // so that a regression fails here instead of hanging
    t.equal(await c.closed, error, `${label}: closed with ${error}`);
    t.equal((await h.result).goaway, code, `${label}: GOAWAY error code ${code} sent`);
    t.equal(c.twice(), 0, `${label}: settled once`);
  }
});

t.test('hostile server: stream-level violations fail that stream at once and keep the connection', async (t) => {
  const cases = {
    // A 103 that ends the stream: the old client waited for a final response that cannot come (to the
    // caller's deadline); here it then sends a 200 for the same stream, which the old client took.
    '1xx with END_STREAM': [Buffer.concat([fr(1, 0x5, 1, Buffer.from([0x08, 3, 0x31, 0x30, 0x33])), answer200(1)]), E.PROTOCOL],
    'WINDOW_UPDATE past 2^31-1 on a stream': [Buffer.concat([fr(8, 0, 1, u32(0x7fffffff)), answer200(1)]), E.FLOW_CONTROL],
  };
  for (const [label, [frames, code]] of Object.entries(cases)) {
    const h = await recordingHostile(frames);
    const c = connect(h.port);
    await c.up;
    const r = await c.ask(Buffer.from([0, 1, 2]));
    t.same(r, { why: 'protocol', replayable: false }, `${label}: the request fails as a protocol error`);
    t.equal(c.conn.closed, false, `${label}: the connection stays up`);
    c.conn.close();
    const { rst } = await h.result;
    t.same(rst, [code], `${label}: RST_STREAM with code ${code}`);
  }
});

t.test('a frame dribbled one byte per TLS record is collected in place: each byte copied once', async (t) => {
  const body = Buffer.alloc(12000, 0x61);
  const frames = Buffer.concat([fr(1, 0x4, 1, Buffer.from([0x88])), fr(0, 0x1, 1, body)]);
  const c = connect(await hostile(frames, { dribble: true }));
  await c.up;
  const r = await c.ask(Buffer.from([0]));
  t.equal(r.status, 200);
  t.ok(r.body.equals(body), 'the body arrives whole');
  t.ok(c.conn.reads > frames.length / 2, `arrived over ${c.conn.reads} reads`);
  // The old client concatenated the partial frame with each new read: ~n²/2 = 72 MB copied for this frame.
  t.ok(c.conn.partialBytes <= frames.length, `bytes copied into the partial-frame buffer (${c.conn.partialBytes}) at most the stream's length (${frames.length})`);
  c.conn.destroy(null);
});
