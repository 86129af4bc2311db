// Issue 17 through the TPROXY lab: a LAN client's query (sent to 198.51.100.53, which runs no DNS
// server) is found through the console API with its client address, device name and original
// destination; a block rule added through the API blocks the client's very next query; pause and
// resume. The API is called from the client namespace, like a browser on the LAN.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { openLab, baseConfig, nsExec, SERVER_V4 } from './lib.js';
import { hashPassword } from '../../dist/api/auth.js';

const CONSOLE_HOST = '10.77.0.1';
const CONSOLE_PORT = 8080;
const PASSWORD = 'lab password';

/** One HTTP request from the client namespace (a child process there); returns { status, json, cookie }. */
function api(lab, method, p, { body, cookie } = {}) {
  const script = `
const http = require('node:http');
const [method, p, body, cookie, host, port] = JSON.parse(process.argv[1]);
const headers = { host: host + ':' + port };
if (method !== 'GET') headers.origin = 'http://' + host + ':' + port;
if (cookie) headers.cookie = cookie;
const data = body === null ? null : Buffer.from(JSON.stringify(body));
if (data) { headers['content-type'] = 'application/json'; headers['content-length'] = data.length; }
const req = http.request({ host, port, method, path: p, headers, setHost: false, timeout: 10000 }, (res) => {
  let text = '';
  res.setEncoding('utf8');
  res.on('data', (d) => { text += d; });
  res.on('end', () => {
    let json = null; try { json = JSON.parse(text); } catch {}
    const sc = (res.headers['set-cookie'] || [])[0];
    process.stdout.write(JSON.stringify({ status: res.statusCode, json, cookie: sc ? sc.split(';')[0] : null }));
  });
});
req.on('timeout', () => req.destroy(new Error('timeout')));
req.on('error', (e) => { process.stdout.write(JSON.stringify({ status: 0, json: { error: e.message } })); });
if (data) req.write(data);
req.end();`;
  const out = nsExec(lab.client, process.execPath, ['-e', script, JSON.stringify([method, p, body ?? null, cookie ?? null, CONSOLE_HOST, CONSOLE_PORT])]);
  return JSON.parse(out);
}

const rcodeOf = (digOut) => /status: (\w+)/.exec(digOut)?.[1] ?? 'NO ANSWER';

const lab = openLab(t);
if (lab) {
  const stateDir = path.join(lab.dir, 'api-state');
  const listFile = path.join(lab.dir, 'api-ads.txt');
  fs.writeFileSync(listFile, '||ads.wild.test^\n');
  let cookie = null;
  const dig = (name) => rcodeOf(lab.dig([`@${SERVER_V4}`, name, 'A', '+tries=1', '+time=2'], true));

  t.test('setup: unbound, dns-tproxy with the console, a device name for the client', async (t) => {
    await lab.startUnbound();
    const hash = await hashPassword(PASSWORD, { n: 4096, r: 8, p: 1 });
    const cfg = lab.writeConfig('api.yaml', baseConfig(lab, { extra: `stateDir: "${stateDir}"
filter:
  lists:
    - name: ads
      path: "${listFile}"
devices:
  names:
    - name: lab-laptop
      addresses: ["10.77.0.2"]
console:
  listen: "${CONSOLE_HOST}:${CONSOLE_PORT}"
  users:
    - name: admin
      password: "${hash}"
` }));
    await lab.startServer(cfg);
    const login = api(lab, 'POST', '/api/v1/login', { body: { user: 'admin', password: PASSWORD } });
    t.equal(login.status, 200, JSON.stringify(login.json));
    cookie = login.cookie;
    t.ok(cookie, 'session cookie');
  });

  t.test('a client query is found with its client, device name and original destination', async (t) => {
    t.equal(dig('history.wild.test'), 'NOERROR');
    let found = null;
    let attempts = 0;
    // The store writes in batches (100 ms); bounded polling, not a timing assertion.
    while (!found && attempts < 50) {
      attempts++;
      const r = api(lab, 'GET', '/api/v1/queries?name=history.wild.test', { cookie });
      t.equal(r.status, 200);
      found = r.json.items.find((x) => x.qname === 'history.wild.test') ?? null;
    }
    t.ok(found, `found after ${attempts} request(s)`);
    t.match(found, { client: '10.77.0.2', device: { name: 'lab-laptop' }, server: SERVER_V4, serverPort: 53, transport: 'udp', qtype: 'A', rcode: 'NOERROR' });
    const byDevice = api(lab, 'GET', '/api/v1/queries?client=lab-laptop&name=history', { cookie });
    t.ok(byDevice.json.items.some((x) => x.qname === 'history.wild.test'), 'client= matches the device name');
  });

  t.test('a rule added through the API blocks the client\'s next query', async (t) => {
    t.equal(dig('victim.wild.test'), 'NOERROR', 'resolves (and is cached) before the rule');
    const before = lab.unboundQueries('victim.wild.test');
    const add = api(lab, 'POST', '/api/v1/rules', { cookie, body: { action: 'block', name: 'victim.wild.test' } });
    t.equal(add.status, 201, JSON.stringify(add.json));
    // Poll up to a bound; the layer is consulted per query, so the first attempt is already blocked.
    let attempts = 0;
    let rcode = '';
    while (attempts < 10 && rcode !== 'NXDOMAIN') { attempts++; rcode = dig('victim.wild.test'); }
    t.equal(rcode, 'NXDOMAIN');
    t.equal(attempts, 1, 'the very next query is blocked');
    t.equal(dig('sub.victim.wild.test'), 'NXDOMAIN', 'subdomains too');
    t.equal(lab.unboundQueries('victim.wild.test'), before, 'no query reached the upstream after the rule');
    const del = api(lab, 'DELETE', `/api/v1/rules/${add.json.rule.id}`, { cookie });
    t.equal(del.status, 200);
    t.equal(dig('victim.wild.test'), 'NOERROR', 'deleting the rule lets it through again');
  });

  t.test('pause and resume', async (t) => {
    t.equal(dig('ads.wild.test'), 'NXDOMAIN', 'blocked by the list');
    const p = api(lab, 'POST', '/api/v1/pause', { cookie, body: { seconds: 2 } });
    t.equal(p.status, 200);
    t.equal(p.json.paused, true);
    t.equal(dig('ads.wild.test'), 'NOERROR', 'paused: it resolves');
    let attempts = 0;
    let paused = true;
    while (paused && attempts < 100) { attempts++; paused = api(lab, 'GET', '/api/v1/pause', { cookie }).json.paused; }
    t.equal(paused, false, `resumed by itself (${attempts} polls)`);
    t.equal(dig('ads.wild.test'), 'NXDOMAIN', 'blocked again');

    t.equal(api(lab, 'POST', '/api/v1/pause', { cookie, body: {} }).json.until, null, 'until resumed');
    t.equal(dig('ads.wild.test'), 'NOERROR');
    t.equal(api(lab, 'DELETE', '/api/v1/pause', { cookie }).json.paused, false);
    t.equal(dig('ads.wild.test'), 'NXDOMAIN', 'resumed by DELETE');
    const audit = api(lab, 'GET', '/api/v1/audit', { cookie }).json.entries.map((e) => `${e.user} ${e.action}`);
    t.same(audit.slice(0, 5), ['admin resume', 'admin pause', 'admin pause', 'admin rule.delete', 'admin rule.add']);
  });
}
