// Compiling /regex/ (and wildcard) rules. Rules come from downloaded lists, so a hostile or careless
// pattern must not be able to stall the event loop. JavaScript's RegExp backtracks (`(a+){1,}$` or
// `[a-z.]*[a-z.]*[a-z.]*!` take exponential or polynomial time), so rules are matched with re2js, a
// pure-JavaScript port of RE2 whose automata run in time linear in the name. It is also the dialect
// AdGuard Home reads these rules in (Go's regexp is RE2). What RE2 cannot match in linear time
// (back-references, lookaround) is a syntax error there and the rule is refused.
//
// Linear in the name is not enough on its own: the work per character grows with the size of the
// compiled program (`[a-z]{1000}` is a 1,000-state automaton, and a name that keeps many of those
// states alive costs ~1,000 steps per character). So the program size is capped as well.
// bench/filter-bench.js measures the cost per match (and compares native re2 and re2-wasm).
import { RE2JS } from 're2js';

/** The largest compiled program (RE2 instructions) accepted for one rule. */
export const MAX_PROGRAM_SIZE = 256;

/** What the engine needs from a compiled rule: an unanchored search, like RegExp.prototype.test. */
export interface RuleMatcher {
  test(name: string): boolean;
}

export interface RegexCheck {
  ok: boolean;
  reason?: string;
  re?: RuleMatcher;
  /** compiled program size (instructions), when known */
  size?: number;
}

/**
 * Counts RE2 and JavaScript disagree on, or that cannot fit the program cap: a `{n}`/`{n,}`/`{n,m}`
 * written with a leading zero (JavaScript reads `{01,}` as a repeat, RE2 as the literal text "{01,}";
 * refused so that a rule never means something else than its author read it as), and a count above
 * MAX_PROGRAM_SIZE (refused before compiling: compiling `[a-z]{1000}` alone costs milliseconds, and a
 * list can hold many). Returns the reason or null.
 */
function repeatCountProblem(src: string): string | null {
  let inClass = false;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') {
      inClass = true;
      if (src[i + 1] === '^') i++;
      if (src[i + 1] === ']') i++; // "[]...]" holds a literal ']'
      continue;
    }
    if (c === '{') {
      const m = /^\{(\d+)(?:,(\d*))?\}/.exec(src.slice(i));
      if (m && (/^0\d/.test(m[1]!) || /^0\d/.test(m[2] ?? ''))) return `repeat count with a leading zero (RE2 reads it as text, JavaScript as a count): ${m[0]}`;
      if (m && (Number(m[1]) > MAX_PROGRAM_SIZE || Number(m[2] || 0) > MAX_PROGRAM_SIZE)) return `repeat count above ${MAX_PROGRAM_SIZE}: ${m[0]}`;
    }
  }
  return null;
}

/** The number of instructions in a compiled pattern (re2js keeps it on its RE2 object). */
function programSize(p: RE2JS): number | null {
  const prog = (p as unknown as { re2Input?: { prog?: { inst?: unknown[] } } }).re2Input?.prog;
  return Array.isArray(prog?.inst) ? prog.inst.length : null;
}

/** Compile a rule pattern for matching against lower-case query names. Never throws. */
export function checkRegex(src: string, maxLength = 512): RegexCheck {
  if (src.length === 0) return { ok: false, reason: 'empty regex' };
  if (src.length > maxLength) return { ok: false, reason: `regex longer than ${maxLength} characters` };
  const countProblem = repeatCountProblem(src);
  if (countProblem !== null) return { ok: false, reason: countProblem };
  let p: RE2JS;
  try {
    p = RE2JS.compile(src);
  } catch (e) {
    const msg = (e as Error).message.replace(/^error parsing regexp: /, '');
    if (/\\[1-9]|\\k<|\\k\{/.test(src) && /invalid escape/.test(msg)) return { ok: false, reason: `back-references are not supported: ${msg}` };
    if (/\(\?<?[=!]/.test(src) && /(Perl syntax|named capture)/.test(msg)) return { ok: false, reason: `lookaround is not supported: ${msg}` };
    return { ok: false, reason: `not supported by the RE2 syntax: ${msg}` };
  }
  const size = programSize(p);
  // Without a size (a re2js that stopped exposing it) every rule is refused rather than none checked:
  // test/filter/regex.test.js fails then, which is the point.
  if (size === null) return { ok: false, reason: 'cannot measure the compiled program (re2js internals changed)' };
  if (size > MAX_PROGRAM_SIZE) return { ok: false, reason: `compiled program too large (${size} > ${MAX_PROGRAM_SIZE} instructions)` };
  return { ok: true, re: p, size };
}

/** Compile a pattern built by the rule parser itself (wildcard rules); null if refused. */
export function compileRule(src: string): RuleMatcher | null {
  const r = checkRegex(src, Infinity);
  return r.ok ? r.re! : null;
}

/**
 * One program that matches where any of `patterns` (each already accepted) matches, or null when the
 * union does not compile (two rules naming the same capture group). A gate, not a verdict: which rule
 * matched, and in which order rules apply, is still decided rule by rule.
 */
export function anyOfRules(patterns: string[]): RuleMatcher | null {
  try {
    return RE2JS.compile(patterns.map((p) => `(?:${p})`).join('|'));
  } catch {
    return null;
  }
}
