// A short fuzz round on every `npm test` (20,000 executions with a fixed seed, so every run covers the
// same inputs and a failure replays) plus every saved crasher as a regression. A crasher whose .json
// says "status": "open" is a known bug in code owned elsewhere (see its "note"): it is reported as TODO
// until fixed, then passes. Set "status": "fixed" once it does.
// New findings are saved in a temporary directory named in the failure (never into the repository):
// move one into test/fuzz/crashers/ by hand to keep it as a regression.
// No time limits are asserted: the round stops after its executions, and the watchdog only kills a
// worker that makes no progress for a minute (a hang, saved as a finding). Speed: `npm run fuzz`.
// FUZZ_SEED=N and FUZZ_EXECUTIONS=N change the round.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fuzz, replay, listCrashers } from './run.mjs';

const executions = Number(process.env.FUZZ_EXECUTIONS ?? 20_000);
const seed = Number(process.env.FUZZ_SEED ?? 20261201);
const HANG_MS = 60_000;

t.test('crashers replay', async (t) => {
  const list = listCrashers();
  if (list.length === 0) { t.pass('no crashers saved'); return; }
  for (const r of await replay(list, { hangMs: HANG_MS, slowMs: Infinity })) {
    const name = path.basename(r.bin);
    if (r.status === 'open') t.ok(r.ok, `${name} (${r.target})${r.ok ? '' : `: ${r.error}`}`, { todo: r.ok ? false : (r.note ?? 'known open bug') });
    else t.ok(r.ok, `${name} (${r.target}) stays fixed${r.ok ? '' : `: ${r.error}`}`);
  }
});

t.test(`fuzz round: ${executions} executions, seed ${seed}`, async (t) => {
  const open = new Set(listCrashers().filter((c) => c.status === 'open').map((c) => c.signature));
  const crashersDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dt-fuzz-findings-'));
  const res = await fuzz({ executions, seconds: Infinity, seed, save: true, crashersDir, hangMs: HANG_MS, slowMs: Infinity });
  t.comment(`seed ${res.seed}: ${res.executions} executions in ${res.seconds.toFixed(1)} s ${JSON.stringify(res.perTarget)}`);
  t.notOk(res.hung, 'no input hung the worker');
  t.equal(res.executions, executions, 'the round ran every execution');
  for (const f of res.findings) {
    if (f.known && open.has(f.signature)) t.ok(false, `known open bug hit again: ${f.signature}`, { todo: 'saved crasher with status open' });
    else t.fail(`new finding (saved as ${f.file}): ${f.error}`);
  }
  if (res.findings.length === 0) {
    t.pass('no invariant broken');
    fs.rmSync(crashersDir, { recursive: true, force: true });
  }
});
