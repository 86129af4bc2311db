// The LAN/WAN split and the transparent listeners' ACL derived from `ip -j addr` / `ip -j route`
// output (fixtures captured from namespaces set up like a home router and a one-armed gateway).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deriveIngress, describeIngress, aclCidrs, resolveNetworkConfig, networkRuleset } from '../../dist/network/index.js';
import { ClientAcl } from '../../dist/listen/acl.js';

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
const load = (name) => JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
const fixture = (prefix) => ({ links: load(`${prefix}-addr.json`), routes: [...load(`${prefix}-route4.json`), ...load(`${prefix}-route6.json`)] });
const ports = { udpPort: 5353, tcpPort: 5353 };

// router: wan0 carries both default routes (203.0.113.5/24, 2001:db8:ffff::5/64); br-lan has
// 192.168.1.1/24, fd00:1::1/64 and 2001:db8:1:1::1/64 from a delegated prefix plus an on-link route
// 2001:db8:1:2::/64; wg0 10.8.0.1/24; lan1 is a bridge port without addresses (down); 172.20.0.0/16
// is routed behind 192.168.1.20 (private anyway).
const router = fixture('router');

t.test('a router: the interface with the default route is the WAN and is not intercepted', async (t) => {
  const ing = deriveIngress(resolveNetworkConfig({}), router.links, router.routes);
  t.equal(ing.derived, true);
  t.same(ing.wanInterfaces, ['wan0']);
  t.same(ing.lanInterfaces.sort(), ['br-lan', 'lan1', 'wg0']);
  t.equal(ing.note, undefined);
  const rules = networkRuleset({}, ports, ing.wanInterfaces);
  t.match(rules, /iifname \{ "wan0" \} return/, 'the ruleset skips the WAN interface');
  t.notMatch(networkRuleset({}, ports), /iifname/, 'nothing derived: no interface rule');
});

t.test('a router: the ACL admits the LAN side, including a global IPv6 client, and not the internet', async (t) => {
  const ing = deriveIngress(resolveNetworkConfig({}), router.links, router.routes);
  const onLink = ing.ranges.filter((r) => r.origin === 'on-link').map((r) => r.cidr.text).sort();
  t.same(onLink, ['10.8.0.0/24', '192.168.1.0/24', '2001:db8:1:1::/64', '2001:db8:1:2::/64', 'fd00:1::/64', 'fe80::/64'].sort());
  const acl = new ClientAcl(aclCidrs(ing));
  for (const ok of ['192.168.1.50', '10.8.0.9', '2001:db8:1:1::abcd', '2001:db8:1:2::7', 'fd00:1::9', 'fe80::1', '172.16.3.3', '10.200.0.1', '169.254.1.1', '127.0.0.1', '::1', 'fd12::1',
    '203.0.113.5', '2001:db8:ffff::5']) {
    t.ok(acl.allowsString(ok), `admits ${ok}`);
  }
  for (const no of ['203.0.113.77', '2001:db8:ffff::77', '198.51.100.1', '2001:db8:2::1', '8.8.8.8', '2606:4700::1111', '100.64.0.1']) {
    t.notOk(acl.allowsString(no), `refuses ${no}`);
  }
  const text = describeIngress(ing);
  t.match(text, /intercepting on: .*br-lan/);
  t.match(text, /wan0/);
  t.match(text, /on-link +.*2001:db8:1:1::\/64 \(br-lan\)/);
});

t.test('clientRanges adds routed sub-LANs; explicit interfaces are honoured', async (t) => {
  t.notOk(new ClientAcl(aclCidrs(deriveIngress(resolveNetworkConfig({}), router.links, router.routes))).allowsString('198.51.100.9'));
  const cfg = resolveNetworkConfig({ clientRanges: ['198.51.100.0/24', '2001:db8:99::/48'] });
  const acl = new ClientAcl(aclCidrs(deriveIngress(cfg, router.links, router.routes)));
  t.ok(acl.allowsString('198.51.100.9'));
  t.ok(acl.allowsString('2001:db8:99:1::1'));
  t.notOk(acl.allowsString('2001:db8:98::1'));
  const explicit = deriveIngress(resolveNetworkConfig({ interfaces: ['wg*'] }), router.links, router.routes);
  t.equal(explicit.derived, false);
  t.same(explicit.lanInterfaces, ['wg0']);
  t.same(explicit.wanInterfaces, []);
  const onLink = explicit.ranges.filter((r) => r.origin === 'on-link').map((r) => r.cidr.text);
  t.same(onLink, ['10.8.0.0/24', 'fe80::/64'], 'only the listed interfaces contribute on-link prefixes');
  t.match(networkRuleset({ interfaces: ['wg*'] }, ports, ['wan0']), /iifname != \{ "wg\*" \} return/);
  t.notMatch(networkRuleset({ interfaces: ['wg*'] }, ports, ['wan0']), /"wan0"/, 'explicit interfaces win over the derivation');
  t.throws(() => resolveNetworkConfig({ clientRanges: ['10.0.0.0/33'] }), /clientRanges\[0\]/);
  t.throws(() => resolveNetworkConfig({ clientRanges: ['"; flush ruleset'] }), /clientRanges\[0\]/);
});

t.test('a one-armed gateway and a gateway without a default route intercept on every interface', async (t) => {
  const one = fixture('onearm');
  const ing = deriveIngress(resolveNetworkConfig({}), one.links, one.routes);
  t.same(ing.wanInterfaces, [], 'the only addressed interface is not skipped');
  t.same(ing.lanInterfaces, ['eth0']);
  t.match(ing.note, /every addressed interface carries the default route/);
  t.ok(new ClientAcl(aclCidrs(ing)).allowsString('192.168.1.40'));
  const noDefault = deriveIngress(resolveNetworkConfig({}), router.links, router.routes.filter((r) => r.dst !== 'default'));
  t.same(noDefault.wanInterfaces, []);
  t.match(noDefault.note, /no default route/);
  t.ok(noDefault.lanInterfaces.includes('wan0'));
});

t.test('multipath defaults, non-unicast defaults and unsafe names', async (t) => {
  const links = [
    { ifname: 'lo', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }] },
    { ifname: 'wan1', addr_info: [{ family: 'inet', local: '198.51.100.2', prefixlen: 30, scope: 'global' }] },
    { ifname: 'wan2', addr_info: [{ family: 'inet', local: '198.51.100.6', prefixlen: 30, scope: 'global' }] },
    { ifname: 'lan', addr_info: [{ family: 'inet', local: '192.168.7.1', prefixlen: 24, scope: 'global' }] },
    { ifname: 'we"ird', addr_info: [{ family: 'inet', local: '198.51.100.10', prefixlen: 30, scope: 'global' }] },
  ];
  const routes = [
    { dst: 'default', nexthops: [{ gateway: '198.51.100.1', dev: 'wan1' }, { gateway: '198.51.100.5', dev: 'wan2' }] },
    { type: 'unreachable', dst: 'default', dev: 'lan' },
    { dst: 'default', gateway: '198.51.100.9', dev: 'we"ird', table: '200' },
    { type: 'local', dst: 'default', dev: 'lo', table: '153' },
  ];
  const ing = deriveIngress(resolveNetworkConfig({}), links, routes);
  t.same(ing.wanInterfaces, ['wan1', 'wan2'], 'both multipath legs; unreachable and local defaults are not WAN; an unsafe name is left out');
  t.ok(ing.lanInterfaces.includes('we"ird'), 'an interface whose name cannot be rendered stays intercepted (the ACL still guards it)');
  t.doesNotThrow(() => networkRuleset({}, ports, ing.wanInterfaces));
  t.throws(() => networkRuleset({}, ports, ['a" } accept; #']), /cannot be put in a ruleset/);
});

t.test('the provisional list (no process spawned) comes from os.networkInterfaces in the same shape', async (t) => {
  const { linksFromOs } = await import('../../dist/network/ingress.js');
  const links = linksFromOs({
    lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
    'br-lan': [
      { address: '192.168.1.1', netmask: '255.255.255.0', family: 'IPv4', mac: 'x', internal: false, cidr: '192.168.1.1/24' },
      { address: '2001:db8:1:1::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: 'x', internal: false, cidr: '2001:db8:1:1::1/64', scopeid: 0 },
      { address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: 'x', internal: false, cidr: 'fe80::1/64', scopeid: 3 },
    ],
  });
  t.same(links[1], { ifname: 'br-lan', addr_info: [
    { family: 'inet', local: '192.168.1.1', prefixlen: 24, scope: 'global' },
    { family: 'inet6', local: '2001:db8:1:1::1', prefixlen: 64, scope: 'global' },
    { family: 'inet6', local: 'fe80::1', prefixlen: 64, scope: 'link' },
  ] });
  const acl = new ClientAcl(aclCidrs(deriveIngress(resolveNetworkConfig({}), links, [])));
  t.ok(acl.allowsString('2001:db8:1:1::99'), 'a global IPv6 LAN client is admitted from the start');
  t.notOk(acl.allowsString('203.0.113.9'));
});
