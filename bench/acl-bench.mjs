// Cost of the transparent listeners' source ACL per datagram: ClientAcl.allowsWords on the native
// metadata words (what src/listen/udp.ts calls) against node:net BlockList, which needs the address
// as a string (formatting it from the metadata is part of its cost on the hot path).
//   node bench/acl-bench.mjs [iterations]
import net from 'node:net';
import { ClientAcl } from '../dist/listen/acl.js';

const N = Number(process.argv[2] ?? 2_000_000);
// A typical derived list: on-link prefixes, built-in ranges, own addresses.
const cidrs = ['192.168.1.0/24', '2001:db8:1:1::/64', 'fd00:1::/64', 'fe80::/64', '10.8.0.0/24', '10.0.0.0/8', '172.16.0.0/12',
  '192.168.0.0/16', '169.254.0.0/16', '127.0.0.0/8', '::1/128', 'fc00::/7', 'fe80::/10', '203.0.113.5/32', '2001:db8:ffff::5/128'];
const acl = new ClientAcl(cidrs);
const bl = new net.BlockList();
for (const c of cidrs) { const [a, p] = c.split('/'); bl.addSubnet(a, Number(p), net.isIPv6(a) ? 'ipv6' : 'ipv4'); }

// 64 metadata slots like the native rx batch: [.., family, .., src address words ..]
const STRIDE = 16, SRC = 8;
const meta = new Int32Array(64 * STRIDE);
const bytes = new Uint8Array(meta.buffer);
const fams = [];
for (let i = 0; i < 64; i++) {
  const v6 = i % 2 === 1;
  fams.push(v6 ? 6 : 4);
  const o = (i * STRIDE + SRC) * 4;
  // half admitted (LAN), half refused (internet)
  if (!v6) bytes.set(i % 4 === 0 ? [192, 168, 1, i] : [198, 51, 100, i], o);
  else bytes.set(i % 4 === 1 ? [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, i] : [0x26, 0x06, 0x47, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i], o);
}
function fmt(i) {
  const o = (i * STRIDE + SRC) * 4;
  if (fams[i] === 4) return `${bytes[o]}.${bytes[o + 1]}.${bytes[o + 2]}.${bytes[o + 3]}`;
  const g = []; for (let k = 0; k < 8; k++) g.push(((bytes[o + 2 * k] << 8) | bytes[o + 2 * k + 1]).toString(16));
  return g.join(':');
}

function run(name, fn) {
  let admitted = 0;
  for (let i = 0; i < 100_000; i++) admitted += fn(i & 63) ? 1 : 0; // warm-up
  admitted = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) admitted += fn(i & 63) ? 1 : 0;
  const ns = Number(process.hrtime.bigint() - t0) / N;
  console.log(`${name.padEnd(42)} ${ns.toFixed(1).padStart(7)} ns/check  (admitted ${admitted} of ${N})`);
}
run('ClientAcl.allowsWords (metadata words)', (i) => acl.allowsWords(fams[i], meta, i * STRIDE + SRC));
run('BlockList.check (address formatted)', (i) => bl.check(fmt(i), fams[i] === 6 ? 'ipv6' : 'ipv4'));
const strings = Array.from({ length: 64 }, (_, i) => fmt(i));
run('BlockList.check (string given, no format)', (i) => bl.check(strings[i], fams[i] === 6 ? 'ipv6' : 'ipv4'));
