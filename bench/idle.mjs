#!/usr/bin/env node
// node bench/idle.mjs [--seconds 30] [--warmup 5] [--builds dist,dist-base]
// What an idle dns-tproxy costs (issue #20): the server with the default config, one DoH upstream (a
// node:http2 server started here on loopback, so the upstream connection is really up) and no lists,
// no queries. After --warmup seconds (one query first, so the upstream path is warm), it reads over
// --seconds: CPU % of one core (utime+stime from /proc/<pid>/stat), wakeups per second (voluntary +
// nonvoluntary context switches summed over every thread in /proc/<pid>/task/*/status; the main
// thread's share shown apart, since timers run there) and RSS at the end. With --builds, each build
// (a tsc output directory next to dist/, importing ../native) is measured in turn, in one run.
// Root: the default listeners are transparent (IP_TRANSPARENT), bound here to 127.0.0.1 and a free port;
// a plain listener next to them takes the warm-up query.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http2 from 'node:http2';
import dgram from 'node:dgram';
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const option = (name, fallback) => { const i = args.indexOf(name); return i >= 0 ? args.splice(i, 2)[1] : fallback; };
const seconds = Number(option('--seconds', '30'));
const warmup = Number(option('--warmup', '5'));
const builds = option('--builds', 'dist').split(',').map((d) => path.resolve(ROOT, d));
const HZ = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idle-bench-'));
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${dir}/k.pem`, '-out', `${dir}/c.pem`, '-days', '1',
  '-subj', '/CN=idle.test', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });

// The upstream: answers every DoH query with one A record (the question echoed).
const upstream = http2.createSecureServer({ key: fs.readFileSync(`${dir}/k.pem`), cert: fs.readFileSync(`${dir}/c.pem`) });
upstream.on('stream', (stream) => {
  const chunks = [];
  stream.on('error', () => {});
  stream.on('data', (c) => chunks.push(c));
  stream.on('end', () => {
    const q = Buffer.concat(chunks);
    let p = 12; while (p < q.length && q[p]) p += q[p] + 1;
    const question = q.subarray(12, p + 5);
    const a = Buffer.concat([Buffer.from([0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]), question,
      Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1])]);
    stream.respond({ ':status': 200, 'content-type': 'application/dns-message' });
    stream.end(a);
  });
});
await new Promise((r) => upstream.listen(0, '127.0.0.1', r));

const freePort = async () => {
  const s = dgram.createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const p = s.address().port;
  s.close();
  return p;
};

function taskCounters(pid) {
  let all = 0, main = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    let st;
    try { st = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'); } catch { continue; }
    const n = Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(st)[1]) + Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(st)[1]);
    all += n;
    if (tid === String(pid)) main = n;
  }
  return { all, main };
}
const cpuTicks = (pid) => { const a = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return Number(a[11]) + Number(a[12]); };
const rssMiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

function query(port) {
  const s = dgram.createSocket('udp4');
  const q = Buffer.from([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, 0x69, 0x64, 0x6c, 0x65, 4, 0x74, 0x65, 0x73, 0x74, 0, 0, 1, 0, 1]);
  return new Promise((resolve) => {
    const timer = setTimeout(() => { s.close(); resolve(false); }, 2000);
    s.on('message', () => { clearTimeout(timer); s.close(); resolve(true); });
    s.send(q, port, '127.0.0.1');
  });
}

for (const build of builds) {
  const port = await freePort();
  const plainPort = await freePort();
  const config = path.join(dir, 'config.yaml');
  fs.writeFileSync(config, `listen:
  tproxy:
    udp: "127.0.0.1:${port}"
    tcp: "127.0.0.1:${port}"
  plain: ["127.0.0.1:${plainPort}"]
upstreams:
  - url: "https://127.0.0.1:${upstream.address().port}/dns-query"
    ca: "${dir}/c.pem"
`);
  const child = spawn(process.execPath, [path.join(build, 'cli.js'), 'run', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  // Up once it logs "listening" (start-up takes seconds on a loaded machine).
  await new Promise((resolve) => {
    let out = '';
    const timer = setTimeout(resolve, 30_000);
    child.stdout.on('data', (d) => { out += d; if (out.includes('"listening"')) { clearTimeout(timer); resolve(); } });
    child.once('exit', () => { clearTimeout(timer); resolve(); });
  });
  child.stdout.resume();
  const answered = await query(plainPort); // the plain listener: a transparent one needs the nft rules
  await sleep(warmup * 1000);
  if (child.exitCode !== null) { console.error(`${build}: server exited: ${stderr.slice(-500)}`); continue; }
  const c0 = cpuTicks(child.pid), w0 = taskCounters(child.pid), t0 = performance.now();
  await sleep(seconds * 1000);
  const c1 = cpuTicks(child.pid), w1 = taskCounters(child.pid), t1 = performance.now();
  const secs = (t1 - t0) / 1000;
  console.log(JSON.stringify({
    build: path.relative(ROOT, build) || '.', warmQueryAnswered: answered, seconds: Number(secs.toFixed(1)),
    cpuPercent: Number(((c1 - c0) / HZ / secs * 100).toFixed(3)),
    wakeupsPerSecond: Number(((w1.all - w0.all) / secs).toFixed(1)),
    mainThreadWakeupsPerSecond: Number(((w1.main - w0.main) / secs).toFixed(1)),
    threads: fs.readdirSync(`/proc/${child.pid}/task`).length,
    rssMiB: Number(rssMiB(child.pid).toFixed(1)),
  }));
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
}
upstream.close();
fs.rmSync(dir, { recursive: true, force: true });
