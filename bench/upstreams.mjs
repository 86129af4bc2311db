#!/usr/bin/env node
// node bench/upstreams.mjs [queries=20000] [outstanding=200]
// Miss-path throughput and latency of dns-tproxy on the TPROXY path with one and with two real unbound
// DoH upstreams (lab namespaces), for the strategies fastest and parallel with two. dnsperf sends unique
// wild.test names (every query is a cache miss) from the client namespace; `-v` makes it print every
// response with its latency, from which p50/p99 are computed (dnsperf's summary has only mean/stddev).
import fs from 'node:fs';
import path from 'node:path';
import { Lab, labUnavailable, baseConfig, SERVER_V4, sleep } from '../test/lab/lib.js';

const [n = '20000', q = '200'] = process.argv.slice(2);
const why = labUnavailable(['dnsperf']);
if (why) { console.error(why); process.exit(1); }
const lab = new Lab().up();
let run = 0;
try {
  const u1 = await lab.startUnbound({ port: 8443, name: 'unbound' });
  const u2 = await lab.startUnbound({ port: 8444, name: 'unbound2' });
  const ups = (list) => list.map((u) => `  - url: "https://127.0.0.1:${u.port}/dns-query"\n    ca: "${u.ca}"`);
  const cases = [
    { name: '1 upstream', upstreams: ups([u1]), extra: '' },
    { name: '2 upstreams, fastest', upstreams: ups([u1, u2]), extra: 'upstream:\n  strategy: fastest\n' },
    { name: '2 upstreams, parallel', upstreams: ups([u1, u2]), extra: 'upstream:\n  strategy: parallel\n' },
  ];
  const results = [];
  for (const c of cases) {
    const cfg = lab.writeConfig(`bench-${run}.yaml`, baseConfig(lab, { port: 53, upstreams: c.upstreams, extra: c.extra }));
    const srv = await lab.startServer(cfg);
    // Warm the connections, then measure.
    await dnsperf(2000, q);
    const out = await dnsperf(Number(n), q);
    results.push({ case: c.name, ...out });
    await lab.stop(srv);
    await sleep(300);
  }
  console.table(results);
  console.log(JSON.stringify(results));
} finally {
  await lab.down();
}

function dnsperf(count, outstanding) {
  const tag = `b${run++}`;
  const file = path.join(lab.dir, `${tag}.txt`);
  fs.writeFileSync(file, Array.from({ length: count }, (_, i) => `${tag}-${i}.wild.test A`).join('\n') + '\n');
  const log = path.join(lab.dir, `${tag}.log`);
  const proc = lab.spawnIn(lab.client, 'dnsperf', ['-s', SERVER_V4, '-d', file, '-n', '1', '-q', String(outstanding), '-t', '5', '-v'], log);
  return new Promise((resolve) => proc.once('exit', () => {
    const text = fs.readFileSync(log, 'utf8');
    // Verbose lines: "> NOERROR b1-17.wild.test A 0.001234"
    const lat = [...text.matchAll(/^> (\S+) \S+ \S+ ([\d.]+)$/gm)].map((m) => Number(m[2]) * 1000).sort((a, b) => a - b);
    const pct = (p) => +(lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] ?? NaN).toFixed(2);
    resolve({
      qps: Math.round(Number(/Queries per second:\s+([\d.]+)/.exec(text)?.[1] ?? 0)),
      lost: Number(/Queries lost:\s+(\d+)/.exec(text)?.[1] ?? -1),
      noerror: Number(/NOERROR (\d+)/.exec(text)?.[1] ?? 0),
      p50ms: pct(0.5), p99ms: pct(0.99), maxMs: +(lat.at(-1) ?? NaN).toFixed(2),
    });
  }));
}
