#!/usr/bin/env node
// node bench/perf-hit.mjs [rate] [seconds]: cache hits through the lab TPROXY path at a fixed rate, with
// `perf record -g` on the server. Prints user and system CPU per query and the top of `perf report`.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { Lab, labUnavailable, baseConfig, SERVER_V4, nsExec } from '../test/lab/lib.js';

const [rate = '20000', secs = '10'] = process.argv.slice(2);
const why = labUnavailable(['dnsperf', 'perf']);
if (why) { console.error(why); process.exit(1); }
const lab = new Lab().up();
const data = path.join(lab.dir, 'perf.data');
try {
  await lab.startUnbound();
  const file = path.join(lab.dir, 'q.txt');
  fs.writeFileSync(file, Array.from({ length: 1000 }, (_, i) => `h${i}.wild.test A`).join('\n') + '\n');
  const srv = await lab.startServer(lab.writeConfig('p.yaml', baseConfig(lab)), { nodeArgs: ['--perf-basic-prof'] });
  nsExec(lab.client, 'dnsperf', ['-s', SERVER_V4, '-d', file, '-n', '1', '-q', '200']);
  const perf = spawn('perf', ['record', '-F', '2000', '-g', '-o', data, '-p', String(srv.pid), '--', 'sleep', String(Number(secs) - 2)], { stdio: 'ignore' });
  const stat = () => fs.readFileSync(`/proc/${srv.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const a = stat();
  const out = nsExec(lab.client, 'dnsperf', ['-s', SERVER_V4, '-d', file, '-l', secs, '-c', '8', '-T', '1', '-q', '1000', '-Q', rate], { timeout: 120_000 });
  const b = stat();
  const q = Number(/Queries completed:\s+(\d+)/.exec(out)[1]);
  console.log(`queries ${q}: user ${((b[11] - a[11]) * 10000 / q).toFixed(2)} µs/query, system ${((b[12] - a[12]) * 10000 / q).toFixed(2)} µs/query`);
  await new Promise((r) => perf.on('exit', r));
  const report = (sort) => execFileSync('perf', ['report', '-i', data, '--no-children', '--sort', sort, '-g', 'none'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    .split('\n').filter((l) => l.trim() && !l.startsWith('#'));
  console.log(report('dso').slice(0, 5).join('\n'));
  console.log(report('sym').slice(0, 15).join('\n'));
  await lab.stop(srv, 'SIGTERM');
} finally { await lab.down(); }
