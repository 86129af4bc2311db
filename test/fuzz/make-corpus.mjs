#!/usr/bin/env node
// Regenerates the seed corpus under test/fuzz/corpus/ (valid queries, valid upstream answers, framed
// TCP streams, rule lists). The files are checked in; run this (with --write) only to change the seeds.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';

if (!process.argv.includes('--write')) {
  process.stdout.write('1..0 # SKIP corpus generator: run with --write to regenerate test/fuzz/corpus\n');
  process.exit(0);
}
const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'corpus');
const q = (name, type, { id = 0x1234, edns = false, doBit = false, options = [], flags = dnsPacket.RECURSION_DESIRED } = {}) => dnsPacket.encode({
  type: 'query', id, flags, questions: [{ type, name, class: 'IN' }],
  additionals: edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: doBit ? dnsPacket.DNSSEC_OK : 0, options }] : [],
});
const a = (name, type, answers, { authorities = [], additionals = [], edns = true, rcode = 0, id = 0 } = {}) => dnsPacket.encode({
  type: 'response', id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcode,
  questions: [{ type, name, class: 'IN' }], answers, authorities,
  additionals: [...additionals, ...(edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, options: [{ code: 15, data: Buffer.from([0, 3]) }] }] : [])],
});
const soa = (zone) => ({ name: zone, type: 'SOA', ttl: 3600, data: { mname: `ns.${zone}`, rname: `host.${zone}`, serial: 1, refresh: 7200, retry: 900, expire: 1209600, minimum: 300 } });

const queries = {
  a: q('example.com', 'A'),
  aaaa_edns: q('www.Example.ORG', 'AAAA', { edns: true }),
  do_bit: q('dnssec.example', 'DNSKEY', { edns: true, doBit: true }),
  ecs: q('ecs.example.net', 'A', { edns: true, options: [{ code: 8, family: 1, sourcePrefixLength: 24, scopePrefixLength: 0, ip: '192.0.2.0' }] }),
  keepalive: q('ka.example', 'TXT', { edns: true, options: [{ code: 11, data: Buffer.alloc(0) }] }),
  root_ns: q('.', 'NS'),
  long_name: q(`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`, 'A'),
  https: q('svc.example', 'HTTPS', { edns: true }),
  ptr: q('1.2.0.192.in-addr.arpa', 'PTR'),
  any: q('any.example', 'ANY', { flags: 0 }),
};
const answers = {
  a: a('example.com', 'A', [{ name: 'example.com', type: 'A', ttl: 300, data: '192.0.2.1' }]),
  cname_chain: a('www.example.org', 'AAAA', [
    { name: 'www.example.org', type: 'CNAME', ttl: 60, data: 'cdn.example.net' },
    { name: 'cdn.example.net', type: 'CNAME', ttl: 60, data: 'edge.example.net' },
    { name: 'edge.example.net', type: 'AAAA', ttl: 20, data: '2001:db8::1' }]),
  nxdomain: a('nope.example', 'A', [], { authorities: [soa('example')], rcode: 3 }),
  nodata: a('example.com', 'MX', [], { authorities: [soa('example.com')] }),
  servfail: a('broken.example', 'A', [], { rcode: 2, edns: true }),
  noedns: a('plain.example', 'A', [{ name: 'plain.example', type: 'A', ttl: 5, data: '198.51.100.1' }], { edns: false }),
  txt_big: a('big.example', 'TXT', Array.from({ length: 12 }, (_, i) => ({ name: 'big.example', type: 'TXT', ttl: 300, data: `${i}-${'x'.repeat(140)}` }))),
  mx_additional: a('example.com', 'MX', [{ name: 'example.com', type: 'MX', ttl: 300, data: { preference: 10, exchange: 'mail.example.com' } }],
    { additionals: [{ name: 'mail.example.com', type: 'A', ttl: 300, data: '192.0.2.25' }] }),
  rrsig: a('dnssec.example', 'A', [{ name: 'dnssec.example', type: 'A', ttl: 300, data: '192.0.2.9' },
    { name: 'dnssec.example', type: 'RRSIG', ttl: 300, data: { typeCovered: 'A', algorithm: 13, labels: 2, originalTTL: 300, expiration: 2000000000, inception: 1700000000, keyTag: 1, signersName: 'dnssec.example', signature: crypto.randomBytes(64) } }]),
  srv: a('_sip._udp.example', 'SRV', [{ name: '_sip._udp.example', type: 'SRV', ttl: 300, data: { priority: 1, weight: 1, port: 5060, target: 'sip.example' } }]),
};
// Answers carry a selector byte in front (see targets.mjs queryForAnswer).
const sel = [0, 1, 3, 5, 0, 7, 1, 0, 2, 1, 0];

function frames(list) { return Buffer.concat(list.flatMap((m) => { const h = Buffer.alloc(2); h.writeUInt16BE(m.length); return [h, m]; })); }
const qs = Object.values(queries);
const tcpStreams = {
  one: frames([qs[0]]),
  pipelined: frames(qs),
  zero_len: frames([Buffer.alloc(0), qs[1], Buffer.alloc(0)]),
  partial_tail: Buffer.concat([frames(qs.slice(0, 3)), Buffer.from([0x01, 0x00, 0xaa])]),
  many: frames(Array.from({ length: 120 }, (_, i) => qs[i % qs.length])),
};
const rules = {
  adblock: `! Title: sample\n||ads.example.com^\n||tracker.example^$important\n@@||good.example.com^\n|exact.example^\n*.children.example\n||Mixed.Case.Example^\n||x.example^$dnstype=AAAA\n||y.example^$client=192.0.2.0/24\n/^ad[0-9]+\\./\n[Adblock Plus 2.0]\n`,
  hosts: `# hosts\n127.0.0.1 localhost\n0.0.0.0 ads.example.net tracker.example.net # trailing\n::1 ip6-localhost\n0.0.0.0 xn--bcher-kva.example\n0.0.0.0 bücher.example\n192.0.2.1 notblocking.example\n`,
  domains: `ads.example\nmalware.example.\n_dmarc.example\nsub.domain.example\n\n   spaced.example   \n`,
  mixed: `||a.example^$dnstype=~MX|A,important\n@@/^safe/\n*.wild*.example\n||ex*mple.com^\n/(a+)+$/\n/[a-z]{1,300}/\n#@#.ad\nexample.com##.banner\n`,
};

for (const [dir, files] of Object.entries({ query: queries, answer: answers, tcp: tcpStreams, rules })) {
  fs.mkdirSync(path.join(DIR, dir), { recursive: true });
  let i = 0;
  for (const [name, data] of Object.entries(files)) {
    let body = typeof data === 'string' ? Buffer.from(data) : data;
    if (dir === 'answer') body = Buffer.concat([Buffer.from([sel[i % sel.length]]), body]);
    if (dir === 'tcp') { const s = Buffer.alloc(4); s.writeUInt32LE(0x1000 + i); body = Buffer.concat([s, body]); }
    fs.writeFileSync(path.join(DIR, dir, `${name}.${dir === 'rules' ? 'txt' : 'bin'}`), body);
    i++;
  }
}
process.stdout.write(`corpus written to ${DIR}\n`);
