import t from 'tap';
import { readFileSync, mkdtempSync, rmSync, readFileSync as rf } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import Ajv from 'ajv';
import YAML from 'yaml';
import { buildEngine, filterConfigSchema } from '../../dist/filter/index.js';
import { domainAt, writeSynthetic } from '../../rules/gen-synthetic.js';

const root = new URL('../../', import.meta.url).pathname;

t.test('rules/sample-ads.txt and sample-hosts.txt load cleanly', async (t) => {
  const ads = readFileSync(join(root, 'rules/sample-ads.txt'));
  const hosts = readFileSync(join(root, 'rules/sample-hosts.txt'));
  const eng = await buildEngine(
    { filter: { lists: [{ name: 'ads', path: 'x' }, { name: 'hosts', path: 'y' }] }, groups: [{ name: 'kids', clients: ['10.0.0.0/8'] }] },
    [{ name: 'ads', data: ads }, { name: 'hosts', data: hosts }],
  );
  const [a, h] = eng.sources;
  t.equal(a.badLines, 0, JSON.stringify(a.samples));
  t.equal(a.unsupported, 3);
  t.equal(h.badLines + h.unsupported, 0);
  t.equal(h.rules, 8);
  const v = (n, qt = 1, g = 0, ip) => eng.decide(n, qt, g, ip)?.kind ?? 'pass';
  t.equal(v('x.ads.example.com'), 'block');
  t.equal(v('safe.ads.example.com'), 'pass');
  t.equal(v('malware.example.net'), 'block');
  t.equal(v('pixel.example.com'), 'block');
  t.equal(v('a.pixel.example.com'), 'pass');
  t.equal(v('cdn-ads.example'), 'pass');
  t.equal(v('x.cdn-ads.example'), 'block');
  t.equal(v('ipv6-tracker.example', 1), 'pass');
  t.equal(v('ipv6-tracker.example', 28), 'block');
  t.equal(v('games.example', 1, 0, '192.168.1.4'), 'block');
  t.equal(v('games.example', 1, 1, '10.1.1.1'), 'block');
  t.equal(v('games.example', 1, 0, '10.1.1.1'), 'pass');
  t.equal(v('ad7.banners.example'), 'block');
  t.equal(v('ad12.example.com'), 'block');
  t.equal(v('x.trk3.test'), 'block');
  t.equal(v('banner.example.com'), 'block');
  t.equal(v('three.example.org'), 'block');
  t.equal(v('localhost'), 'pass');
});

t.test('filterConfigSchema compiles with ajv and validates a YAML config', async (t) => {
  const ajv = new Ajv({ allErrors: true });
  const validate = ajv.compile({ type: 'object', properties: filterConfigSchema, additionalProperties: false });
  const good = YAML.parse(`
filter:
  mode: nxdomain
  blockTtl: 60
  lists:
    - { name: ads, path: rules/sample-ads.txt }
    - { name: remote, url: "https://lists.example/hosts.txt", refresh: 24h }
  block: ["||bad.example^"]
  allow: [good.example]
groups:
  - name: kids
    clients: ["192.168.1.0/24", "fd00::/64", "aa:bb:cc:dd:ee:ff"]
    lists: [ads]
    mode: refused
local: ["nas.home A 192.168.1.10"]
forward: [{ domain: corp.example, to: "10.0.0.53" }]
`);
  t.ok(validate(good), JSON.stringify(validate.errors));
  t.notOk(validate({ filter: { mode: 'bogus' } }));
  t.notOk(validate({ filter: { lists: [{ name: 'x' }] } }), 'list needs path or url');
  t.notOk(validate({ filter: { lists: [{ name: 'x', path: 'a', url: 'http://b' }] } }), 'not both');
  t.notOk(validate({ groups: [{ name: 'g' }] }), 'group needs clients');
  t.notOk(validate({ forward: [{ domain: 'x' }] }));
});

t.test('gen-synthetic writes unique, valid domains', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gen-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const p = join(dir, 'l.txt');
  await writeSynthetic(p, 5000, 'hosts');
  const data = rf(p);
  const eng = await buildEngine({}, [{ name: 's', data }]);
  t.equal(eng.sources[0].rules, 5000);
  t.equal(eng.sources[0].badLines, 0);
  t.equal(eng.info.entries, 5000);
  t.equal(eng.decide(domainAt(1234), 1, 0)?.kind, 'block');
  t.equal(eng.decide(domainAt(5001), 1, 0), null);
  const cli = spawnSync(process.execPath, [join(root, 'rules/gen-synthetic.js'), '3', 'adblock'], { encoding: 'utf8' });
  t.equal(cli.stdout.trim().split('\n').length, 3);
  t.match(cli.stdout, /^\|\|.+\^$/m);
});
