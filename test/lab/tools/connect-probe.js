// One connection attempt from the lab's client namespace, bounded in time:
//   node connect-probe.js tcp|udp HOST PORT TIMEOUT_MS  ->  {"ok":bool,"code":"…","ms":n}
// TCP: ok once connected (a reset answers the SYN as ECONNREFUSED). UDP: one datagram on a connected
// socket; an ICMP error comes back as an error event (ECONNREFUSED, EHOSTUNREACH, EACCES), silence as
// TIMEOUT (which for UDP means nothing rejected it).
import net from 'node:net';
import dgram from 'node:dgram';

const [proto, host, portText, timeoutText] = process.argv.slice(2);
const port = Number(portText), timeoutMs = Number(timeoutText ?? 2000);
const t0 = performance.now();
let done = false;
const finish = (ok, code) => {
  if (done) return;
  done = true;
  process.stdout.write(JSON.stringify({ ok, code, ms: Math.round(performance.now() - t0) }));
  process.exit(0);
};
setTimeout(() => finish(false, 'TIMEOUT'), timeoutMs);

if (proto === 'tcp') {
  const s = net.connect({ host, port });
  s.on('connect', () => { s.destroy(); finish(true, 'CONNECTED'); });
  s.on('error', (e) => finish(false, e.code ?? 'ERROR'));
} else {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  s.on('error', (e) => finish(false, e.code ?? 'ERROR'));
  s.connect(port, host, () => {
    // A QUIC-looking first byte; any answer or ICMP error settles it.
    s.send(Buffer.from([0xc0, 0, 0, 0, 1]), (err) => { if (err) finish(false, err.code ?? 'ERROR'); });
    s.on('message', () => finish(true, 'ANSWERED'));
  });
}
