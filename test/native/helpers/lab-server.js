// Runs inside the lab's gateway namespace (spawned via `ip netns exec`).
// Answers every DNS query on a transparent [::] socket with a TXT record
// naming the original destination it saw, by copying rx meta to tx meta.
// Optionally serves TCP on transparent listeners (v4 on 0.0.0.0, v6 on [::]
// v6-only) and echoes the connection's local address back to the client.
//
// Protocol on stdio: prints one JSON line {"ready":true,...} once listening;
// on "stats" on stdin prints {"stats":{...}} and exits.
import net from 'node:net';
import readline from 'node:readline';
import dnsPacket from 'dns-packet';
import {
  TransparentUdpSocket,
  openTransparentTcpListener,
  formatEndpoint,
  META_STRIDE,
  M_LEN,
} from '../../../native/lib/index.js';

// Without arguments (e.g. a test runner walking the directory) do nothing.
if (process.argv.length < 3) process.exit(0);

const udpPort = Number(process.argv[2]);
const tcpPort = process.argv[3] ? Number(process.argv[3]) : 0;
const seen = [];

const socket = new TransparentUdpSocket({
  address: '::',
  port: udpPort,
  onBatch(count) {
    let replies = 0;
    for (let slot = 0; slot < count; slot++) {
      const length = socket.rxMeta[slot * META_STRIDE + M_LEN];
      const start = slot * socket.slotBytes;
      const origDst = formatEndpoint(socket.rxMetaBytes, slot, 'dst');
      const client = formatEndpoint(socket.rxMetaBytes, slot, 'src');
      seen.push({ client, origDst });
      let query;
      try {
        query = dnsPacket.decode(Buffer.from(socket.rxData.buffer, start, length));
      } catch {
        continue;
      }
      const answer = dnsPacket.encode({
        type: 'response',
        id: query.id,
        flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
        questions: query.questions,
        answers: [
          {
            type: 'TXT',
            class: 'IN',
            name: query.questions[0]?.name ?? '.',
            ttl: 60,
            data: [`dtp listener=${udpPort} origdst=${origDst}`],
          },
        ],
      });
      socket.txData.set(answer, replies * socket.slotBytes);
      socket.replyMeta(slot, replies, answer.length);
      replies++;
    }
    socket.flush(replies);
  },
  onError(error) {
    process.stdout.write(JSON.stringify({ onBatchError: String(error) }) + '\n');
  },
});

const servers = [];
if (tcpPort) {
  const listeners = [
    { address: '0.0.0.0', port: tcpPort },
    { address: '::', port: tcpPort, ipv6Only: true },
  ];
  for (const options of listeners) {
    const fd = openTransparentTcpListener(options);
    const server = net.createServer((connection) => {
      connection.end(
        JSON.stringify({ localAddress: connection.localAddress, localPort: connection.localPort }),
      );
    });
    server.listen({ fd });
    servers.push(server);
  }
}

process.stdout.write(JSON.stringify({ ready: true, port: socket.port, family: socket.family }) + '\n');

const input = readline.createInterface({ input: process.stdin });
input.on('line', (line) => {
  if (line.trim() !== 'stats') return;
  const stats = socket.stats;
  socket.close();
  for (const server of servers) server.close();
  input.close();
  // stdin stays open (the parent holds it), so exit explicitly.
  process.stdout.write(JSON.stringify({ stats, seen }) + '\n', () => process.exit(0));
});
