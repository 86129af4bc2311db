import t from 'tap';
const Freshness = { MISS: 0, FRESH: 1, STALE: 2 };
import { PacketCache } from '../../dist/cache/packet-cache.js';
import { AnswerInfo, analyzeAnswer } from '../../dist/dns/answer.js';
import { cacheKey } from '../../dist/dns/wire.js';
import { query, answer, parsed, dnsPacket } from '../helpers.js';

function fixture(cache, name = 'a.example', rrs = [{ type: 'A', name, ttl: 300, data: '192.0.2.1' }], opts = {}) {
  const qb = query(name, 'A', opts.q);
  const { q } = parsed(qb);
  const ans = answer(name, 'A', rrs, opts.a);
  const info = new AnswerInfo();
  t.equal(analyzeAnswer(ans, ans.length, qb, 0, q, info), 0, 'fixture answer valid');
  const key = cacheKey(qb, 0, q, 0);
  const e = cache.store(key, ans, ans.length, info);
  return { qb, q, key, e };
}

function serve(cache, e, qb, stale = false) {
  const { q } = parsed(qb);
  const out = Buffer.alloc(2048);
  const n = cache.writeAnswer(e, qb, 0, q, out, 0, stale);
  return dnsPacket.decode(out.subarray(0, n));
}

t.test('TTLs decrease with age, patched in place', async (t) => {
  let now = 1_000_000;
  const cache = new PacketCache({}, () => now);
  const { e, qb } = fixture(cache, 'a.example', [{ type: 'A', name: 'a.example', ttl: 300, data: '192.0.2.1' }, { type: 'A', name: 'a.example', ttl: 100, data: '192.0.2.2' }]);
  t.same(serve(cache, e, qb).answers.map((a) => a.ttl), [300, 100]);
  now += 42_000;
  t.same(serve(cache, e, qb).answers.map((a) => a.ttl), [258, 58]);
  t.equal(cache.freshness(e), Freshness.FRESH, 'fresh while the smallest TTL has not run out');
  now += 60_000;
  t.equal(cache.freshness(e), Freshness.STALE, 'stale after the entry TTL (the min)');
  t.same(serve(cache, e, qb, true).answers.map((a) => a.ttl), [30, 30], 'stale answers carry TTL 30');
  now += 3600_000;
  t.equal(cache.freshness(e), Freshness.MISS, 'past staleMaxAge it is unusable');
});

t.test('the client ID, question case and EDNS are its own', async (t) => {
  const cache = new PacketCache({}, () => 0);
  const { e } = fixture(cache, 'case.example');
  const p = serve(cache, e, query('CaSe.ExAmPlE', 'A', { id: 4242 }));
  t.equal(p.id, 4242);
  t.equal(p.questions[0].name, 'CaSe.ExAmPlE');
  t.equal(p.additionals.length, 0, 'no OPT for a client without EDNS');
  const p2 = serve(cache, e, query('case.example', 'A', { id: 1, edns: true, do: true }));
  t.equal(p2.additionals.filter((a) => a.type === 'OPT').length, 1);
});

t.test('min/max TTL clamp and negative caching', async (t) => {
  const cache = new PacketCache({ minTtl: 60, maxTtl: 120 }, () => 0);
  t.equal(fixture(cache, 'low.example', [{ type: 'A', name: 'low.example', ttl: 5, data: '192.0.2.1' }]).e.ttl, 60);
  const hi = fixture(cache, 'hi.example', [{ type: 'A', name: 'hi.example', ttl: 5000, data: '192.0.2.1' }]);
  t.equal(hi.e.ttl, 120);
  t.same(serve(cache, hi.e, hi.qb).answers.map((a) => a.ttl), [120], 'served TTL is clamped too');
  const soa = { type: 'SOA', name: 'example', ttl: 900, data: { mname: 'ns.example', rname: 'h.example', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 90 } };
  const neg = fixture(new PacketCache({}, () => 0), 'nx.example', [], { a: { rcode: 'NXDOMAIN', authorities: [soa] } });
  t.equal(neg.e.ttl, 90);
  const sf = fixture(new PacketCache({}, () => 0), 'sf.example', [], { a: { rcode: 'SERVFAIL' } });
  t.equal(sf.e.ttl, 5, 'SERVFAIL cached briefly');
  const tc = fixture(new PacketCache({}, () => 0), 'tc.example', [], { a: { flags: dnsPacket.TRUNCATED_RESPONSE } });
  t.equal(tc.e, undefined, 'truncated answers are never cached');
});

t.test('prefetch triggers in the last 10% for popular entries', async (t) => {
  let now = 0;
  const cache = new PacketCache({}, () => now);
  const { e } = fixture(cache, 'pop.example', [{ type: 'A', name: 'pop.example', ttl: 100, data: '192.0.2.1' }]);
  e.hits = 5;
  now = 80_000;
  t.equal(cache.wantsPrefetch(e), false, 'not yet at 80%');
  now = 91_000;
  t.equal(cache.wantsPrefetch(e), true, 'at 91%');
  e.hits = 1;
  t.equal(cache.wantsPrefetch(e), false, 'unpopular entries are left to expire');
});

t.test('byte accounting and eviction', async (t) => {
  const cache = new PacketCache({ maxBytes: 64 * 1024 }, () => 0);
  for (let i = 0; i < 1000; i++) fixture(cache, `n${i}.example`);
  t.ok(cache.bytes <= 64 * 1024, `bytes ${cache.bytes} within maxBytes`);
  t.ok(cache.evictions > 0, 'evicted to stay within maxBytes');
  t.ok(cache.entries < 1000);
  const capped = new PacketCache({ maxEntries: 10 }, () => 0);
  for (let i = 0; i < 50; i++) fixture(capped, `m${i}.example`);
  t.equal(capped.entries, 10, 'entry cap');
});

t.test('flush all or by name, on label boundaries', async (t) => {
  const cache = new PacketCache({}, () => 0);
  for (const n of ['a.example', 'b.a.example', 'ba.example', 'other.test']) fixture(cache, n);
  t.equal(cache.flush('a.example'), 2, 'a.example and b.a.example, not ba.example');
  t.equal(cache.entries, 2);
  t.equal(cache.flush(), 2);
  t.equal(cache.entries, 0);
});
