import t from 'tap';
import { parseRules } from '../../dist/network/routing.js';

t.test('parses ip rule output', async (t) => {
  const rules = parseRules(`0:\tfrom all lookup local
10053:\tfrom all fwmark 0x1d53 lookup 153
10054:\tfrom all fwmark 0x100/0xff00 lookup 200
10055:\tnot from all fwmark 0x1d53 lookup 153
32766:\tfrom all lookup main
`);
  t.equal(rules.length, 5);
  t.match(rules[1], { pref: 10053, fwmark: 0x1d53, mask: 0xffffffff, lookup: '153', raw: '10053: from all fwmark 0x1d53 lookup 153' });
  t.match(rules[2], { pref: 10054, fwmark: 0x100, mask: 0xff00, lookup: '200' });
  t.equal(rules[0].fwmark, undefined);
});
