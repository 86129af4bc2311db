// DNS over HTTPS listener (RFC 8484) on 127.0.0.1 with a stand-in chain: GET and POST over HTTP/2 and
// HTTP/1.1, every malformed request answered with an HTTP error (never a crash or a stall), limits.
import t from 'tap';
import http2 from 'node:http2';
import https from 'node:https';
import tls from 'node:tls';
import { DohListener, minTtl } from '../../dist/listen/doh.js';
import { TlsCredentials } from '../../dist/listen/dot.js';
import { ContextPool } from '../../dist/pipeline/context.js';
import { dnsPacket, query } from '../helpers.js';
import { LIMITS, makeCert, fakeChain, once } from './tls-fixture.js';

async function listener(t, limits = {}) {
  const cert = makeCert(t);
  const creds = new TlsCredentials(cert.cert, cert.key);
  const pool = new ContextPool(1024);
  const chain = fakeChain(pool);
  const l = new DohListener('doh-test', '127.0.0.1:0', { ...LIMITS, ...limits }, chain, pool, creds);
  await l.listen();
  t.teardown(() => l.close());
  return { l, pool, chain, cert, port: l.port };
}

/** One HTTP/2 request on `session`; resolves { status, headers, body }. */
function h2req(session, headers, body = null) {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === null });
    let status = 0, hdrs = {};
    const chunks = [];
    req.on('response', (h) => { status = h[':status']; hdrs = h; });
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve({ status, headers: hdrs, body: Buffer.concat(chunks) }));
    req.on('error', reject);
    if (body !== null) req.end(body);
  });
}

function h2connect(t, port, ca) {
  const session = http2.connect(`https://127.0.0.1:${port}`, { ca });
  session.on('error', () => {});
  t.teardown(() => session.destroy());
  return session;
}

/** One HTTP/1.1 request (ALPN http/1.1 only); resolves { status, headers, body }. */
function h1req(port, ca, { method = 'GET', path = '/dns-query', headers = {}, body = null, agent = false } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, ca, method, path, headers, agent, ALPNProtocols: ['http/1.1'] }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), httpVersion: res.httpVersion }));
    });
    req.on('error', reject);
    req.end(body ?? undefined);
  });
}

const b64url = (b) => b.toString('base64url');

t.test('HTTP/2 POST and GET: answered once each, dns-message, max-age from the TTL, labelled doh', async (t) => {
  const { chain, l, cert, port } = await listener(t);
  const s = h2connect(t, port, cert.ca);
  const post = await h2req(s, { ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' }, query('a.test', 'A', { id: 0 }));
  t.equal(post.status, 200);
  t.equal(post.headers['content-type'], 'application/dns-message');
  t.equal(post.headers['cache-control'], 'max-age=60');
  const p = dnsPacket.decode(post.body);
  t.equal(p.answers[0].data, '192.0.2.1');
  const get = await h2req(s, { ':method': 'GET', ':path': `/dns-query?dns=${b64url(query('b.test', 'A', { id: 0 }))}` });
  t.equal(get.status, 200);
  t.equal(dnsPacket.decode(get.body).answers[0].name, 'b.test');
  // Exactly one chain run per request: h2 streams must not also go through node's compat layer.
  t.equal(chain.runs, 2);
  t.equal(l.stats.h2ViaCompat, 0, 'no h2 request built compat request/response objects');
  t.same(chain.seen.map((x) => x.transport), ['doh', 'doh']);
  t.equal(chain.seen[0].where.client, '127.0.0.1');
});

t.test('HTTP/1.1 POST and GET on the same listener', async (t) => {
  const { chain, l, cert, port } = await listener(t);
  const post = await h1req(port, cert.ca, { method: 'POST', headers: { 'content-type': 'application/dns-message' }, body: query('c.test', 'A', { id: 0 }) });
  t.equal(post.httpVersion, '1.1');
  t.equal(post.status, 200);
  t.equal(dnsPacket.decode(post.body).answers[0].name, 'c.test');
  const get = await h1req(port, cert.ca, { path: `/dns-query?ct&dns=${b64url(query('d.test', 'AAAA', { id: 0 }))}` });
  t.equal(get.status, 200);
  t.equal(dnsPacket.decode(get.body).questions[0].name, 'd.test');
  t.equal(chain.runs, 2);
  t.equal(l.stats.http1, 2);
});

t.test('bad requests get the right HTTP status and never reach the chain', async (t) => {
  const { chain, l, cert, port } = await listener(t);
  const s = h2connect(t, port, cert.ca);
  const q = query('e.test', 'A', { id: 0 });
  const cases = [
    [{ ':method': 'POST', ':path': '/dns-query', 'content-type': 'text/plain' }, q, 415, 'wrong content-type'],
    [{ ':method': 'POST', ':path': '/dns-query' }, q, 415, 'no content-type'],
    [{ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' }, Buffer.alloc(70_000), 413, 'oversize body'],
    [{ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' }, Buffer.from([1, 2, 3]), 400, 'shorter than a header'],
    [{ ':method': 'GET', ':path': '/dns-query?dns=@@not*base64' }, null, 400, 'GET with bad base64url'],
    [{ ':method': 'GET', ':path': '/dns-query?dns=' }, null, 400, 'GET with empty dns='],
    [{ ':method': 'GET', ':path': '/dns-query' }, null, 400, 'GET without a query'],
    [{ ':method': 'GET', ':path': `/other?dns=${b64url(q)}` }, null, 404, 'wrong path'],
    [{ ':method': 'PUT', ':path': '/dns-query', 'content-type': 'application/dns-message' }, q, 405, 'PUT'],
  ];
  for (const [h, body, status, what] of cases) {
    const r = await h2req(s, h, body);
    t.equal(r.status, status, what);
  }
  // A DNS response sent as a query.
  const resp = Buffer.from(q); resp[2] |= 0x80;
  t.equal((await h2req(s, { ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' }, resp)).status, 400, 'a response, not a query');
  t.equal(chain.runs, 0, 'nothing reached the chain');
  // The session survived all of it.
  t.equal((await h2req(s, { ':method': 'GET', ':path': `/dns-query?dns=${b64url(q)}` })).status, 200);
  t.equal(l.stats.badRequests.get(400), 5);
  // HTTP/1.1: same checks on the other code path.
  t.equal((await h1req(port, cert.ca, { method: 'POST', headers: { 'content-type': 'text/html' }, body: q })).status, 415);
  t.equal((await h1req(port, cert.ca, { method: 'POST', headers: { 'content-type': 'application/dns-message' }, body: Buffer.alloc(70_000) })).status, 413);
  t.equal((await h1req(port, cert.ca, { path: '/dns-query?dns=!!' })).status, 400);
  t.equal(chain.runs, 1);
  // A header block larger than node accepts: refused by the h2 layer (stream or session), never served.
  const s2 = h2connect(t, port, cert.ca);
  const huge = await h2req(s2, { ':method': 'GET', ':path': `/dns-query?dns=${'A'.repeat(90_000)}` }).catch((e) => e);
  t.not(huge.status, 200, 'oversize GET not answered');
  t.match(String(huge.code ?? huge.status), /ERR_HTTP2|414|431/);
  const s3 = h2connect(t, port, cert.ca);
  t.equal((await h2req(s3, { ':method': 'GET', ':path': `/dns-query?dns=${b64url(q)}` })).status, 200, 'still serving');
});

t.test('malformed HTTP/1.1 gets 400 and the listener keeps serving', async (t) => {
  const { chain, cert, port } = await listener(t);
  const s = tls.connect({ host: '127.0.0.1', port, ca: cert.ca, ALPNProtocols: ['http/1.1'] });
  s.on('error', () => {});
  await once(s, 'secureConnect');
  const chunks = [];
  s.on('data', (c) => chunks.push(c));
  s.write('GARBAGE /dns-query HTTP/9.9\r\n\x00\x01\r\n\r\n');
  await once(s, 'close');
  t.match(Buffer.concat(chunks).toString('latin1'), /^HTTP\/1\.1 400/);
  const ok = await h1req(port, cert.ca, { path: `/dns-query?dns=${b64url(query('f.test', 'A', { id: 0 }))}` });
  t.equal(ok.status, 200);
  t.equal(chain.runs, 1);
});

t.test('queries per connection: the last one is answered, then GOAWAY', async (t) => {
  const { chain, l, cert, port } = await listener(t, { maxQueriesPerConnection: 3 });
  const s = h2connect(t, port, cert.ca);
  const q = (n) => ({ ':method': 'GET', ':path': `/dns-query?dns=${b64url(query(`q${n}.test`, 'A', { id: 0 }))}` });
  const goaway = once(s, 'goaway');
  const rs = await Promise.all([1, 2, 3].map((n) => h2req(s, q(n))));
  t.same(rs.map((r) => r.status), [200, 200, 200]);
  await goaway;
  t.equal(l.stats.queryLimitClosed, 1);
  t.equal(chain.runs, 3);
});

t.test('per-client connection cap', async (t) => {
  const { l, cert, port } = await listener(t, { maxConnectionsPerClient: 2 });
  const a = h2connect(t, port, cert.ca), b = h2connect(t, port, cert.ca);
  await Promise.all([once(a, 'connect'), once(b, 'connect')]);
  const c = h2connect(t, port, cert.ca);
  await once(c, 'close');
  t.equal(l.stats.rejectedPerClient, 1);
  t.equal(l.stats.open, 2);
});

t.test('minTtl reads the smallest answer TTL and ignores OPT', async (t) => {
  const m = dnsPacket.encode({ type: 'response', id: 0, questions: [{ type: 'A', name: 'x.test' }],
    answers: [{ type: 'A', name: 'x.test', ttl: 300, data: '192.0.2.1' }, { type: 'A', name: 'x.test', ttl: 42, data: '192.0.2.2' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 }] });
  t.equal(minTtl(m), 42);
  t.equal(minTtl(m.subarray(0, 20)), 0, 'truncated: 0, no throw');
});
