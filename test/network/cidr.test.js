import t from 'tap';
import { parseCidr } from '../../dist/network/cidr.js';

t.test('normalises v4 and v6 prefixes', async (t) => {
  t.same(parseCidr('10.1.2.3/8'), { family: 4, address: '10.0.0.0', prefix: 8, text: '10.0.0.0/8' });
  t.equal(parseCidr('192.0.2.7').text, '192.0.2.7/32');
  t.equal(parseCidr('0.0.0.0/0').text, '0.0.0.0/0');
  t.equal(parseCidr('2001:db8::1/32').text, '2001:db8::/32');
  t.equal(parseCidr('2001:DB8:0:0:1:0:0:1').text, '2001:db8::1:0:0:1/128');
  t.equal(parseCidr('::/0').text, '::/0');
  t.equal(parseCidr('fd00::1/8').family, 6);
});

t.test('rejects anything that is not a plain CIDR', async (t) => {
  for (const bad of ['', '10.0.0.0/33', '::/129', '10.0.0', '1.2.3.4/8/8', 'eth0', '10.0.0.0/8; flush ruleset',
    '10.0.0.0/ 8', '1.2.3.256', '2001:db8::g', '10.0.0.0/-1', '"10.0.0.0"']) {
    t.throws(() => parseCidr(bad), undefined, JSON.stringify(bad));
  }
});
