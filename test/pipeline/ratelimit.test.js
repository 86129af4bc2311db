// Per-client token buckets (src/pipeline/ratelimit.ts), driven with a fake clock and a fake next().
import t from 'tap';
import { Ajv } from 'ajv';
import dnsPacket from 'dns-packet';
import { createRateLimitStage, limitsSchema, WINDOW } from '../../dist/pipeline/ratelimit.js';
import { QueryContext } from '../../dist/pipeline/context.js';

function query(name = 'a.example', id = 0x4242, edns = false) {
  return dnsPacket.encode({
    type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name, class: 'IN' }],
    additionals: edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232 }] : [],
  });
}

/** Fills ctx.meta as the native listener would: family at int 1, source bytes from byte 32. */
function setSource(ctx, addr) {
  const bytes = new Uint8Array(ctx.meta.buffer);
  bytes.fill(0, 32, 48);
  if (addr.includes(':')) {
    ctx.meta[1] = 6;
    const [head, tail = ''] = addr.split('::');
    const h = head ? head.split(':') : [], tl = tail ? tail.split(':') : [];
    const groups = addr.includes('::') ? [...h, ...Array(8 - h.length - tl.length).fill('0'), ...tl] : h;
    groups.forEach((g, i) => { const v = parseInt(g, 16); bytes[32 + 2 * i] = v >> 8; bytes[33 + 2 * i] = v & 0xff; });
  } else {
    ctx.meta[1] = 4;
    addr.split('.').forEach((x, i) => { bytes[32 + i] = Number(x); });
  }
}

function harness(cfg, { transport = 'udp' } = {}) {
  const clock = { t: 1000 };
  const out = { passed: 0, dropped: 0, answered: [] };
  const stage = createRateLimitStage(cfg, (ctx) => { out.answered.push(Buffer.from(ctx.ansBuf.subarray(ctx.ansOff, ctx.ansOff + ctx.ansLen))); },
    () => { out.dropped++; }, () => clock.t);
  const next = () => { out.passed++; };
  const ctx = new QueryContext();
  ctx.responder = { transport, send() {}, describe() { return {}; } };
  const wire = query();
  ctx.load(wire, 0, wire.length);
  const send = (src, n = 1, buf) => {
    if (buf) ctx.load(buf, 0, buf.length);
    if (src !== null) setSource(ctx, src);
    for (let i = 0; i < n; i++) stage.query(ctx, next);
  };
  return { stage, clock, out, ctx, send };
}

t.test('burst, then the sustained rate; refill follows the clock', async (t) => {
  const { stage, clock, out, send } = harness({ perClientQps: 10, perClientBurst: 20 });
  send('192.0.2.1', 25);
  t.equal(out.passed, 20, 'a full bucket lets the burst through');
  t.equal(out.dropped, 5);
  t.equal(stage.limited, 5);
  t.equal(stage.dropped, 5);
  clock.t += 1000; // 10 tokens
  send('192.0.2.1', 12);
  t.equal(out.passed, 30, 'one second refills perClientQps tokens');
  t.equal(out.dropped, 7);
  clock.t += 50; // half a token
  send('192.0.2.1', 1);
  t.equal(out.passed, 30, 'half a token is not a token');
  clock.t += 60;
  send('192.0.2.1', 1);
  t.equal(out.passed, 31, 'fractions accumulate');
  clock.t += 3_600_000;
  send('192.0.2.1', 30);
  t.equal(out.passed, 51, 'a long idle refills only up to the burst');
});

t.test('clients are independent; the clock going backwards does not break buckets', async (t) => {
  const { out, send, clock, stage } = harness({ perClientQps: 1, perClientBurst: 3 });
  send('192.0.2.1', 5);
  send('192.0.2.2', 5);
  send('198.51.100.7', 5);
  t.equal(out.passed, 9);
  clock.t -= 10_000;
  send('192.0.2.1', 1);
  t.equal(out.passed, 9, 'no tokens appear when time goes backwards');
  clock.t += 12_000;
  send('192.0.2.1', 1);
  t.equal(out.passed, 10, 'and the bucket works again afterwards');
  t.equal(stage.tracked, 3);
});

t.test('action refused: REFUSED echoing the question; unparsable input is still dropped', async (t) => {
  const { stage, out, send, ctx } = harness({ perClientQps: 1, perClientBurst: 1, action: 'refused' });
  send('203.0.113.9', 1);
  send('203.0.113.9', 1, query('b.example', 0x7777, true));
  t.equal(out.answered.length, 1);
  const p = dnsPacket.decode(out.answered[0]);
  t.equal(p.id, 0x7777);
  t.equal(p.rcode, 'REFUSED');
  t.equal(p.type, 'response');
  t.equal(p.questions[0].name, 'b.example');
  t.equal(p.additionals[0]?.type, 'OPT', 'OPT echoed for an EDNS client');
  t.ok(out.answered[0].length <= ctx.maxReply, 'fits the client size');
  t.equal(ctx.maxReply, 512);
  send('203.0.113.9', 1, Buffer.from([1, 2, 3]));
  const bad = query('c.example'); bad[12] = 0xc0;
  send('203.0.113.9', 1, bad);
  t.equal(out.answered.length, 1, 'no REFUSED for what does not parse');
  t.equal(out.dropped, 2);
  t.equal(stage.refused, 1);
  t.equal(stage.dropped, 2);
  t.equal(stage.limited, 3);
});

t.test('IPv6 clients are aggregated by /64 unless configured otherwise', async (t) => {
  {
    const { out, send } = harness({ perClientQps: 1, perClientBurst: 2 });
    send('2001:db8:1:2::1', 2);
    send('2001:db8:1:2:ffff:ffff:ffff:ffff', 2);
    t.equal(out.passed, 2, 'two hosts of one /64 share a bucket');
    send('2001:db8:1:3::1', 2);
    t.equal(out.passed, 4, 'the neighbouring /64 has its own');
  }
  {
    const { out, send } = harness({ perClientQps: 1, perClientBurst: 2, ipv6Prefix: 128 });
    send('2001:db8:1:2::1', 2);
    send('2001:db8:1:2::2', 2);
    t.equal(out.passed, 4, '/128: per address');
  }
  {
    const { out, send } = harness({ perClientQps: 1, perClientBurst: 2, ipv6Prefix: 56 });
    send('2001:db8:1:200::1', 2);
    send('2001:db8:1:2ff::1', 2);
    t.equal(out.passed, 2, '/56 is not byte... word aligned and still aggregates');
    send('2001:db8:1:300::1', 2);
    t.equal(out.passed, 4);
  }
  {
    const { out, send } = harness({ perClientQps: 1, perClientBurst: 2, ipv4Prefix: 24 });
    send('192.0.2.1', 2);
    send('192.0.2.200', 2);
    t.equal(out.passed, 2, 'ipv4Prefix 24 aggregates the /24');
    send('192.0.3.1', 2);
    t.equal(out.passed, 4);
  }
  {
    const { out, send } = harness({ perClientQps: 1, perClientBurst: 2 });
    send('0.0.0.1', 2);
    send('::1', 2);
    t.equal(out.passed, 4, 'families are kept apart even when the words are equal');
  }
});

t.test('the table never tracks more than maxClients; eviction is LRU-ish and fail-open', async (t) => {
  const { stage, out, send, clock } = harness({ perClientQps: 1, perClientBurst: 5, maxClients: 100 });
  t.equal(stage.slots, 100);
  for (let i = 0; i < 5000; i++) send(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 1);
  t.ok(stage.tracked <= 100, `tracked ${stage.tracked} <= maxClients`);
  t.ok(stage.evictions > 0, 'evictions counted');
  t.equal(out.passed, 5000, 'every new client starts with a full bucket');
  // A client hammering in the middle of a flood of new sources stays limited as long as it is recent.
  send('192.0.2.77', 5);
  let limitedBefore = stage.limited;
  for (let i = 0; i < 200; i++) { clock.t += 1; send(`172.16.${i >> 8}.${i & 255}`, 1); send('192.0.2.77', 1); }
  t.ok(stage.limited - limitedBefore >= 195, `the busy client stayed tracked and limited (${stage.limited - limitedBefore}/200)`);
  // Refilled entries are reused without counting as evictions.
  clock.t += 10_000;
  const ev = stage.evictions;
  for (let i = 0; i < 20; i++) send(`198.18.0.${i}`, 1);
  t.equal(stage.evictions, ev, 'idle, refilled entries are reused first');
  t.ok(stage.tracked <= 100);
  limitedBefore = stage.limited;
});

t.test('distinct clients never share a bucket (hash collisions only share a window)', async (t) => {
  {
    // A tiny table: four clients in 16 slots, windows of 8 overlap heavily.
    const { out, send, stage } = harness({ perClientQps: 1, perClientBurst: 2, maxClients: 4 });
    t.equal(stage.slots, 16, 'never fewer than 16 slots');
    t.ok(WINDOW <= stage.slots);
    for (const c of ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4']) send(c, 3);
    t.equal(out.passed, 8, 'each of four clients got exactly its own burst');
    t.equal(stage.tracked, 4);
  }
  {
    const { out, send, stage } = harness({ perClientQps: 1, perClientBurst: 2, maxClients: 100_000 });
    for (let i = 0; i < 5000; i++) send(`10.1.${i >> 8}.${i & 255}`, 3);
    t.equal(out.passed, 10_000, '5000 clients, exactly 2 each');
    t.equal(stage.evictions, 0);
  }
});

t.test('TCP: keyed on the remote address, cached per connection; over the limit always REFUSED', async (t) => {
  const { stage, out, ctx } = harness({ perClientQps: 1, perClientBurst: 2, action: 'drop' }, { transport: 'tcp' });
  let passed = 0;
  const next = () => { passed++; };
  const a = { clientIp: '192.0.2.10', socket: {} };
  const b = { clientIp: '192.0.2.10', socket: {} };
  const c = { socket: { remoteAddress: '::ffff:192.0.2.11' } };
  const d = { clientIp: '2001:db8::5', socket: {} };
  const e = { clientIp: '2001:db8::6', socket: {} };
  for (const [conn, n] of [[a, 2], [b, 1], [c, 2], [d, 2], [e, 1]]) {
    ctx.conn = conn;
    for (let i = 0; i < n; i++) stage.query(ctx, next);
  }
  t.equal(passed, 6, 'two connections from one address share a bucket; /64 aggregation applies');
  t.equal(out.answered.length, 2, 'over the limit on TCP: answered, not left hanging');
  t.equal(dnsPacket.decode(out.answered[0]).rcode, 'REFUSED');
  t.equal(ctx.maxReply, 65535);
  t.equal(out.dropped, 0);
  // Something that does not parse over TCP goes on to validation (which answers FORMERR).
  ctx.conn = a;
  ctx.load(Buffer.from([0, 1, 0, 0]), 0, 4);
  stage.query(ctx, next);
  t.equal(passed, 7);
  // A connection whose address cannot be read is not limited.
  ctx.conn = { socket: {} };
  for (let i = 0; i < 5; i++) stage.query(ctx, next);
  t.equal(passed, 12);
});

t.test('internal (background refresh) queries are never limited', async (t) => {
  const { out, send } = harness({ perClientQps: 1, perClientBurst: 1 }, { transport: 'internal' });
  send(null, 10);
  t.equal(out.passed, 10);
});

t.test('limitsSchema accepts the documented keys and rejects nonsense', async (t) => {
  const v = new Ajv({ strict: false }).compile(limitsSchema);
  t.ok(v({ perClientQps: 50, perClientBurst: 100, action: 'refused', maxClients: 5000, ipv6Prefix: 56, ipv4Prefix: 32 }));
  t.ok(v({ perClientQps: 0.5 }), 'fractional rates');
  t.ok(v({}));
  t.notOk(v({ perClientQps: 0 }));
  t.notOk(v({ action: 'slip' }));
  t.notOk(v({ ipv6Prefix: 129 }));
  t.notOk(v({ maxClients: 0 }));
  t.notOk(v({ perClientQPS: 5 }), 'unknown keys are errors');
  t.throws(() => createRateLimitStage({ perClientQps: 0 }, () => {}, () => {}));
});

t.test('the hot path allocates nothing per query (coarse check)', async (t) => {
  const { send } = harness({ perClientQps: 1e6, perClientBurst: 1e6, maxClients: 1000 });
  for (let i = 0; i < 1000; i++) send(`10.0.${i >> 8}.${i & 255}`, 10);
  globalThis.gc?.();
  const before = process.memoryUsage().heapUsed;
  for (let r = 0; r < 200; r++) for (let i = 0; i < 1000; i += 7) send(null, 1);
  const grew = process.memoryUsage().heapUsed - before;
  t.ok(grew < 4 << 20, `heap grew ${grew} bytes over 28,600 queries`);
});
