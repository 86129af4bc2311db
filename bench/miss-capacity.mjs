#!/usr/bin/env node
// node bench/miss-capacity.mjs [--conns 4,8] [--builds DIR,DIR] [--rounds N] [rate|max ...]
// Unique-name (cache-miss) load through the lab TPROXY path. Every measurement gets names never asked
// before, from a server started fresh, so no answer can come from the cache (an earlier version re-read
// one name file, and its later runs were partly cache hits). Per measurement: answered qps, mean latency,
// and where the two cores went per answered query: dns-tproxy, unbound, dnsperf, and the rest (softirq,
// kernel threads), from /proc, and the rate the machine could reach if dns-tproxy's share were zero.
// --builds compares builds against each other in one lab, alternating, --rounds times: the only fair way
// to compare on a noisy VM. A build is a tsc output directory next to dist/ (it imports ../native), e.g.
//   git stash && npx tsc -p . --outDir dist-base && git stash pop
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Lab, labUnavailable, baseConfig, SERVER_V4, nsExec, ROOT } from '../test/lab/lib.js';

const args = process.argv.slice(2);
const option = (name, fallback) => { const i = args.indexOf(name); return i >= 0 ? args.splice(i, 2)[1] : fallback; };
const conns = option('--conns', '4').split(',').map(Number);
const builds = option('--builds', path.join(ROOT, 'dist')).split(',').map((d) => path.resolve(d));
const rounds = Number(option('--rounds', '1'));
const rates = args.length ? args : ['max', 'max'];
const why = labUnavailable(['dnsperf']);
if (why) { console.error(why); process.exit(1); }
const HZ = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
const ticks = (pid) => { const a = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return Number(a[11]) + Number(a[12]); };
const cpuTimes = () => fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1).map(Number);
const lab = new Lab().up();
try {
  await lab.startUnbound();
  const ubPid = Number(execFileSync('pgrep', ['-f', `unbound -d -c ${lab.dir}`], { encoding: 'utf8' }).trim().split('\n')[0]);
  const file = path.join(lab.dir, 'q.txt');
  let batch = 0;
  for (let round = 0; round < rounds; round++) {
    for (const build of builds) {
      for (const c of conns) {
        const config = lab.writeConfig(`c${c}.yaml`, baseConfig(lab, { extra: `upstream:\n  maxConnections: ${c}\n` }));
        const srv = await lab.startServer(config, { cli: path.join(build, 'cli.js') });
        for (const rate of rates) {
          // 8 s at up to ~60k qps: 600k names, with a prefix no other measurement uses.
          const prefix = `m${batch++}x`;
          fs.writeFileSync(file, Array.from({ length: 600000 }, () => `${prefix}${Math.random().toString(36).slice(2, 10)}.wild.test A`).join('\n') + '\n');
          const perfArgs = ['-s', SERVER_V4, '-d', file, '-l', '8', '-c', '8', '-T', '1', '-q', '1000'];
          if (rate !== 'max') perfArgs.push('-Q', rate);
          const s0 = ticks(srv.pid), u0 = ticks(ubPid), c0 = cpuTimes();
          // bash's `times` reports the CPU its child (dnsperf) used.
          const out = nsExec(lab.client, 'bash', ['-c', 'dnsperf "$@"; times', 'dnsperf', ...perfArgs], { timeout: 120_000 });
          const s1 = ticks(srv.pid), u1 = ticks(ubPid), c1 = cpuTimes();
          const q = Number(/Queries completed:\s+(\d+)/.exec(out)[1]);
          const secs = Number(/Run time \(s\):\s+(\S+)/.exec(out)[1]);
          const [, um, us, sm, ss] = /(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/.exec(out.trim());
          const perfUs = ((Number(um) * 60 + Number(us) + Number(sm) * 60 + Number(ss)) * 1e6) / q;
          const d = c1.map((v, i) => v - c0[i]);
          const total = d.reduce((a, b) => a + b, 0);
          const busyShare = 1 - (d[3] + d[4]) / total; // everything but idle and iowait
          const busyUs = ((total - d[3] - d[4]) / HZ) * 1e6 / q;
          const oursUs = ((s1 - s0) / HZ) * 1e6 / q;
          const unboundUs = ((u1 - u0) / HZ) * 1e6 / q;
          console.log(JSON.stringify({
            build: path.relative(ROOT, build) || '.', maxConnections: c, rate, qps: Math.round(q / secs), lost: /Queries lost:\s+(.*)/.exec(out)[1],
            meanMs: +(Number(/Average Latency \(s\):\s+(\S+)/.exec(out)[1]) * 1000).toFixed(1),
            usPerQuery: { ours: +oursUs.toFixed(1), unbound: +unboundUs.toFixed(1), dnsperf: +perfUs.toFixed(1), rest: +(busyUs - oursUs - unboundUs - perfUs).toFixed(1) },
            coresBusyPct: +(100 * busyShare).toFixed(1),
            // The same busy share of the cores, spent only on unbound, dnsperf and the rest: what this
            // machine could answer if dns-tproxy cost nothing (an upper bound for any forwarder here).
            qpsIfServerFree: Math.round((os.cpus().length * busyShare * 1e6) / (busyUs - oursUs)),
          }));
        }
        await lab.stop(srv, 'SIGTERM');
      }
    }
  }
} finally { await lab.down(); }
