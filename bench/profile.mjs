#!/usr/bin/env node
// node bench/profile.mjs hit|miss [seconds]: runs dns-tproxy under --cpu-prof on the lab TPROXY path
// with dnsperf at a fixed rate and prints the self-time summary.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Lab, labUnavailable, baseConfig, SERVER_V4, nsExec, ROOT } from '../test/lab/lib.js';

const [scenario = 'hit', secs = '8', rate = '20000'] = process.argv.slice(2);
const why = labUnavailable(['dnsperf']);
if (why) { console.error(why); process.exit(1); }
const lab = new Lab().up();
const profDir = path.join(lab.dir, 'prof');
try {
  await lab.startUnbound();
  const names = scenario === 'hit' ? Array.from({ length: 1000 }, (_, i) => `h${i}.wild.test A`)
    : Array.from({ length: 1_000_000 }, () => `m${Math.random().toString(36).slice(2)}.wild.test A`);
  const file = path.join(lab.dir, 'q.txt');
  fs.writeFileSync(file, names.join('\n') + '\n');
  const srv = await lab.startServer(lab.writeConfig('p.yaml', baseConfig(lab)), { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] });
  if (scenario === 'hit') nsExec(lab.client, 'dnsperf', ['-s', SERVER_V4, '-d', file, '-n', '1', '-q', '200']);
  const out = nsExec(lab.client, 'dnsperf', ['-s', SERVER_V4, '-d', file, '-l', secs, '-c', '8', '-T', '1', '-q', '1000', '-Q', rate], { timeout: 120_000 });
  console.log(out.split('\n').filter((l) => /Queries (per|lost|completed)|Average Latency/.test(l)).join('\n'));
  await lab.stop(srv, 'SIGTERM');
  const prof = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  const dest = path.join(ROOT, `bench/${scenario}.cpuprofile`);
  fs.copyFileSync(path.join(profDir, prof), dest);
  console.log(execFileSync(process.execPath, [path.join(ROOT, 'bench/profile-summary.mjs'), dest, '30'], { encoding: 'utf8' }));
} finally {
  await lab.down();
}
