import t from 'tap';
import v8 from 'node:v8';
import vm from 'node:vm';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { FilterManager } from '../../dist/filter/index.js';
import { engineFrom } from './fixtures/helpers.js';

const groups = [
  { name: 'lab', clients: ['192.168.1.128/25', 'fd00:1::/64'] },
  { name: 'lan', clients: ['192.168.1.0/24', '10.0.0.7', 'fd00::/16'] },
  { name: 'any6', clients: ['::/0'] },
  { name: 'phone', clients: ['AA:BB:CC:DD:EE:FF', '11-22-33-44-55-66'] },
];

t.test('CIDR v4 and v6, first matching group wins, raw bytes with offset', async (t) => {
  const eng = await engineFrom({}, { groups });
  t.equal(eng.groupCount, 5);
  t.equal(eng.groupName(0), 'default');
  t.equal(eng.groupName(1), 'lab');
  t.equal(eng.groupOfIp('192.168.1.200'), 1, 'more specific group listed first wins');
  t.equal(eng.groupOfIp('192.168.1.5'), 2);
  t.equal(eng.groupOfIp('10.0.0.7'), 2);
  t.equal(eng.groupOfIp('10.0.0.8'), 0, 'no group -> default');
  t.equal(eng.groupOfIp('fd00:1::99'), 1);
  t.equal(eng.groupOfIp('fd00:2::1'), 2);
  t.equal(eng.groupOfIp('2001:db8::1'), 3);
  t.equal(eng.groupOfIp('::ffff:192.168.1.5'), 2, 'IPv4-mapped IPv6 is matched as IPv4');
  // raw bytes at an offset inside a larger buffer
  const buf = Buffer.alloc(64, 0xee);
  buf.set([192, 168, 1, 130], 10);
  t.equal(eng.groupOf(4, buf, 10), 1);
  const v6 = Buffer.from('fd000001000000000000000000000099', 'hex');
  const big = Buffer.concat([Buffer.alloc(7), v6]);
  t.equal(eng.groupOf(6, big, 7), 1);
});

t.test('groupOf does not allocate', async (t) => {
  const eng = await engineFrom({}, { groups });
  const a = Uint8Array.of(192, 168, 1, 5);
  const b = Buffer.from('20010db8000000000000000000000001', 'hex');
  // Allocation shows as young-generation collections: 4M calls allocating even 16 bytes each would fill
  // the young generation several times over. A full collection first empties it, so any scavenge seen
  // during the loop comes from the loop. (Speed: bench/filter-bench.js.)
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  let s = 0;
  for (let i = 0; i < 200_000; i++) s += eng.groupOf(4, a, 0) + eng.groupOf(6, b, 0); // warm-up: optimised code
  const minor = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (e.detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor.push(e);
  });
  obs.observe({ entryTypes: ['gc'] });
  gc();
  await new Promise((r) => setImmediate(r));
  minor.length = 0;
  s = 0;
  for (let i = 0; i < 2_000_000; i++) s += eng.groupOf(4, a, 0) + eng.groupOf(6, b, 0);
  await new Promise((r) => setTimeout(r, 50)); // gc entries are delivered asynchronously
  obs.disconnect();
  t.equal(s, 10_000_000, 'every call answered (2 + 3 per pair)');
  t.equal(minor.length, 0, `no young-generation collection during 4M calls (saw ${minor.length})`);
});

t.test('MAC clients via neighbour table', async (t) => {
  let entries = [
    { ip: '192.168.1.50', mac: 'aa:bb:cc:dd:ee:ff' },
    { ip: 'fd00:9::5', mac: '11:22:33:44:55:66' },
    { ip: '172.16.0.9', mac: '11:22:33:44:55:66' },
    { ip: '172.16.0.10', mac: '00:00:00:00:00:01' },
  ];
  let reads = 0;
  const mgr = await FilterManager.create(
    { groups, filter: { block: ['x.example'] } },
    { stateDir: t.testdir(), baseDir: '.', readNeighbours: async () => (reads++, entries), neighbourRefreshMs: 60_000 },
  );
  t.teardown(() => mgr.close());
  await new Promise((r) => setTimeout(r, 20));
  const eng = mgr.engine;
  t.ok(reads >= 1, 'neighbour table read at start');
  t.equal(eng.groupOfIp('172.16.0.9'), 4, 'v4 by MAC');
  t.equal(eng.groupOfIp('fd00:9::5'), 2, 'CIDR group earlier in order beats MAC group');
  t.equal(eng.groupOfIp('192.168.1.50'), 2, 'first match wins (lan before phone)');
  t.equal(eng.groupOfIp('172.16.0.10'), 0);
  entries = [{ ip: '172.16.0.10', mac: 'aa:bb:cc:dd:ee:ff' }];
  await mgr.refreshNeighbours();
  t.equal(eng.groupOfIp('172.16.0.10'), 4, 'refresh picks up new neighbours');
  t.equal(eng.groupOfIp('172.16.0.9'), 0);
  t.equal(mgr.stats.neighbours, 1);
});

t.test('invalid client entries are configuration errors', async (t) => {
  await t.rejects(engineFrom({}, { groups: [{ name: 'x', clients: ['not-an-ip'] }] }), /invalid client "not-an-ip"/);
  await t.rejects(engineFrom({ a: '' }, { groups: [{ name: 'x', clients: [], lists: ['nope'] }] }), /unknown list "nope"/);
});
