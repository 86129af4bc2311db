// Each stage alone, with a fake `next` and a recording `respond`.
import t from 'tap';
import { ValidateStage } from '../../dist/pipeline/validate.js';
import { CacheStage } from '../../dist/pipeline/cache-stage.js';
import { ForwardStage, buildUpstreamQuery } from '../../dist/pipeline/forward.js';
import { ContextPool, QueryContext } from '../../dist/pipeline/context.js';
import { Chain } from '../../dist/pipeline/chain.js';
import { PacketCache } from '../../dist/cache/packet-cache.js';
import { UpstreamPool } from '../../dist/upstream/pool.js';
import { UpstreamStats } from '../../dist/upstream/types.js';
import { readQuery } from '../../dist/dns/wire.js';
import { query, answer, ctxFor, decodeAnswer, dnsPacket, parsed } from '../helpers.js';

function recorder() {
  const answered = [];
  return { answered, respond: (ctx) => answered.push(decodeAnswer(ctx)) };
}

t.test('validate: passes good queries on, answers FORMERR, drops responses', async (t) => {
  const r = recorder();
  const dropped = [];
  const stage = new ValidateStage(r.respond, (c) => dropped.push(c));
  let passed = 0;
  const next = () => passed++;
  const mk = (buf) => { const c = new QueryContext(); c.load(buf, 0, buf.length); c.responder = { transport: 'udp' }; return c; };
  stage.query(mk(query('a.example', 'A', { edns: true, udpSize: 4096 })), next);
  t.equal(passed, 1);
  const bad = query('a.example'); bad[5] = 2;
  stage.query(mk(bad), next);
  t.equal(r.answered[0].rcode, 'FORMERR');
  const resp = query('a.example'); resp[2] |= 0x80;
  stage.query(mk(resp), next);
  t.equal(dropped.length, 1);
  t.equal(passed, 1, 'nothing malformed reached next');
  const c = mk(query('a.example', 'A', { edns: true, udpSize: 4096 }));
  stage.query(c, next);
  t.equal(c.maxReply, 1232, 'EDNS size capped at the server maximum');
  const c2 = mk(query('a.example'));
  stage.query(c2, next);
  t.equal(c2.maxReply, 512, '512 without EDNS');
});

t.test('cache: 100 identical misses reach next once; all get their own ID and case', async (t) => {
  const r = recorder();
  const pool = new ContextPool(1000);
  const cache = new PacketCache({}, () => 1000);
  const stage = new CacheStage(cache, r.respond, pool, { transport: 'internal', send() {} }, () => 1000);
  const forwarded = [];
  const ctxs = [];
  for (let i = 0; i < 100; i++) {
    const ctx = ctxFor(query(i % 2 ? 'CoAl.example' : 'coal.EXAMPLE', 'A', { id: i }));
    ctx.depth = 1;
    ctxs.push(ctx);
    stage.query(ctx, (c) => forwarded.push(c));
  }
  t.equal(forwarded.length, 1, 'one upstream query');
  t.equal(cache.coalesced, 99);
  const leader = forwarded[0];
  const ans = answer('coal.example', 'A', [{ type: 'A', name: 'coal.example', ttl: 60, data: '192.0.2.9' }]);
  ans[0] = leader.buf[0]; ans[1] = leader.buf[1];
  leader.setAnswer(ans, 0, ans.length);
  stage.answer(leader);
  t.equal(r.answered.length, 99, 'every waiter answered');
  t.ok(r.answered.every((p) => p.answers[0]?.data === '192.0.2.9'));
  const ids = new Set(r.answered.map((p) => p.id));
  t.equal(ids.size, 99, 'each waiter has its own ID');
  t.ok(r.answered.some((p) => p.questions[0].name === 'CoAl.example') && r.answered.some((p) => p.questions[0].name === 'coal.EXAMPLE'), 'each keeps its case');
  // A later identical query is a hit and never reaches next.
  const hit = ctxFor(query('COAL.example', 'A', { id: 999 }));
  stage.query(hit, () => forwarded.push(hit));
  t.equal(forwarded.length, 1);
  t.equal(r.answered.at(-1).id, 999);
  t.equal(cache.hits, 1);
});

t.test('cache: serves stale (TTL 30, EDE 3) when the upstream failed', async (t) => {
  let now = 0;
  const r = recorder();
  const pool = new ContextPool(10);
  const cache = new PacketCache({}, () => now);
  const stage = new CacheStage(cache, r.respond, pool, { transport: 'internal', send() {} }, () => now);
  const first = ctxFor(query('st.example', 'A', { edns: true }));
  stage.query(first, () => {});
  const ans = answer('st.example', 'A', [{ type: 'A', name: 'st.example', ttl: 10, data: '192.0.2.3' }]);
  first.setAnswer(ans, 0, ans.length);
  stage.answer(first);
  now = 60_000;
  const second = ctxFor(query('st.example', 'A', { edns: true }));
  let forwarded = 0;
  stage.query(second, () => forwarded++);
  t.equal(forwarded, 1, 'expired: goes upstream');
  const sf = Buffer.from(dnsPacket.encode({ type: 'response', id: second.q.id, flags: 2, questions: [{ type: 'A', name: 'st.example' }] }));
  second.upstreamFailed = true;
  second.setAnswer(sf, 0, sf.length);
  stage.answer(second);
  const p = decodeAnswer(second);
  t.equal(p.rcode, 'NOERROR');
  t.equal(p.answers[0].ttl, 30);
  t.equal(second.cacheStatus, 'stale');
  t.same(p.additionals[0].options.map((o) => o.code), [15], 'EDE present');
});

function fakeUpstream(name, behave) {
  return {
    name, stats: new UpstreamStats(), healthy: true, sent: 0,
    send(q, ctx, handler) { this.sent++; behave(q, ctx, handler, this); },
    close() {},
  };
}

t.test('forward: fails over, validates answers, ends every query', async (t) => {
  const r = recorder();
  const good = (q, ctx, h, self) => {
    t.equal(q[0] | q[1], 0, 'ID 0 on the wire');
    const a = answer(ctx.q.qtype === 1 ? 'fw.example' : 'x', 'A', [{ type: 'A', name: 'fw.example', ttl: 5, data: '192.0.2.4' }]);
    setImmediate(() => h.onUpstreamResult(ctx, self, a, null, 1));
  };
  const broken = (q, ctx, h, self) => setImmediate(() => h.onUpstreamResult(ctx, self, null, 'reset', 1));
  const liar = (q, ctx, h, self) => setImmediate(() => h.onUpstreamResult(ctx, self, answer('other.example', 'A', []), null, 1));
  const a = fakeUpstream('a', broken), b = fakeUpstream('b', liar), c = fakeUpstream('c', good);
  // No exploration: this checks failover in order (exploration has its own test in upstream/pool).
  const stage = new ForwardStage(new UpstreamPool([a, b, c], { explore: 0 }), r.respond, { timeoutMs: 2000, maxInflight: 10, ecs: 'strip', paddingBlock: 128 });
  const ctx = ctxFor(query('fw.example', 'A', { id: 31337 }));
  await new Promise((resolve) => { stage.query(ctx, () => {}); const i = setInterval(() => { if (r.answered.length) { clearInterval(i); resolve(); } }, 5); });
  t.equal(r.answered[0].answers[0].data, '192.0.2.4');
  t.equal(r.answered[0].id, 31337, 'client ID restored');
  t.same([a.sent, b.sent, c.sent], [1, 1, 1]);
  t.equal(stage.invalidAnswers, 1, 'a wrong question is an upstream error');
  t.equal(stage.inflight, 0);

  const r2 = recorder();
  const all = new ForwardStage(new UpstreamPool([fakeUpstream('d', broken)]), r2.respond, { timeoutMs: 2000, maxInflight: 10, ecs: 'strip', paddingBlock: 0 });
  const ctx2 = ctxFor(query('fw.example', 'A', { edns: true }));
  await new Promise((resolve) => { all.query(ctx2, () => {}); const i = setInterval(() => { if (r2.answered.length) { clearInterval(i); resolve(); } }, 5); });
  t.equal(r2.answered[0].rcode, 'SERVFAIL');
  t.same(r2.answered[0].additionals[0].options.map((o) => o.data.readUInt16BE(0)), [23], 'EDE 23 Network Error');

  const r3 = recorder();
  const capped = new ForwardStage(new UpstreamPool([fakeUpstream('e', () => {})]), r3.respond, { timeoutMs: 2000, maxInflight: 1, ecs: 'strip', paddingBlock: 0 });
  capped.query(ctxFor(query('x1.example')), () => {});
  capped.query(ctxFor(query('x2.example')), () => {});
  t.equal(r3.answered[0].rcode, 'SERVFAIL', 'over the in-flight cap: SERVFAIL at once');
  t.equal(capped.overCapacity, 1);
});

t.test('upstream query: ECS stripped, padded to the block size', async (t) => {
  const buf = query('pad.example', 'A', { edns: true, options: [{ code: 8, family: 1, sourcePrefixLength: 24, scopePrefixLength: 0, ip: '192.0.2.0' }] });
  const ctx = ctxFor(buf);
  const out = buildUpstreamQuery(ctx, { ecs: 'strip', paddingBlock: 128 });
  t.equal(out.length % 128, 0, 'padded');
  const p = dnsPacket.decode(out);
  t.equal(p.id, 0);
  const codes = p.additionals[0].options.map((o) => o.code);
  t.notOk(codes.includes(8), 'ECS stripped');
  t.ok(codes.includes(12), 'padding option');
  const kept = dnsPacket.decode(buildUpstreamQuery(ctx, { ecs: 'pass', paddingBlock: 0 }));
  t.ok(kept.additionals[0].options.some((o) => o.code === 8), 'ECS passed when configured');
  const noEdns = dnsPacket.decode(buildUpstreamQuery(ctxFor(query('x.example')), { ecs: 'strip', paddingBlock: 128 }));
  t.equal(noEdns.additionals[0].type, 'OPT', 'OPT added so the upstream can pad and send large answers');
});

t.test('chain: answer hooks run in reverse for the stages passed', async (t) => {
  const order = [];
  const mk = (name, answers) => ({ name, query(ctx, next) { order.push(`q:${name}`); if (answers) { ctx.setAnswer(Buffer.alloc(12), 0, 12); chain.respond(ctx); } else next(ctx); }, answer() { order.push(`a:${name}`); } });
  const sink = { finish() { order.push('finish'); }, fellOffEnd() { order.push('fell'); } };
  const chain = new Chain([mk('one'), mk('two'), mk('three', true)], sink);
  chain.run(new QueryContext());
  t.same(order, ['q:one', 'q:two', 'q:three', 'a:two', 'a:one', 'finish']);
});

t.test('chain: replaceStage takes effect for the next query (SIGHUP upstream swap)', async (t) => {
  const seen = [];
  const mk = (name) => ({ name, query(ctx) { seen.push(name); ctx.setAnswer(Buffer.alloc(12), 0, 12); chain.respond(ctx); } });
  const pass = { name: 'first', query(ctx, next) { next(ctx); } };
  const sink = { finish() {}, fellOffEnd() { seen.push('fell'); } };
  const chain = new Chain([pass, mk('forward')], sink);
  chain.run(new QueryContext());
  const old = chain.replaceStage('forward', mk('forward-2'));
  chain.run(new QueryContext());
  t.same(seen, ['forward', 'forward-2']);
  t.equal(old.name, 'forward');
});
