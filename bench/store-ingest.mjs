#!/usr/bin/env node
// node bench/store-ingest.mjs [--qps 4000] [--seconds 10] [--rounds 3]
//
// What the query history costs the DNS process: CPU per answered query with the store off and on,
// alternating in one run (a noisy VM only allows A/B comparisons made side by side). Every query asks a
// name never asked before (100 % cache misses: the most records per unit of DNS work), at a fixed
// offered rate so both sides do the same work; dnsperf drives a plain listener on loopback and a small
// UDP responder (another process) plays the upstream. Reported per side: answered qps, lost queries,
// dns-tproxy CPU µs per query (all threads, so the store's worker is included), and for "on" the records
// written/dropped from /metrics. Also: how long a 1,000-record SQLite transaction takes when run on the
// calling thread — the event-loop stall the worker thread keeps off the DNS loop.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, fallback) => { const i = args.indexOf(name); return i >= 0 ? args.splice(i, 2)[1] : fallback; };
const QPS = Number(opt('--qps', '4000'));
const SECONDS = Number(opt('--seconds', '10'));
const ROUNDS = Number(opt('--rounds', '3'));
const HZ = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'store-ingest-'));
const ticks = (pid) => { const a = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return Number(a[11]) + Number(a[12]); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The upstream: answers every A question with one address, from its own process.
const upstreamJs = path.join(dir, 'upstream.mjs');
fs.writeFileSync(upstreamJs, `
import dgram from 'node:dgram';
const s = dgram.createSocket('udp4');
s.on('message', (m, r) => {
  const out = Buffer.alloc(m.length + 16);
  m.copy(out);
  out[2] = 0x81; out[3] = 0x80; out[7] = 1; out[9] = 0; out[10] = 0; out[11] = 0;
  // question ends where the original message ends when there is no OPT; keep it simple: strip additionals
  let p = 12; while (m[p] !== 0) p += m[p] + 1; p += 5;
  out[10] = 0; out[11] = 0;
  const a = Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
  a.copy(out, p);
  s.send(out.subarray(0, p + 16), r.port, r.address);
});
s.bind(Number(process.argv[2]), '127.0.0.1');
`);
const upPort = 25353;
const up = spawn(process.execPath, [upstreamJs, String(upPort)], { stdio: 'ignore' });
await sleep(500);

async function side(name, storeYaml, round) {
  const port = 25400 + round * 2 + (name === 'on' ? 1 : 0);
  const metricsPort = port + 1000;
  const cfg = path.join(dir, `${name}-${round}.yaml`);
  fs.writeFileSync(cfg, `listen:\n  plain: ["127.0.0.1:${port}"]\nupstreams:\n  - url: "udp://127.0.0.1:${upPort}"\nmetrics:\n  listen: "127.0.0.1:${metricsPort}"\nstateDir: "${path.join(dir, `state-${name}-${round}`)}"\n${storeYaml}`);
  const srv = spawn(process.execPath, [path.join(ROOT, 'dist/cli.js'), 'run', '--config', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  srv.stderr.on('data', (d) => { log += d; });
  for (let i = 0; i < 600 && !log.includes('"listening"'); i++) await sleep(100);
  if (!log.includes('"listening"')) throw new Error(`server did not start: ${log}`);
  const names = path.join(dir, `names-${name}-${round}.txt`);
  const total = QPS * SECONDS;
  fs.writeFileSync(names, Array.from({ length: total }, (_, i) => `n${i}-${name}-${round}-${process.pid}.bench.test A`).join('\n') + '\n');
  const t0 = ticks(srv.pid);
  const out = execFileSync('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', names, '-l', String(SECONDS), '-Q', String(QPS), '-c', '4', '-q', '500', '-n', '1'], { encoding: 'utf8', timeout: (SECONDS + 60) * 1000 });
  await sleep(500); // let the last batch be written
  const cpu = (ticks(srv.pid) - t0) / HZ;
  const completed = Number(/Queries completed:\s+(\d+)/.exec(out)[1]);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(out)[1]);
  const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text());
  const metric = (n) => Number(new RegExp(`^${n}\\{[^}]*\\} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN);
  srv.kill('SIGTERM');
  await new Promise((r) => srv.once('exit', r));
  return { name, completed, lost, qps: completed / SECONDS, cpuUsPerQuery: (cpu * 1e6) / completed, written: metric('dns_tproxy_store_written_total'), dropped: metric('dns_tproxy_store_dropped_total') };
}

try {
  console.log(`${os.cpus().length} CPUs, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}; ${QPS} qps offered for ${SECONDS} s, unique names (all misses), ${ROUNDS} rounds`);
  const res = { off: [], on: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, yaml] of round % 2 ? [['on', ''], ['off', 'store: false\n']] : [['off', 'store: false\n'], ['on', '']]) {
      const r = await side(name, yaml, round);
      res[name].push(r);
      console.log(`round ${round} store ${name.padEnd(3)}: ${r.qps.toFixed(0)} qps answered, ${r.lost} lost, ${r.cpuUsPerQuery.toFixed(1)} µs CPU/query${name === 'on' ? `, ${r.written} written, ${r.dropped} dropped` : ''}`);
    }
  }
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const off = mean(res.off.map((r) => r.cpuUsPerQuery));
  const on = mean(res.on.map((r) => r.cpuUsPerQuery));
  console.log(`mean CPU per query: off ${off.toFixed(1)} µs, on ${on.toFixed(1)} µs (${(((on - off) / off) * 100).toFixed(1)} %)`);

  // The stall a 1,000-record transaction would put on the calling thread (what the worker avoids).
  const { SqliteDb } = await import('../dist/store/sqlite-db.js');
  const db = new SqliteDb({ path: path.join(dir, 'inline.db') });
  const ts = [];
  for (let b = 0; b < 50; b++) {
    const batch = Array.from({ length: 1000 }, (_, i) => ({ time: Date.now(), client: `10.0.0.${i % 200}`, server: '198.51.100.53', serverPort: 53, transport: 'udp', qname: `n${b}-${i}.bench.test`, qtype: 'A', kind: 'query', rcode: 'NOERROR', answeredBy: 'upstream', latencyMs: 1, answers: ['A 192.0.2.1'] }));
    const t0 = performance.now();
    db.append(batch);
    ts.push(performance.now() - t0);
  }
  db.close();
  ts.sort((a, b) => a - b);
  console.log(`a 1,000-record transaction on the calling thread: p50 ${ts[25].toFixed(1)} ms, p95 ${ts[47].toFixed(1)} ms (kept off the DNS event loop by the worker)`);
} finally {
  up.kill();
  fs.rmSync(dir, { recursive: true, force: true });
}
