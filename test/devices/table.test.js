// The device table: sources folded by MAC, config names winning, lease files watched, reverse lookups
// bounded and cached.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';
import { DeviceTable } from '../../dist/devices/table.js';
import { parseIpNeighJson } from '../../dist/devices/parse.js';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
const neigh = () => Promise.resolve(parseIpNeighJson(fs.readFileSync(path.join(fixtures, 'ip-neigh.json'), 'utf8')));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Waits for `cond` (bounded: at most `tries` checks). */
async function until(cond, tries = 200) { for (let i = 0; i < tries; i++) { if (await cond()) return true; await sleep(50); } return false; }

t.test('an IPv6 privacy address folds into the device of its MAC, named by the lease', async (t) => {
  const d = await DeviceTable.create({ leases: [path.join(fixtures, 'dhcp.leases')] }, { readNeighbours: neigh });
  t.teardown(() => d.close());
  const v4 = d.lookup('192.168.1.10');
  const priv = d.lookup('2001:db8:1::5b1:77ff:1234:abcd');
  t.same(v4, { id: 'mac:02:00:00:00:00:01', name: 'tv', mac: '02:00:00:00:00:01' });
  t.same(priv, v4, 'the privacy address (only in the neighbour table) is the same device');
  t.same(d.lookup('::ffff:192.168.1.10'), v4, 'a v4-mapped address is the v4 address');
  t.same(d.lookup('192.168.1.40'), { id: 'mac:02:00:00:00:00:c1', mac: '02:00:00:00:00:c1' }, 'a MAC without a name');
  t.same(d.lookup('192.0.2.200'), { id: 'ip:192.0.2.200' }, 'an unknown address');
  const tv = d.list().find((e) => e.name === 'tv');
  t.same(tv.addresses.sort(), ['192.168.1.10', '2001:db8:1::5b1:77ff:1234:abcd', 'fd00::10'].sort(), 'list() shows the device with all its addresses');
  t.equal(tv.source, 'dnsmasq');
});

t.test('names set in the config win over leases, by MAC or by address', async (t) => {
  const d = await DeviceTable.create({
    leases: [{ path: path.join(fixtures, 'dhcpd.leases'), format: 'dhcpd' }, path.join(fixtures, 'dhcp.leases')],
    names: [{ name: 'living-room-tv', mac: '02:00:00:00:00:01' }, { name: 'printer', addresses: ['192.168.1.50', '192.0.2.9'] }, { name: 'ghost', mac: '02:00:00:00:00:99' }],
  }, { readNeighbours: neigh });
  t.teardown(() => d.close());
  t.equal(d.lookup('192.168.1.10').name, 'living-room-tv');
  t.equal(d.lookup('2001:db8:1::5b1:77ff:1234:abcd').name, 'living-room-tv');
  t.same(d.lookup('192.168.1.50'), { id: 'name:printer', name: 'printer' });
  t.equal(d.lookup('192.168.1.31').name, 'new-name', 'ISC dhcpd lease names');
  const list = d.list();
  t.same(list.find((e) => e.name === 'printer').addresses.sort(), ['192.0.2.9', '192.168.1.50']);
  t.same(list.find((e) => e.name === 'ghost'), { id: 'mac:02:00:00:00:00:99', name: 'ghost', mac: '02:00:00:00:00:99', addresses: [], source: 'config' }, 'a configured device not seen yet is listed');
});

t.test('a lease file is watched: replaced, rewritten, created late', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'dhcp.leases');
  const d = await DeviceTable.create({ leases: [file], neighbours: false, pollMs: 200 }, {});
  t.teardown(() => d.close());
  t.same(d.lookup('192.168.1.60'), { id: 'ip:192.168.1.60' }, 'no file yet: no name, no error');
  fs.writeFileSync(file, '1764590000 02:00:00:00:00:61 192.168.1.60 first *\n');
  t.ok(await until(() => d.lookup('192.168.1.60').name === 'first'), 'a file created later is read');
  // DHCP servers replace the file: write a temporary one and rename it over.
  fs.writeFileSync(`${file}.tmp`, '1764590000 02:00:00:00:00:61 192.168.1.60 second *\n');
  fs.renameSync(`${file}.tmp`, file);
  t.ok(await until(() => d.lookup('192.168.1.60').name === 'second'), 'a replaced file is re-read');
  fs.writeFileSync(file, '1764590000 02:00:00:00:00:62 192.168.1.61 third *\n');
  t.ok(await until(() => d.lookup('192.168.1.61').name === 'third'), 'a rewritten file is re-read');
  t.equal(d.lookup('192.168.1.60').name, undefined, 'a lease that left the file is forgotten');
});

async function ptrServer(answerFor) {
  const s = dgram.createSocket('udp4');
  const seen = [];
  s.on('message', (msg, r) => {
    const q = dnsPacket.decode(msg);
    seen.push(q.questions[0].name);
    const name = answerFor(q.questions[0].name);
    if (name === undefined) return; // never answer
    s.send(dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE | (name ? 0 : 3), questions: q.questions,
      answers: name ? [{ name: q.questions[0].name, type: 'PTR', ttl: 60, data: name }] : [] }), r.port, r.address);
  });
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  return { port: s.address().port, seen, close: () => s.close() };
}

t.test('reverse lookups through the configured resolver name unnamed clients, once', async (t) => {
  const srv = await ptrServer((n) => (n === '77.2.0.192.in-addr.arpa' ? 'desk.lan' : null));
  t.teardown(() => srv.close());
  const d = await DeviceTable.create({ neighbours: false, reverseResolver: `127.0.0.1:${srv.port}` }, {});
  t.teardown(() => d.close());
  t.equal(d.lookup('192.0.2.77').name, undefined, 'the first lookup does not wait');
  t.ok(await until(() => d.lookup('192.0.2.77').name === 'desk'), 'the PTR name arrives');
  d.lookup('192.0.2.78');
  t.ok(await until(() => srv.seen.includes('78.2.0.192.in-addr.arpa')));
  await sleep(200);
  for (let i = 0; i < 20; i++) { d.lookup('192.0.2.77'); d.lookup('192.0.2.78'); }
  await sleep(200);
  t.equal(srv.seen.filter((n) => n === '77.2.0.192.in-addr.arpa').length, 1, 'a name is cached');
  t.equal(srv.seen.filter((n) => n === '78.2.0.192.in-addr.arpa').length, 1, 'so is an NXDOMAIN');
});

t.test('reverse lookups in flight are bounded', async (t) => {
  const srv = await ptrServer(() => undefined);
  t.teardown(() => srv.close());
  const d = await DeviceTable.create({ neighbours: false, reverseResolver: `127.0.0.1:${srv.port}` }, {});
  t.teardown(() => d.close());
  for (let i = 0; i < 200; i++) d.lookup(`198.51.100.${i}`);
  await sleep(300);
  t.ok(d.reverseLookups <= 64, `at most 64 in flight (${d.reverseLookups} started)`);
  t.ok(srv.seen.length <= 64, `the resolver saw at most 64 queries (${srv.seen.length})`);
  t.ok(srv.seen.length > 0, 'and some were sent');
});
