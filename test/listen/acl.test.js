// The listeners' source ACL: word-wise prefix matching on the native metadata layout, against a
// byte-wise reference, for every prefix length.
import t from 'tap';
import crypto from 'node:crypto';
import { ClientAcl, ipToBytes } from '../../dist/listen/acl.js';

/** Reference: compare the first `bits` bits of two byte arrays. */
function refMatch(addr, net, bits) {
  for (let i = 0; i < addr.length && bits > 0; i++, bits -= 8) {
    const m = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((addr[i] & m) !== (net[i] & m)) return false;
  }
  return true;
}
const v4text = (b) => [...b].join('.');
const v6text = (b) => Array.from({ length: 8 }, (_, i) => ((b[2 * i] << 8) | b[2 * i + 1]).toString(16)).join(':');

/** The address laid out as the native metadata holds it: bytes in memory, read as host-order words. */
function words(bytes) {
  const b = new Uint8Array(16 + 8);
  b.set(bytes, 8);
  return new Int32Array(b.buffer);
}

t.test('every prefix length agrees with a byte-wise reference (v4 and v6)', async (t) => {
  let checks = 0, mismatches = 0;
  for (const fam of [4, 6]) {
    const len = fam === 4 ? 4 : 16;
    for (let bits = 0; bits <= len * 8; bits++) {
      const net = crypto.randomBytes(len);
      const text = fam === 4 ? v4text(net) : v6text(net);
      const acl = new ClientAcl([`${text}/${bits}`]);
      for (let k = 0; k < 40; k++) {
        // half the samples share the prefix and differ after it, half are random
        const a = Uint8Array.from(crypto.randomBytes(len));
        if (k % 2 === 0) for (let i = 0; i * 8 < bits; i++) { const m = bits - i * 8 >= 8 ? 0xff : (0xff << (8 - (bits - i * 8))) & 0xff; a[i] = (net[i] & m) | (a[i] & ~m & 0xff); }
        const want = refMatch(a, net, bits);
        const got = acl.allowsWords(fam, words(a), 2);
        const gotStr = acl.allowsString(fam === 4 ? v4text(a) : v6text(a));
        checks++;
        if (got !== want || gotStr !== want) mismatches++;
      }
    }
  }
  t.equal(mismatches, 0, `${checks} random checks`);
});

t.test('families never cross; mapped IPv4 strings are IPv4; replace swaps in place', async (t) => {
  const acl = new ClientAcl(['10.0.0.0/8']);
  t.notOk(acl.allowsWords(6, words(ipToBytes('a00::1')), 2), 'an IPv6 address starting 0a.. is not 10/8');
  t.ok(acl.allowsString('::ffff:10.1.2.3'));
  t.notOk(acl.allowsString('not an ip'));
  acl.replace(['2001:db8::/32']);
  t.notOk(acl.allowsString('10.1.2.3'));
  t.ok(acl.allowsString('2001:db8::5'));
  t.same(acl.cidrs, ['2001:db8::/32']);
  t.throws(() => acl.replace(['2001:db8::/32', '10.0.0.0/40']), /bad prefix length/);
  t.ok(acl.allowsString('2001:db8::5'), 'a rejected list keeps the previous one');
  t.notOk(new ClientAcl([]).allowsString('127.0.0.1'), 'an empty ACL admits nobody');
  t.ok(new ClientAcl(['0.0.0.0/0', '::/0']).allowsString('203.0.113.1'));
});
