// Loading: YAML → schema validation → typed config with defaults. Every error names the key path and
// the line it sits on, because a config mistake found at 3 a.m. should not need a debugger.
import fs from 'node:fs';
import path from 'node:path';
import { parseDocument, LineCounter, isNode } from 'yaml';
import { Ajv, type ErrorObject } from 'ajv';
import { coreSchema } from './schema.js';
import { extensionSchemas } from './extensions.js';
import { ConfigError } from '../errors.js';
import type { Config } from './types.js';
import { applyDefaults } from './defaults.js';
import { parseHostPort } from './address.js';

let validator: ReturnType<Ajv['compile']> | null = null;
function validate() {
  if (!validator) {
    const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: false });
    validator = ajv.compile({
      type: 'object', additionalProperties: false, required: ['upstreams'],
      properties: { ...coreSchema, ...extensionSchemas() },
    });
  }
  return validator;
}

export function loadConfigFile(file: string): Config {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config ${file}: ${(e as Error).message}`, file);
  }
  return parseConfig(text, file);
}

export function parseConfig(text: string, file = '<config>'): Config {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  if (doc.errors.length) {
    const e = doc.errors[0];
    const pos = lc.linePos(e.pos[0]);
    throw new ConfigError(`${file}:${pos.line}: YAML syntax error: ${e.message.split('\n')[0]}`, file, pos.line);
  }
  const raw = doc.toJS() ?? {};
  const v = validate();
  if (!v(raw)) {
    const msgs = (v.errors ?? []).slice(0, 5).map((err: ErrorObject) => {
      const keyPath = err.instancePath.split('/').slice(1).map((k: string) => k.replace(/~1/g, '/').replace(/~0/g, '~'));
      let shown = keyPath.join('.') || '(top level)';
      if (err.keyword === 'additionalProperties') {
        const extra = (err.params as { additionalProperty: string }).additionalProperty;
        keyPath.push(extra);
        shown = keyPath.join('.');
        return lineOf(doc, lc, keyPath, file) + `unknown key "${shown}"`;
      }
      if (err.keyword === 'required') {
        const missing = (err.params as { missingProperty: string }).missingProperty;
        return lineOf(doc, lc, keyPath, file) + `missing required key "${[...keyPath, missing].join('.')}"`;
      }
      return lineOf(doc, lc, keyPath, file) + `"${shown}" ${err.message}`;
    });
    const first = v.errors?.[0];
    throw new ConfigError(msgs.join('\n'), file, undefined, first?.instancePath);
  }
  const cfg = applyDefaults(raw as Config, path.dirname(path.resolve(file)));
  checkSemantics(cfg, doc, lc, file);
  return cfg;
}

function lineOf(doc: ReturnType<typeof parseDocument>, lc: LineCounter, keyPath: (string | number)[], file: string): string {
  const keys = keyPath.map((k) => (/^\d+$/.test(String(k)) ? Number(k) : k));
  for (let n = keys.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(keys.slice(0, n), true);
    if (isNode(node) && node.range) return `${file}:${lc.linePos(node.range[0]).line}: `;
  }
  return `${file}: `;
}

/** Checks the schema cannot express: addresses that parse, files that exist. */
function checkSemantics(cfg: Config, doc: ReturnType<typeof parseDocument>, lc: LineCounter, file: string): void {
  const at = (p: (string | number)[]) => lineOf(doc, lc, p, file);
  const addr = (value: string | undefined, p: (string | number)[]) => {
    if (value === undefined) return;
    try { parseHostPort(value); } catch (e) { throw new ConfigError(`${at(p)}"${p.join('.')}" ${(e as Error).message}`, file); }
  };
  addr(cfg.listen.tproxy.udp, ['listen', 'tproxy', 'udp']);
  addr(cfg.listen.tproxy.tcp, ['listen', 'tproxy', 'tcp']);
  cfg.listen.plain.forEach((p, i) => addr(p, ['listen', 'plain', i]));
  addr(cfg.metrics.listen, ['metrics', 'listen']);
  cfg.upstreams.forEach((u, i) => {
    try { new URL(u.url); } catch { throw new ConfigError(`${at(['upstreams', i, 'url'])}"upstreams.${i}.url" is not a valid URL`, file); }
    if (u.ca && !fs.existsSync(u.ca)) throw new ConfigError(`${at(['upstreams', i, 'ca'])}"upstreams.${i}.ca" file not found: ${u.ca}`, file);
  });
  if (cfg.metrics.listen && !cfg.metrics.allowNonLoopback) {
    const { host } = parseHostPort(cfg.metrics.listen);
    if (!isLoopback(host)) {
      throw new ConfigError(`${at(['metrics', 'listen'])}"metrics.listen" ${host} is not loopback; set metrics.allowNonLoopback: true to expose metrics and admin endpoints`, file);
    }
  }
  if (cfg.cache.minTtl > cfg.cache.maxTtl) throw new ConfigError(`${at(['cache', 'minTtl'])}"cache.minTtl" is larger than cache.maxTtl`, file);
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
