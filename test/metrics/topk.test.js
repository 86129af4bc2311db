import t from 'tap';
import { TopK } from '../../dist/metrics/topk.js';

t.test('heavy keys survive a stream of one-off keys; memory stays bounded', async (t) => {
  const k = new TopK(100);
  for (let i = 0; i < 100_000; i++) {
    k.add(`noise${i}`);
    if (i % 10 === 0) k.add('heavy-a');
    if (i % 25 === 0) k.add('heavy-b');
  }
  const top = k.top(2).map((e) => e.key);
  t.same(top, ['heavy-a', 'heavy-b']);
  t.ok(k.top(1000).length <= 100, 'never more than capacity keys');
});
