import t from 'tap';
import { findOpt, optionLength, addKeepalive, keepaliveUnits } from '../../dist/dns/edns.js';
import { dnsPacket, query, answer } from '../helpers.js';

t.test('keepaliveUnits', async (t) => {
  t.equal(keepaliveUnits(10_000), 100);
  t.equal(keepaliveUnits(150), 1);
  t.equal(keepaliveUnits(99), 0);
  t.equal(keepaliveUnits(10_000_000), 65535, 'saturates');
});

t.test('findOpt / optionLength', async (t) => {
  const q = query('a.example', 'A', { edns: true, options: [{ code: 11 }, { code: 65001, data: Buffer.from('abc') }] });
  const o = findOpt(q, 0, q.length);
  t.ok(o);
  t.equal(o.at + o.len, q.length, 'OPT is last');
  t.equal(optionLength(q, 0, o.at, o.len, 11), 0);
  t.equal(optionLength(q, 0, o.at, o.len, 65001), 3);
  t.equal(optionLength(q, 0, o.at, o.len, 8), -1);
  const plain = query('a.example', 'A');
  t.equal(findOpt(plain, 0, plain.length), null);
  t.equal(findOpt(Buffer.alloc(5), 0, 5), null);
  t.equal(findOpt(q.subarray(0, q.length - 3), 0, q.length - 3), null, 'truncated');
});

t.test('addKeepalive', async (t) => {
  const a = answer('a.example', 'A', [{ type: 'A', name: 'a.example', ttl: 60, data: '192.0.2.1' }], { id: 7, edns: true });
  const src = Buffer.concat([Buffer.alloc(3, 0xee), a]);
  const out = Buffer.alloc(a.length + 6 + 1);
  const n = addKeepalive(src, 3, a.length, 100, out, 1);
  t.equal(n, a.length + 6);
  const p = dnsPacket.decode(out.subarray(1, 1 + n));
  t.equal(p.id, 7);
  t.equal(p.answers[0].data, '192.0.2.1');
  const opt = p.additionals.find((r) => r.type === 'OPT');
  t.same(opt.options.map((o) => [o.code, o.timeout]), [[11, 100]]);

  // An existing keepalive is replaced, other options kept, RRs after the OPT kept.
  const withOpts = dnsPacket.encode({
    type: 'response', id: 1, flags: 0, questions: [{ type: 'A', name: 'b.example' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, options: [{ code: 11, timeout: 5 }, { code: 15, data: Buffer.from([0, 3]) }] },
      { type: 'A', name: 'x.b.example', ttl: 1, data: '192.0.2.9' }],
  });
  const out2 = Buffer.alloc(withOpts.length + 6);
  const n2 = addKeepalive(withOpts, 0, withOpts.length, 42, out2, 0);
  const p2 = dnsPacket.decode(out2.subarray(0, n2));
  const opt2 = p2.additionals.find((r) => r.type === 'OPT');
  t.same(opt2.options.map((o) => o.code), [15, 11]);
  t.equal(opt2.options[1].timeout, 42);
  t.equal(p2.additionals[1].data, '192.0.2.9');
  t.equal(n2, withOpts.length, 'replaced, not added');

  const noOpt = answer('a.example', 'A', [], { edns: false });
  t.equal(addKeepalive(noOpt, 0, noOpt.length, 1, Buffer.alloc(100), 0), -1, 'never adds an OPT the client did not send');
});
