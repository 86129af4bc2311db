// The fuzz loop, run in a worker thread so the parent can kill it when an input never returns. Before
// each execution the input is copied into shared memory; the parent reads it from there on a hang.
import { parentPort, workerData } from 'node:worker_threads';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { targets, targetNames, setCorpusQueries } from './targets.mjs';
import { Rng, mutateDns, mutateBytes, mutateRules } from './mutate.mjs';
import { makeRegexInput } from './regex-target.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
if (!parentPort || !workerData) {
  // Run directly (e.g. `tap test/fuzz`): nothing to do outside run.mjs.
  process.stdout.write('1..0 # SKIP fuzz worker: started by run.mjs\n');
  process.exit(0);
}
const { mode, seed = 1, executions = Infinity, seconds = Infinity, files = [], slowMs = 1000 } = workerData;
const ctrl = new Int32Array(workerData.ctrl);
const data = new Uint8Array(workerData.data);

function load(dir) {
  const d = path.join(HERE, 'corpus', dir);
  return fs.existsSync(d) ? fs.readdirSync(d).sort().map((f) => fs.readFileSync(path.join(d, f))) : [];
}

const corpus = { query: load('query'), answer: load('answer'), tcp: load('tcp'), rules: load('rules') };
const regexSeeds = load('regex').flatMap((b) => b.toString('utf8').split('\n').filter(Boolean));
setCorpusQueries(corpus.query);
const answerBodies = corpus.answer.map((b) => b.subarray(1));
const dnsSeeds = [...corpus.query, ...answerBodies];

function frame(msgs) {
  return Buffer.concat(msgs.flatMap((m) => { const h = Buffer.alloc(2); h.writeUInt16BE(Math.min(m.length, 0xffff)); return [h, m.subarray(0, 0xffff)]; }));
}

function makeInput(target, r) {
  switch (target) {
    case 'query': return mutateDns(r.pick(dnsSeeds), r, dnsSeeds);
    case 'answer': {
      const body = mutateDns(r.pick(answerBodies), r, answerBodies);
      return Buffer.concat([Buffer.from([r.chance(0.8) ? r.int(200) : r.int(256)]), body]);
    }
    case 'tcp': {
      const s = Buffer.alloc(4);
      s.writeUInt32LE(r.u32());
      if (r.chance(0.5)) return Buffer.concat([s, mutateBytes(r.pick(corpus.tcp).subarray(4), r)]);
      const msgs = Array.from({ length: 1 + r.int(r.chance(0.1) ? 150 : 12) }, () => (r.chance(0.9) ? mutateDns(r.pick(corpus.query), r, corpus.query) : r.bytes(r.int(3))));
      let body = frame(msgs);
      if (r.chance(0.2)) body = body.subarray(0, r.int(body.length + 1)); // a partial last frame
      if (r.chance(0.05)) body = Buffer.concat([body, Buffer.from([0xff, 0xff]), r.bytes(r.int(300))]); // a huge declared frame
      return Buffer.concat([s, body]);
    }
    case 'rules': return mutateRules(r.pick(corpus.rules), r);
    case 'regex': return makeRegexInput(r, regexSeeds);
    case 'h2': {
      const head = Buffer.alloc(5);
      head.writeUInt32LE(r.u32());
      head[4] = r.int(8);
      const body = h2Stream(head[4] + 1, r);
      return Buffer.concat([head, r.chance(0.6) ? mutateBytes(body, r) : body]);
    }
    default: throw new Error(`unknown target ${target}`);
  }
}

/** A plausible upstream byte stream for `requests` streams (ids 1, 3, ...): answers in any order, some
 *  split over DATA frames, padded, with CONTINUATION, trailers, RST_STREAM, PING, GOAWAY, SETTINGS. */
function h2Stream(requests, r) {
  const fr = (type, flags, id, payload) => {
    const h = Buffer.alloc(9);
    h.writeUIntBE(payload.length, 0, 3); h[3] = type; h[4] = flags; h.writeUInt32BE(id >>> 0, 5);
    return Buffer.concat([h, payload]);
  };
  const ct = Buffer.concat([Buffer.from([0x0f, 0x10, 23]), Buffer.from('application/dns-message')]);
  const ctHuffman = Buffer.from('0f1090' + '1d75d0620d263d4c495216a4a840e62f', 'hex');
  const frames = [];
  for (let k = 0; k < requests; k++) {
    const id = 1 + 2 * r.int(requests + 1);
    const block = Buffer.concat([Buffer.from([r.chance(0.9) ? 0x88 : r.pick([0x8d, 0x0e, 0x08])]), r.chance(0.5) ? ct : ctHuffman]);
    if (r.chance(0.2)) frames.push(fr(1, 0, id, block.subarray(0, 3)), fr(9, 0x4, id, block.subarray(3)));
    else frames.push(fr(1, 0x4 | (r.chance(0.05) ? 1 : 0), id, block));
    const body = r.bytes(r.int(r.chance(0.05) ? 5000 : 120));
    const cut = r.chance(0.3) ? r.int(body.length + 1) : body.length;
    if (cut < body.length) frames.push(fr(0, 0, id, body.subarray(0, cut)));
    const last = body.subarray(cut);
    if (r.chance(0.1)) frames.push(fr(0, 0x8, id, Buffer.concat([Buffer.from([2]), last, Buffer.alloc(2)])), fr(0, 0x1, id, Buffer.alloc(0)));
    else if (r.chance(0.05)) frames.push(fr(0, 0, id, last), fr(1, 0x5, id, Buffer.from([0x40, 1, 0x78, 1, 0x31])));
    else frames.push(fr(0, 0x1, id, last));
    if (r.chance(0.05)) frames.push(fr(3, 0, 1 + 2 * r.int(requests), Buffer.from([0, 0, 0, r.pick([7, 8, 2])])));
    if (r.chance(0.05)) frames.push(fr(6, r.int(2), 0, r.bytes(8)));
    if (r.chance(0.03)) frames.push(fr(7, 0, 0, Buffer.from([0, 0, 0, r.int(2 * requests), 0, 0, 0, 0])));
    if (r.chance(0.03)) frames.push(fr(4, 0, 0, Buffer.from([0, 3, 0, 0, 0, r.int(3)])));
    if (r.chance(0.03)) frames.push(fr(8, 0, 0, Buffer.from([0, 0, 0x10, 0])));
    // Hostile peers (issue #15 §4): floods of empty CONTINUATION / DATA / PING / SETTINGS frames, window
    // overflows, control frames on a stream, a 1xx that ends its stream.
    if (r.chance(0.02)) frames.push(fr(1, 0, id, Buffer.from([0x88])), ...Array.from({ length: r.int(40) }, () => fr(9, 0, id, Buffer.alloc(0))));
    if (r.chance(0.02)) frames.push(...Array.from({ length: r.int(1500) }, () => fr(r.pick([0, 4, 6]), 0, r.chance(0.5) ? 0 : id, r.chance(0.5) ? Buffer.alloc(0) : Buffer.alloc(8))));
    if (r.chance(0.02)) frames.push(fr(8, 0, r.chance(0.5) ? 0 : id, Buffer.from([r.pick([0, 0x7f, 0xff]), 0xff, 0xff, r.int(256)])));
    if (r.chance(0.02)) frames.push(fr(r.pick([4, 6, 7]), r.int(2), id, r.bytes(r.pick([0, 6, 8]))));
    if (r.chance(0.02)) frames.push(fr(1, 0x5, id, Buffer.from([0x08, 3, 0x31, 0x30, 0x33])));
  }
  return Buffer.concat(frames);
}

// Relative effort per target: the wire code is cheapest and most exposed.
const WEIGHTS = { query: 40, answer: 35, tcp: 10, rules: 15, h2: 10, regex: 5 };
const wheel = targetNames.flatMap((n) => Array(WEIGHTS[n] ?? 10).fill(n));

function signature(target, msg) {
  // Quoted text and numbers vary between inputs that hit the same bug.
  const m = String(msg).split('\n')[0].replace(/"(?:[^"\\]|\\.)*"/g, 'S').replace(/\{[^}]*\}/g, '{..}').replace(/\/[^ ]*\//g, '/R/').replace(/\d+/g, 'N');
  return `${target}: ${m.slice(0, 200)}`;
}

function runOne(target, input) {
  ctrl[1] = targetNames.indexOf(target);
  const n = Math.min(input.length, data.length);
  data.set(input.subarray(0, n), 0);
  ctrl[2] = n;
  const t0 = performance.now();
  let error = null;
  try { targets[target].exec(input); } catch (e) { error = e; }
  const took = performance.now() - t0;
  Atomics.add(ctrl, 0, 1);
  if (error) return { error: `${error.constructor?.name === 'Violation' ? '' : `${error.name}: `}${error.message}`, stack: String(error.stack ?? '').split('\n').slice(1, 6).join('\n') };
  if (took > slowMs) {
    const t1 = performance.now();
    try { targets[target].exec(input); } catch { /* reported above if it threw */ }
    const again = performance.now() - t1;
    if (again > slowMs) return { error: `slow: ${Math.round(Math.min(took, again))} ms for one input (bound ${slowMs} ms)` };
  }
  return null;
}

if (mode === 'replay') {
  const results = [];
  for (const f of files) {
    const input = fs.readFileSync(f.bin);
    const res = runOne(f.target, input);
    results.push({ file: f.bin, target: f.target, ok: res === null, error: res?.error ?? null });
  }
  parentPort.postMessage({ type: 'done', results });
} else {
  const r = new Rng(seed);
  const until = performance.now() + seconds * 1000;
  const perTarget = Object.fromEntries(targetNames.map((n) => [n, 0]));
  const seen = new Set();
  let i = 0;
  for (; i < executions; i++) {
    if ((i & 255) === 0) {
      if (performance.now() > until) break;
      // Let ticks and timers queued by the code under test (TCP uncork, deadlines) run, as they would.
      if ((i & 1023) === 0) await new Promise((r) => setImmediate(r));
    }
    const target = r.pick(wheel);
    const input = makeInput(target, r);
    perTarget[target]++;
    const res = runOne(target, input);
    if (res) {
      const sig = signature(target, res.error);
      if (!seen.has(sig)) {
        seen.add(sig);
        parentPort.postMessage({ type: 'finding', target, signature: sig, error: res.error, stack: res.stack, input: Buffer.from(input).toString('base64') });
      }
    }
  }
  parentPort.postMessage({ type: 'done', executions: i, perTarget });
}
