// releaseFreedHeap: freed malloc memory really leaves the process.
import t from 'tap';
import fs from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import { releaseFreedHeap } from '../../native/lib/index.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
const rssAnonKb = () => Number(/RssAnon:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);

t.test('40 MiB of freed 4 KiB buffers are handed back to the kernel', async (t) => {
  if (!fs.existsSync('/proc/self/status')) return t.skip('needs /proc');
  // Backing stores of this size come from malloc's arenas, not mmap; keeping the last one pins the top of
  // the heap, so free() alone cannot shrink it and only a trim can return the pages below.
  let held = Array.from({ length: 10240 }, () => Buffer.allocUnsafeSlow(4096).fill(1));
  const pin = held[held.length - 1];
  held = null;
  // Backing stores are freed by V8's array-buffer sweeper, possibly on a helper thread. Wait for the
  // event itself (the external array-buffer memory has dropped), bounded by a count of GC rounds,
  // instead of a fixed time that a slow machine may not meet.
  let rounds = 0;
  for (; rounds < 200 && process.memoryUsage().arrayBuffers > 8 * 1024 * 1024; rounds++) { gc(); await new Promise((r) => setTimeout(r, 10)); }
  t.ok(process.memoryUsage().arrayBuffers <= 8 * 1024 * 1024, `V8 freed the 40 MiB of backing stores (after ${rounds} GC rounds)`);
  const before = rssAnonKb();
  t.equal(await releaseFreedHeap(), true, 'something was released (on the thread pool)');
  const after = rssAnonKb();
  t.ok(before - after > 20 * 1024, `RssAnon ${before} → ${after} KiB`);
  t.equal(pin.length, 4096);
});
