#!/usr/bin/env node
// node bench/miss-capacity.mjs [--conns 4,8,16] [rate|max ...]: unique-name (cache-miss) load through the
// lab TPROXY path. Per rate: answered qps, mean latency, CPU per query of dns-tproxy and of unbound, and
// how busy the two cores were. With --conns, one server per upstream.maxConnections value, at max rate.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Lab, labUnavailable, baseConfig, SERVER_V4, nsExec } from '../test/lab/lib.js';

const args = process.argv.slice(2);
const ci = args.indexOf('--conns');
const conns = ci >= 0 ? args.splice(ci, 2)[1].split(',').map(Number) : [4];
const rates = args.length ? args : ['10000', '15000', 'max', 'max'];
const why = labUnavailable(['dnsperf', 'curl']);
if (why) { console.error(why); process.exit(1); }
const ticks = (pid) => { const a = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return Number(a[11]) + Number(a[12]); };
const cpuTimes = () => fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1).map(Number);
const lab = new Lab().up();
try {
  await lab.startUnbound();
  const ubPid = Number(execFileSync('pgrep', ['-f', `unbound -d -c ${lab.dir}`], { encoding: 'utf8' }).trim().split('\n')[0]);
  const file = path.join(lab.dir, 'q.txt');
  fs.writeFileSync(file, Array.from({ length: 800000 }, () => `m${Math.random().toString(36).slice(2)}.wild.test A`).join('\n') + '\n');
  for (const c of conns) {
    const srv = await lab.startServer(lab.writeConfig(`c${c}.yaml`, baseConfig(lab, { extra: `upstream:\n  maxConnections: ${c}\n` })));
    for (const rate of ci >= 0 ? ['max'] : rates) {
      const s0 = ticks(srv.pid), u0 = ticks(ubPid), c0 = cpuTimes(), t0 = Date.now();
      const perfArgs = ['-s', SERVER_V4, '-d', file, '-l', '8', '-c', '8', '-T', '1', '-q', '1000'];
      if (rate !== 'max') perfArgs.push('-Q', rate);
      const out = nsExec(lab.client, 'dnsperf', perfArgs, { timeout: 120_000 });
      const s1 = ticks(srv.pid), u1 = ticks(ubPid), c1 = cpuTimes(), secs = (Date.now() - t0) / 1000;
      const q = Number(/Queries completed:\s+(\d+)/.exec(out)[1]);
      const d = c1.map((v, i) => v - c0[i]); const total = d.reduce((a, b) => a + b, 0);
      console.log(JSON.stringify({
        maxConnections: c, rate, qps: Math.round(q / secs), lost: /Queries lost:\s+(.*)/.exec(out)[1],
        meanMs: +(Number(/Average Latency \(s\):\s+(\S+)/.exec(out)[1]) * 1000).toFixed(1),
        oursUsPerQuery: +((s1 - s0) * 10000 / q).toFixed(1), unboundUsPerQuery: +((u1 - u0) * 10000 / q).toFixed(1),
        coresBusyPct: +(100 * (1 - (d[3] + d[4]) / total)).toFixed(1), softirqPct: +(100 * d[6] / total).toFixed(1),
      }));
    }
    await lab.stop(srv, 'SIGTERM');
  }
} finally { await lab.down(); }
