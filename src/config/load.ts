// Loading: YAML → schema validation → typed config with defaults → semantic checks of every part.
// Every error names the file, the line and the key path, because a config mistake found at 3 a.m.
// should not need a debugger. All problems are reported at once, not just the first.
import fs from 'node:fs';
import path from 'node:path';
import { parseDocument, LineCounter, isNode, isMap } from 'yaml';
import { Ajv, type ErrorObject } from 'ajv';
import { coreSchema } from './schema.js';
import { ConfigError } from '../errors.js';
import type { Config } from './types.js';
import { applyDefaults } from './defaults.js';
import type { ConfigPart, KeyPath } from './part.js';
import { checkCore, isLoopback } from './core-check.js';
import { didYouMean } from './suggest.js';
import { configParts } from '../config-parts.js';

export { isLoopback };

/** Shown problems per error; the rest are counted. */
const MAX_SHOWN = 12;

const validators = new WeakMap<readonly ConfigPart[], ReturnType<Ajv['compile']>>();
function validatorFor(parts: readonly ConfigPart[]) {
  let v = validators.get(parts);
  if (!v) {
    const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: false, verbose: true });
    const properties: Record<string, object> = { ...coreSchema };
    for (const p of parts) Object.assign(properties, p.schema ?? {});
    v = ajv.compile({ type: 'object', additionalProperties: false, required: ['upstreams'], properties });
    validators.set(parts, v);
  }
  return v;
}

export function loadConfigFile(file: string, parts: readonly ConfigPart[] = configParts()): Config {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError(`cannot read config ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`, file);
  }
  return parseConfig(text, file, parts);
}

/** `keyInMessage`: the message already names the key ("unknown key \"x.y\""). */
interface Issue { path: KeyPath; message: string; keyInMessage?: boolean }

export function parseConfig(text: string, file = '<config>', parts: readonly ConfigPart[] = configParts()): Config {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    const e = doc.errors[0];
    const pos = lc.linePos(e.pos[0]);
    throw new ConfigError(`${file}:${pos.line}: YAML syntax error: ${e.message.split('\n')[0]}`, file, pos.line);
  }
  const raw = doc.toJS() ?? {};
  const fail = (issues: Issue[]): never => {
    const lines = issues.map((i) => ({ ...i, line: lineOf(doc, lc, i.path) }));
    const shown = lines.slice(0, MAX_SHOWN).map((i) => `${file}:${i.line ?? '?'}: ${i.path.length && !i.keyInMessage ? `"${i.path.join('.')}" ` : ''}${i.message}`);
    if (lines.length > MAX_SHOWN) shown.push(`(${lines.length - MAX_SHOWN} more)`);
    throw new ConfigError(shown.join('\n'), file, lines[0].line, lines[0].path.join('.'));
  };
  if (typeof raw !== 'object' || Array.isArray(raw)) fail([{ path: [], message: 'the config must be a mapping of keys (listen:, upstreams:, ...)' }]);
  const v = validatorFor(parts);
  if (!v(raw)) fail(schemaIssues(v.errors ?? []));
  const cfg = applyDefaults(raw as Config, path.dirname(path.resolve(file)));
  const issues: Issue[] = [];
  const report = (p: KeyPath, message: string) => { issues.push({ path: p, message }); };
  checkCore(cfg, report);
  for (const part of parts) {
    try {
      part.check?.(cfg, report);
    } catch (e) {
      // A check is not supposed to throw; if it does, it still names itself rather than crash the load.
      report([], `${part.name} check failed: ${(e as Error).message}`);
    }
  }
  if (issues.length) fail(issues);
  return cfg;
}

/** One readable problem per key path from ajv's errors (oneOf/anyOf produce one per branch). */
function schemaIssues(errors: ErrorObject[]): Issue[] {
  const byPath = new Map<string, Issue & { rank: number }>();
  for (const err of errors) {
    const keyPath: (string | number)[] = err.instancePath.split('/').slice(1)
      .map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'))
      .map((k) => (/^\d+$/.test(k) ? Number(k) : k));
    let issue: Issue;
    let rank = 1;
    if (err.keyword === 'additionalProperties') {
      const extra = (err.params as { additionalProperty: string }).additionalProperty;
      const known = Object.keys((err.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      issue = { path: [...keyPath, extra], keyInMessage: true, message: `unknown key "${[...keyPath, extra].join('.')}"${didYouMean(extra, known)}${known.length && known.length <= 12 && !didYouMean(extra, known) ? `; allowed: ${known.join(', ')}` : ''}` };
      rank = 0;
    } else if (err.keyword === 'required') {
      const missing = (err.params as { missingProperty: string }).missingProperty;
      issue = { path: [...keyPath, missing], keyInMessage: true, message: `missing required key "${[...keyPath, missing].join('.')}"` };
      rank = 0;
    } else if (err.keyword === 'enum') {
      const allowed = (err.params as { allowedValues: unknown[] }).allowedValues;
      const got = String(err.data);
      issue = { path: keyPath, message: `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}${didYouMean(got, allowed.map(String))}` };
      rank = 0;
    } else if (err.keyword === 'oneOf' || err.keyword === 'anyOf') {
      issue = { path: keyPath, message: `${err.message}${(err.parentSchema as { description?: string } | undefined)?.description ? ` (${(err.parentSchema as { description: string }).description})` : ''}` };
      rank = 2;
    } else {
      issue = { path: keyPath, message: err.message ?? err.keyword };
    }
    const key = JSON.stringify(issue.path);
    const had = byPath.get(key);
    if (!had || rank < had.rank) byPath.set(key, { ...issue, rank });
  }
  // A oneOf/anyOf failure whose branch errors were reported at a deeper path adds nothing.
  const all = [...byPath.values()];
  return all.filter((i) => i.rank < 2 || !all.some((o) => o !== i && o.path.length > i.path.length && i.path.every((k, n) => o.path[n] === k)));
}

/** The line of the deepest node of `keyPath` present in the document (1-based), or undefined. */
function lineOf(doc: ReturnType<typeof parseDocument>, lc: LineCounter, keyPath: KeyPath): number | undefined {
  for (let n = keyPath.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(keyPath.slice(0, n), true);
    if (isNode(node) && node.range) return lc.linePos(node.range[0]).line;
    // A key whose value is null (`cahce:`) has no value node: use the key's own position.
    if (n > 0 && n === keyPath.length) {
      const parent = n === 1 ? doc.contents : doc.getIn(keyPath.slice(0, n - 1), true);
      if (isMap(parent)) {
        const pair = parent.items.find((it) => isNode(it.key) && (it.key as { value?: unknown }).value === keyPath[n - 1]);
        if (pair && isNode(pair.key) && pair.key.range) return lc.linePos(pair.key.range[0]).line;
      }
    }
  }
  return undefined;
}
