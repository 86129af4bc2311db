// The `check` corpus: every config here must be refused by `dns-tproxy check` AND by `dns-tproxy run`,
// with the same message and exit code, naming the file, line and key path. Both commands run as the
// user runs them (dist/cli.js in a child process); `run` refuses before binding anything, so no root.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../../dist/config/load.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(root, 'dist/cli.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'check-corpus-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
fs.writeFileSync(path.join(dir, 'ads.txt'), '||ads.example^\n');

const base = `listen:
  plain: ["127.0.0.1:5300"]
upstreams:
  - url: "udp://192.0.2.1:53"
`;

/** [title, extra YAML appended to base (or a whole config), expected line, key path, message pattern] */
const corpus = [
  ['group client is not an address', 'groups:\n  - name: kids\n    clients: ["banana"]\n', 7, 'groups.0.clients.0', /"banana" is not an IP address, CIDR prefix or MAC/],
  ['plainAllow prefix length out of range', null, 2, 'listen.plainAllow.0', /"127\.0\.0\.0\/99" has a bad prefix length/,
    base.replace('  plain:', '  plainAllow: ["127.0.0.0/99"]\n  plain:')],
  ['local record with a bad IPv4 address', 'local:\n  - "nas.home A 999.1.1.1"\n', 6, 'local.0', /invalid IPv4 address/],
  ['list file that does not exist', 'filter:\n  lists:\n    - name: ads\n      path: missing.txt\n', 8, 'filter.lists.0.path', /cannot read .*missing\.txt: no such file/],
  ['forward target that is not an address', 'forward:\n  - domain: corp.example\n    to: "not an address"\n', 7, 'forward.0.to', /bad host/],
  ['forward target that is a hostname on plain DNS', 'forward:\n  - domain: corp.example\n    to: "dns.corp.example"\n', 7, 'forward.0.to', /must be an IP address/],
  ['upstream that is our own plain listener', null, 4, 'upstreams.0.url', /our own listener listen\.plain\.0 \(a query loop\)/,
    base.replace('udp://192.0.2.1:53', 'udp://127.0.0.1:5300')],
  ['upstream that reaches our wildcard tproxy listener over loopback', null, 5, 'upstreams.0.url', /our own listener listen\.tproxy\.tcp/,
    'listen:\n  tproxy:\n    tcp: "0.0.0.0:5353"\nupstreams:\n  - url: "tcp://127.0.0.1:5353"\n'],
  ['forward target that is our own listener', 'forward:\n  - domain: corp.example\n    to: "127.0.0.1:5300"\n', 7, 'forward.0.to', /our own listener listen\.plain\.0/],
  ['bootstrap server that is our own listener', 'bootstrap: ["127.0.0.1:5300"]\n', 5, 'bootstrap.0', /our own listener/],
  ['group refers to a list that does not exist', 'filter:\n  lists:\n    - name: ads\n      path: ads.txt\ngroups:\n  - name: kids\n    clients: ["10.0.0.0/8"]\n    lists: ["adz"]\n',
    12, 'groups.0.lists.0', /no list named "adz" in filter\.lists \(did you mean "ads"\?\)/],
  ['unknown key with a near miss', 'metrics:\n  listen: "127.0.0.1:9153"\n  alowNonLoopback: true\n', 7, 'metrics.alowNonLoopback', /unknown key "metrics\.alowNonLoopback" \(did you mean "allowNonLoopback"\?\)/],
  ['enum value with a near miss', 'upstream:\n  strategy: fastets\n', 6, 'upstream.strategy', /must be one of .*"fastest".* \(did you mean "fastest"\?\)/],
  ['custom block mode without addresses', 'filter:\n  mode: custom\n', 6, 'filter.mode', /needs filter\.customAddresses/],
  ['network key that the network code refuses', 'network:\n  routeTable: 254\n', 6, 'network.routeTable', /./],
];

/** dist/cli.js in a child; bounded in time (a `run` that did not refuse would serve until killed). */
function cliRun(args) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    p.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('close', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr }); });
  });
}

for (const [title, extra, line, key, pattern, whole] of corpus) {
  t.test(title, async (t) => {
    const file = path.join(dir, `${title.replace(/\W+/g, '-')}.yaml`);
    fs.writeFileSync(file, whole ?? base + extra);
    const expected = new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${line}: (?:"${key.replace(/\./g, '\\.')}" .*)?${pattern.source}`);
    t.throws(() => parseConfig(fs.readFileSync(file, 'utf8'), file), { message: expected }, 'parseConfig');
    const [check, run] = await Promise.all([cliRun(['check', '--config', file]), cliRun(['run', '--config', file])]);
    t.equal(check.status, 2, 'check exits 2 (config error)');
    t.match(check.stderr, expected, 'check names file:line and key');
    t.equal(run.status, check.status, 'run exits like check');
    t.equal(run.stderr, check.stderr, 'run says exactly what check says');
    t.equal(check.stdout, '', 'nothing on stdout');
  });
}

t.test('every problem is reported at once, each with its own line', async (t) => {
  const file = path.join(dir, 'many.yaml');
  fs.writeFileSync(file, `${base}groups:\n  - name: kids\n    clients: ["banana", "10.0.0.1", "apple"]\nlocal:\n  - "nas.home A 999.1.1.1"\n`);
  const err = t.throws(() => parseConfig(fs.readFileSync(file, 'utf8'), file));
  const lines = err.message.split('\n');
  t.equal(lines.length, 3);
  t.match(lines[0], /:7: "groups\.0\.clients\.0"/);
  t.match(lines[1], /:7: "groups\.0\.clients\.2"/);
  t.match(lines[2], /:9: "local\.0"/);
});

t.test('a good config with every part passes check and is what run loads', async (t) => {
  const file = path.join(dir, 'good.yaml');
  fs.writeFileSync(file, `${base}filter:\n  lists:\n    - name: ads\n      path: ads.txt\ngroups:\n  - name: kids\n    clients: ["10.0.0.0/8", "aa:bb:cc:dd:ee:ff"]\n    lists: ["ads"]\n`
    + 'local:\n  - "nas.home A 192.168.1.10"\nforward:\n  - domain: corp.example\n    to: "192.0.2.53"\n');
  const check = spawnSync(process.execPath, [cli, 'check', '--config', file], { encoding: 'utf8', timeout: 20_000 });
  t.equal(check.status, 0, check.stderr);
  t.match(check.stdout, /ok/);
});
