import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { loadConfigIsolated } from '../../dist/config/load-isolated.js';
import { loadConfigFile } from '../../dist/config/load.js';
import { ConfigError } from '../../dist/errors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dt-cfg-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

t.test('the worker-thread load returns exactly what an in-process load returns', async (t) => {
  const example = path.join(import.meta.dirname, '../../deploy/config.example.yaml');
  const minimal = path.join(dir, 'min.yaml');
  fs.writeFileSync(minimal, 'upstreams:\n  - url: "https://127.0.0.1:8443/dns-query"\n');
  for (const file of [example, minimal]) {
    const inProcess = loadConfigFile(file);
    const isolated = await loadConfigIsolated(file);
    t.ok(isDeepStrictEqual(isolated, inProcess), `${path.basename(file)}: same values and prototypes`);
  }
});

t.test('errors keep their kind, key and line across the thread', async (t) => {
  const bad = path.join(dir, 'bad.yaml');
  fs.writeFileSync(bad, 'upstreams:\n  - url: "https://127.0.0.1:8443/dns-query"\ncache:\n  maxTTL: 5\n');
  const e = await loadConfigIsolated(bad).catch((err) => err);
  t.ok(e instanceof ConfigError, 'a ConfigError');
  t.match(e.message, /bad\.yaml:4: unknown key "cache\.maxTTL"/);
  let direct;
  try { loadConfigFile(bad); } catch (err) { direct = err; }
  t.same({ message: e.message, file: e.file, line: e.line, keyPath: e.keyPath },
    { message: direct.message, file: direct.file, line: direct.line, keyPath: direct.keyPath }, 'the same fields as an in-process load');
  const missing = await loadConfigIsolated(path.join(dir, 'nope.yaml')).catch((err) => err);
  t.ok(missing instanceof ConfigError);
  t.match(missing.message, /cannot read config/);
});
