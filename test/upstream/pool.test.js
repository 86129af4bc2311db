// Upstream selection strategies and the health circuit, with a fake clock and a fake random source.
import t from 'tap';
import { UpstreamPool } from '../../dist/upstream/pool.js';
import { UpstreamStats } from '../../dist/upstream/types.js';

const fake = (name) => ({ name, stats: new UpstreamStats(), healthy: true, connectivity: null, send() {}, close() {} });
function mk(n, opts = {}, rnd = () => 0.99) {
  const clock = { t: 1000 };
  const ups = Array.from({ length: n }, (_, i) => fake(`u${i}`));
  const pool = new UpstreamPool(ups, opts, () => clock.t, rnd);
  return { pool, clock, ups };
}

t.test('default strategy is fastest', async (t) => {
  t.equal(mk(2).pool.strategy, 'fastest');
});

t.test('failover: in order, skipping tried and open', async (t) => {
  const { pool } = mk(3, { strategy: 'failover' });
  t.equal(pool.pick(0), 0);
  t.equal(pool.pick(0b001), 1);
  t.equal(pool.pick(0b011), 2);
  t.equal(pool.pick(0b111), -1, 'none left');
  for (let k = 0; k < 3; k++) pool.failure(0);
  t.equal(pool.pick(0), 1, 'open circuit skipped');
});

t.test('round-robin: each healthy upstream in turn', async (t) => {
  const { pool } = mk(3, { strategy: 'round-robin' });
  t.same([pool.pick(0), pool.pick(0), pool.pick(0), pool.pick(0)], [0, 1, 2, 0]);
  for (let k = 0; k < 3; k++) pool.failure(1);
  const picks = Array.from({ length: 6 }, () => pool.pick(0));
  t.notOk(picks.includes(1), 'open upstream skipped');
});

t.test('fastest: lowest EWMA; unmeasured first; 5% exploration', async (t) => {
  let r = 0.99;
  const { pool } = mk(3, {}, () => r);
  t.equal(pool.pick(0), 0, 'all unmeasured: the first');
  pool.success(0, 50);
  t.equal(pool.pick(0), 1, 'an unmeasured upstream counts as fastest');
  pool.success(1, 10); pool.success(2, 30);
  t.equal(pool.pick(0), 1);
  t.equal(pool.pick(0b010), 2, 'next fastest when the best was tried');
  for (let k = 0; k < 20; k++) pool.success(1, 80);
  t.equal(pool.pick(0), 2, 'EWMA follows the latency');
  // Exploration: random() < 0.05 picks a random healthy one other than the fastest (second random()
  // chooses which).
  const seq = [0.01, 0.0];
  r = 0.99;
  const { pool: p2 } = mk(3, {}, () => (seq.length ? seq.shift() : 0.99));
  p2.success(0, 50); p2.success(1, 1); p2.success(2, 30);
  t.equal(p2.pick(0), 0, 'exploration pick');
  t.equal(p2.pick(0), 1, 'then back to the fastest');
  // Share of exploration with a real random source stays near 5%.
  const { pool: p3 } = mk(2, {});
  const real = new UpstreamPool(p3.upstreams, {}, () => 0, Math.random);
  real.success(0, 1); real.success(1, 100);
  let other = 0;
  for (let k = 0; k < 20000; k++) if (real.pick(0) === 1) other++;
  t.ok(other > 600 && other < 1400, `~5% of picks to the slow one (the only other healthy one): ${other}/20000`);
});

t.test('parallel: best two by EWMA', async (t) => {
  const { pool } = mk(3, { strategy: 'parallel' });
  pool.success(0, 30); pool.success(1, 5); pool.success(2, 10);
  const a = pool.pick(0);
  const b = pool.pick(1 << a);
  t.same([a, b], [1, 2]);
});

t.test('circuit: opens after 3 failures, half-open single probe, doubling backoff, closes on success', async (t) => {
  const { pool, clock, ups } = mk(2, { strategy: 'failover' });
  pool.failure(0); pool.failure(0);
  t.equal(ups[0].healthy, true, 'two failures: still in');
  pool.success(0, 5);
  pool.failure(0); pool.failure(0);
  t.equal(ups[0].healthy, true, 'a success resets the count');
  pool.failure(0);
  t.equal(ups[0].healthy, false, 'third consecutive failure opens');
  t.equal(pool.pick(0), 1);
  clock.t += 999;
  t.equal(pool.pick(0), 1, 'still open before the backoff');
  clock.t += 2;
  t.equal(pool.pick(0), 0, 'half-open: a probe');
  t.equal(pool.lastPickProbe, true);
  t.equal(pool.pick(0), 1, 'only one probe at a time');
  t.equal(pool.lastPickProbe, false);
  pool.failure(0);
  t.equal(ups[0].healthy, false);
  clock.t += 1500;
  t.equal(pool.pick(0), 1, 'backoff doubled to 2 s');
  clock.t += 600;
  t.equal(pool.pick(0), 0, 'probe after 2 s');
  pool.success(0, 3);
  t.equal(ups[0].healthy, true, 'probe success closes the circuit');
  t.equal(pool.pick(0), 0);
  // A cancelled probe (the paired upstream answered first) frees the probe slot.
  for (let k = 0; k < 3; k++) pool.failure(0);
  clock.t += 1001;
  t.equal(pool.pick(0), 0);
  t.equal(pool.pick(0), 1);
  pool.cancelled(0);
  t.equal(pool.pick(0), 0, 'next probe allowed after cancel');
});

t.test('backoff caps at maxBackoffMs', async (t) => {
  const { pool, clock } = mk(1, { maxBackoffMs: 4000 });
  for (let k = 0; k < 3; k++) pool.failure(0);
  for (let k = 0; k < 6; k++) { clock.t += 60_000; pool.pick(0); pool.failure(0); }
  clock.t += 3999;
  t.equal(pool.pick(0), 0, 'sole upstream is still tried when open (fallback)');
  t.equal(pool.lastPickProbe, false, 'not as a probe before the capped backoff');
  clock.t += 2;
  pool.pick(0);
  t.equal(pool.lastPickProbe, true, 'probe after 4 s');
});

t.test('all open: the one closest to its probe is still tried', async (t) => {
  const { pool, clock } = mk(2, { strategy: 'failover' });
  for (let k = 0; k < 3; k++) pool.failure(0);
  clock.t += 10;
  for (let k = 0; k < 3; k++) pool.failure(1);
  t.equal(pool.pick(0), 0);
  t.equal(pool.pick(1), 1);
  t.equal(pool.anyHealthy, false);
});

t.test('connectivity callbacks and slow() (hedge) feed health; hedge delay follows EWMA', async (t) => {
  const { pool, ups } = mk(2, { hedgeMs: 300 });
  t.equal(pool.hedgeDelay(0), 300, 'floor');
  pool.success(0, 400);
  t.equal(pool.hedgeDelay(0), 800, '2 x EWMA above the floor');
  ups[1].connectivity(false);
  t.equal(ups[1].healthy, false, 'unreachable opens at once');
  ups[1].connectivity(true);
  t.equal(ups[1].healthy, true, 'reachable closes at once');
  for (let k = 0; k < 3; k++) pool.slow(1, 300);
  t.equal(ups[1].healthy, false, 'three hedged-out attempts open the circuit');
  t.equal(pool.hedges, 3);
  const off = mk(1, { hedgeMs: 0 }).pool;
  t.equal(off.hedgeDelay(0), Infinity, 'hedgeMs 0 disables hedging');
});
