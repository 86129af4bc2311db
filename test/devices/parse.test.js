// Lease files and neighbour tables, from fixtures in the formats the servers write.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDnsmasqLeases, parseOdhcpd, parseDhcpdLeases, parseIpNeighJson, parseProcArp, detectLeaseFormat, canonicalMac, macFromDuid } from '../../dist/devices/parse.js';

const fx = (f) => fs.readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', f), 'utf8');

t.test('dnsmasq dhcp.leases: v4 lines by MAC, v6 lines by the MAC inside the client DUID', async (t) => {
  t.same(parseDnsmasqLeases(fx('dhcp.leases')), [
    { address: '192.168.1.10', mac: '02:00:00:00:00:01', name: 'tv' },
    { address: '192.168.1.11', mac: '02:00:00:00:00:02' },
    { address: '192.168.1.12', mac: '02:00:00:00:00:03', name: 'laptop-anna' },
    { address: 'fd00::10', mac: '02:00:00:00:00:01', name: 'tv' },
    { address: 'fd00::11', mac: '02:00:00:00:00:04', name: 'phone' },
  ]);
});

t.test('odhcpd: state file (v6 DUID, v4 hex or colon MAC, broken names dropped) and hosts file', async (t) => {
  t.same(parseOdhcpd(fx('odhcpd.state')), [
    { address: 'fd00::a1', mac: '02:00:00:00:00:a1', name: 'printer' },
    { address: 'fd00::a2', mac: '02:00:00:00:00:a1', name: 'printer' },
    { address: '192.168.1.20', mac: '02:00:00:00:00:a2', name: 'nas' },
    { address: '192.168.1.21', mac: '02:00:00:00:00:a3' },
    { address: '192.168.1.22', mac: '02:00:00:00:00:a4' },
  ]);
  t.same(parseOdhcpd(fx('odhcpd.hosts')), [{ address: 'fd00::a1', name: 'printer' }, { address: '192.168.1.20', name: 'nas' }]);
});

t.test('ISC dhcpd.leases: the last block for an address wins; free leases are dropped', async (t) => {
  t.same(parseDhcpdLeases(fx('dhcpd.leases')), [
    { address: '192.168.1.30', mac: '02:00:00:00:00:b1', name: 'kitchen-pad' },
    { address: '192.168.1.31', mac: '02:00:00:00:00:b2', name: 'new-name' },
    { address: '192.168.1.33', mac: '02:00:00:00:00:b4' },
  ]);
});

t.test('neighbour tables: ip -j neigh (v4 and v6, no FAILED/INCOMPLETE) and /proc/net/arp', async (t) => {
  t.same(parseIpNeighJson(fx('ip-neigh.json')), [
    { address: '192.168.1.10', mac: '02:00:00:00:00:01' },
    { address: 'fd00::10', mac: '02:00:00:00:00:01' },
    { address: '2001:db8:1::5b1:77ff:1234:abcd', mac: '02:00:00:00:00:01' },
    { address: '192.168.1.40', mac: '02:00:00:00:00:c1' },
  ]);
  t.same(parseProcArp(fx('proc-net-arp')), [
    { address: '192.168.1.10', mac: '02:00:00:00:00:01' },
    { address: '192.168.1.41', mac: '02:00:00:00:00:c2' },
  ]);
  t.same(parseIpNeighJson('not json'), []);
  t.same(parseIpNeighJson('{"dst":1}'), []);
  t.same(parseIpNeighJson('[null, 3, {"dst": 5, "lladdr": "x"}]'), []);
});

t.test('format detection and MAC forms', async (t) => {
  t.equal(detectLeaseFormat(fx('dhcp.leases')), 'dnsmasq');
  t.equal(detectLeaseFormat(fx('odhcpd.state')), 'odhcpd');
  t.equal(detectLeaseFormat(fx('dhcpd.leases')), 'dhcpd');
  t.equal(canonicalMac('AA:bb:0C:d:e:F'), 'aa:bb:0c:0d:0e:0f');
  t.equal(canonicalMac('aabbccddeeff'), 'aa:bb:cc:dd:ee:ff');
  t.equal(canonicalMac('aa-bb-cc-dd-ee-ff'), 'aa:bb:cc:dd:ee:ff');
  t.equal(canonicalMac('12345678'), null);
  t.equal(macFromDuid('00:03:00:01:02:00:00:00:00:01'), '02:00:00:00:00:01', 'DUID-LL');
  t.equal(macFromDuid('000100012c3d4e5f0200000000fe'), '02:00:00:00:00:fe', 'DUID-LLT');
  t.equal(macFromDuid('00020000ab11aabbccdd'), undefined, 'DUID-EN carries no MAC');
});

t.test('garbage never throws', async (t) => {
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
  const alphabet = 'lease {}";# \n0123456789abcdef:.-/*duid binding state active hardware ethernet ipv4';
  const threw = [];
  for (let i = 0; i < 500; i++) {
    const s = Array.from({ length: rnd() % 400 }, () => alphabet[rnd() % alphabet.length]).join('');
    for (const f of [parseDnsmasqLeases, parseOdhcpd, parseDhcpdLeases, parseIpNeighJson, parseProcArp, detectLeaseFormat]) {
      try { f(s); } catch (e) { threw.push(`${f.name}: ${e.message}: ${JSON.stringify(s)}`); }
    }
  }
  t.same(threw, [], '500 random inputs x 6 parsers');
});
