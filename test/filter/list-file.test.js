// A list file is parsed in chunks straight into the table (issue #20: a 1M-domain list no longer sits
// in memory whole next to its table). Differential: the same bytes read from a file in 1 MiB chunks and
// given as one buffer load the same rules, count the same bad lines at the same line numbers, and
// decide the same, including lines that straddle a chunk boundary and a line longer than a chunk.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { FilterManager, buildEngine } from '../../dist/filter/index.js';

t.test('chunked file parse = whole-buffer parse', async (t) => {
  const dir = t.testdir();
  const lines = [];
  for (let i = 0; i < 150_000; i++) lines.push(i % 9973 === 5 ? `bad line ${i}` : `d${i}.example`);
  lines.splice(80_000, 0, '! ' + 'x'.repeat(1_500_000), 'after-long-line.example'); // longer than a read chunk
  const text = '\ufeff' + lines.join('\n') + '\nlast-without-newline.example';
  const bytes = Buffer.from(text);
  t.ok(bytes.length > 3 * (1 << 20), `${bytes.length} bytes: several chunks`);
  fs.writeFileSync(path.join(dir, 'big.txt'), bytes);

  const mgr = await FilterManager.create({ filter: { lists: [{ name: 'big', path: 'big.txt' }] } }, { stateDir: dir, baseDir: dir });
  t.teardown(() => mgr.close());
  const fromFile = mgr.engine;
  const fromBuffer = await buildEngine({ filter: { lists: [{ name: 'big', path: 'x' }] } }, [{ name: 'big', data: bytes }]);

  const a = fromFile.sources[0];
  const b = fromBuffer.sources[0];
  t.equal(a.rules, b.rules, `${a.rules} rules either way`);
  t.equal(a.rules, 150_000 - lines.filter((l) => l.startsWith('bad')).length + 2);
  t.equal(a.badLines, b.badLines);
  t.same(a.samples.map((s) => [s.line, s.text]), b.samples.map((s) => [s.line, s.text]), 'bad lines at the same line numbers');
  t.equal(a.samples[0].line, 6, 'line numbers count the BOM line as line 1');
  // every line (so every chunk boundary, wherever the reads fell), plus a name that is not listed
  const names = [...lines.filter((l) => !l.startsWith('!')), 'last-without-newline.example', 'nope.example'];
  let differ = 0;
  for (const n of names) if ((fromFile.decide(n, 1, 0)?.kind ?? 'pass') !== (fromBuffer.decide(n, 1, 0)?.kind ?? 'pass')) differ++;
  t.equal(differ, 0, `${names.length} names decided the same`);
  t.equal(fromFile.decide('d0.example', 1, 0)?.kind, 'block', 'the first line (after the BOM) is a rule');
  t.equal(fromFile.decide('last-without-newline.example', 1, 0)?.kind, 'block');
});

t.test('a list path that is a directory fails the load with its name', async (t) => {
  const dir = t.testdir({ sub: {} });
  await t.rejects(FilterManager.create({ filter: { lists: [{ name: 'd', path: 'sub' }] } }, { stateDir: dir, baseDir: dir }), /list "d": cannot read .*sub: EISDIR/);
});
