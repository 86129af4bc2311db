// The record built from a finished query context, and the answer summary read off the wire.
import t from 'tap';
import { buildRecord, buildDroppedRecord, summarizeWire, answeredBy } from '../../dist/store/record.js';
import { query, answer, ctxFor } from '../helpers.js';

const where = { client: '192.0.2.10', clientPort: 40001, server: '198.51.100.53', serverPort: 53, family: 4 };
function ctx(name = 'www.example.com', type = 'A') {
  const c = ctxFor(query(name, type));
  c.responder.describe = () => where;
  c.started = performance.now() - 5;
  c.wallStarted = 1_700_000_000_000;
  return c;
}
const devices = { lookup: (a) => (a === '192.0.2.10' ? { id: 'mac:02:00:00:00:00:01', name: 'tv', mac: '02:00:00:00:00:01' } : { id: `ip:${a}` }), list: () => [], close() {} };

t.test('an upstream answer', async (t) => {
  const c = ctx();
  c.cacheStatus = 'miss';
  c.upstream = 'https://doh.example/dns-query';
  c.upstreamMs = 3.5;
  const a = answer('www.example.com', 'A', [{ name: 'www.example.com', type: 'A', ttl: 60, data: '192.0.2.1' }]);
  const r = buildRecord(c, a, 0, a.length, devices);
  t.match(r, {
    time: 1_700_000_000_000, client: '192.0.2.10', clientPort: 40001, server: '198.51.100.53', serverPort: 53, transport: 'udp',
    qname: 'www.example.com', qtype: 'A', kind: 'query', rcode: 'NOERROR', answeredBy: 'upstream',
    upstream: 'https://doh.example/dns-query', upstreamLatencyMs: 3.5, answers: ['A 192.0.2.1'],
    device: { id: 'mac:02:00:00:00:00:01', name: 'tv', mac: '02:00:00:00:00:01' },
  });
  t.ok(r.latencyMs >= 5 && r.latencyMs < 60_000, 'total latency measured from arrival');
});

t.test('how it was answered, from the context', async (t) => {
  t.equal(answeredBy({ decision: { kind: 'block' }, cacheStatus: 'none' }), 'blocked');
  t.equal(answeredBy({ decision: { kind: 'block-cname' }, cacheStatus: 'miss' }), 'blocked', 'a block found by CNAME inspection is recorded as blocked');
  t.equal(answeredBy({ decision: { kind: 'local' }, cacheStatus: 'none' }), 'local');
  t.equal(answeredBy({ decision: { kind: 'forward' }, cacheStatus: 'miss' }), 'forward');
  t.equal(answeredBy({ decision: null, cacheStatus: 'hit' }), 'cache');
  t.equal(answeredBy({ decision: null, cacheStatus: 'stale' }), 'stale');
  t.equal(answeredBy({ decision: null, cacheStatus: 'miss' }), 'upstream');
  const c = ctx('ads.example', 'AAAA');
  c.decision = { kind: 'block', list: 'ads', rule: '||ads.example^', group: 'kids' };
  const a = answer('ads.example', 'AAAA', [], { rcode: 'NXDOMAIN' });
  const r = buildRecord(c, a, 0, a.length, null);
  t.match(r, { answeredBy: 'blocked', rcode: 'NXDOMAIN', group: 'kids', list: 'ads', rule: '||ads.example^', qtype: 'AAAA' });
  t.notOk('answers' in r, 'no answers, no summary');
  t.notOk('device' in r, 'no resolver, no device');
  const unknown = buildRecord(Object.assign(ctx(), { responder: { transport: 'udp', describe: () => ({ ...where, client: '192.0.2.99' }) } }), a, 0, a.length, devices);
  t.notOk('device' in unknown, 'an address without name or MAC gets no device');
});

t.test('a dropped query keeps its reason', async (t) => {
  const r = buildDroppedRecord(ctx(), 'ratelimit', devices);
  t.match(r, { kind: 'dropped', dropReason: 'ratelimit', qname: 'www.example.com', device: { name: 'tv' } });
  t.notOk('rcode' in r);
});

t.test('the summary: CNAME chains, AAAA text, compressed names, other types by name', async (t) => {
  const a = answer('www.example.com', 'A', [
    { name: 'www.example.com', type: 'CNAME', ttl: 60, data: 'edge.cdn.example' },
    { name: 'edge.cdn.example', type: 'A', ttl: 60, data: '192.0.2.7' },
    { name: 'edge.cdn.example', type: 'AAAA', ttl: 60, data: '2001:db8::1' },
    { name: 'edge.cdn.example', type: 'TXT', ttl: 60, data: 'x' },
    { name: 'edge.cdn.example', type: 'A', ttl: 60, data: '192.0.2.8' },
  ]);
  t.same(summarizeWire(a, 0, a.length, 4), ['CNAME edge.cdn.example', 'A 192.0.2.7', 'AAAA 2001:db8::1', 'TXT'], 'the first four, in order');
  // Hand-made: the CNAME target is a compression pointer to the question name.
  const q = Buffer.from([0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 3, 0x77, 0x77, 0x77, 7, ...Buffer.from('example'), 3, 0x63, 0x6f, 0x6d, 0, 0, 5, 0, 1]);
  const rr = Buffer.from([0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, 0x66, 0x6f, 0x6f, 0xc0, 12]);
  const wire = Buffer.concat([q, rr]);
  t.same(summarizeWire(wire, 0, wire.length, 4), ['CNAME foo.www.example.com']);
  // At an offset inside a larger buffer, as the cache hands answers out.
  const padded = Buffer.concat([Buffer.alloc(7, 0xff), wire]);
  t.same(summarizeWire(padded, 7, wire.length, 4), ['CNAME foo.www.example.com'], 'offsets are honoured (pointers relative to the message)');
});

t.test('hostile answers: truncated, pointer loops, lying counts never throw and stay bounded', async (t) => {
  const a = answer('www.example.com', 'A', [{ name: 'www.example.com', type: 'A', ttl: 60, data: '192.0.2.1' }], { edns: false });
  for (let cut = 0; cut < a.length; cut++) t.doesNotThrow(() => summarizeWire(a, 0, cut, 4));
  t.same(summarizeWire(a, 0, a.length - 1, 4), [], 'a cut-off record is left out');
  const loop = Buffer.from([0, 1, 0x81, 0x80, 0, 0, 0, 1, 0, 0, 0, 0, 0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 24]);
  t.same(summarizeWire(loop, 0, loop.length, 4).length <= 1, true, 'a pointer loop ends');
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.from(Array.from({ length: 12 + (i % 200) }, rnd));
    const out = summarizeWire(b, 0, b.length, 4);
    if (out.length > 4) t.fail('more than max items');
  }
  t.pass('2000 random messages');
});
