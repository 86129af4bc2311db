import t from 'tap';
import { readQuery, ParsedQuery, cacheKey, writeHeaderOnlyReply, qnameString } from '../../dist/dns/wire.js';
import { query, parsed, dnsPacket } from '../helpers.js';

const OK = 0, DROP = 1, FORMERR = 2, NOTIMP = 3, BADVERS = 4;

t.test('a plain query parses without a full decode', async (t) => {
  const { q, st } = parsed(query('Example.COM', 'AAAA'));
  t.equal(st, OK);
  t.equal(q.id, 0x1234);
  t.equal(q.qtype, 28);
  t.equal(q.qclass, 1);
  t.equal(q.hasOpt, false);
  t.equal(q.udpSize, 512);
  t.equal(q.questionEnd, 12 + 13 + 4);
});

t.test('EDNS edge cases', async (t) => {
  t.test('no OPT', async (t) => { const { q } = parsed(query('a.example')); t.equal(q.hasOpt, false); t.equal(q.doBit, false); });
  t.test('DO set', async (t) => {
    const { q, st } = parsed(query('a.example', 'A', { edns: true, do: true }));
    t.equal(st, OK); t.equal(q.hasOpt, true); t.equal(q.doBit, true); t.equal(q.udpSize, 1232);
  });
  t.test('tiny buffer size is raised to 512', async (t) => {
    const { q } = parsed(query('a.example', 'A', { edns: true, udpSize: 100 }));
    t.equal(q.udpSize, 512);
  });
  t.test('version 1 → BADVERS', async (t) => {
    const b = query('a.example', 'A', { edns: true });
    // OPT is the last RR: TTL bytes are at end-6..end-3 (ext-rcode, version, flags).
    b[b.length - 5] = 1;
    t.equal(parsed(b).st, BADVERS);
  });
  t.test('two OPTs → FORMERR', async (t) => {
    const b = dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'a.example' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 }, { type: 'OPT', name: '.', udpPayloadSize: 1232 }] });
    t.equal(parsed(b).st, FORMERR);
  });
  t.test('OPT with a truncated option → FORMERR', async (t) => {
    const b = query('a.example', 'A', { edns: true, options: [{ code: 10, data: Buffer.alloc(8) }] });
    b[b.length - 9] = 40; // option length larger than the RDATA
    t.equal(parsed(b).st, FORMERR);
  });
  t.test('ECS and keepalive are noticed', async (t) => {
    const { q } = parsed(query('a.example', 'A', { edns: true, options: [{ code: 8, family: 1, sourcePrefixLength: 24, scopePrefixLength: 0, ip: '192.0.2.0' }, { code: 11, timeout: 10 }] }));
    t.equal(q.hasEcs, true);
    t.equal(q.hasKeepalive, true);
  });
});

t.test('malformed input never throws and is classified', async (t) => {
  t.equal(parsed(Buffer.alloc(5)).st, DROP, 'shorter than a header');
  const resp = query('a.example'); resp[2] |= 0x80;
  t.equal(parsed(resp).st, DROP, 'a response is never answered');
  const two = query('a.example'); two[5] = 2;
  t.equal(parsed(two).st, FORMERR, 'QDCOUNT 2');
  const zero = query('a.example'); zero[5] = 0;
  t.equal(parsed(zero).st, FORMERR, 'QDCOUNT 0');
  const ptr = query('a.example'); ptr[12] = 0xc0; ptr[13] = 12;
  t.equal(parsed(ptr).st, FORMERR, 'compression pointer in the question');
  const label = query('a.example'); label[12] = 64;
  t.equal(parsed(label).st, FORMERR, 'label longer than 63');
  const long = query(Array.from({ length: 5 }, () => 'x'.repeat(60)).join('.'));
  t.equal(parsed(long).st, FORMERR, 'name longer than 255');
  const cut = query('a.example').subarray(0, 20);
  t.equal(parsed(cut).st, FORMERR, 'question cut short');
  const notify = query('a.example'); notify[2] |= 4 << 3;
  t.equal(parsed(notify).st, NOTIMP, 'opcode NOTIFY');
  const overrun = query('a.example'); overrun[11] = 5;
  t.equal(parsed(overrun).st, FORMERR, 'ARCOUNT past the end');
  let n = 0;
  for (let i = 0; i < 20000; i++) {
    const b = Buffer.from(Array.from({ length: (i % 300) }, () => (Math.random() * 256) | 0));
    n += readQuery(b, 0, b.length, new ParsedQuery()) >= 0 ? 1 : 0;
  }
  t.equal(n, 20000, 'random bytes are classified without throwing');
});

t.test('cache key folds case and separates DO, CD and group', async (t) => {
  const key = (buf, g = 0) => { const { q } = parsed(buf); return cacheKey(buf, 0, q, g); };
  t.equal(key(query('WwW.Example.com')), key(query('www.example.COM')));
  t.not(key(query('a.example', 'A', { edns: true, do: true })), key(query('a.example', 'A', { edns: true })));
  t.not(key(query('a.example', 'A', { cd: true })), key(query('a.example')));
  t.not(key(query('a.example'), 1), key(query('a.example'), 2));
  t.not(key(query('a.example', 'A')), key(query('a.example', 'AAAA')));
});

t.test('header-only replies echo ID, question case and EDNS', async (t) => {
  const b = query('MiXeD.example', 'A', { id: 777, edns: true, do: true });
  const { q } = parsed(b);
  const out = Buffer.alloc(512);
  const n = writeHeaderOnlyReply(b, 0, q, 2, out, 0, false, 22);
  const p = dnsPacket.decode(out.subarray(0, n));
  t.equal(p.id, 777);
  t.equal(p.rcode, 'SERVFAIL');
  t.equal(p.questions[0].name, 'MiXeD.example');
  const opt = p.additionals.find((a) => a.type === 'OPT');
  t.ok(opt, 'OPT echoed');
  t.equal(opt.flags & dnsPacket.DNSSEC_OK, dnsPacket.DNSSEC_OK, 'DO echoed');
  t.same(opt.options.map((o) => [o.code, o.data.readUInt16BE(0)]), [[15, 22]], 'EDE 22');
  const tc = writeHeaderOnlyReply(b, 0, q, 0, out, 0, true);
  t.ok(dnsPacket.decode(out.subarray(0, tc)).flags & dnsPacket.TRUNCATED_RESPONSE, 'TC set');
  const bv = query('a.example', 'A', { edns: true }); bv[bv.length - 5] = 1;
  const pq = parsed(bv).q;
  const m = writeHeaderOnlyReply(bv, 0, pq, 16, out, 0);
  const d = dnsPacket.decode(out.subarray(0, m));
  t.equal((d.additionals[0].extendedRcode ?? (d.additionals[0].ttl >>> 24)), 1, 'BADVERS via extended rcode');
  t.equal(qnameString(b, 0, q.qnameEnd), 'mixed.example');
});
