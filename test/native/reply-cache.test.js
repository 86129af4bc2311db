// The different-port reply path on loopback (root only: reply sockets need
// IP_TRANSPARENT): LRU cap, idle expiry, refusal of local source addresses,
// and that close() releases every reply socket.
import t from 'tap';
import os from 'node:os';
import {
  TransparentUdpSocket,
  writeAddress,
  META_STRIDE,
  M_LEN,
  M_SRC_PORT,
  M_DST_PORT,
} from '../../native/lib/index.js';
import { openFdCount, udpClient, waitFor } from './helpers/util.js';

if (process.getuid?.() !== 0) {
  // Reported as a skip with its reason, never as a pass.
  t.skip('reply-socket cache tests need root (IP_TRANSPARENT)');
} else {
  // Fake original destinations must not be this host's own addresses (CI
  // machines may well sit in a documentation range).
  const localAddresses = new Set(Object.values(os.networkInterfaces()).flat().map((i) => i.address));
  const fake = [];
  for (let i = 10; fake.length < 4 && i < 250; i++) {
    if (!localAddresses.has(`198.51.100.${i}`)) fake.push(`198.51.100.${i}`);
  }
  const hostAddress = Object.values(os.networkInterfaces())
    .flat()
    .find((i) => i.family === 'IPv4' && !i.internal)?.address;

  t.test('reply sockets: cap, LRU eviction, local refusal, close', async (t) => {
    // The idle timer is out of the picture here (10 min): with 150 ms, a loaded machine expired the
    // sockets before the LRU step and the eviction count depended on speed. Expiry has its own test.
    const socket = new TransparentUdpSocket({
      address: '127.0.0.1',
      port: 0,
      transparent: false,
      replySocketCap: 2,
      replySocketIdleMs: 600_000,
      onBatch() {},
    });
    const client = await udpClient('udp4');
    t.teardown(() => client.socket.close());
    const clientPort = client.socket.address().port;
    const fdsWithListener = openFdCount();

    // Queue one packet to the client "from" `source`:53, which is not the
    // listener's port, so it must go through a reply socket.
    const queue = (slot, source) => {
      socket.txMeta.fill(0, slot * META_STRIDE, (slot + 1) * META_STRIDE);
      writeAddress(socket.txMetaBytes, slot, 'src', '127.0.0.1');
      writeAddress(socket.txMetaBytes, slot, 'dst', source);
      socket.txMeta[slot * META_STRIDE + M_SRC_PORT] = clientPort;
      socket.txMeta[slot * META_STRIDE + M_DST_PORT] = 53;
      socket.txMeta[slot * META_STRIDE + M_LEN] = 2;
      socket.txData.set(Buffer.from('ok'), slot * socket.slotBytes);
    };

    queue(0, fake[0]);
    queue(1, fake[1]);
    queue(2, fake[0]); // cached
    t.equal(socket.flush(3), 3);
    t.equal(socket.stats.replySocketsOpened, 2);
    t.equal(socket.stats.replySocketsOpen, 2);
    t.equal(openFdCount(), fdsWithListener + 2, 'listener + two reply sockets');
    await waitFor(() => client.messages.length === 3, 3000, 'replies via reply sockets');
    t.same(
      client.messages.map((m) => `${m.remote.address}:${m.remote.port}`),
      [`${fake[0]}:53`, `${fake[1]}:53`, `${fake[0]}:53`],
      'each reply carries its original destination as source',
    );

    await new Promise((resolve) => setTimeout(resolve, 5));
    queue(0, fake[0]); // refresh .1: .2 is now least recently used
    queue(1, fake[2]); // over the cap: evicts .2
    t.equal(socket.flush(2), 2);
    t.equal(socket.stats.replySocketsEvicted, 1);
    t.equal(socket.stats.replySocketsOpen, 2);
    t.equal(openFdCount(), fdsWithListener + 2, 'still capped at two');

    queue(0, '127.0.0.1'); // a local address: never bound
    t.equal(socket.flush(1), 0);
    t.equal(socket.stats.droppedLocalOrigDst, 1);
    if (hostAddress) {
      // Found local by the bind probe, not by the loopback shortcut.
      queue(0, hostAddress);
      t.equal(socket.flush(1), 0, `host address ${hostAddress} refused`);
      t.equal(socket.stats.droppedLocalOrigDst, 2);
    }
    t.equal(socket.stats.replySocketsOpened, 3);
    t.equal(socket.stats.replySocketsExpired, 0, 'nothing expired');

    queue(0, fake[3]);
    t.equal(socket.flush(1), 1);
    t.equal(socket.stats.replySocketsEvicted, 2, 'a third original destination evicts again');
    t.equal(openFdCount(), fdsWithListener + 2, 'still capped at two');
    socket.close();
    // The listener fd is closed from its uv_close callback, a loop turn later.
    await waitFor(() => openFdCount() === fdsWithListener - 1, 1000, 'fds released').catch(() => {});
    t.equal(openFdCount(), fdsWithListener - 1, 'close() releases the listener and all reply sockets');
  });

  t.test('reply sockets: idle ones are closed', async (t) => {
    const socket = new TransparentUdpSocket({
      address: '127.0.0.1', port: 0, transparent: false, replySocketCap: 4, replySocketIdleMs: 150, onBatch() {},
    });
    t.teardown(() => socket.close());
    const client = await udpClient('udp4');
    t.teardown(() => client.socket.close());
    const fdsWithListener = openFdCount();
    for (const [slot, source] of [[0, fake[0]], [1, fake[1]]]) {
      socket.txMeta.fill(0, slot * META_STRIDE, (slot + 1) * META_STRIDE);
      writeAddress(socket.txMetaBytes, slot, 'src', '127.0.0.1');
      writeAddress(socket.txMetaBytes, slot, 'dst', source);
      socket.txMeta[slot * META_STRIDE + M_SRC_PORT] = client.socket.address().port;
      socket.txMeta[slot * META_STRIDE + M_DST_PORT] = 53;
      socket.txMeta[slot * META_STRIDE + M_LEN] = 2;
      socket.txData.set(Buffer.from('ok'), slot * socket.slotBytes);
    }
    t.equal(socket.flush(2), 2);
    t.equal(socket.stats.replySocketsOpened, 2);
    // An event with a generous bound, not a time: both expire once idle for 150 ms, however slow the machine.
    await waitFor(() => socket.stats.replySocketsOpen === 0, 30_000, 'idle expiry');
    t.equal(socket.stats.replySocketsExpired, 2);
    t.equal(socket.stats.replySocketsEvicted, 0, 'expired, not evicted');
    t.equal(openFdCount(), fdsWithListener, 'expired reply sockets are closed');
  });
}
