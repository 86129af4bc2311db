// Through TPROXY: a client's queries are found in the query history with the client's address, its
// device name (from a dnsmasq lease file for v4; from the neighbour table's MAC for v6, which has no
// lease) and the original destination it sent them to. The query log line names the device too.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { openLab, baseConfig, SERVER_V4, SERVER_V6, sh, labMetrics, metricValue, sleep, waitFor } from './lib.js';
import { SqliteDb } from '../../dist/store/sqlite-db.js';

const lab = openLab(t);
if (lab) {
  await lab.startUnbound();
  const mac = JSON.parse(sh('ip', ['-n', lab.client, '-j', 'link', 'show', `dta${lab.id}`]))[0].address;
  const leases = path.join(lab.dir, 'dhcp.leases');
  fs.writeFileSync(leases, `${Math.floor(Date.now() / 1000) + 3600} ${mac} 10.77.0.2 kids-tablet *\n`);
  const dbPath = path.join(lab.dir, 'state', 'queries.db');
  const logPath = path.join(lab.dir, 'queries.jsonl');
  const config = lab.writeConfig('store.yaml', baseConfig(lab, {
    extra: `stateDir: "${path.join(lab.dir, 'state')}"
store:
  retentionDays: 7
devices:
  leases: ["${leases}"]
log:
  mode: all
  output: "${logPath}"
`,
  }));
  // Our own, longer bound on start-up: on a loaded two-core CI machine start-up alone has taken 12-19 s.
  const proc = await lab.startServer(config, { wait: false });
  t.teardown(() => lab.stop(proc));
  await waitFor(() => {
    if (proc.exitCode !== null) throw new Error(`dns-tproxy exited: ${fs.readFileSync(proc.logPath, 'utf8')}`);
    return /status: NOERROR/.test(lab.dig([`@${SERVER_V4}`, 'a.lab.test', 'A', '+tries=1', '+time=1'], true));
  }, 120_000, 'dns-tproxy answering through TPROXY');

  const tag = `p${process.pid}`;
  lab.dig([`@${SERVER_V4}`, `v4-${tag}.wild.test`, 'A', '+tries=1', '+time=3']);
  lab.dig([`@${SERVER_V6}`, `v6-${tag}.wild.test`, 'AAAA', '+tries=1', '+time=3']);
  lab.dig([`@${SERVER_V4}`, `tcp-${tag}.wild.test`, 'A', '+tcp', '+tries=1', '+time=3']);

  const db = new SqliteDb({ path: dbPath });
  t.teardown(() => db.close());
  const find = async (name) => {
    for (let i = 0; i < 100; i++) {
      const items = db.search({ name }).items;
      if (items.length) return items;
      await sleep(100);
    }
    return [];
  };

  t.test('a v4 query: client, device from the lease, original destination, answer', async (t) => {
    const items = await find(`v4-${tag}.wild.test`);
    t.equal(items.length, 1, 'recorded once');
    t.match(items[0], {
      client: '10.77.0.2', server: SERVER_V4, serverPort: 53, transport: 'udp', qname: `v4-${tag}.wild.test`, qtype: 'A',
      kind: 'query', rcode: 'NOERROR', answeredBy: 'upstream', answers: ['A 192.0.2.20'],
      device: { name: 'kids-tablet', mac, id: `mac:${mac}` },
    });
    t.match(items[0].upstream, /^https:\/\/127\.0\.0\.1:\d+\/dns-query$/);
  });

  t.test('a v6 query folds into the same device through the neighbour table', async (t) => {
    const items = await find(`v6-${tag}.wild.test`);
    t.equal(items.length, 1);
    t.match(items[0], { client: 'fd00:77::2', server: SERVER_V6, serverPort: 53, qtype: 'AAAA', device: { name: 'kids-tablet', mac } });
  });

  t.test('a TCP query keeps its transport', async (t) => {
    const items = await find(`tcp-${tag}.wild.test`);
    t.match(items[0], { transport: 'tcp', client: '10.77.0.2', server: SERVER_V4, device: { name: 'kids-tablet' } });
  });

  t.test('searching by device name finds both address families', async (t) => {
    const items = db.search({ client: 'kids-tablet', name: tag }).items;
    t.same(new Set(items.map((r) => r.client)), new Set(['10.77.0.2', 'fd00:77::2']));
  });

  t.test('the JSON query log carries the device', async (t) => {
    let line;
    for (let i = 0; i < 100 && !line; i++) {
      line = fs.existsSync(logPath) && fs.readFileSync(logPath, 'utf8').split('\n').find((l) => l.includes(`v4-${tag}.wild.test`));
      if (!line) await sleep(100);
    }
    t.ok(line, 'logged');
    t.same(JSON.parse(line).device, { name: 'kids-tablet', mac });
  });

  t.test('store metrics', async (t) => {
    const m = labMetrics(lab);
    t.ok(metricValue(m, 'dns_tproxy_store_written_total', { backend: 'sqlite' }) >= 3, 'records written');
    t.equal(metricValue(m, 'dns_tproxy_store_dropped_total', { backend: 'sqlite' }), 0, 'none dropped');
    t.ok(metricValue(m, 'dns_tproxy_devices_known') >= 1);
  });
}
