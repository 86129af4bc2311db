import t from 'tap';
import AjvMod from 'ajv';
import { resolveNetworkConfig, networkSchema, NetworkConfigError, DEFAULTS } from '../../dist/network/index.js';

const Ajv = AjvMod.default ?? AjvMod;

t.test('defaults', async (t) => {
  const r = resolveNetworkConfig(undefined);
  t.equal(r.table, 'dns_tproxy');
  t.equal(r.fwmark, 0x1d53);
  t.equal(r.fwmarkMask, 0xffffffff);
  t.equal(r.routeTable, 153);
  t.equal(r.rulePriority, 10053);
  t.equal(r.selfMark, 0x1d54);
  t.equal(r.ipv6, true);
  t.equal(r.tcp, true);
  t.equal(r.local, false);
  t.equal(r.failMode, 'open');
  t.equal(r.destinations.interceptGateway, false);
  t.same(r.interfaces, []);
  t.same(resolveNetworkConfig({}), r);
  t.equal(DEFAULTS.fwmark, 0x1d53);
});

t.test('accepts hex strings and CIDRs', async (t) => {
  const r = resolveNetworkConfig({
    fwmark: '0x100', fwmarkMask: '0xff00', selfMark: 0x200,
    interfaces: ['br-lan', 'wg*', 'eth0.10'],
    sources: { include: ['192.168.1.0/24', 'fd00::/8'], exclude: ['192.168.1.1'] },
    destinations: { exclude: ['9.9.9.9'], interceptGateway: true },
    localExcludeUids: [0, 'nobody'], localExcludeCgroups: ['system.slice/dns-tproxy.service'],
    failMode: 'closed',
  });
  t.equal(r.fwmark, 0x100);
  t.equal(r.fwmarkMask, 0xff00);
  t.equal(r.sources.exclude[0].text, '192.168.1.1/32');
  t.equal(r.destinations.interceptGateway, true);
});

t.test('rejects unsafe or inconsistent values', async (t) => {
  const bad = [
    { table: 'x; flush ruleset' }, { table: '' }, { interfaces: ['eth0"; drop'] }, { interfaces: ['a'.repeat(16)] },
    { sources: { include: ['10.0.0.0/8 }'] } }, { sources: { exclude: 'x' } }, { sources: { other: [] } },
    { destinations: { exclude: ['nope'] } }, { routeTable: 254 }, { routeTable: 0 }, { rulePriority: 0 },
    { rulePriority: 32766 }, { fwmark: 0 }, { fwmark: '0xzz' }, { fwmark: 0x100, fwmarkMask: 0xf }, { fwmarkMask: 0 },
    { selfMark: 0x1d53 }, { failMode: 'maybe' }, { ipv6: 'yes' }, { bogus: 1 },
    { localExcludeUids: ['Root!'] }, { localExcludeCgroups: ['../etc'] }, { localExcludeCgroups: ['a b'] },
  ];
  for (const b of bad) t.throws(() => resolveNetworkConfig(b), NetworkConfigError, JSON.stringify(b));
});

t.test('schema compiles with ajv, fills defaults and matches the validator', async (t) => {
  const ajv = new Ajv({ useDefaults: true, allErrors: true });
  const validate = ajv.compile(networkSchema);
  const data = {};
  t.ok(validate(data), JSON.stringify(validate.errors));
  t.equal(data.table, 'dns_tproxy');
  t.equal(data.fwmark, 0x1d53);
  t.equal(data.failMode, 'open');
  t.same(data.sources, { include: [], exclude: [] });
  t.same(data.destinations, { exclude: [], interceptGateway: false });
  t.same(resolveNetworkConfig(data), resolveNetworkConfig({}), 'ajv-defaulted config resolves like the empty one');
  t.ok(validate({ fwmark: '0x1d53', interfaces: ['br-lan'], sources: { include: ['10.0.0.0/8'] } }));
  t.notOk(validate({ failMode: 'x' }));
  t.notOk(validate({ routeTable: 255 }));
  t.notOk(validate({ interfaces: ['bad name'] }));
  t.notOk(validate({ unknown: true }));
});
