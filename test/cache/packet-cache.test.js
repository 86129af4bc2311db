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
  const rc = analyzeAnswer(ans, ans.length, qb, 0, q, info);
  if (rc !== 0) t.fail(`fixture answer for ${name} invalid: ${rc}`);
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
  t.equal(cache.ttl(fixture(cache, 'low.example', [{ type: 'A', name: 'low.example', ttl: 5, data: '192.0.2.1' }]).e), 60);
  const hi = fixture(cache, 'hi.example', [{ type: 'A', name: 'hi.example', ttl: 5000, data: '192.0.2.1' }]);
  t.equal(cache.ttl(hi.e), 120);
  t.same(serve(cache, hi.e, hi.qb).answers.map((a) => a.ttl), [120], 'served TTL is clamped too');
  const soa = { type: 'SOA', name: 'example', ttl: 900, data: { mname: 'ns.example', rname: 'h.example', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 90 } };
  const negCache = new PacketCache({}, () => 0);
  const neg = fixture(negCache, 'nx.example', [], { a: { rcode: 'NXDOMAIN', authorities: [soa] } });
  t.equal(negCache.ttl(neg.e), 90);
  const sfCache = new PacketCache({}, () => 0);
  const sf = fixture(sfCache, 'sf.example', [], { a: { rcode: 'SERVFAIL' } });
  t.equal(sfCache.ttl(sf.e), 5, 'SERVFAIL cached briefly');
  const tc = fixture(new PacketCache({}, () => 0), 'tc.example', [], { a: { flags: dnsPacket.TRUNCATED_RESPONSE } });
  t.equal(tc.e, -1, 'truncated answers are never cached');
});

t.test('prefetch triggers in the last 10% for popular entries', async (t) => {
  let now = 0;
  const cache = new PacketCache({}, () => now);
  const { e } = fixture(cache, 'pop.example', [{ type: 'A', name: 'pop.example', ttl: 100, data: '192.0.2.1' }]);
  for (let i = 0; i < 5; i++) cache.countHit(e);
  now = 80_000;
  t.equal(cache.wantsPrefetch(e), false, 'not yet at 80%');
  now = 91_000;
  t.equal(cache.wantsPrefetch(e), true, 'at 91%');
  const cold = fixture(cache, 'cold.example', [{ type: 'A', name: 'cold.example', ttl: 100, data: '192.0.2.1' }]).e;
  now = 91_000 + 91_000;
  cache.countHit(cold);
  t.equal(cache.wantsPrefetch(cold), false, 'unpopular entries are left to expire');
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

t.test('least recently used goes first; replacing a key keeps one entry', async (t) => {
  const cache = new PacketCache({ maxEntries: 3 }, () => 0);
  const a = fixture(cache, 'a.example'); fixture(cache, 'b.example'); fixture(cache, 'c.example');
  t.equal(cache.get(a.key), a.e, 'a is found (and becomes most recent)');
  const d = fixture(cache, 'd.example');
  t.equal(cache.entries, 3);
  t.equal(cache.get(cacheKey(query('b.example', 'A'), 0, parsed(query('b.example', 'A')).q, 0)), -1, 'b, the least recent, was evicted');
  t.not(cache.get(a.key), -1, 'a survived');
  t.equal(cache.evictions, 1);
  const bytes = cache.bytes;
  const again = fixture(cache, 'd.example');
  t.equal(cache.entries, 3, 'storing d again replaces it');
  t.equal(cache.bytes, bytes, 'and charges it once');
  t.equal(cache.evictions, 1, 'a replacement is not an eviction');
  t.equal(cache.get(d.key), again.e);
});

t.test('a random mix of stores, lookups and deletes matches a reference LRU, across growth', async (t) => {
  // Index deletions shift later cells back; growth rebuilds the index. Both must keep every live key
  // reachable and no dead one, and the answers must stay the ones stored for each name.
  const cap = 700;
  const cache = new PacketCache({ maxEntries: cap }, () => 0);
  const model = new Map(); // key -> name, in recency order
  const touch = (k) => { const v = model.get(k); model.delete(k); model.set(k, v); };
  let seed = 12345;
  const rnd = (n) => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed % n; };
  const names = Array.from({ length: 1500 }, (_, i) => `r${i}.mix.example`);
  const keys = names.map((n) => { const qb = query(n, 'A'); return cacheKey(qb, 0, parsed(qb).q, 0); });
  let mismatches = 0;
  for (let op = 0; op < 20000; op++) {
    const i = rnd(names.length);
    const k = keys[i];
    const r = rnd(10);
    if (r < 4) {
      fixture(cache, names[i], [{ type: 'A', name: names[i], ttl: 300, data: `192.0.2.${i % 250}` }]);
      if (model.has(k)) model.delete(k);
      else if (model.size >= cap) model.delete(model.keys().next().value);
      model.set(k, names[i]);
    } else if (r < 9) {
      const e = cache.get(k);
      if ((e >= 0) !== model.has(k)) mismatches++;
      if (e >= 0) {
        touch(k);
        const p = serve(cache, e, query(names[i], 'A'));
        if (p.answers[0]?.data !== `192.0.2.${i % 250}` || p.questions[0].name !== names[i]) mismatches++;
      }
    } else {
      if (cache.delete(k) !== model.delete(k)) mismatches++;
    }
  }
  t.equal(mismatches, 0, 'presence and answers agree with the model on every operation');
  t.equal(cache.entries, model.size);
  let live = 0;
  for (const k of keys) if (cache.get(k) >= 0) live++;
  t.equal(live, model.size, 'exactly the model\'s keys are reachable');
});

t.test('flush by name works after the slot arrays grew', async (t) => {
  const cache = new PacketCache({}, () => 0);
  for (let i = 0; i < 3000; i++) fixture(cache, `h${i}.grow.example`);
  fixture(cache, 'keep.example');
  t.equal(cache.entries, 3001);
  t.equal(cache.flush('grow.example'), 3000);
  t.equal(cache.entries, 1);
  t.not(cache.get(fixture(new PacketCache({}, () => 0), 'keep.example').key), -1, 'the other name is still cached');
});

t.test('lookup() from the query bytes finds what get() finds by key string', async (t) => {
  const cache = new PacketCache({}, () => 0);
  const { e, key } = fixture(cache, 'Bytes.Example');
  const probe = (name, opts) => { const qb = query(name, 'A', opts); return cache.lookup(qb, 0, parsed(qb).q, 0); };
  t.equal(probe('bytes.example'), e, 'lower case');
  t.equal(cache.lastKey(), key, 'lastKey() is the key string');
  t.equal(probe('BYTES.EXAMPLE'), e, 'upper case');
  t.equal(probe('bytes.example', { edns: true, do: true }), -1, 'the DO bit is part of the key');
  t.equal(probe('bytes.exampl'), -1, 'a shorter name');
  t.equal(probe('bytes.examplf'), -1, 'a name differing in the last byte');
  const qb = query('bytes.example', 'A');
  t.equal(cache.lookup(qb, 0, parsed(qb).q, 1), -1, 'another group');
});

t.test('growth past 65,536 slots (the step changes from doubling to a quarter) keeps every entry', async (t) => {
  const cache = new PacketCache({}, () => 0);
  const n = 70000;
  const keys = [];
  for (let i = 0; i < n; i++) keys.push(fixture(cache, `g${i}.big.example`).key);
  t.equal(cache.entries, n);
  let found = 0;
  for (const k of keys) if (cache.get(k) >= 0) found++;
  t.equal(found, n, 'all reachable after the index was rebuilt for 81,920 slots');
  t.equal(cache.probeLimited, 0, 'no key hit the probe limit');
});
