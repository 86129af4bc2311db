// The forward stage with fake transports and a fake clock: retries, hedging, parallel races, cancelled
// losers, deadlines, probes, and that every query ends with an answer or SERVFAIL + EDE.
import t from 'tap';
import { ForwardStage } from '../../dist/pipeline/forward.js';
import { UpstreamPool } from '../../dist/upstream/pool.js';
import { UpstreamStats } from '../../dist/upstream/types.js';
import { query, answer, ctxFor, decodeAnswer, dnsPacket } from '../helpers.js';

/** A transport that records requests; the test answers or fails them by hand. */
function manual(name) {
  const u = {
    name, stats: new UpstreamStats(), healthy: true, connectivity: null, reqs: [], cancelled: 0,
    send(q, ctx, handler, deadline) {
      const r = { q, ctx, handler, deadline, cancelled: false, cancel() { r.cancelled = true; u.cancelled++; } };
      u.reqs.push(r);
      return r;
    },
    answer(k = u.reqs.length - 1, ms = 1, name2) {
      const r = u.reqs[k];
      const qn = name2 ?? 'fw.example';
      r.handler.onUpstreamResult(r.ctx, u, answer(qn, 'A', [{ type: 'A', name: qn, ttl: 5, data: `192.0.2.${u.reqs.length}` }]), null, ms);
    },
    error(k = u.reqs.length - 1, reason = 'reset') { const r = u.reqs[k]; r.handler.onUpstreamResult(r.ctx, u, null, reason, 1); },
    close() {},
  };
  return u;
}

function setup(n, poolOpts = {}, fwdOpts = {}) {
  const clock = { t: 0 };
  const ups = Array.from({ length: n }, (_, i) => manual(`u${i}`));
  const pool = new UpstreamPool(ups, { strategy: 'failover', ...poolOpts }, () => clock.t, () => 0.99);
  const answered = [];
  const stage = new ForwardStage(pool, (ctx) => answered.push(decodeAnswer(ctx)),
    { timeoutMs: 2000, maxInflight: 100, ecs: 'strip', paddingBlock: 0, ...fwdOpts }, () => clock.t);
  const tick = (ms) => { clock.t += ms; stage.sweep(); };
  t.teardown(() => stage.close());
  return { clock, ups, pool, stage, answered, tick };
}
const ask = (stage, name = 'fw.example', id = 4242) => { const ctx = ctxFor(query(name, 'A', { id, edns: true })); stage.query(ctx, () => {}); return ctx; };

t.test('error on the first upstream: retried on the next at once', async (t) => {
  const { ups, stage, answered } = setup(2);
  ask(stage);
  ups[0].error();
  t.equal(ups[1].reqs.length, 1, 'second upstream asked');
  ups[1].answer();
  t.equal(answered.length, 1);
  t.equal(answered[0].rcode, 'NOERROR');
  t.equal(answered[0].id, 4242);
  t.equal(stage.retries, 1);
  t.equal(stage.inflight, 0);
});

t.test('slow upstream: hedged after the hedge delay; first answer wins, the other is cancelled', async (t) => {
  const { ups, stage, answered, tick, pool } = setup(2, { hedgeMs: 300 });
  ask(stage);
  tick(299);
  t.equal(ups[1].reqs.length, 0, 'no hedge before 300 ms');
  tick(2);
  t.equal(ups[1].reqs.length, 1, 'hedge at 300 ms');
  t.equal(stage.hedges, 1);
  ups[1].answer(0, 1);
  t.equal(answered.length, 1);
  t.equal(ups[0].reqs[0].cancelled, true, 'slow request cancelled');
  t.equal(ups[1].reqs[0].cancelled, false);
  // Three slow attempts open the slow upstream's circuit.
  for (let k = 0; k < 2; k++) { ask(stage); tick(301); ups[1].answer(ups[1].reqs.length - 1, 1); }
  t.equal(ups[0].healthy, false, 'frozen upstream out of rotation after 3 hedges');
  ask(stage);
  t.equal(ups[1].reqs.length, 4, 'next query goes straight to the healthy one');
  t.ok(pool.hedgeDelay(0) >= 300);
});

t.test('the slow one answering first still wins; a lone upstream is never hedged', async (t) => {
  const { ups, stage, answered, tick } = setup(2, { hedgeMs: 300 });
  ask(stage);
  tick(400);
  ups[0].answer(0, 400);
  t.equal(answered.length, 1);
  t.equal(ups[1].reqs[0].cancelled, true, 'hedge request cancelled');
  const lone = setup(1, { hedgeMs: 300 });
  ask(lone.stage);
  lone.tick(1000);
  t.equal(lone.ups[0].reqs.length, 1);
  t.equal(lone.ups[0].healthy, true, 'not marked down for being the only one');
});

t.test('deadline: SERVFAIL with EDE 22 when every attempt timed out, even if transports stay silent', async (t) => {
  const { stage, answered, tick, ups } = setup(2, { hedgeMs: 300 });
  ask(stage);
  tick(300); tick(1);
  t.equal(ups[1].reqs.length, 1);
  tick(1700);
  t.equal(answered.length, 1, 'answered at the deadline');
  t.equal(answered[0].rcode, 'SERVFAIL');
  t.same(answered[0].additionals[0].options.map((o) => o.data.readUInt16BE(0)), [22]);
  t.ok(ups[0].reqs[0].cancelled && ups[1].reqs[0].cancelled, 'outstanding requests withdrawn');
  t.equal(stage.inflight, 0);
});

t.test('all fail: SERVFAIL EDE 23 at once; a late answer for a finished query only feeds health', async (t) => {
  const { stage, answered, ups } = setup(2);
  const ctx = ask(stage);
  ups[0].error(0, 'connect');
  ups[1].error(0, 'reset');
  t.equal(answered.length, 1);
  t.equal(answered[0].rcode, 'SERVFAIL');
  t.same(answered[0].additionals[0].options.map((o) => o.data.readUInt16BE(0)), [23]);
  t.equal(ctx.upstreamFailed, true, 'cache stage may serve stale');
  // A transport without cancel answering late must not answer the (possibly reused) context again.
  ups[0].answer(0, 1);
  t.equal(answered.length, 1);
});

t.test('parallel: two at once, first valid wins, loser cancelled; invalid answer does not win', async (t) => {
  const { ups, stage, answered } = setup(2, { strategy: 'parallel' });
  ask(stage);
  t.equal(ups[0].reqs.length + ups[1].reqs.length, 2, 'raced on both');
  ups[1].answer(0, 1, 'other.example');
  t.equal(answered.length, 0, 'a wrong question is not an answer');
  t.equal(stage.invalidAnswers, 1);
  ups[0].answer(0, 2);
  t.equal(answered.length, 1);
  t.equal(answered[0].answers[0].name, 'fw.example');
  ask(stage);
  ups[0].answer(1, 1);
  t.equal(ups[1].reqs[1].cancelled, true, 'loser cancelled');
  t.equal(stage.inflight, 0);
});

t.test('half-open probe is paired with a healthy upstream', async (t) => {
  const { ups, stage, answered, clock, pool } = setup(2);
  for (let k = 0; k < 3; k++) pool.failure(0);
  clock.t += 1001;
  ask(stage);
  t.equal(ups[0].reqs.length, 1, 'probe sent');
  t.equal(ups[1].reqs.length, 1, 'and the healthy one at the same time');
  ups[1].answer(0, 1);
  t.equal(answered.length, 1, 'client answered by the healthy one');
  t.equal(ups[0].reqs[0].cancelled, true);
  ask(stage);
  t.equal(ups[0].reqs.length, 2, 'probe slot free again after the cancel');
  ups[0].answer(1, 1);
  t.equal(ups[0].healthy, true, 'probe success: back in rotation');
});

t.test('every query ends: 1000 queries against randomly failing, slow and silent upstreams', async (t) => {
  const { ups, stage, answered, tick } = setup(3, { strategy: 'fastest', hedgeMs: 300 }, { maxInflight: 5000 });
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  for (let k = 0; k < 1000; k++) ask(stage, 'fw.example', k);
  for (let step = 0; step < 250; step++) {
    for (const u of ups) {
      for (let k = 0; k < u.reqs.length; k++) {
        const r = u.reqs[k];
        if (r.cancelled || r.done) continue;
        const x = rnd();
        if (x < 0.05) { r.done = true; u.answer(k, 5); } else if (x < 0.08) { r.done = true; u.error(k); }
      }
    }
    tick(10);
  }
  t.equal(answered.length, 1000, 'exactly one answer per query');
  t.equal(stage.inflight, 0);
  t.ok(answered.every((a) => a.rcode === 'NOERROR' || (a.rcode === 'SERVFAIL' && a.additionals[0].options.length === 1)));
});

t.test('idle: a timer only while queries wait, and it fires the hedge and the deadline on a fake clock', async (t) => {
  const clock = { t: 0 };
  const timers = { armed: [], set: 0, setTimeout(fn, ms) { const h = { fn, at: clock.t + ms }; this.armed.push(h); this.set++; return h; },
    clearTimeout(h) { this.armed = this.armed.filter((x) => x !== h); } };
  const fire = () => { const due = timers.armed.filter((h) => h.at <= clock.t); timers.armed = timers.armed.filter((h) => h.at > clock.t); for (const h of due) h.fn(); };
  const ups = [manual('u0'), manual('u1')];
  const pool = new UpstreamPool(ups, { strategy: 'failover', hedgeMs: 300 }, () => clock.t, () => 0.99);
  const answered = [];
  const stage = new ForwardStage(pool, (ctx) => answered.push(decodeAnswer(ctx)),
    { timeoutMs: 2000, maxInflight: 100, ecs: 'strip', paddingBlock: 0 }, () => clock.t, timers);
  t.teardown(() => stage.close());
  t.equal(timers.armed.length, 0, 'nothing armed before any query');
  ask(stage);
  t.equal(timers.armed.length, 1, 'one timer for the waiting query');
  t.equal(timers.armed[0].at, 301, 'armed for the hedge time (300 ms, +1 ms for libuv rounding)');
  clock.t = 301; fire();
  t.equal(ups[1].reqs.length, 1, 'the timer hedged to the second upstream');
  ups[0].error(0); ups[1].error(0);
  t.equal(answered.length, 1, 'both failed: SERVFAIL at once');
  t.equal(timers.armed.length, 0, 'and no timer left armed');
  ask(stage, 'slow.example');
  for (let i = 0; i < 20 && answered.length < 2; i++) { clock.t = Math.max(clock.t + 1, ...timers.armed.map((h) => h.at)); fire(); }
  t.equal(answered.length, 2, 'a query nobody answers ends by the fake clock alone');
  t.equal(answered[1].rcode, 'SERVFAIL');
  t.ok(clock.t >= 301 + 2000, `not before its deadline (ended at ${clock.t} ms)`);
  t.equal(timers.armed.length, 0, 'nothing armed afterwards');
  t.ok(timers.set <= 6, `${timers.set} timers set in all: one per due time, not a periodic sweep`);
});

t.test('a query we sent that comes back to us (upstream pointing at our own listener) is SERVFAILed and counted', async (t) => {
  const dgram = await import('node:dgram');
  const { PlainDnsUpstream } = await import('../../dist/upstream/plain.js');
  // "Our listener": a UDP socket that hands every query to the same forward stage, replying to the
  // sender with whatever the stage answers, as the real listeners do.
  const listener = dgram.createSocket('udp4');
  await new Promise((r) => listener.bind(0, '127.0.0.1', r));
  t.teardown(() => listener.close());
  const up = new PlainDnsUpstream(`udp://127.0.0.1:${listener.address().port}`);
  const pool = new UpstreamPool([up], { strategy: 'failover' });
  const answers = [];
  const stage = new ForwardStage(pool, (ctx) => {
    const wire = Buffer.from(ctx.ansBuf.subarray(ctx.ansOff, ctx.ansOff + ctx.ansLen));
    if (ctx.from) listener.send(wire, ctx.from.port, ctx.from.address); else answers.push(dnsPacket.decode(wire));
  }, { timeoutMs: 3000, maxInflight: 100, ecs: 'strip', paddingBlock: 0 });
  t.teardown(() => { stage.close(); up.close(); });
  let arrived = 0;
  listener.on('message', (msg, rinfo) => {
    arrived++;
    const ctx = ctxFor(msg);
    ctx.from = rinfo;
    ctx.responder.describe = () => ({ client: rinfo.address, clientPort: rinfo.port, server: '127.0.0.1', serverPort: 0, family: 4 });
    stage.query(ctx, () => {});
  });
  ask(stage, 'loop.example');
  for (let i = 0; i < 300 && answers.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(stage.loops, 1, 'the looped query recognised once');
  t.equal(arrived, 1, 'and not forwarded again: our listener saw it once');
  t.equal(answers.length, 1, 'the client got an answer');
  t.equal(answers[0].rcode, 'SERVFAIL', 'SERVFAIL');
  t.equal(up.stats.mismatches, 0, 'the SERVFAIL came back to the right port with the right ID and question');
});
