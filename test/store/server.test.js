// The store inside a running server (plain listener on loopback, a fake upstream): answered and
// dropped queries are recorded with their device, the default file lives under stateDir, close()
// writes what is queued, and `store: false` turns it all off.
import t from 'tap';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import dnsPacket from 'dns-packet';
import { parseConfig } from '../../dist/config/load.js';
import { DnsServer } from '../../dist/server.js';
import { SqliteStore } from '../../dist/store/sqlite.js';

async function upstream(t) {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => {
    const q = dnsPacket.decode(m);
    s.send(dnsPacket.encode({ type: 'response', id: q.id, flags: 0x8180, questions: q.questions, answers: [{ name: q.questions[0].name, type: 'A', ttl: 60, data: '192.0.2.9' }] }), r.port, r.address);
  });
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  t.teardown(() => s.close());
  return s.address().port;
}
async function freePort() {
  const s = dgram.createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const p = s.address().port;
  await new Promise((r) => s.close(r));
  return p;
}
async function start(t, dir, extra) {
  const port = await freePort();
  const cfg = parseConfig(`listen:\n  plain: ["127.0.0.1:${port}"]\nupstreams:\n  - url: "udp://127.0.0.1:${await upstream(t)}"\nstateDir: "${dir}"\n${extra}`, path.join(dir, 'c.yaml'));
  const srv = new DnsServer(cfg, () => {});
  await srv.start();
  return { srv, port };
}
async function ask(port, name) {
  const c = dgram.createSocket('udp4');
  const got = new Promise((r) => c.once('message', r));
  c.send(dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] }), port, '127.0.0.1');
  const m = await got;
  c.close();
  return dnsPacket.decode(m);
}

t.test('answered and malformed queries are recorded with the device; close() writes the queue', async (t) => {
  const dir = t.testdir();
  const { srv, port } = await start(t, dir, 'devices:\n  neighbours: false\n  names: [{name: build-box, addresses: ["127.0.0.1"]}]\n');
  t.ok(srv.store, 'the default store is on');
  t.ok(srv.devices, 'and the device table');
  for (let i = 0; i < 5; i++) t.equal((await ask(port, `q${i}.example`)).answers[0].data, '192.0.2.9');
  const c = dgram.createSocket('udp4');
  c.send(Buffer.from([1, 2, 3, 4, 5]), port, '127.0.0.1');
  await new Promise((r) => setTimeout(r, 200));
  c.close();
  const live = [];
  const off = srv.store.subscribe((r) => live.push(r.qname));
  await ask(port, 'live.example');
  off();
  t.same(live, ['live.example'], 'subscribers see records as they are answered');
  await srv.close();
  const file = path.join(dir, 'queries.db');
  t.ok(fs.existsSync(file), 'the default file is <stateDir>/queries.db');
  const s = await SqliteStore.open({ path: file, maintainEveryMs: 0 });
  t.teardown(() => s.close());
  const all = (await s.search({ limit: 100 })).items;
  t.same(all.filter((r) => r.kind === 'query').map((r) => r.qname).sort(), ['live.example', 'q0.example', 'q1.example', 'q2.example', 'q3.example', 'q4.example'], 'every answered query, written by close()');
  t.ok(all.every((r) => r.device?.name === 'build-box' && r.client === '127.0.0.1' && r.server === '127.0.0.1' && r.serverPort === port && r.transport === 'plain'));
  const dropped = all.filter((r) => r.kind === 'dropped');
  t.same(dropped.map((r) => r.dropReason), ['malformed'], 'the malformed datagram is recorded as dropped');
  t.equal(srv.counters.malformedDropped, 1, 'and still counted as malformed');
});

t.test('store: false turns the history off; the server still answers', async (t) => {
  const dir = t.testdir();
  const { srv, port } = await start(t, dir, 'store: false\n');
  t.equal(srv.store, null);
  t.equal(srv.devices, null, 'no device table without a store or a devices: section');
  t.equal((await ask(port, 'x.example')).answers[0].data, '192.0.2.9');
  await srv.close();
  t.notOk(fs.existsSync(path.join(dir, 'queries.db')));
});

t.test('config: the fixed store keys validate; bad values are refused with the key path', async (t) => {
  const base = 'upstreams:\n  - url: "udp://127.0.0.1:53"\n';
  t.doesNotThrow(() => parseConfig(`${base}store:\n  path: q.db\n  retentionDays: 30\n  maxBytes: 1000000000\n`));
  t.doesNotThrow(() => parseConfig(`${base}store:\n  url: "postgres://dns@db.example:5432/dns"\n  gatewayId: gw-1\n`));
  t.doesNotThrow(() => parseConfig(`${base}store: false\n`));
  t.throws(() => parseConfig(`${base}store:\n  retentionDays: -1\n`), /store/);
  t.throws(() => parseConfig(`${base}store:\n  url: "mysql://x"\n`), /store/);
  t.throws(() => parseConfig(`${base}store:\n  pth: q.db\n`), /store/);
  t.throws(() => parseConfig(`${base}devices:\n  leases: [{path: x, format: nope}]\n`), /devices/);
});
