// Shared by the DoT and DoH listener tests: a throw-away certificate and a stand-in chain that answers
// every readable query with `<name> A 192.0.2.1` (TTL 60) and records what it saw.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { readQuery, writeHeaderOnlyReply } from '../../dist/dns/wire.js';
import { dnsPacket, answer } from '../helpers.js';

export const LIMITS = { idleTimeoutMs: 10_000, readTimeoutMs: 5_000, maxConnections: 100, maxConnectionsPerClient: 50, maxQueriesPerConnection: 1000, maxWriteBufferBytes: 256 * 1024 };

/** A self-signed certificate for 127.0.0.1 in a fresh directory; `cn` tells two apart. */
export function makeCert(t, cn = 'gw.test', dir = null) {
  const d = dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'dt-tls-'));
  if (!dir) t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  const cert = path.join(d, 'cert.pem'), key = path.join(d, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
    '-days', '2', '-subj', `/CN=${cn}`, '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  return { dir: d, cert, key, ca: fs.readFileSync(cert) };
}

export function fakeChain(pool) {
  const chain = {
    runs: 0,
    seen: [],
    run(ctx) {
      chain.runs++;
      chain.seen.push({ transport: ctx.responder.transport, where: ctx.responder.describe(ctx) });
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
      const wire = answer(name, 'A', [{ type: 'A', name, ttl: 60, data: '192.0.2.1' }], { id: p.id, edns: false });
      const delay = /^d(\d+)\./.exec(name);
      const reply = () => { ctx.responder.send(ctx, wire, 0, wire.length); pool.release(ctx); };
      if (delay) setTimeout(reply, Number(delay[1])); else reply();
    },
  };
  return chain;
}

/** Resolves once `emitter` emits `event`, or rejects after `ms` (a bound on the test, not a measurement). */
export function once(emitter, event, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    emitter.once(event, (...a) => { clearTimeout(timer); resolve(a); });
  });
}
