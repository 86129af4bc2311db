// Node-style errors from the UDP socket and the TCP listener.
import t from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import { once } from 'node:events';
import { TransparentUdpSocket, openTransparentTcpListener } from '../../native/lib/index.js';

const onBatch = () => {};

t.test('UDP bind to a port in use: EADDRINUSE with errno and syscall', async (t) => {
  // Node's dgram does not set SO_REUSEADDR, so it really holds the port.
  const holder = dgram.createSocket('udp4');
  holder.bind(0, '127.0.0.1');
  await once(holder, 'listening');
  t.teardown(() => holder.close());
  const port = holder.address().port;
  const error = t.throws(() => new TransparentUdpSocket({ address: '127.0.0.1', port, transparent: false, onBatch }));
  t.equal(error.code, 'EADDRINUSE');
  t.equal(error.errno, -os.constants.errno.EADDRINUSE);
  t.ok(error.errno < 0, 'errno is negative, like Node');
  t.equal(error.syscall, 'bind');
  t.equal(error.address, '127.0.0.1');
  t.equal(error.port, port);
  t.equal(error.message, `bind EADDRINUSE 127.0.0.1:${port}`);
  t.ok(error instanceof Error);
});

t.test('UDP bind to an address that is not local (plain socket): EADDRNOTAVAIL', async (t) => {
  const error = t.throws(() => new TransparentUdpSocket({ address: '192.0.2.1', port: 0, transparent: false, onBatch }));
  t.equal(error.code, 'EADDRNOTAVAIL');
  t.equal(error.syscall, 'bind');
  t.match(error.message, /^bind EADDRNOTAVAIL 192\.0\.2\.1:0$/);
});

t.test('bad address strings', async (t) => {
  for (const address of ['not-an-ip', '300.1.1.1', '[::1]', '', '1.2.3']) {
    const error = t.throws(() => new TransparentUdpSocket({ address, port: 0, transparent: false, onBatch }));
    t.equal(error.code, 'ERR_INVALID_IP_ADDRESS', `udp ${JSON.stringify(address)}`);
    t.ok(error instanceof TypeError);
    t.match(error.message, `Invalid IP address: "${address}"`);
    const tcpError = t.throws(() => openTransparentTcpListener({ address, port: 0, transparent: false }));
    t.equal(tcpError.code, 'ERR_INVALID_IP_ADDRESS', `tcp ${JSON.stringify(address)}`);
  }
  t.throws(() => new TransparentUdpSocket({ address: 1234, port: 0, onBatch }), { code: 'ERR_INVALID_ARG_TYPE' });
});

t.test('option validation', async (t) => {
  const base = { address: '127.0.0.1', port: 0, transparent: false, onBatch };
  t.throws(() => new TransparentUdpSocket({ ...base, port: 70000 }), { code: 'ERR_OUT_OF_RANGE', message: /"port"/ });
  t.throws(() => new TransparentUdpSocket({ ...base, port: 1.5 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new TransparentUdpSocket({ ...base, slots: 16 }), { code: 'ERR_OUT_OF_RANGE', message: /"slots"/ });
  t.throws(() => new TransparentUdpSocket({ ...base, slotBytes: 100 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new TransparentUdpSocket({ ...base, transparent: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => new TransparentUdpSocket({ ...base, onBatch: undefined }), TypeError);
  const socket = new TransparentUdpSocket({ ...base, slots: 32, slotBytes: 1232, txSlots: 7 });
  t.equal(socket.rxData.length, 32 * 1232);
  t.equal(socket.txData.length, 7 * 1232);
  t.equal(socket.rxMeta.length, 32 * 16);
  t.equal(socket.txMeta.length, 7 * 16);
  socket.close();
  const defaults = new TransparentUdpSocket(base);
  t.equal(defaults.slots, 64);
  t.equal(defaults.slotBytes, 4096);
  t.equal(defaults.txSlots, 128);
  defaults.close();
});

t.test('two UDP sockets with reusePort share a port; without it the second fails', async (t) => {
  const first = new TransparentUdpSocket({ address: '127.0.0.1', port: 0, transparent: false, reusePort: true, reuseAddr: false, onBatch });
  t.teardown(() => first.close());
  const second = new TransparentUdpSocket({ address: '127.0.0.1', port: first.port, transparent: false, reusePort: true, reuseAddr: false, onBatch });
  t.equal(second.port, first.port);
  second.close();
  t.throws(
    () => new TransparentUdpSocket({ address: '127.0.0.1', port: first.port, transparent: false, reuseAddr: false, onBatch }),
    { code: 'EADDRINUSE', syscall: 'bind' },
  );
});

/** Connects to 127.0.0.1:port and returns everything the server sends before it ends. */
async function readAll(port) {
  const client = net.connect({ host: '127.0.0.1', port });
  let data = '';
  client.on('data', (chunk) => (data += chunk));
  await once(client, 'end');
  return data;
}

t.test('TCP listener: works with net.Server, EADDRINUSE when taken', async (t) => {
  const fd = openTransparentTcpListener({ address: '127.0.0.1', port: 0, transparent: false });
  t.type(fd, 'number');
  const server = net.createServer((connection) => {
    connection.end(JSON.stringify({ localAddress: connection.localAddress, localPort: connection.localPort }));
  });
  server.listen({ fd });
  await once(server, 'listening');
  t.teardown(() => server.close());
  const port = server.address().port;
  const data = await readAll(port);
  t.same(JSON.parse(data), { localAddress: '127.0.0.1', localPort: port });

  const error = t.throws(() => openTransparentTcpListener({ address: '127.0.0.1', port, transparent: false }));
  t.equal(error.code, 'EADDRINUSE');
  t.equal(error.errno, -os.constants.errno.EADDRINUSE);
  t.equal(error.syscall, 'bind');
  t.equal(error.message, `bind EADDRINUSE 127.0.0.1:${port}`);
});

t.test('TCP listener on "::" is dual stack unless ipv6Only', async (t) => {
  const fd = openTransparentTcpListener({ address: '::', port: 0, transparent: false });
  const server = net.createServer((connection) => connection.end(connection.localAddress));
  server.listen({ fd });
  await once(server, 'listening');
  t.teardown(() => server.close());
  const port = server.address().port;
  const data = await readAll(port);
  t.equal(data, '::ffff:127.0.0.1', 'IPv4 client accepted on the dual-stack listener');

  const v6only = openTransparentTcpListener({ address: '::', port: 0, transparent: false, ipv6Only: true });
  const server6 = net.createServer((connection) => connection.end());
  server6.listen({ fd: v6only });
  await once(server6, 'listening');
  t.teardown(() => server6.close());
  const refused = net.connect({ host: '127.0.0.1', port: server6.address().port });
  const [error] = await once(refused, 'error');
  t.equal(error.code, 'ECONNREFUSED', 'IPv4 is refused on an ipv6Only listener');
});
