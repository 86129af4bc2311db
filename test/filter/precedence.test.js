import t from 'tap';
import { engineFrom, verdict } from './fixtures/helpers.js';

// each case: list rules (one list), inline block/allow, query -> expected
const matrix = [
  { name: 'normal block', list: ['||p.example^'], q: 'p.example', want: 'block' },
  { name: 'exception beats block', list: ['||p.example^', '@@||p.example^'], q: 'p.example', want: 'pass' },
  { name: 'exception in another list beats block', list: ['||p.example^'], list2: ['@@||p.example^'], q: 'p.example', want: 'pass' },
  { name: 'important beats exception', list: ['||p.example^$important', '@@||p.example^'], q: 'p.example', want: 'block' },
  { name: 'important exception beats important', list: ['||p.example^$important', '@@||p.example^$important'], q: 'p.example', want: 'pass' },
  { name: 'exception alone', list: ['@@||p.example^'], q: 'p.example', want: 'pass' },
  { name: 'child exception under blocked parent', list: ['||p.example^', '@@||ok.p.example^'], q: 'x.ok.p.example', want: 'pass' },
  { name: 'sibling of exception stays blocked', list: ['||p.example^', '@@||ok.p.example^'], q: 'bad.p.example', want: 'block' },
  { name: 'parent exception vs child block', list: ['@@||p.example^', '||ads.p.example^'], q: 'ads.p.example', want: 'pass' },
  { name: 'parent exception vs important child', list: ['@@||p.example^', '||ads.p.example^$important'], q: 'ads.p.example', want: 'block' },
  { name: 'exact exception does not cover subdomains', list: ['||p.example^', '@@|p.example^'], q: 's.p.example', want: 'block' },
  { name: 'exact exception covers the name', list: ['||p.example^', '@@|p.example^'], q: 'p.example', want: 'pass' },
  { name: 'config allow acts as exception', list: ['||p.example^'], allow: ['p.example'], q: 'a.p.example', want: 'pass' },
  { name: 'config allow does not beat $important', list: ['||p.example^$important'], allow: ['p.example'], q: 'p.example', want: 'block' },
  { name: 'config allow with $important does', list: ['||p.example^$important'], allow: ['@@||p.example^$important'], q: 'p.example', want: 'pass' },
  { name: 'config block', list: [], block: ['p.example'], q: 'p.example', want: 'block' },
  { name: 'config block vs list exception', list: ['@@||p.example^'], block: ['p.example'], q: 'p.example', want: 'pass' },
  { name: 'regex block vs domain exception', list: ['/^p\\./', '@@||p.example^'], q: 'p.example', want: 'pass' },
  { name: 'domain block vs regex exception', list: ['||p.example^', '@@/^p\\./'], q: 'p.example', want: 'pass' },
  { name: 'dnstype exception only for its type (A)', list: ['||p.example^', '@@||p.example^$dnstype=A'], q: 'p.example', qtype: 1, want: 'pass' },
  { name: 'dnstype exception only for its type (AAAA)', list: ['||p.example^', '@@||p.example^$dnstype=A'], q: 'p.example', qtype: 28, want: 'block' },
  { name: 'local record wins over block', list: ['||p.example^'], local: ['p.example A 192.0.2.1'], q: 'p.example', want: 'local' },
  { name: 'block wins over forward', list: ['||p.example^'], forward: [{ domain: 'example', to: '127.0.0.1' }], q: 'p.example', want: 'block' },
  { name: 'exception then forward', list: ['||p.example^', '@@||p.example^'], forward: [{ domain: 'example', to: '127.0.0.1' }], q: 'p.example', want: 'forward' },
];

for (const c of matrix) {
  t.test(c.name, async (t) => {
    const lists = { l1: c.list.join('\n') };
    if (c.list2) lists.l2 = c.list2.join('\n');
    const eng = await engineFrom(lists, { filter: { block: c.block, allow: c.allow }, local: c.local, forward: c.forward });
    t.equal(verdict(eng, c.q, c.qtype ?? 1), c.want);
  });
}

t.test('group allow overrides the group lists only for members', async (t) => {
  const eng = await engineFrom(
    { ads: '||p.example^\n||q.example^\n', adult: '||r.example^\n' },
    {
      groups: [
        { name: 'admins', clients: ['10.0.0.0/24'], allow: ['p.example'], lists: ['ads'] },
        { name: 'kids', clients: ['10.0.1.0/24'], block: ['games.example'] },
        { name: 'open', clients: ['10.0.2.0/24'], lists: [] },
        { name: 'isolated', clients: ['10.0.3.0/24'], lists: [], inheritGlobal: false },
      ],
      filter: { block: ['global.example'] },
    },
  );
  const g = (ip) => eng.groupOfIp(ip);
  t.equal(verdict(eng, 'p.example', 1, g('10.0.0.5')), 'pass', 'admins allow');
  t.equal(verdict(eng, 'q.example', 1, g('10.0.0.5')), 'block', 'admins still get ads list');
  t.equal(verdict(eng, 'r.example', 1, g('10.0.0.5')), 'pass', 'admins do not use adult list');
  t.equal(verdict(eng, 'p.example', 1, 0), 'block', 'default clients blocked');
  t.equal(verdict(eng, 'r.example', 1, 0), 'block');
  t.equal(verdict(eng, 'games.example', 1, g('10.0.1.9')), 'block', 'kids inline block');
  t.equal(verdict(eng, 'games.example', 1, 0), 'pass');
  t.equal(verdict(eng, 'r.example', 1, g('10.0.1.9')), 'block', 'omitted lists = all lists');
  t.equal(verdict(eng, 'p.example', 1, g('10.0.2.1')), 'pass', 'lists: [] uses no list');
  t.equal(verdict(eng, 'global.example', 1, g('10.0.2.1')), 'block', 'global inline rules inherited');
  t.equal(verdict(eng, 'global.example', 1, g('10.0.3.1')), 'pass', 'inheritGlobal: false');
  const kd = eng.decide('games.example', 1, g('10.0.1.9'));
  t.equal(kd.list, 'group:kids');
  t.equal(kd.ede, 17, 'group rules use EDE 17 Filtered');
  t.equal(eng.decide('p.example', 1, 0).ede, 15);
});

t.test('decisions record list and rule', async (t) => {
  const eng = await engineFrom({ first: '||z.example^\n', second: '|a.z.example^\n0.0.0.0 h.example\n*.w.example\n||i.example^$important\n' });
  t.match(eng.decide('a.z.example', 1, 0), { kind: 'block', list: 'second', rule: '|a.z.example^' });
  t.match(eng.decide('b.z.example', 1, 0), { list: 'first', rule: '||z.example^' });
  t.match(eng.decide('h.example', 1, 0), { list: 'second', rule: '|h.example^' });
  t.match(eng.decide('x.w.example', 1, 0), { rule: '||*.w.example^' });
  t.match(eng.decide('i.example', 1, 0), { rule: '||i.example^$important' });
  const counts = eng.blockedByList();
  t.equal(counts.first, 1);
  t.equal(counts.second, 4);
});
