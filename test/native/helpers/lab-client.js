// Runs inside the lab's client namespace. Sends one DNS query over a
// *connected* UDP socket (the kernel drops replies from any other source) or
// reads one TCP answer, and prints the outcome as one JSON line.
//   node lab-client.js udp <host> <port> [timeoutMs]
//   node lab-client.js tcp <host> <port> [timeoutMs]
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';

// Without arguments (e.g. a test runner walking the directory) do nothing.
if (process.argv.length < 3) process.exit(0);

const [mode, host, portText, timeoutText] = process.argv.slice(2);
const port = Number(portText);
const timeoutMs = Number(timeoutText ?? 3000);

function finish(result) {
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

setTimeout(() => finish({ ok: false, error: 'timeout' }), timeoutMs).unref();

if (mode === 'udp') {
  const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  const id = Math.floor(Math.random() * 65535);
  socket.on('error', (error) => finish({ ok: false, error: String(error) }));
  socket.on('message', (message, remote) => {
    const response = dnsPacket.decode(message);
    const txt = response.answers
      .filter((answer) => answer.type === 'TXT')
      .flatMap((answer) => answer.data.map((chunk) => chunk.toString()));
    finish({ ok: response.id === id, from: `${remote.address}:${remote.port}`, txt });
  });
  socket.connect(port, host, () => {
    socket.send(
      dnsPacket.encode({
        type: 'query',
        id,
        flags: dnsPacket.RECURSION_DESIRED,
        questions: [{ type: 'TXT', name: 'lab.example.test' }],
      }),
    );
  });
} else if (mode === 'tcp') {
  const socket = net.connect({ host, port });
  let data = '';
  socket.on('data', (chunk) => (data += chunk));
  socket.on('end', () => finish({ ok: true, server: JSON.parse(data) }));
  socket.on('error', (error) => finish({ ok: false, error: String(error) }));
} else {
  finish({ ok: false, error: `unknown mode ${mode}` });
}
