// The DoH client against a real local HTTP/2 TLS server with a throwaway CA.
import t from 'tap';
import http2 from 'node:http2';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { DohUpstream } from '../../dist/upstream/doh.js';
import { query, answer, ctxFor } from '../helpers.js';

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
  const many = await Promise.all(Array.from({ length: 300 }, () => ask(up)));
  t.ok(many.every((m) => m.err === null), '300 concurrent requests answered');
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
