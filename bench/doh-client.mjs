#!/usr/bin/env node
// node bench/doh-client.mjs [requests] [concurrency]
// Request rate of DoH clients against a real unbound DoH server in a lab namespace, in one run:
// raw node:http2 on one connection, undici with allowH2, our H2Connection alone, and DohUpstream (the query path).
import { Lab, labUnavailable } from '../test/lab/lib.js';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const [n = '30000', conc = '100'] = process.argv.slice(2);
if (process.argv[2] === '--inner') {
  // Runs inside the gateway namespace.
  const [, , , url, ca, total, concurrency] = process.argv;
  const http2 = await import('node:http2');
  const fs = await import('node:fs');
  const { Agent, request } = await import('undici');
  const dnsPacket = (await import('dns-packet')).default;
  const { DohUpstream } = await import('../dist/upstream/doh.js');
  const caPem = fs.readFileSync(ca);
  const body = (i) => dnsPacket.encode({ type: 'query', id: 0, flags: 256, questions: [{ type: 'A', name: `b${i}.wild.test` }] });
  const N = Number(total), C = Number(concurrency);
  async function drive(name, one) {
    let next = 0, done = 0, errors = 0;
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    await Promise.all(Array.from({ length: C }, async () => {
      while (next < N) { const i = next++; try { await one(i); done++; } catch { errors++; } }
    }));
    const s = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    console.log(JSON.stringify({ client: name, reqPerSec: Math.round(done / s), clientCpuUsPerReq: +((c.user + c.system) / Math.max(done, 1)).toFixed(1), errors }));
  }
  const u = new URL(url);
  const session = http2.connect(u.origin, { ca: caPem });
  await drive('node:http2 (1 connection)', (i) => new Promise((resolve, reject) => {
    const st = session.request({ ':method': 'POST', ':path': u.pathname, 'content-type': 'application/dns-message' });
    const chunks = [];
    st.on('data', (c) => chunks.push(c)); st.on('end', resolve); st.on('error', reject);
    st.end(body(i));
  }));
  session.close();
  const agent = new Agent({ allowH2: true, connect: { ca: caPem } });
  await drive('undici allowH2', async (i) => {
    const r = await request(url, { method: 'POST', body: body(i), headers: { 'content-type': 'application/dns-message' }, dispatcher: agent });
    await r.body.arrayBuffer();
  });
  await agent.close();
  {
    const { H2Connection } = await import('../dist/upstream/h2.js');
    const tlsMod = await import('node:tls');
    const waiters = new Map();
    let connected;
    const ready = new Promise((r) => (connected = r));
    const conn = new H2Connection({
      host: u.hostname, port: Number(u.port), secureContext: tlsMod.createSecureContext({ ca: caPem }),
      authority: u.host, path: u.pathname, maxAnswerBytes: 65535,
    }, {
      onResponse(tag, status, ct, body) { const w = waiters.get(tag); waiters.delete(tag); status === 200 ? w.resolve() : w.reject(new Error(String(status))); },
      onFailure(tag, why) { const w = waiters.get(tag); waiters.delete(tag); w.reject(new Error(why)); },
      onConnect() { connected(); },
      onClose() {},
    });
    await ready;
    let tagSeq = 0;
    await drive('dns-tproxy H2Connection (1 connection)', (i) => new Promise((resolve, reject) => {
      const tag = tagSeq++;
      waiters.set(tag, { resolve, reject });
      conn.request(Buffer.from(body(i)), tag);
    }));
    // How the two sides batch: TLS records received per answer (each is one read callback; unbound
    // writes every frame as its own record) and our socket writes per request.
    console.log(JSON.stringify({ readsPerAnswer: +(conn.reads / N).toFixed(2), writesPerRequest: +(conn.writes / N).toFixed(2) }));
    conn.close();
  }
  const up = new DohUpstream({ url, ca });
  await drive('dns-tproxy DohUpstream', (i) => new Promise((resolve, reject) => {
    up.send(Buffer.from(body(i)), {}, { onUpstreamResult: (_c, _u, b, err) => (err ? reject(new Error(err)) : resolve()) }, performance.now() + 5000);
  }));
  up.close();
  process.exit(0);
}
const why = labUnavailable();
if (why) { console.error(why); process.exit(1); }
const lab = new Lab().up();
try {
  await lab.startUnbound();
  const url = `https://127.0.0.1:${lab.unbound.port}/dns-query`;
  console.log(execFileSync('ip', ['netns', 'exec', lab.gw, process.execPath, ...(process.env.DOH_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/dohprof'] : []), path.join(here, 'doh-client.mjs'), '--inner', url, lab.unbound.ca, n, conc], { encoding: 'utf8' }));
} finally { await lab.down(); }
