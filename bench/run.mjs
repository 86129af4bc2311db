#!/usr/bin/env node
// npm run bench [-- --seconds 10 --rate 20000 --scenarios hit,miss,blocked --workers 1,2 --filter]
// Drives the real TPROXY path (namespaces + nft + DoH to a local unbound) with dnsperf and prints max
// qps, loss, mean latency, server CPU µs per query at a fixed offered rate, and RSS. For the
// side-by-side with dnsdist and the C floor, run ../shared/bench/peers.sh -p . (see README).
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Lab, labUnavailable, baseConfig, SERVER_V4, nsExec } from '../test/lab/lib.js';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '10' }, rate: { type: 'string', default: '20000' },
  scenarios: { type: 'string', default: 'hit,miss' }, workers: { type: 'string', default: '1' },
  extra: { type: 'string', default: '' },
  // Adds a 1,000,000-domain blocklist (plus ||blocked.test^), so hit and blocked rows compare the
  // two answer paths with the same filter in place.
  filter: { type: 'boolean', default: false },
  // "on,off": with /metrics scraped every second during the runs, against no metrics endpoint and no
  // top-k sampling. The counters themselves are plain increments either way.
  metrics: { type: 'string', default: 'on' },
} });
const why = labUnavailable(['dnsperf']);
if (why) { console.error(`bench cannot run: ${why}`); process.exit(1); }

const lab = new Lab().up();
const tick = 100; // USER_HZ
/** Sums a /proc/PID/stat field function over the server and its direct children (workers). */
function overServer(pid, pick) {
  let total = 0;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      if (Number(d) === pid || Number(f[1]) === pid) total += pick(f);
    } catch { /* raced with exit */ }
  }
  return total;
}
const cpuTicks = (pid) => overServer(pid, (f) => Number(f[11]) + Number(f[12]));
const rssMb = (pid) => overServer(pid, (f) => Number(f[21]) * 4) / 1024;
function dnsperf(file, secs, rate) {
  const args = ['-s', SERVER_V4, '-d', file, '-l', String(secs), '-c', '8', '-T', '1', '-q', '1000'];
  if (rate) args.push('-Q', String(rate));
  const out = nsExec(lab.client, 'dnsperf', args, { timeout: (secs + 30) * 1000 });
  const num = (re) => Number((re.exec(out) ?? [])[1] ?? 0);
  return { qps: num(/Queries per second:\s+([\d.]+)/), lost: num(/Queries lost:\s+\d+ \(([\d.]+)%\)/), completed: num(/Queries completed:\s+(\d+)/),
    latMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000 };
}

try {
  await lab.startUnbound();
  fs.writeFileSync(path.join(lab.dir, 'hit.txt'), Array.from({ length: 1000 }, (_, i) => `h${i}.wild.test A`).join('\n') + '\n');
  fs.writeFileSync(path.join(lab.dir, 'blocked.txt'), Array.from({ length: 1000 }, (_, i) => `b${i}.blocked.test A`).join('\n') + '\n');
  if (values.filter) {
    const list = Array.from({ length: 1_000_000 }, (_, i) => `d${i.toString(36)}.list${i % 997}.example`);
    list.push('||blocked.test^');
    fs.writeFileSync(path.join(lab.dir, 'list.txt'), list.join('\n') + '\n');
    values.extra += `\nfilter:\n  lists:\n    - name: bench\n      path: "${path.join(lab.dir, 'list.txt')}"\n`;
  }
  // Two miss files with different prefixes: the fixed-rate run must not re-ask the max run's names, or
  // its "miss" CPU would be mostly cache hits (it was, before this was split).
  const missFile = (part) => path.join(lab.dir, `miss-${part}.txt`);
  for (const part of ['max', 'rate']) {
    fs.writeFileSync(missFile(part), Array.from({ length: 2_000_000 }, () => `m${part}${Math.random().toString(36).slice(2)}.wild.test A`).join('\n') + '\n');
  }
  const secs = Number(values.seconds), rate = Number(values.rate);
  console.log(`dns-tproxy, ${secs}s per run, CPU measured at ${rate} qps offered; variants compared in this one run`);
  console.log(['workers', 'metrics', 'scenario', 'max_qps', 'lost%', 'mean_ms', `cpu_us/q@${rate}`, 'rss_MB'].map((s) => s.padStart(14)).join(''));
  for (const workers of values.workers.split(',')) for (const metrics of values.metrics.split(',')) {
  let yaml = baseConfig(lab, { extra: `workers: ${workers}\n${values.extra.replace(/\\n/g, '\n')}` });
  if (metrics === 'off') yaml = yaml.replace(/^metrics:\n  listen: .*\n/m, '') + 'stats:\n  topK: 0\n';
  const cfg = lab.writeConfig(`bench-${workers}-${metrics}.yaml`, yaml);
  const srv = await lab.startServer(cfg);
  const scraper = metrics === 'on'
    ? lab.spawnIn(lab.gw, 'sh', ['-c', 'while true; do curl -s http://127.0.0.1:9153/metrics >/dev/null; sleep 1; done'], path.join(lab.dir, 'scrape.log'))
    : null;
  for (const sc of values.scenarios.split(',')) {
    const file = path.join(lab.dir, `${sc}.txt`);
    dnsperf(path.join(lab.dir, 'hit.txt'), 2, 0); // warm the cache and the DoH connections
    if (sc === 'blocked') dnsperf(file, 1, 0);
    const max = dnsperf(sc === 'miss' ? missFile('max') : file, secs, 0);
    const c0 = cpuTicks(srv.pid);
    const fixed = dnsperf(sc === 'miss' ? missFile('rate') : file, secs, rate);
    const c1 = cpuTicks(srv.pid);
    const us = ((c1 - c0) / tick) * 1e6 / Math.max(fixed.completed, 1);
    console.log([workers, metrics, sc, max.qps.toFixed(0), max.lost.toFixed(2), max.latMs.toFixed(3), us.toFixed(2), rssMb(srv.pid).toFixed(1)].map((s) => String(s).padStart(14)).join(''));
  }
  if (scraper) await lab.stop(scraper, 'SIGKILL');
  await lab.stop(srv);
  }
} finally {
  await lab.down();
}
