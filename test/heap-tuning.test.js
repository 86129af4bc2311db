// The young-generation cap really holds V8's new space at the configured size under allocation load.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MODULE = path.join(ROOT, 'dist/heap-tuning.js');

/** Runs an allocation load with the cap set, in a fresh process because a young generation never
 * shrinks back; returns new_space's size in MiB. The load yields every ~100 KiB of garbage, as the server
 * does between socket callbacks: the cap is switched on from a GC observer, which runs between them. */
function youngGenerationAfterLoad(capMib, env = {}) {
  const script = `
    import v8 from 'node:v8';
    const { applyConfiguredSemiSpace } = await import(${JSON.stringify(MODULE)});
    const start = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 1048576;
    applyConfiguredSemiSpace(${capMib});
    let keep = [];
    for (let j = 0; j < 3000; j++) {
      for (let i = 0; i < 2000; i++) { const o = { a: i, b: 'x' + i }; if (i % 20 === 0) keep.push(o); if (keep.length > 40000) keep = []; }
      await new Promise((r) => setImmediate(r));
    }
    const ns = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
    process.stdout.write(JSON.stringify({ start, end: ns.space_size / 1048576 }));`;
  const env2 = { ...process.env, ...env };
  delete env2.NODE_OPTIONS;
  if (!('DNS_TPROXY_SEMI_SPACE_MIB' in env)) delete env2.DNS_TPROXY_SEMI_SPACE_MIB;
  return JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { env: env2, encoding: 'utf8' }));
}

t.test('cap 4 MiB: the young generation (two semi-spaces) stops at 8 MiB', async (t) => {
  const { start, end } = youngGenerationAfterLoad(4);
  t.equal(end, Math.max(start, 8), `new_space ${start} → ${end} MiB`);
});

t.test('cap 1 MiB: it does not grow past its start-up size (one 1 MiB semi-space at most)', async (t) => {
  const { start, end } = youngGenerationAfterLoad(1);
  t.equal(end, Math.max(start, 2), `new_space ${start} → ${end} MiB`);
});

t.test('the environment override 0 restores V8 growth, beyond any cap', async (t) => {
  const { start, end } = youngGenerationAfterLoad(4, { DNS_TPROXY_SEMI_SPACE_MIB: '0' });
  t.ok(end > 8, `new_space ${start} → ${end} MiB`);
});
