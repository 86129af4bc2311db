// The bounded queue between the query path and the disk: batches by size, bounded in-flight writes,
// drop-oldest when the backend falls behind, failed writes counted, close() writes what is queued.
import t from 'tap';
import { BatchingStore } from '../../dist/store/batching.js';

/** A backend whose writes complete only when the test says so. */
class GatedStore extends BatchingStore {
  backend = 'sqlite';
  constructor(opts) { super({ flushMs: 1_000_000, ...opts }); this.pending = []; this.batchesSeen = []; this.failNext = false; }
  writeBatch(records) {
    this.batchesSeen.push(records.map((r) => r.time));
    return new Promise((resolve, reject) => this.pending.push(() => (this.failNext ? (this.failNext = false, reject(new Error('disk full'))) : resolve())));
  }
  release() { const p = this.pending.shift(); p?.(); return new Promise((r) => setImmediate(r)); }
  closeBackend() { return Promise.resolve(); }
  search() {} stats() {} clients() {}
}
const rec = (i) => ({ time: i, client: '192.0.2.1', server: '198.51.100.1', serverPort: 53, transport: 'udp', qname: `n${i}.example`, qtype: 'A', kind: 'query' });

t.test('a backend that cannot keep up loses the oldest unwritten records, never blocks append', async (t) => {
  const s = new GatedStore({ queueMax: 10, batchMax: 4, maxInflightBatches: 1 });
  for (let i = 0; i < 4; i++) s.append(rec(i));
  await new Promise((r) => setImmediate(r));
  t.same(s.batchesSeen, [[0, 1, 2, 3]], 'a full batch goes out at once');
  for (let i = 4; i < 30; i++) s.append(rec(i));
  t.equal(s.queueDepth, 10, 'the queue holds at most queueMax');
  t.equal(s.droppedUnwritten, 16, 'the 16 oldest unwritten records were dropped');
  t.equal(s.batchesSeen.length, 1, 'no second write while one is in flight (maxInflightBatches 1)');
  await s.release();
  t.same(s.batchesSeen[1], [20, 21, 22, 23], 'the next batch starts at the oldest record still queued');
  t.equal(s.written, 4);
  await s.release();
  t.same(s.batchesSeen[2], [24, 25, 26, 27], 'a full batch follows at once');
  await s.release();
  t.equal(s.batchesSeen.length, 3, 'a partial batch waits for the flush timer');
  s.flush();
  await s.release();
  t.same(s.batchesSeen.flat(), [0, 1, 2, 3, ...Array.from({ length: 10 }, (_, i) => 20 + i)], 'then the rest, in order');
  t.equal(s.written, 14);
  t.equal(s.batches, 4);
  t.equal(s.written + s.droppedUnwritten, 30, 'every record is either written or counted as dropped');
});

t.test('a failed write counts its records as dropped and reports the error once', async (t) => {
  const errors = [];
  const s = new GatedStore({ batchMax: 2, onError: (e) => errors.push(e.message) });
  s.failNext = true;
  s.append(rec(1)); s.append(rec(2));
  await new Promise((r) => setImmediate(r));
  await s.release();
  t.equal(s.droppedUnwritten, 2);
  t.equal(s.failedBatches, 1);
  t.same(errors, ['disk full']);
  s.failNext = true;
  s.append(rec(3)); s.append(rec(4));
  await new Promise((r) => setImmediate(r));
  await s.release();
  t.equal(errors.length, 1, 'the second failure within a minute is counted, not reported');
  t.equal(s.droppedUnwritten, 4);
});

t.test('close() writes what is queued; appends after close are counted as dropped', async (t) => {
  const s = new GatedStore({ batchMax: 3, maxInflightBatches: 1 });
  for (let i = 0; i < 7; i++) s.append(rec(i));
  const closing = s.close();
  for (let k = 0; k < 5; k++) await s.release();
  await closing;
  t.same(s.batchesSeen.flat(), [0, 1, 2, 3, 4, 5, 6], 'all queued records written before close resolved');
  s.append(rec(99));
  t.equal(s.droppedUnwritten, 1);
});

t.test('subscribers see each record at append; a throwing one is removed', async (t) => {
  const s = new GatedStore({});
  const seen = [];
  const off = s.subscribe((r) => seen.push(r.time));
  s.subscribe(() => { throw new Error('broken listener'); });
  s.append(rec(1));
  s.append(rec(2));
  off();
  s.append(rec(3));
  t.same(seen, [1, 2]);
  const closing = s.close();
  await s.release();
  await closing;
});
