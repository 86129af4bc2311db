#!/usr/bin/env node
// Soak (`npm run soak`): node bench/soak.mjs [--minutes 10] [--warmup 1] [--interval 10] [--qps 600]
//
// Mixed load through the lab path (client ns → nft TPROXY → dns-tproxy → DoH → unbound) for --minutes:
// cache hits, misses (unique names), blocked names (when the server accepts a `filter:` section),
// malformed datagrams and pipelined TCP connections. Every --interval seconds it samples the server's
// VmRSS and open fds (/proc/PID/status, /proc/PID/fd). After --warmup minutes it fits a least-squares
// line to each series and reports the slopes in KiB/min and fds/min.
//
// Pass = |RSS slope| < 256 KiB/min and |fd slope| < 0.5 fd/min. The cache is capped at 2 MiB so that
// filling it (every miss is a new name) is over within the warm-up and cannot pass for a leak.
// Needs root and the lab tools (see test/lab/lib.js). Exit code 0 = pass.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { Lab, labUnavailable, baseConfig, SERVER_V4, ROOT, sleep, nsExec } from '../test/lab/lib.js';

const { values } = parseArgs({ options: {
  minutes: { type: 'string', default: '10' }, warmup: { type: 'string' }, interval: { type: 'string', default: '10' },
  qps: { type: 'string', default: '600' }, json: { type: 'boolean' },
} });
const minutes = Number(values.minutes);
const warmup = values.warmup !== undefined ? Number(values.warmup) : Math.min(1, minutes / 4);
const intervalS = Number(values.interval);
const qps = Number(values.qps);
export const RSS_BOUND_KB_PER_MIN = 256;
export const FD_BOUND_PER_MIN = 0.5;

const LOAD = `
import dgram from 'node:dgram';
import net from 'node:net';
import crypto from 'node:crypto';
import dnsPacket from ${JSON.stringify(path.join(ROOT, 'node_modules/dns-packet/index.js'))};
const [server, qps, seconds, blocked] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), process.argv[5] === '1'];
const c = { sent: 0, answered: 0, hits: 0, misses: 0, blocked: 0, malformed: 0, tcpQueries: 0, tcpAnswered: 0, tcpConns: 0, rcodes: {} };
const enc = (name, type = 'A', id = crypto.randomInt(65536)) => dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });
const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
s.on('message', (m) => { c.answered++; try { const rc = (m[3] & 15); c.rcodes[rc] = (c.rcodes[rc] ?? 0) + 1; } catch {} });
let n = 0;
function one() {
  const k = n++ % 20;
  let msg;
  if (k < 9) { msg = enc(k % 2 ? 'a.lab.test' : 'hot' + (n % 50) + '.wild.test'); c.hits++; }
  else if (k < 15) { msg = enc('m' + n + '-' + crypto.randomInt(1e9) + '.wild.test'); c.misses++; }
  else if (k < 17 && blocked) { msg = enc('ads' + (n % 100) + '.blocked.test'); c.blocked++; }
  else { msg = [crypto.randomBytes(crypto.randomInt(12)), crypto.randomBytes(40), Buffer.from(enc('x.lab.test').map((b, i) => (i === 12 ? 0xc0 : b)))][n % 3]; c.malformed++; }
  s.send(msg, 53, server);
  c.sent++;
}
function tcpRound() {
  const sock = net.connect({ host: server, port: 53 });
  c.tcpConns++;
  let buf = Buffer.alloc(0), got = 0;
  sock.on('connect', () => {
    const frames = [];
    for (let i = 0; i < 10; i++) { const m = enc(i % 2 ? 'a.lab.test' : 't' + crypto.randomInt(1e9) + '.wild.test', 'A', i); const h = Buffer.alloc(2); h.writeUInt16BE(m.length); frames.push(h, m); }
    sock.write(Buffer.concat(frames)); c.tcpQueries += 10;
  });
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) { buf = buf.subarray(2 + buf.readUInt16BE(0)); got++; c.tcpAnswered++; } if (got === 10) sock.end(); });
  sock.on('error', () => {});
  setTimeout(() => sock.destroy(), 5000).unref();
}
s.bind(0, () => {
  const tick = 20; // ms
  const per = qps * tick / 1000;
  let carry = 0;
  const t = setInterval(() => { carry += per; while (carry >= 1) { one(); carry--; } }, tick);
  const tt = setInterval(tcpRound, 1000);
  const rep = setInterval(() => process.stdout.write(JSON.stringify(c) + '\\n'), 10_000);
  setTimeout(() => { clearInterval(t); clearInterval(tt); clearInterval(rep); setTimeout(() => { process.stdout.write(JSON.stringify(c) + '\\n'); process.exit(0); }, 2000); }, seconds * 1000);
});
`;

/** Least-squares slope of y over x. */
export function slope(xs, ys) {
  const n = xs.length;
  if (n < 2) return NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n, my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0, den = 0;
  for (let i = 0; i < n; i++) { num += (xs[i] - mx) * (ys[i] - my); den += (xs[i] - mx) ** 2; }
  return den === 0 ? NaN : num / den;
}

/** RSS and fds from /proc; V8 heap in use from /metrics, to tell heap growth from malloc or native growth. */
function sample(pid, lab) {
  const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  let heapUsedKb = NaN;
  try {
    const m = nsExec(lab.gw, 'curl', ['-s', '--max-time', '2', 'http://127.0.0.1:9153/metrics']);
    heapUsedKb = Math.round(Number(/^dns_tproxy_nodejs_heap_size_used_bytes (\S+)/m.exec(m)?.[1]) / 1024);
  } catch { /* reported as NaN */ }
  return { rssKb: Number(/VmRSS:\s+(\d+)/.exec(st)?.[1]), rssAnonKb: Number(/RssAnon:\s+(\d+)/.exec(st)?.[1]), heapUsedKb, fds: fs.readdirSync(`/proc/${pid}/fd`).length };
}

async function main() {
  const why = labUnavailable(['curl']);
  if (why) { process.stderr.write(`soak needs the lab: ${why}\n`); return 2; }
  const lab = new Lab().up();
  const cleanup = () => lab.down();
  process.on('SIGINT', () => { void cleanup().then(() => process.exit(130)); });
  try {
    await lab.startUnbound();
    const base = 'cache:\n  maxBytes: 2097152\n  maxEntries: 5000\n';
    const list = lab.writeConfig('soak-block.txt', Array.from({ length: 100 }, (_, i) => `ads${i}.blocked.test`).join('\n') + '\n');
    const withFilter = `${base}filter:\n  mode: nxdomain\n  lists:\n    - name: soak\n      path: "${list}"\n`;
    let cfg = lab.writeConfig('soak.yaml', baseConfig(lab, { extra: withFilter }));
    let blocked = true;
    try { execFileSync(process.execPath, [path.join(ROOT, 'dist/cli.js'), 'check', '--config', cfg], { stdio: 'pipe' }); } catch {
      blocked = false;
      cfg = lab.writeConfig('soak.yaml', baseConfig(lab, { extra: base }));
    }
    const srv = await lab.startServer(cfg);
    const pid = srv.pid;
    const script = lab.writeConfig('soak-load.mjs', LOAD);
    const totalS = Math.round(minutes * 60);
    process.stdout.write(`soak: ${minutes} min, ~${qps} qps UDP (45% hits, 30% misses, ${blocked ? '10% blocked, 15%' : '25%'} malformed) + 1 TCP conn/s × 10 queries; ` +
      `sampling every ${intervalS} s, warm-up ${warmup} min; server pid ${pid}\n`);
    const load = spawn('ip', ['netns', 'exec', lab.client, process.execPath, script, SERVER_V4, String(qps), String(totalS), blocked ? '1' : '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let last = null;
    load.stdout.on('data', (d) => { const lines = String(d).trim().split('\n'); try { last = JSON.parse(lines[lines.length - 1]); } catch { /* partial */ } });
    const samples = [];
    const t0 = Date.now();
    while ((Date.now() - t0) / 1000 < totalS) {
      const s = { tMin: (Date.now() - t0) / 60000, ...sample(pid, lab) };
      samples.push(s);
      process.stdout.write(`  t=${s.tMin.toFixed(2)} min  rss=${(s.rssKb / 1024).toFixed(1)} MiB (anon ${(s.rssAnonKb / 1024).toFixed(1)}, V8 heap used ${(s.heapUsedKb / 1024).toFixed(1)})  fds=${s.fds}${last ? `  sent=${last.sent} answered=${last.answered} tcp=${last.tcpAnswered}/${last.tcpQueries}` : ''}\n`);
      if (srv.exitCode !== null) throw new Error('server exited during the soak');
      await sleep(intervalS * 1000);
    }
    // The load may already have exited during the last sleep (a 30-minute run hung here waiting for it).
    if (load.exitCode === null && load.signalCode === null) await new Promise((r) => load.once('exit', r));
    samples.push({ tMin: (Date.now() - t0) / 60000, ...sample(pid, lab) });
    const steady = samples.filter((s) => s.tMin >= warmup);
    const rssSlope = slope(steady.map((s) => s.tMin), steady.map((s) => s.rssKb));
    const fdSlope = slope(steady.map((s) => s.tMin), steady.map((s) => s.fds));
    const heapSlope = slope(steady.map((s) => s.tMin), steady.map((s) => s.heapUsedKb));
    const pass = Math.abs(rssSlope) < RSS_BOUND_KB_PER_MIN && Math.abs(fdSlope) < FD_BOUND_PER_MIN && srv.exitCode === null;
    const report = {
      minutes, warmupMinutes: warmup, samples: samples.length, steadySamples: steady.length, load: last,
      rssKb: { first: steady[0]?.rssKb, last: steady.at(-1)?.rssKb, max: Math.max(...steady.map((s) => s.rssKb)) },
      fds: { first: steady[0]?.fds, last: steady.at(-1)?.fds, max: Math.max(...steady.map((s) => s.fds)) },
      rssSlopeKbPerMin: Number(rssSlope.toFixed(1)), heapUsedSlopeKbPerMin: Number(heapSlope.toFixed(1)), fdSlopePerMin: Number(fdSlope.toFixed(3)),
      bounds: { rssKbPerMin: RSS_BOUND_KB_PER_MIN, fdsPerMin: FD_BOUND_PER_MIN }, pass,
    };
    process.stdout.write(`${JSON.stringify(report, null, values.json ? 0 : 2)}\n`);
    process.stdout.write(`${pass ? 'PASS' : 'FAIL'}: RSS slope ${report.rssSlopeKbPerMin} KiB/min (bound ±${RSS_BOUND_KB_PER_MIN}), fd slope ${report.fdSlopePerMin}/min (bound ±${FD_BOUND_PER_MIN})\n`);
    await lab.stop(srv);
    return pass ? 0 : 1;
  } finally {
    await cleanup();
  }
}

process.exitCode = await main();
