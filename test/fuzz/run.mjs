#!/usr/bin/env node
// Fuzz harness (`npm run fuzz`): node test/fuzz/run.mjs [--seconds N] [--executions N] [--seed N]
//                                                      [--replay] [--no-save]
// Targets and invariants: see targets.mjs. Findings are saved as test/fuzz/crashers/<target>-<hash>.bin
// with a .json next to it (target, signature, error, status). A worker thread runs the loop; when one
// input makes no progress for --hang-ms (default 5000) the worker is killed and the input saved.
import { Worker } from 'node:worker_threads';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const CRASHERS = path.join(HERE, 'crashers');
const TARGETS = ['query', 'answer', 'tcp', 'rules', 'h2', 'regex']; // same order as targets.mjs

function runWorker(workerData, hangMs, onFinding) {
  const ctrl = new SharedArrayBuffer(16);
  const data = new SharedArrayBuffer(70_000);
  const c = new Int32Array(ctrl);
  const w = new Worker(new URL('./worker.mjs', import.meta.url), { workerData: { ...workerData, ctrl, data } });
  return new Promise((resolve, reject) => {
    let last = -1, lastChange = Date.now(), done = false;
    const dog = setInterval(() => {
      const n = Atomics.load(c, 0);
      if (n !== last) { last = n; lastChange = Date.now(); return; }
      if (Date.now() - lastChange < hangMs) return;
      clearInterval(dog);
      const len = Atomics.load(c, 2);
      const input = Buffer.from(new Uint8Array(data, 0, len));
      const target = TARGETS[Atomics.load(c, 1)] ?? 'unknown';
      onFinding?.({ target, signature: `${target}: hang`, error: `hang: no progress for ${hangMs} ms`, input: input.toString('base64') });
      done = true;
      void w.terminate();
      resolve({ executions: n, hung: true, results: [{ target, ok: false, error: 'hang' }] });
    }, 250);
    w.on('message', (m) => {
      if (m.type === 'finding') onFinding?.(m);
      else if (m.type === 'done') { done = true; clearInterval(dog); void w.terminate(); resolve(m); }
    });
    w.on('error', (e) => { clearInterval(dog); if (!done) reject(e); });
    w.on('exit', (code) => { clearInterval(dog); if (!done) reject(new Error(`fuzz worker exited with ${code}`)); });
  });
}

/** Known crashers: [{ bin, json, target, signature, status, note }]. */
export function listCrashers(dir = CRASHERS) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort().map((f) => {
    const meta = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    return { ...meta, json: path.join(dir, f), bin: path.join(dir, f.replace(/\.json$/, '.bin')) };
  });
}

export function saveFinding(f, dir = CRASHERS) {
  fs.mkdirSync(dir, { recursive: true });
  const input = Buffer.from(f.input, 'base64');
  const name = `${f.target}-${crypto.createHash('sha1').update(input).digest('hex').slice(0, 12)}`;
  const bin = path.join(dir, `${name}.bin`);
  if (!fs.existsSync(bin)) {
    fs.writeFileSync(bin, input);
    fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify({
      target: f.target, signature: f.signature, error: f.error, stack: f.stack, found: new Date().toISOString(), status: 'open',
    }, null, 2) + '\n');
  }
  return bin;
}

/** One fuzz round. Returns { executions, perTarget, findings, seconds }. New findings are saved under crashersDir. */
export async function fuzz({ executions = Infinity, seconds = 60, seed = crypto.randomInt(2 ** 31), hangMs = 5000, slowMs = 1000, save = true, crashersDir = CRASHERS } = {}) {
  const findings = [];
  const t0 = Date.now();
  // One saved crasher per signature of an open bug: found again, it is reported, not saved again. A
  // signature whose crasher is marked fixed is not "known": hitting it means a new input for the same
  // symptom (a regression or a second bug), which is saved and reported as NEW.
  const known = new Map(listCrashers().filter((c) => c.status === 'open').map((c) => [c.signature, c.bin]));
  const res = await runWorker({ mode: 'fuzz', executions, seconds, seed, slowMs }, hangMs, (f) => {
    const file = known.get(f.signature) ?? (save ? saveFinding(f, crashersDir) : null);
    findings.push({ ...f, file, known: known.has(f.signature) });
  });
  return { seed, executions: res.executions, perTarget: res.perTarget ?? {}, findings, seconds: (Date.now() - t0) / 1000, hung: Boolean(res.hung) };
}

/** Replays saved crashers; each result says whether the invariant now holds. */
export async function replay(list = listCrashers(), { hangMs = 5000, slowMs = 1000 } = {}) {
  if (list.length === 0) return [];
  // All in one worker; only if something hangs, again one worker per file so a hang hides nothing.
  const all = await runWorker({ mode: 'replay', files: list.map((c) => ({ bin: c.bin, target: c.target })), slowMs }, hangMs, null);
  if (!all.hung) return list.map((c, i) => ({ ...c, ok: all.results[i].ok, error: all.results[i].error }));
  const out = [];
  for (const c of list) {
    const res = await runWorker({ mode: 'replay', files: [{ bin: c.bin, target: c.target }], slowMs }, hangMs, null);
    out.push({ ...c, ok: res.results[0].ok, error: res.results[0].error });
  }
  return out;
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain && process.env.TAP) {
  // Picked up as a test file by `tap test/fuzz`: the round runs from fuzz.test.js instead.
  process.stdout.write('1..0 # SKIP harness entry point; see fuzz.test.js\n');
} else if (isMain) {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' }, executions: { type: 'string' }, seed: { type: 'string' }, replay: { type: 'boolean' },
      'no-save': { type: 'boolean' }, 'hang-ms': { type: 'string' },
    },
  });
  if (values.replay) {
    const res = await replay();
    for (const r of res) process.stdout.write(`${r.ok ? 'ok  ' : 'FAIL'} ${path.basename(r.bin)} [${r.status}] ${r.ok ? '' : r.error}\n`);
    process.exitCode = res.some((r) => !r.ok) ? 1 : 0;
  } else {
    const res = await fuzz({
      seconds: values.seconds ? Number(values.seconds) : (values.executions ? Infinity : 60),
      executions: values.executions ? Number(values.executions) : Infinity,
      seed: values.seed ? Number(values.seed) : undefined,
      hangMs: values['hang-ms'] ? Number(values['hang-ms']) : 5000,
      save: !values['no-save'],
    });
    process.stdout.write(`seed ${res.seed}: ${res.executions} executions in ${res.seconds.toFixed(1)} s ` +
      `(${(res.executions / res.seconds).toFixed(0)}/s) ${JSON.stringify(res.perTarget)}\n`);
    for (const f of res.findings) process.stdout.write(`${f.known ? 'known ' : 'NEW   '} ${f.signature}\n  ${f.error}\n  crasher: ${f.file ?? '(not saved)'}\n`);
    process.exitCode = res.findings.length ? 1 : 0;
  }
}
