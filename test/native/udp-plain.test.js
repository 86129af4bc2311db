// TransparentUdpSocket without IP_TRANSPARENT, on loopback: batching, meta,
// echo through tx + flush, counters, and robustness against bad input.
import t from 'tap';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import {
  TransparentUdpSocket,
  formatAddress,
  formatEndpoint,
  writeAddress,
  META_STRIDE,
  M_LEN,
  M_FAMILY,
  M_SRC_PORT,
  M_DST_PORT,
  M_IFINDEX,
  C_RECEIVED,
  C_SENT,
} from '../../native/lib/index.js';
import { openFdCount, udpClient, waitFor } from './helpers/util.js';

const nativeIndexUrl = new URL('../../native/lib/index.js', import.meta.url).href;

/**
 * Opens a plain socket that echoes "echo:" + payload for every packet and
 * records each batch's size and the meta it saw.
 */
function openEchoSocket(address, extra = {}) {
  const batches = [];
  const seen = [];
  const socket = new TransparentUdpSocket({
    address,
    port: 0,
    transparent: false,
    ...extra,
    onBatch(count) {
      batches.push(count);
      const prefix = Buffer.from('echo:');
      for (let slot = 0; slot < count; slot++) {
        const base = slot * META_STRIDE;
        const length = socket.rxMeta[base + M_LEN];
        const rxStart = slot * socket.slotBytes;
        seen.push({
          length,
          family: socket.rxMeta[base + M_FAMILY],
          src: formatAddress(socket.rxMetaBytes, slot, 'src'),
          srcPort: socket.rxMeta[base + M_SRC_PORT],
          dst: formatAddress(socket.rxMetaBytes, slot, 'dst'),
          dstPort: socket.rxMeta[base + M_DST_PORT],
          ifindex: socket.rxMeta[base + M_IFINDEX],
          payload: Buffer.from(socket.rxData.subarray(rxStart, rxStart + length)).toString(),
        });
        const txStart = slot * socket.slotBytes;
        socket.txData.set(prefix, txStart);
        socket.txData.set(socket.rxData.subarray(rxStart, rxStart + length), txStart + prefix.length);
        socket.replyMeta(slot, slot, prefix.length + length);
      }
      socket.flush(count);
    },
  });
  return { socket, batches, seen };
}

for (const [address, type, family] of [
  ['127.0.0.1', 'udp4', 4],
  ['::1', 'udp6', 6],
]) {
  t.test(`plain ${address}: batches, meta, echo from the right address`, async (t) => {
    const { socket, batches, seen } = openEchoSocket(address);
    t.teardown(() => socket.close());
    t.equal(socket.family, family);
    t.ok(socket.port > 0, 'ephemeral port resolved');

    const client = await udpClient(type);
    t.teardown(() => client.socket.close());
    const clientPort = client.socket.address().port;
    const total = 8;
    // Sent back to back in one tick: they are all queued before the loop
    // polls the listener, so one recvmmsg must pick up several.
    for (let i = 0; i < total; i++) client.socket.send(`q${i}`, socket.port, address);
    await waitFor(() => client.messages.length === total, 3000, 'echo replies');

    t.ok(Math.max(...batches) > 1, `one onBatch call carried several packets (batches: ${batches})`);
    t.equal(batches.reduce((a, b) => a + b, 0), total);
    t.same(
      seen.map((s) => s.payload).sort(),
      Array.from({ length: total }, (_, i) => `q${i}`).sort(),
    );
    for (const s of seen) {
      t.equal(s.family, family);
      t.equal(s.src, address);
      t.equal(s.srcPort, clientPort);
      t.equal(s.dst, address, 'plain socket: destination from PKTINFO');
      t.equal(s.dstPort, socket.port, 'plain socket: destination port = bound port');
      t.equal(s.length, s.payload.length);
      t.ok(s.ifindex > 0, 'arrival interface reported');
    }
    for (const { message, remote } of client.messages) {
      t.match(message.toString(), /^echo:q\d$/);
      t.equal(remote.address, address, 'reply comes from the address the client used');
      t.equal(remote.port, socket.port, 'reply comes from the listener port');
    }
    const stats = socket.stats;
    t.equal(stats.received, total);
    t.equal(stats.sent, total);
    t.equal(stats.rxBatches, batches.length);
    t.equal(stats.txBatches, batches.length);
    t.equal(stats.droppedEagain + stats.sendErrors + stats.droppedInvalidTx, 0);
    t.equal(socket.counters[C_RECEIVED], total, 'counters array is the same data as stats');
    t.equal(socket.counters[C_SENT], total);
  });
}

t.test('dual-stack "::" socket receives IPv4 as family 4 and answers it', async (t) => {
  const { socket, seen } = openEchoSocket('::');
  t.teardown(() => socket.close());
  const v4 = await udpClient('udp4');
  const v6 = await udpClient('udp6');
  t.teardown(() => v4.socket.close());
  t.teardown(() => v6.socket.close());
  v4.socket.send('four', socket.port, '127.0.0.1');
  v6.socket.send('six', socket.port, '::1');
  await waitFor(() => v4.messages.length === 1 && v6.messages.length === 1, 3000, 'replies');
  const four = seen.find((s) => s.payload === 'four');
  const six = seen.find((s) => s.payload === 'six');
  t.match(four, { family: 4, src: '127.0.0.1', dst: '127.0.0.1', dstPort: socket.port });
  t.match(six, { family: 6, src: '::1', dst: '::1', dstPort: socket.port });
  t.equal(v4.messages[0].remote.address, '127.0.0.1');
  t.equal(v4.messages[0].message.toString(), 'echo:four');
  t.equal(v6.messages[0].remote.address, '::1');
});

t.test('oversized datagrams are dropped and counted; the batch is compacted', async (t) => {
  const { socket, seen } = openEchoSocket('127.0.0.1', { slotBytes: 512 });
  t.teardown(() => socket.close());
  const client = await udpClient('udp4');
  t.teardown(() => client.socket.close());
  client.socket.send(Buffer.alloc(600, 0x41), socket.port, '127.0.0.1');
  client.socket.send('small-after-big', socket.port, '127.0.0.1');
  client.socket.send(Buffer.alloc(500, 0x42), socket.port, '127.0.0.1'); // fits, and so does its echo
  await waitFor(() => client.messages.length === 2, 3000, 'replies to the fitting packets');
  t.equal(socket.stats.droppedTruncated, 1);
  t.equal(socket.stats.received, 2);
  t.same(seen.map((s) => s.length).sort((a, b) => a - b), [15, 500]);
  t.ok(seen.some((s) => s.payload === 'small-after-big'));
});

t.test('a throwing onBatch is counted, reported, and the socket keeps working', async (t) => {
  const errors = [];
  let calls = 0;
  const socket = new TransparentUdpSocket({
    address: '127.0.0.1',
    port: 0,
    transparent: false,
    onBatch() {
      calls++;
      throw new Error(`boom ${calls}`);
    },
    onError(error) {
      errors.push(error);
    },
  });
  t.teardown(() => socket.close());
  const client = await udpClient('udp4');
  t.teardown(() => client.socket.close());
  client.socket.send('a', socket.port, '127.0.0.1');
  await waitFor(() => calls === 1, 3000, 'first batch');
  client.socket.send('b', socket.port, '127.0.0.1');
  await waitFor(() => calls === 2, 3000, 'second batch');
  t.equal(socket.stats.callbackErrors, 2);
  t.equal(errors.length, 2);
  t.match(errors[0].message, /^boom 1$/);
});

t.test('promise jobs queued by onBatch run right after it', async (t) => {
  const order = [];
  const socket = new TransparentUdpSocket({
    address: '127.0.0.1',
    port: 0,
    transparent: false,
    onBatch() {
      order.push('batch');
      Promise.resolve().then(() => order.push('microtask'));
      process.nextTick(() => order.push('tick'));
      setImmediate(() => order.push('immediate'));
    },
  });
  t.teardown(() => socket.close());
  const client = await udpClient('udp4');
  t.teardown(() => client.socket.close());
  client.socket.send('x', socket.port, '127.0.0.1');
  await waitFor(() => order.includes('immediate'), 3000, 'callbacks');
  t.same(order, ['batch', 'tick', 'microtask', 'immediate']);
});

t.test('close() inside onBatch, idempotent close, flush after close', async (t) => {
  const socket = new TransparentUdpSocket({
    address: '127.0.0.1',
    port: 0,
    transparent: false,
    onBatch(count) {
      socket.close();
      socket.close();
      t.equal(socket.flush(count), 0, 'flush after close sends nothing');
    },
  });
  const client = await udpClient('udp4');
  t.teardown(() => client.socket.close());
  for (let i = 0; i < 5; i++) client.socket.send('x', socket.port, '127.0.0.1');
  await waitFor(() => socket.closed, 3000, 'close from the handler');
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(socket.stats.rxBatches, 1, 'no batch after close');
  t.equal(socket.rxData.length, 0, 'data views are detached');
  t.equal(socket.txMeta.length, 0);
  t.ok(socket.counters.length > 0, 'counters stay readable');
  socket.close();
});

t.test('invalid tx slots are skipped and counted, the valid one is sent', async (t) => {
  const socket = new TransparentUdpSocket({ address: '127.0.0.1', port: 0, transparent: false, onBatch() {} });
  t.teardown(() => socket.close());
  const client = await udpClient('udp4');
  t.teardown(() => client.socket.close());
  const clientPort = client.socket.address().port;
  const fill = (slot, family, port, length) => {
    socket.txMeta.fill(0, slot * META_STRIDE, (slot + 1) * META_STRIDE);
    writeAddress(socket.txMetaBytes, slot, 'src', '127.0.0.1');
    socket.txMeta[slot * META_STRIDE + M_FAMILY] = family;
    socket.txMeta[slot * META_STRIDE + M_SRC_PORT] = port;
    socket.txMeta[slot * META_STRIDE + M_LEN] = length;
    socket.txData.set(Buffer.from('hello'), slot * socket.slotBytes);
  };
  fill(0, 7, clientPort, 5); // bad family
  fill(1, 6, clientPort, 5); // IPv6 on an IPv4 socket
  fill(2, 4, 0, 5); // no port
  fill(3, 4, clientPort, socket.slotBytes + 1); // longer than a slot
  fill(4, 4, clientPort, 5); // fine; no source address: the kernel picks it
  t.equal(socket.flush(5), 1);
  t.equal(socket.stats.droppedInvalidTx, 4);
  await waitFor(() => client.messages.length === 1, 3000, 'the valid packet');
  t.equal(client.messages[0].message.toString(), 'hello');
  t.equal(socket.flush(socket.txSlots + 100) <= socket.txSlots, true, 'count is clamped to txSlots');
  t.throws(() => socket.flush(-1), TypeError);
});

t.test('replies to a closed port (ICMP unreachable) do not disturb the socket', async (t) => {
  const { socket } = openEchoSocket('127.0.0.1');
  t.teardown(() => socket.close());
  const gone = await udpClient('udp4');
  await Promise.all(
    Array.from({ length: 3 }, () => new Promise((resolve) => gone.socket.send('x', socket.port, '127.0.0.1', resolve))),
  );
  gone.socket.close(); // the echoes now draw ICMP port unreachable
  await waitFor(() => socket.stats.sent === 3, 3000, 'echoes to the closed port');
  const live = await udpClient('udp4');
  t.teardown(() => live.socket.close());
  live.socket.send('still-there', socket.port, '127.0.0.1');
  await waitFor(() => live.messages.length === 1, 3000, 'echo after ICMP errors');
  t.equal(live.messages[0].message.toString(), 'echo:still-there');
});

t.test('unref() lets the process exit; ref() keeps it alive', async (t) => {
  const script = (ref) => `
    import { TransparentUdpSocket } from ${JSON.stringify(nativeIndexUrl)};
    const socket = new TransparentUdpSocket({ address: '127.0.0.1', port: 0, transparent: false, onBatch() {} });
    socket.unref();
    ${ref ? 'socket.ref();' : ''}
    console.log('open ' + socket.port);
  `;
  const run = (ref) =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script(ref)], { stdio: 'pipe' });
      let output = '';
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve({ exited: false, output });
      }, 1500);
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve({ exited: true, code, output });
      });
    });
  const [unrefed, refed] = await Promise.all([run(false), run(true)]);
  t.match(unrefed, { exited: true, code: 0 }, 'unref: exits on its own');
  t.match(unrefed.output, /^open \d+/);
  t.match(refed, { exited: false }, 'ref: still running after 1.5 s');
});

t.test('worker_threads: socket works in a worker and is closed when the worker ends', async (t) => {
  const fdsBefore = openFdCount();
  const worker = new Worker(
    `
    import { parentPort } from 'node:worker_threads';
    import { TransparentUdpSocket } from ${JSON.stringify(nativeIndexUrl)};
    const socket = new TransparentUdpSocket({
      address: '127.0.0.1', port: 0, transparent: false,
      onBatch(count) { parentPort.postMessage({ count }); },
    });
    parentPort.postMessage({ port: socket.port });
    `,
    { eval: true, type: 'module' },
  );
  const first = await Promise.race([
    once(worker, 'message').then(([m]) => m),
    once(worker, 'error').then(([e]) => ({ error: e })),
  ]);
  if (first.error) {
    t.fail(`worker failed: ${first.error}`);
    return;
  }
  const sender = dgram.createSocket('udp4');
  sender.send('to-worker', first.port, '127.0.0.1');
  const [batch] = await once(worker, 'message');
  t.equal(batch.count, 1, 'worker received the packet through its own addon instance');
  sender.close();
  // The socket is still open and ref'd: terminate() goes through the
  // environment cleanup hook, which must close it without a crash.
  await worker.terminate();
  await waitFor(() => openFdCount() <= fdsBefore, 3000, 'worker fds to be released');
  t.ok(openFdCount() <= fdsBefore, 'no fd left behind by the worker');
});
