#!/usr/bin/env node
// node bench/hit-path.mjs: the JS cost of a cache hit through the real chain (validate → cache →
// answer sink), without sockets: what a query costs us before the kernel is involved.
import dnsPacket from 'dns-packet';
import { ContextPool } from '../dist/pipeline/context.js';
import { ValidateStage } from '../dist/pipeline/validate.js';
import { CacheStage } from '../dist/pipeline/cache-stage.js';
import { AnswerSender } from '../dist/pipeline/finish.js';
import { buildChain, ChainRef } from '../dist/pipeline/build.js';
import { PacketCache } from '../dist/cache/packet-cache.js';
import { ServerCounters } from '../dist/metrics/counters.js';
import { AnswerInfo, analyzeAnswer } from '../dist/dns/answer.js';
import { cacheKey, readQuery, ParsedQuery } from '../dist/dns/wire.js';

const N = 1000;
const queries = Array.from({ length: N }, (_, i) => dnsPacket.encode({ type: 'query', id: i, flags: 256, questions: [{ type: 'A', name: `h${i}.wild.test` }] }));
const pool = new ContextPool(1000);
const counters = new ServerCounters();
const sender = new AnswerSender(pool, counters);
const ref = new ChainRef();
const cache = new PacketCache({});
const tx = Buffer.alloc(4096);
let sent = 0;
const responder = { transport: 'udp', send(_c, wire, off, len) { for (let i = 0; i < len; i++) tx[i] = wire[off + i]; sent++; }, describe() { return {}; } };
const chain = buildChain({ validate: new ValidateStage(ref.respond, (c) => sender.drop(c)), cache: new CacheStage(cache, ref.respond, pool, responder),
  forward: { name: 'forward', query() { throw new Error('miss in a hit benchmark'); } } }, sender);
ref.chain = chain;
// Fill the cache.
const q = new ParsedQuery(); const info = new AnswerInfo();
for (let i = 0; i < N; i++) {
  const name = `h${i}.wild.test`;
  readQuery(queries[i], 0, queries[i].length, q);
  const ans = dnsPacket.encode({ type: 'response', id: 0, flags: 0x8180, questions: [{ type: 'A', name }], answers: [{ type: 'A', name, ttl: 300, data: '192.0.2.20' }] });
  analyzeAnswer(ans, ans.length, queries[i], 0, q, info);
  cache.store(cacheKey(queries[i], 0, q, 0), ans, ans.length, info);
}
const meta = new Int32Array(16);
function one(i) {
  const ctx = pool.acquire();
  ctx.responder = responder;
  ctx.wallStarted = wall;
  for (let k = 0; k < 16; k++) ctx.meta[k] = meta[k];
  const b = queries[i % N];
  for (let k = 0; k < b.length; k++) ctx.buf[k] = b[k];
  ctx.len = b.length;
  chain.run(ctx);
}
// The UDP listener reads the clock once per receive batch; so does this loop, every 32 queries.
let wall = Date.now();
for (let i = 0; i < 200_000; i++) { if ((i & 31) === 0) wall = Date.now(); one(i); }
const rounds = 2_000_000;
const t0 = process.hrtime.bigint();
for (let i = 0; i < rounds; i++) { if ((i & 31) === 0) wall = Date.now(); one(i); }
const ns = Number(process.hrtime.bigint() - t0) / rounds;
console.log(JSON.stringify({ nsPerHit: +ns.toFixed(0), hits: cache.hits, sent }));
