// Open/close cycles must not leak fds or memory: every socket's fd, uv
// handles, reply sockets and arenas are released by close().
import t from 'tap';
import v8 from 'node:v8';
import vm from 'node:vm';
import { TransparentUdpSocket } from '../../native/lib/index.js';
import { openFdCount, rssBytes, udpClient, waitFor } from './helpers/util.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
const settle = () => new Promise((resolve) => setImmediate(resolve));

async function cycles(count, options) {
  for (let i = 0; i < count; i++) {
    const socket = new TransparentUdpSocket({ onBatch() {}, ...options });
    socket.close();
    // uv_close callbacks (which close the fds) run on the next loop turn.
    if (i % 500 === 499) await settle();
  }
  await settle();
  await settle();
}

t.test('10,000 open/close cycles: no fd or RSS growth', async (t) => {
  const options = { address: '127.0.0.1', port: 0, transparent: false };
  await cycles(2000, options); // let the heap and malloc arenas reach their working size
  gc();
  const fdsBefore = openFdCount();
  const rssBefore = rssBytes();
  const started = Date.now();
  await cycles(10000, options);
  gc();
  await settle();
  const elapsed = Date.now() - started;
  const fdsAfter = openFdCount();
  const rssGrowth = rssBytes() - rssBefore;
  t.equal(fdsAfter, fdsBefore, 'fd count unchanged');
  t.ok(rssGrowth < 20 * 1024 * 1024, `RSS growth ${(rssGrowth / 1048576).toFixed(1)} MB < 20 MB`);
  t.comment(`10,000 cycles in ${elapsed} ms`);
});

t.test('sockets that saw traffic also close cleanly', async (t) => {
  const fdsBefore = openFdCount();
  const client = await udpClient('udp4');
  for (let round = 0; round < 50; round++) {
    let batches = 0;
    const socket = new TransparentUdpSocket({
      address: '127.0.0.1',
      port: 0,
      transparent: false,
      onBatch(count) {
        batches++;
        for (let slot = 0; slot < count; slot++) socket.replyMeta(slot, slot, 1);
        socket.flush(count);
      },
    });
    client.socket.send('x', socket.port, '127.0.0.1');
    await waitFor(() => batches > 0, 3000, 'a batch');
    socket.close();
  }
  await waitFor(() => client.messages.length === 50, 3000, 'all replies');
  client.socket.close();
  await settle();
  await settle();
  t.equal(openFdCount(), fdsBefore);
});
