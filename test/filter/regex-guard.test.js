// Issue #15.1: a regex rule must not be able to freeze the server. The patterns below froze the old
// engine (a backtracking RegExp behind a syntax guard) for minutes on names of 34 to 127 characters.
// Each check runs in a child process with a generous kill deadline: the deadline only detects a hang
// (the old code needs minutes to hours), it is not a speed claim. bench/filter-bench.js measures speed.
import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const DIST = fileURLToPath(new URL('../../dist/filter/index.js', import.meta.url));
const HANG_DEADLINE_MS = 120_000;

/** Runs `body` (an async function body with `f` = the filter module) in a child; resolves its JSON result. */
function inChild(body) {
  const src = `const f = await import(${JSON.stringify(DIST)});\n` +
    `const out = await (async () => { ${body} })();\nprocess.stdout.write(JSON.stringify(out));`;
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', src], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (b) => (out += b));
    p.stderr.on('data', (b) => (err += b));
    const timer = setTimeout(() => p.kill('SIGKILL'), HANG_DEADLINE_MS);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ hung: signal === 'SIGKILL', code, err, result: code === 0 ? JSON.parse(out) : null });
    });
  });
}

// Names: the lengths that froze the old engine (34, 127), the longest plain name (253) and a name of
// ~1,000 characters as qnameString writes names with \DDD escapes.
const NAMES = {
  a34: 'a'.repeat(33) + 'b',
  dots127: 'a.'.repeat(63) + 'a',
  a253: 'a'.repeat(252) + 'b',
  dots1000: 'a.'.repeat(499) + 'ab',
  escaped1000: 'a\\000'.repeat(200),
  bang1000: 'a.'.repeat(499) + 'a!',
};

t.test('hostile patterns through checkRegex: refused, or matched correctly on long names', async (t) => {
  const r = await inChild(`
    const names = ${JSON.stringify(NAMES)};
    const out = {};
    for (const p of ['^(a+){00000000000000001,}$', '[a-z.]*[a-z.]*[a-z.]*[a-z.]*!', '(a+)+$', '(a|aa)*b$', '^(a+)+b', '(.*a){12}']) {
      const c = f.checkRegex(p);
      out[p] = c.ok ? Object.fromEntries(Object.entries(names).map(([k, n]) => [k, c.re.test(n)])) : { refused: c.reason };
    }
    return out;
  `);
  t.notOk(r.hung, 'the child finished before the hang deadline');
  t.equal(r.code, 0, r.err);
  if (r.result === null) return;
  const m = r.result;
  t.match(m['^(a+){00000000000000001,}$'], { refused: /leading zero/ }, 'dialect-ambiguous count refused');
  t.same(m['[a-z.]*[a-z.]*[a-z.]*[a-z.]*!'], { a34: false, dots127: false, a253: false, dots1000: false, escaped1000: false, bang1000: true });
  t.same(m['(a+)+$'], { a34: false, dots127: true, a253: false, dots1000: false, escaped1000: false, bang1000: false });
  t.same(m['(a|aa)*b$'], { a34: true, dots127: false, a253: true, dots1000: true, escaped1000: false, bang1000: false });
  t.same(m['^(a+)+b'], { a34: true, dots127: false, a253: true, dots1000: false, escaped1000: false, bang1000: false });
  t.same(m['(.*a){12}'], { a34: true, dots127: true, a253: true, dots1000: true, escaped1000: true, bang1000: true });
});

t.test('hostile patterns in a list: decide() answers on long names, and the refusal is in the status', async (t) => {
  const r = await inChild(`
    const names = ${JSON.stringify(NAMES)};
    const eng = await f.buildEngine({ filter: { lists: [{ name: 'hostile', path: 'x' }] } }, [{ name: 'hostile', data: Buffer.from([
      '/^(a+){00000000000000001,}$/',
      '/[a-z.]*[a-z.]*[a-z.]*[a-z.]*!/',
      '/^(a+)+b$/',
      '||a*a*a*.example^',
    ].join('\\n')) }]);
    const verdicts = {};
    for (const [k, n] of Object.entries(names)) verdicts[k] = eng.decide(n, 1, 0)?.kind ?? 'pass';
    verdicts.glob = eng.decide('a'.repeat(240) + '.example', 1, 0)?.kind ?? 'pass';
    verdicts.globMiss = eng.decide('a'.repeat(240) + '.examplf', 1, 0)?.kind ?? 'pass';
    const s = eng.sources[0];
    return { verdicts, rules: s.rules, badLines: s.badLines, samples: s.samples };
  `);
  t.notOk(r.hung, 'the child finished before the hang deadline');
  t.equal(r.code, 0, r.err);
  if (r.result === null) return;
  const { verdicts, rules, badLines, samples } = r.result;
  t.same(verdicts, {
    a34: 'block', dots127: 'pass', a253: 'block', dots1000: 'pass', escaped1000: 'pass', bang1000: 'block', glob: 'block', globMiss: 'pass',
  });
  t.equal(rules, 3);
  t.equal(badLines, 1, 'the refused rule is a bad line');
  t.match(samples, [{ source: 'hostile', line: 1, text: '/^(a+){00000000000000001,}$/', kind: 'bad', reason: /leading zero/ }]);
});

t.test('program size is measured (a re2js upgrade that hides it fails here, not silently)', async (t) => {
  const { checkRegex } = await import(DIST);
  const small = checkRegex('^ad[0-9]+\\.');
  t.equal(small.ok, true);
  t.ok(small.size > 3 && small.size < 30, `size ${small.size}`);
  t.match(checkRegex('[a-z]{255}'), { ok: false, reason: /program too large \(\d+ > 256/ });
  t.match(checkRegex('\\p{L}{250}\\p{N}{10}'), { ok: false, reason: /program too large/ });
  t.match(checkRegex('\\p{L}{1000}'), { ok: false, reason: /repeat count above 256/ });
});

t.test('the per-group union of regex rules gates the rule loop without changing verdicts', async (t) => {
  const { buildEngine, anyOfRules } = await import(DIST);
  const kids = ['/^game[0-9]*\\./', '/(^|\\.)chat\\.example$/'];
  const eng = await buildEngine({
    filter: { lists: [{ name: 'rx', path: 'x' }] },
    groups: [{ name: 'kids', clients: ['10.0.0.0/8'], lists: [], block: kids, inheritGlobal: false }],
  }, [{ name: 'rx', data: Buffer.from(['/^ad[0-9]+\\./', '/tracker/', '@@/^ad7\\./', '/(pix)el\\./', '/(bea)con\\./'].join('\n')) }]);
  const v = (name, group = 0) => eng.decide(name, 1, group)?.kind ?? 'pass';
  // default group: the list
  t.equal(v('ad1.example'), 'block');
  t.equal(v('ad7.example'), 'pass', 'exception still wins behind the gate');
  t.equal(v('my.tracker.example'), 'block');
  t.equal(v('pixel.example'), 'block');
  t.equal(v('beacon.example'), 'block');
  t.equal(v('game1.example'), 'pass', 'a kids rule does not apply to the default group');
  // kids group: its own two rules only
  t.equal(v('game1.example', 1), 'block');
  t.equal(v('x.chat.example', 1), 'block');
  t.equal(v('ad1.example', 1), 'pass', 'a list rule does not apply to kids (lists: [])');
  t.equal(v('www.example', 1), 'pass');
  t.equal(anyOfRules(['(?P<n>a)', '(?P<n>b)']), null, 'a union that does not compile gives no gate');
  const dup = await buildEngine({ filter: { lists: [{ name: 'd', path: 'x' }] } }, [{ name: 'd', data: Buffer.from('/(?P<n>pix)el\\./\n/(?P<n>bea)con\\./\n') }]);
  t.same(['pixel.x', 'beacon.x', 'www.x'].map((n) => dup.decide(n, 1, 0)?.kind ?? 'pass'), ['block', 'block', 'pass'], 'without a gate every rule is tried');
  const gate = anyOfRules(['^ad[0-9]+\\.', 'tracker']);
  t.same(['ad1.x', 'a.tracker.x', 'www.x'].map((n) => gate.test(n)), [true, true, false]);
});
