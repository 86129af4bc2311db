// A short fuzz round on every `npm test` (20,000 executions, bounded to 20 s) plus every saved crasher
// as a regression. A crasher whose .json says "status": "open" is a known bug in code owned elsewhere
// (see its "note"): it is reported as TODO until fixed, then passes. Set "status": "fixed" once it does.
// FUZZ_SEED=N repeats a round; FUZZ_EXECUTIONS=N changes its size.
import t from 'tap';
import path from 'node:path';
import { fuzz, replay, listCrashers } from './run.mjs';

const executions = Number(process.env.FUZZ_EXECUTIONS ?? 20_000);
const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;

t.test('crashers replay', async (t) => {
  const list = listCrashers();
  if (list.length === 0) { t.pass('no crashers saved'); return; }
  for (const r of await replay(list)) {
    const name = path.basename(r.bin);
    if (r.status === 'open') t.ok(r.ok, `${name} (${r.target})${r.ok ? '' : `: ${r.error}`}`, { todo: r.ok ? false : (r.note ?? 'known open bug') });
    else t.ok(r.ok, `${name} (${r.target}) stays fixed${r.ok ? '' : `: ${r.error}`}`);
  }
});

t.test(`fuzz round: ${executions} executions`, async (t) => {
  const open = new Set(listCrashers().filter((c) => c.status === 'open').map((c) => c.signature));
  const res = await fuzz({ executions, seconds: 20, seed, save: true });
  t.comment(`seed ${res.seed}: ${res.executions} executions in ${res.seconds.toFixed(1)} s ${JSON.stringify(res.perTarget)}`);
  t.notOk(res.hung, 'no input hung the worker');
  t.ok(res.executions >= Math.min(executions, 5000), `ran ${res.executions} executions`);
  for (const f of res.findings) {
    if (f.known && open.has(f.signature)) t.ok(false, `known open bug hit again: ${f.signature}`, { todo: 'saved crasher with status open' });
    else t.fail(`new finding (saved as ${f.file}): ${f.error}`);
  }
  if (res.findings.length === 0) t.pass('no invariant broken');
});
