// Safety check for /regex/ rules. We match with the built-in backtracking
// RegExp engine, so patterns that can take super-linear time are refused up
// front. The check is deliberately conservative:
//   - length limit (default 512 characters)
//   - no back-references (\1..\9, \k<name>) and no lookaround ((?=, (?!, (?<=, (?<!)
//   - "star height" at most 1: a group repeated by *, +, {n,} or {n,m} (m > 1)
//     must not itself contain a repeating quantifier or an alternation
//     (rejects (a+)+, (a*)*, (a|a)*, (\w+\.)+ ...)
//   - at most MAX_REPEATS repeating quantifiers in the whole pattern
//   - numeric bounds {n,m} at most 255 (DNS names are at most 253 characters)
// Query names are lower-case, at most 253 characters, and have no trailing dot.

export const MAX_REPEATS = 4;

export interface RegexCheck {
  ok: boolean;
  reason?: string;
  re?: RegExp;
}

interface Frame {
  repeat: boolean;
  alt: boolean;
}

export function checkRegex(src: string, maxLength = 512): RegexCheck {
  if (src.length === 0) return { ok: false, reason: 'empty regex' };
  if (src.length > maxLength) return { ok: false, reason: `regex longer than ${maxLength} characters` };
  const stack: Frame[] = [{ repeat: false, alt: false }];
  // last atom: null (none), 'simple', or a Frame for a closed group
  let last: Frame | 'simple' | null = null;
  let repeats = 0;
  let i = 0;
  const n = src.length;
  while (i < n) {
    const c = src[i]!;
    if (c === '\\') {
      const d = src[i + 1];
      if (d === undefined) return { ok: false, reason: 'trailing backslash' };
      if (d >= '1' && d <= '9') return { ok: false, reason: 'back-references are not allowed' };
      if (d === 'k' && src[i + 2] === '<') return { ok: false, reason: 'back-references are not allowed' };
      last = 'simple';
      i += 2;
      continue;
    }
    if (c === '[') {
      let j = i + 1;
      if (src[j] === '^') j++;
      if (src[j] === ']') j++;
      while (j < n && src[j] !== ']') j += src[j] === '\\' ? 2 : 1;
      if (j >= n) return { ok: false, reason: 'unterminated character class' };
      last = 'simple';
      i = j + 1;
      continue;
    }
    if (c === '(') {
      if (src[i + 1] === '?') {
        const a = src[i + 2];
        const b = src[i + 3];
        if (a === '=' || a === '!' || (a === '<' && (b === '=' || b === '!'))) {
          return { ok: false, reason: 'lookaround assertions are not allowed' };
        }
      }
      stack.push({ repeat: false, alt: false });
      last = null;
      i++;
      if (src[i] === '?') {
        // skip group prefix (?: or (?<name>
        if (src[i + 1] === ':') i += 2;
        else if (src[i + 1] === '<') {
          const close = src.indexOf('>', i);
          if (close < 0) return { ok: false, reason: 'bad group name' };
          i = close + 1;
        }
      }
      continue;
    }
    if (c === ')') {
      if (stack.length === 1) return { ok: false, reason: 'unbalanced parenthesis' };
      const f = stack.pop()!;
      const parent = stack[stack.length - 1]!;
      if (f.repeat) parent.repeat = true;
      if (f.alt) parent.alt = true;
      last = f;
      i++;
      continue;
    }
    if (c === '|') {
      stack[stack.length - 1]!.alt = true;
      last = null;
      i++;
      continue;
    }
    let repeating = false;
    let qlen = 0;
    if (c === '*' || c === '+') {
      repeating = true;
      qlen = 1;
    } else if (c === '?') {
      qlen = 1;
    } else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(src.slice(i, i + 16));
      if (m) {
        const lo = Number(m[1]);
        const hi = m[2] === undefined ? lo : m[3] === '' ? Infinity : Number(m[3]);
        if (lo > 255 || (hi !== Infinity && hi > 255)) return { ok: false, reason: 'quantifier bound above 255' };
        if (hi < lo) return { ok: false, reason: 'quantifier bounds out of order' };
        repeating = hi > 1;
        qlen = m[0].length;
      }
    }
    if (qlen > 0) {
      if (last === null) return { ok: false, reason: 'quantifier without a target' };
      if (repeating) {
        if (last !== 'simple' && (last.repeat || last.alt)) {
          return {
            ok: false,
            reason: last.repeat ? 'nested quantifiers are not allowed' : 'repeated alternation is not allowed',
          };
        }
        repeats++;
        if (repeats > MAX_REPEATS) return { ok: false, reason: `more than ${MAX_REPEATS} repeating quantifiers` };
        stack[stack.length - 1]!.repeat = true;
      }
      i += qlen;
      if (src[i] === '?') i++; // lazy modifier
      last = null; // a quantifier cannot be quantified again
      continue;
    }
    last = 'simple';
    i++;
  }
  if (stack.length !== 1) return { ok: false, reason: 'unbalanced parenthesis' };
  try {
    return { ok: true, re: new RegExp(src) };
  } catch (e) {
    return { ok: false, reason: `invalid regex: ${(e as Error).message}` };
  }
}
