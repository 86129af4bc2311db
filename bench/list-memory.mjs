#!/usr/bin/env node
// Memory of a large block list (issue #20): RSS added by loading a list of N domains, at its peak while
// loading (the kernel's high-water mark, VmHWM, reset just before the load, so short spikes between two
// samples are not missed) and settled after a GC; then the same for a reload (a list refresh or SIGHUP
// rebuilds while the old engine still serves).
//   node bench/list-memory.mjs [--domains 1000000] [--format domains|hosts|adblock] [--dist DIR]...
// Each --dist (default: ./dist) is measured in its own child process, alternately, --rounds times: give
// two (an old build and this one) for an A/B in one run. Linux only (/proc).
import { execFileSync, fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const mb = (kb) => (kb / 1024).toFixed(1);
const status = () => Object.fromEntries(fs.readFileSync('/proc/self/status', 'utf8').split('\n')
  .filter((l) => /^Vm(RSS|HWM):/.test(l)).map((l) => [l.split(':')[0], Number(/(\d+)/.exec(l)[1])]));
const resetPeak = () => fs.writeFileSync('/proc/self/clear_refs', '5');
const settle = async () => {
  for (let i = 0; i < 3; i++) {
    globalThis.gc();
    await new Promise((r) => setTimeout(r, 30));
  }
};

if (process.env.LIST_MEMORY_CHILD) {
  // child: one measurement of one build
  const { dist, listFile } = JSON.parse(process.env.LIST_MEMORY_CHILD);
  const { FilterManager } = await import(pathToFileURL(path.join(dist, 'filter/index.js')).href);
  await import('undici'); // loaded by url lists anyway; kept out of the list's figure
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'list-mem-state-'));
  const cfg = { filter: { lists: [{ name: 'big', path: listFile }] } };
  await settle();
  const base = status().VmRSS;
  resetPeak();
  const mgr = await FilterManager.create(cfg, { stateDir: dir, baseDir: dir });
  const loadPeak = status().VmHWM;
  await settle();
  const settled = status().VmRSS;
  resetPeak();
  const r = await mgr.reload();
  if (!r.ok) throw r.error;
  const reloadPeak = status().VmHWM;
  await settle();
  const reloadSettled = status().VmRSS;
  const entries = mgr.engine.info.entries;
  mgr.close();
  fs.rmSync(dir, { recursive: true, force: true });
  process.send({ base, loadPeak, settled, reloadPeak, reloadSettled, entries });
} else {
  const { values } = parseArgs({
    options: {
      domains: { type: 'string', default: '1000000' }, format: { type: 'string', default: 'domains' },
      dist: { type: 'string', multiple: true }, rounds: { type: 'string', default: '2' },
    },
  });
  const dists = (values.dist ?? [path.join(HERE, '..', 'dist')]).map((d) => path.resolve(d));
  const N = Number(values.domains);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'list-mem-'));
  const listFile = path.join(tmp, 'list.txt');
  const { writeSynthetic } = await import(pathToFileURL(path.join(HERE, '..', 'rules', 'gen-synthetic.js')).href);
  await writeSynthetic(listFile, N, values.format);
  const bytes = fs.statSync(listFile).size;
  const commit = (d) => {
    try {
      return execFileSync('git', ['-C', path.dirname(d), 'log', '-1', '--format=%h'], { encoding: 'utf8' }).trim();
    } catch {
      return '?';
    }
  };
  console.log(`node ${process.version}; list: ${N.toLocaleString('en-US')} ${values.format}, ${(bytes / 1048576).toFixed(1)} MB; RSS added over the process before the load (MB)`);
  const rows = [];
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const dist of dists) {
      const child = fork(fileURLToPath(import.meta.url), [], {
        execArgv: ['--expose-gc'], env: { ...process.env, LIST_MEMORY_CHILD: JSON.stringify({ dist, listFile }) },
      });
      const m = await new Promise((resolve, reject) => {
        child.once('message', resolve);
        child.once('exit', (code) => code && reject(new Error(`child exited ${code}`)));
      });
      rows.push([`${dist} (${commit(dist)})`, mb(m.loadPeak - m.base), mb(m.settled - m.base), mb(m.reloadPeak - m.base), mb(m.reloadSettled - m.base), m.entries]);
    }
  }
  const head = ['build', 'load peak', 'settled', 'reload peak', 'after reload', 'entries'];
  const all = [head, ...rows];
  const w = head.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)));
  for (const r of all) console.log(r.map((c, i) => String(c).padEnd(w[i])).join('  '));
  fs.rmSync(tmp, { recursive: true, force: true });
}
