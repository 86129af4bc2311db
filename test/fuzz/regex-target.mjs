// Fuzz target `regex`: the compile + match path of /regex/ rules (src/filter/regex-guard.ts, issue #15.1).
// An input is a pattern, a NUL byte, then a query name (any bytes; shown as qnameString shows names:
// printable ASCII lower-cased, everything else and '.' inside a label as \DDD, up to ~1,000 characters).
//
// Invariants:
//   - checkRegex never throws; a refusal carries a reason; an accepted rule's program is within
//     MAX_PROGRAM_SIZE, and parseRule("/pattern/") accepts or refuses the same rule.
//   - An accepted rule answers a boolean, the same as re2js's capture-tracking matcher (the NFA /
//     backtracker path: a differential against the lazy DFA that test() uses), and the same again after
//     its DFA cache has been churned by long names (a cache reset must not change answers).
//   - No input hangs: the harness's watchdog kills the worker and saves the input.
import { checkRegex, MAX_PROGRAM_SIZE } from '../../dist/filter/regex-guard.js';
import { parseRule } from '../../dist/filter/parse.js';

class RegexViolation extends Error {}
function fail(msg) { throw new RegexViolation(msg); }

/** Bytes -> a name as qnameString writes it (the form the engine matches against). */
export function nameFromBytes(b) {
  let s = '';
  for (let i = 0; i < b.length && s.length < 1024; i++) {
    let c = b[i];
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    s += c === 0x2e && (i === 0 || i === b.length - 1) ? '\\046' : c < 0x21 || c > 0x7e ? '\\' + String(c).padStart(3, '0') : String.fromCharCode(c);
  }
  return s;
}

const CHURN = ['a.'.repeat(300), `${'ab-'.repeat(150)}!`, 'a\\000'.repeat(100) + 'z'.repeat(100) + '.example'];

export function execRegex(input) {
  const cut = input.indexOf(0);
  const pattern = (cut < 0 ? input : input.subarray(0, cut)).toString('utf8');
  const name = nameFromBytes(cut < 0 ? Buffer.alloc(0) : input.subarray(cut + 1));
  const c = checkRegex(pattern);
  const rule = pattern.includes('\n') || pattern.includes('\r') ? null : parseRule(`/${pattern}/`);
  if (!c.ok) {
    if (typeof c.reason !== 'string' || c.reason.length === 0) fail('regex: refused without a reason');
    if (rule !== null && rule.t === 'regex') fail(`regex: checkRegex refuses but parseRule accepts (${c.reason})`);
    return;
  }
  if (!(c.size > 0 && c.size <= MAX_PROGRAM_SIZE)) fail(`regex: accepted with program size ${c.size}`);
  if (rule !== null && rule.t !== 'regex' && rule.t !== 'skip') fail(`regex: checkRegex accepts but parseRule says ${rule.t} (${rule.reason})`);
  const first = c.re.test(name);
  if (typeof first !== 'boolean') fail('regex: test() did not answer a boolean');
  const viaMatcher = c.re.matcher(name).find();
  if (viaMatcher !== first) fail(`regex: test() says ${first}, the capture-tracking matcher says ${viaMatcher}`);
  for (const s of CHURN) c.re.test(s);
  if (c.re.test(name) !== first) fail('regex: the answer changed after the DFA cache was churned');
  if (rule !== null && rule.t === 'regex' && rule.re.test(name) !== first) fail('regex: parseRule compiled a rule that answers differently');
}

// ---- inputs -----------------------------------------------------------------------------------------
const TOKENS = ['(', ')', '(?:', '(?i)', '(?=', '(?<!', '(?P<n>', '(?<n>', '|', '*', '+', '?', '*?', '+?', '{2}', '{1,}', '{0,3}', '{01,}',
  '{1000}', '{2,1}', '.', '^', '$', '\\.', '\\d', '\\w', '\\s', '\\b', '\\B', '\\1', '\\k<n>', '\\x41', '\\x{41}', '\\p{L}', '\\pN',
  '[a-z]', '[^.]', '[[:alpha:]]', '[]a]', '[a-', '\\', '\\Q.\\E', 'a', 'ad', '-', '_', '[0-9]+', '(a+)+', '(a|aa)*', '.*', '\\z', '\\A'];

/** A pattern from a seed pattern by token inserts, deletes, repeats and splices, plus a name to match. */
export function makeRegexInput(r, seeds) {
  let p = r.pick(seeds) ?? 'ad';
  for (let n = 1 + r.int(5); n > 0; n--) {
    const at = r.int(p.length + 1);
    const op = r.int(5);
    if (op === 0 || op === 1) p = p.slice(0, at) + r.pick(TOKENS) + p.slice(at);
    else if (op === 2) p = p.slice(0, at) + p.slice(at + 1 + r.int(4));
    else if (op === 3) p = `(${p})${r.pick(['*', '+', '{2,5}', '?', '{3}'])}`;
    else p = p.slice(0, at) + r.pick(seeds).slice(r.int(8)) + p.slice(at);
  }
  p = p.slice(0, 600);
  // Names: the characters the pattern itself uses, repeated (where backtracking hurts), or random.
  const lits = p.replace(/[^a-z0-9.!-]/g, '') || 'a';
  const len = r.pick([0, 1, 5, 20, 63, 127, 253, 400, 1000]);
  let name;
  if (r.chance(0.6)) {
    const chunk = lits.slice(r.int(lits.length), r.int(lits.length) + 1 + r.int(4)) || 'a';
    name = Buffer.from((chunk.repeat(Math.ceil(len / chunk.length)).slice(0, len) + (r.chance(0.5) ? r.pick(['!', 'b', '.x', '']) : '')), 'latin1');
  } else {
    name = r.bytes(len);
    for (let i = 0; i < name.length; i++) if (r.chance(0.8)) name[i] = 0x61 + (name[i] % 26);
  }
  return Buffer.concat([Buffer.from(p.replace(/\0/g, ''), 'utf8'), Buffer.from([0]), name]);
}
