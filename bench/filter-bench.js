#!/usr/bin/env node
// Filter engine benchmark (not a test).
//   npx tsc -b   (or compile src/filter)   then
//   node --expose-gc bench/filter-bench.js [N=1000000] [format=domains|hosts|adblock] [lookups=2000000]
//   node bench/filter-bench.js --regex-only [--compare-dir DIR]
// Part 1, regex rules: the cost of one match with each engine we could use (re2js, which we use;
// JavaScript's backtracking RegExp, which we used; re2-wasm and native re2 when --compare-dir names a
// node_modules folder holding them, as they are not dependencies), on ordinary and hostile names, and
// what regex rules add to decide().
// Part 2, lists: list load time (read + parse + build), RSS delta over the process before the load,
// table bytes, and decide() cost per lookup over a mix of exact hits, subdomain hits, misses and
// exceptions; groupOf() and inspectAnswer() cost; the blocked-answer write against a cache-hit style copy.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { RE2JS } from 're2js';
import { FilterManager, buildEngine, checkRegex, writeBlockedAnswer } from '../dist/filter/index.js';
import { domainAt, writeSynthetic } from '../rules/gen-synthetic.js';

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: { 'regex-only': { type: 'boolean' }, 'compare-dir': { type: 'string' } },
});
process.argv.splice(2, Infinity, ...positionals);

// ------------------------------------------------------------------ part 1: regex rules
{
  // Rules of the shapes found in published DNS block lists, and two hostile ones from issue #15.
  const ordinary = [
    '^ad[0-9]+\\.', '(^|\\.)doubleclick\\.net$', '^(.+[-_.])??adse?rv(er?|ice)?s?[0-9]*[-.]', '^track(ing)?[0-9]*\\.',
    '^(.+[-_.])??telemetry[-_.]', '^analytics?\\.', '^metrics?[0-9]*\\.', '(^|\\.)pixel\\.', '^stats?\\.[a-z0-9-]+\\.(com|net)$', '^[a-z0-9]{32}\\.',
  ];
  const hostile = ['[a-z.]*[a-z.]*[a-z.]*[a-z.]*!', '^(a+)+b$'];
  const names = {
    'ordinary (~20 chars)': ['www.example.com', 'cdn.images.example.net', 'ad12.example.org', 'api.service.example.io'],
    'long (253 chars)': ['a.'.repeat(126) + 'x', 'b'.repeat(60) + '.' + 'c'.repeat(60) + '.' + 'd'.repeat(60) + '.' + 'e'.repeat(70)],
    'escaped (~1,000 chars)': ['a\\000'.repeat(200), 'a.'.repeat(499) + 'ab'],
  };
  const engines = [
    ['re2js (used)', (p) => RE2JS.compile(p)],
    ['RegExp (backtracking, before)', (p) => new RegExp(p)],
  ];
  if (flags['compare-dir']) {
    const req = createRequire(join(flags['compare-dir'], 'x.js'));
    for (const [label, name, make] of [
      ['re2-wasm', 're2-wasm', (m) => (p) => new m.RE2(p, 'u')],
      ['re2 (native addon)', 're2', (m) => (p) => new m(p, 'u')],
    ]) {
      try {
        engines.push([label, make(req(name))]);
      } catch (e) {
        console.log(`${label}: not loadable from ${flags['compare-dir']} (${e.code ?? e.message})`);
      }
    }
  }
  const perMatch = (re, list, budgetMs) => {
    // As many rounds as fit in the budget (at least one), so a slow engine cannot stall the bench.
    let n = 0;
    const t0 = performance.now();
    do {
      for (const name of list) re.test(name);
      n += list.length;
    } while (performance.now() - t0 < budgetMs);
    return ((performance.now() - t0) * 1e6) / n;
  };
  const fmt = (ns) => (ns >= 1e6 ? `${(ns / 1e6).toFixed(1)} ms` : ns >= 1e4 ? `${(ns / 1e3).toFixed(1)} µs` : `${ns.toFixed(0)} ns`);
  console.log(`regex rules: cost of one match (mean over the ${ordinary.length} ordinary rules; hostile rules one by one)`);
  const head = ['engine', 'compile', ...Object.keys(names).map((k) => `ordinary rules, ${k}`), ...hostile.map((h) => `/${h}/, 1,000 chars`)];
  const rows = [head];
  for (const [label, make] of engines) {
    const t0 = performance.now();
    const compiled = ordinary.map(make);
    const compileUs = ((performance.now() - t0) * 1000) / ordinary.length;
    const row = [label, `${compileUs.toFixed(0)} µs`];
    for (const list of Object.values(names)) {
      for (const re of compiled) perMatch(re, list, 2); // warm-up
      row.push(fmt(compiled.reduce((a, re) => a + perMatch(re, list, 40), 0) / compiled.length));
    }
    for (const h of hostile) {
      if (label.startsWith('RegExp')) {
        row.push('not run (exponential / polynomial: seconds to hours)');
        continue;
      }
      const re = make(h);
      row.push(fmt(perMatch(re, [names['escaped (~1,000 chars)'][1], 'a'.repeat(999) + 'c'], 100)));
    }
    rows.push(row);
  }
  const widths = head.map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  for (const r of rows) console.log(r.map((c, i) => String(c).padEnd(widths[i])).join('  '));
  const sizes = ordinary.map((p) => checkRegex(p).size);
  console.log(`compiled program sizes of the ordinary rules: ${sizes.join(', ')} instructions (cap ${256})`);

  // What regex rules add to decide(): a 100,000-domain list alone, then with the ordinary rules.
  const lines = Array.from({ length: 100_000 }, (_, i) => domainAt(i)).join('\n');
  const plain = await buildEngine({ filter: { lists: [{ name: 'l', path: 'l' }] } }, [{ name: 'l', data: Buffer.from(lines) }]);
  const withRules = (rules) => buildEngine({ filter: { lists: [{ name: 'l', path: 'l' }] } }, [{ name: 'l', data: Buffer.from(lines + '\n' + rules.map((p) => `/${p}/`).join('\n')) }]);
  const withRx = await withRules(ordinary);
  // 1,000 rules: the ordinary ones with a distinct word in each (as large regex lists look)
  const thousand = Array.from({ length: 1000 }, (_, i) => ordinary[i % ordinary.length].replace(/[a-z]{3,}/, (w) => `${w}${i}`));
  const withThousand = await withRules(thousand);
  const qs = Array.from({ length: 4096 }, (_, i) => Buffer.from(i & 1 ? domainAt(i * 7) : domainAt(200_000 + i), 'latin1').toString('latin1'));
  const decideNs = (eng) => {
    for (let i = 0; i < 200_000; i++) eng.decide(qs[i & 4095], 1, 0);
    let best = Infinity;
    for (let r = 0; r < 5; r++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < 500_000; i++) eng.decide(qs[i & 4095], 1, 0);
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / 500_000);
    }
    return best;
  };
  console.log(`decide(), 100,000 domains, half hits: ${decideNs(plain).toFixed(0)} ns without regex rules; ` +
    `${decideNs(withRx).toFixed(0)} ns with the ${ordinary.length} ordinary regex rules; ${decideNs(withThousand).toFixed(0)} ns with 1,000 ` +
    '(a name that no rule matches pays one pass of the union of the rules, src/filter/engine.ts groupRegexGate)');
  console.log('');
}
if (flags['regex-only']) process.exit(0);

// ------------------------------------------------------------------ part 2: lists
const N = Number(process.argv[2] ?? 1_000_000);
const FORMAT = process.argv[3] ?? 'domains';
const LOOKUPS = Math.max(1_000_000, Number(process.argv[4] ?? 2_000_000));
const gc = globalThis.gc;
if (!gc) console.warn('warning: run with --expose-gc for meaningful RSS figures');

const dir = mkdtempSync(join(tmpdir(), 'filter-bench-'));
const listPath = join(dir, 'synthetic.txt');
await writeSynthetic(listPath, N, FORMAT);

// exceptions: every 100th listed domain is allowed again
const allow = [];
for (let i = 0; i < N; i += 100) allow.push(domainAt(i));
const cfg = {
  filter: {
    mode: 'nxdomain',
    lists: [{ name: 'synthetic', path: listPath, hosts: 'subdomains' }],
    allow,
  },
};

const mb = (b) => (b / 1048576).toFixed(1);
const settle = async () => {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 20));
  }
};

await settle();
const rss0 = process.memoryUsage().rss;
const t0 = performance.now();
const mgr = await FilterManager.create(cfg, { stateDir: join(dir, 'state'), baseDir: dir });
const loadMs = performance.now() - t0;
await settle();
const rss1 = process.memoryUsage().rss;
const eng = mgr.engine;
const info = eng.info;

// query mix: 35% exact hits, 20% subdomain hits, 35% misses, 10% exceptions
const Q = 1 << 16;
const queries = new Array(Q);
// flat one-byte strings, like names decoded from packets
const flat = (s) => Buffer.from(s, 'latin1').toString('latin1');
let seed = 12345;
const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
for (let i = 0; i < Q; i++) {
  const r = rnd();
  const k = Math.floor(rnd() * N);
  if (r < 0.35) queries[i] = flat(domainAt(k % 100 === 0 ? k + 1 : k));
  else if (r < 0.55) queries[i] = flat('x' + (i % 97) + '.www.' + domainAt(k % 100 === 0 ? k + 1 : k));
  else if (r < 0.9) queries[i] = flat(domainAt(N + k));
  else queries[i] = flat(domainAt(Math.floor(k / 100) * 100));
}
// each timing: best of ROUNDS runs (the figure least disturbed by other load on the machine)
const ROUNDS = 5;
const best = (fn) => {
  let b = Infinity;
  for (let r = 0; r < ROUNDS; r++) b = Math.min(b, fn());
  return b;
};
let blocked = 0;
for (let i = 0; i < 200_000; i++) eng.decide(queries[i & (Q - 1)], 1, 0); // warm-up
const lookupNs = best(() => {
  blocked = 0;
  const t1 = process.hrtime.bigint();
  for (let i = 0; i < LOOKUPS; i++) if (eng.decide(queries[i & (Q - 1)], 1, 0) !== null) blocked++;
  return Number(process.hrtime.bigint() - t1) / LOOKUPS;
});

const timeSet = (gen) => {
  const qs = Array.from({ length: Q }, (_, i) => flat(gen(i)));
  for (let i = 0; i < 100_000; i++) eng.decide(qs[i & (Q - 1)], 1, 0);
  return best(() => {
    const t = process.hrtime.bigint();
    for (let i = 0; i < 1_000_000; i++) eng.decide(qs[i & (Q - 1)], 1, 0);
    return Number(process.hrtime.bigint() - t) / 1_000_000;
  });
};
const hitNs = timeSet((i) => domainAt((i * 7919 + 1) % N || 1));
const missNs = timeSet((i) => domainAt(N + i * 13));
const deepNs = timeSet((i) => `a.b.c.d.${domainAt((i * 31 + 3) % N || 3)}`);
const exceptNs = timeSet((i) => domainAt(((i * 7) % (N / 100 | 0)) * 100));

// answer writing: blocked answer vs a response-cache hit
const query = Buffer.from('12340100000100000000000103616473076578616d706c6503636f6d0000010001', 'hex');
const qEnd = query.length;
const out = Buffer.alloc(1232);
const d = eng.decide(domainAt(1), 1, 0);
const W = 2_000_000;
const writeNs = best(() => {
  const t = process.hrtime.bigint();
  for (let i = 0; i < W; i++) writeBlockedAnswer(query, 0, query.length, qEnd, 1, false, false, d, out, 0);
  return Number(process.hrtime.bigint() - t) / W;
});
// cache-hit model: a Map keyed by qname+qtype, copy the stored response, patch the ID
const responses = new Map();
for (let i = 0; i < Q; i++) responses.set(queries[i] + '/1', Buffer.alloc(80, i & 255));
const cacheNs = best(() => {
  const t = process.hrtime.bigint();
  for (let i = 0; i < W; i++) {
    const v = responses.get(queries[i & (Q - 1)] + '/1');
    v.copy(out, 0);
    out[0] = query[0];
    out[1] = query[1];
  }
  return Number(process.hrtime.bigint() - t) / W;
});
const pathNs = best(() => {
  const t = process.hrtime.bigint();
  for (let i = 0; i < W; i++) {
    const dd = eng.decide(queries[i & (Q - 1)], 1, 0);
    if (dd !== null && dd.kind === 'block') writeBlockedAnswer(query, 0, query.length, qEnd, 1, false, false, dd, out, 0);
  }
  return Number(process.hrtime.bigint() - t) / W;
});

// client group lookup (moved here from test/filter/groups.test.js): four groups, v4 and v6 clients
const grouped = await buildEngine({ groups: [
  { name: 'lab', clients: ['192.168.1.128/25', 'fd00:1::/64'] }, { name: 'lan', clients: ['192.168.1.0/24', '10.0.0.7', 'fd00::/16'] },
  { name: 'any6', clients: ['::/0'] }, { name: 'phone', clients: ['AA:BB:CC:DD:EE:FF'] },
] }, []);
const v4client = Uint8Array.of(192, 168, 1, 5);
const v6client = Buffer.from('20010db8000000000000000000000001', 'hex');
let groupSum = 0;
const groupNs = best(() => {
  const t = process.hrtime.bigint();
  for (let i = 0; i < 1_000_000; i++) groupSum += grouped.groupOf(4, v4client, 0) + grouped.groupOf(6, v6client, 0);
  return Number(process.hrtime.bigint() - t) / 2_000_000;
});

// CNAME inspection of hostile answers (moved here from test/filter/answers.test.js): random bytes
// claiming 50 answers, and a CNAME whose name is a compression pointer to itself
const hostileAnswers = [];
let hseed = 0x2545f491;
for (let i = 0; i < 256; i++) {
  const g = Buffer.alloc(512);
  for (let j = 0; j < g.length; j++) g[j] = (hseed = (Math.imul(hseed, 1103515245) + 12345) >>> 0) >>> 24;
  g[6] = 0;
  g[7] = 50;
  hostileAnswers.push(g);
}
const inspectNs = best(() => {
  const t = process.hrtime.bigint();
  for (let i = 0; i < 200_000; i++) eng.inspectAnswer(hostileAnswers[i & 255], 512, 0);
  return Number(process.hrtime.bigint() - t) / 200_000;
});

// full rebuild cost (what a list refresh or SIGHUP costs)
const tr = performance.now();
await mgr.reload();
const reloadMs = performance.now() - tr;

const rows = [
  ['domains listed', N.toLocaleString('en-US') + ` (${FORMAT})`],
  ['exceptions', allow.length.toLocaleString('en-US')],
  ['table entries', info.entries.toLocaleString('en-US')],
  ['load time (read+parse+build)', `${loadMs.toFixed(0)} ms (engine build ${eng.buildMs.toFixed(0)} ms)`],
  ['RSS before / after load', `${mb(rss0)} MB / ${mb(rss1)} MB`],
  ['RSS delta', `${mb(rss1 - rss0)} MB`],
  ['table + arena bytes', `${mb(info.tableBytes)} MB`],
  [`decide() mixed, ${LOOKUPS.toLocaleString('en-US')} lookups`, `${lookupNs.toFixed(0)} ns/lookup (${((blocked / LOOKUPS) * 100).toFixed(0)}% blocked)`],
  ['decide() exact hit', `${hitNs.toFixed(0)} ns`],
  ['decide() miss', `${missNs.toFixed(0)} ns`],
  ['decide() 4 extra labels', `${deepNs.toFixed(0)} ns`],
  ['decide() exception', `${exceptNs.toFixed(0)} ns`],
  ['writeBlockedAnswer (nxdomain+SOA)', `${writeNs.toFixed(0)} ns`],
  ['Map response-cache model (get+copy)', `${cacheNs.toFixed(0)} ns`],
  ['decide + write, mixed queries', `${pathNs.toFixed(0)} ns`],
  ['groupOf() v4 + v6, 4 groups', `${groupNs.toFixed(0)} ns per call`],
  ['inspectAnswer() on random 512-byte answers', `${inspectNs.toFixed(0)} ns`],
  ['full rebuild (reload)', `${reloadMs.toFixed(0)} ms`],
];
const w = Math.max(...rows.map((r) => r[0].length));
console.log(`node ${process.version}, ${process.arch}; timings are best of ${ROUNDS} rounds`);
for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);

mgr.close();
rmSync(dir, { recursive: true, force: true });
