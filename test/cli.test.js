// The command line as users run it: dist/cli.js in a child process.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/cli.js');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-test-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

// tap instruments children through NODE_OPTIONS; the CLI runs as a user runs it, without that.
const childEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !k.startsWith('TAP') && !k.startsWith('_TAP') && k !== 'DNS_TPROXY_DEBUG'));

function cliRun(args, { input, uid, gid } = {}) {
  return new Promise((resolve) => {
    // Through env(1): tap's process-info hook rewrites the options of node children it sees spawned.
    const p = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, cli, ...args], { stdio: ['pipe', 'pipe', 'pipe'], uid, gid, env: childEnv });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    p.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    p.stdin.end(input ?? '');
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('close', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr }); });
  });
}

const COMMANDS = ['run', 'check', 'network', 'cache', 'passwd'];

t.test('--help and help list every command and the exit codes, exit 0', async (t) => {
  for (const args of [['--help'], ['-h'], ['help']]) {
    const r = await cliRun(args);
    t.equal(r.status, 0, `${args.join(' ')} exits 0`);
    for (const c of COMMANDS) t.match(r.stdout, new RegExp(`dns-tproxy ${c}\\b`), `${args.join(' ')} lists ${c}`);
    t.match(r.stdout, /exit codes:\n\s+0 /);
    t.equal(r.stderr, '');
  }
});

t.test('help CMD and CMD --help print that command\'s usage, exit 0', async (t) => {
  const seen = new Set();
  for (const c of COMMANDS) {
    const a = await cliRun(['help', c]);
    const b = await cliRun([c, '--help']);
    t.equal(a.status, 0, `help ${c}`);
    t.equal(b.status, 0, `${c} --help`);
    t.equal(a.stdout, b.stdout, `help ${c} = ${c} --help`);
    t.match(a.stdout, new RegExp(`^usage: dns-tproxy ${c}\\b`));
    t.notOk(seen.has(a.stdout), `${c} has its own text`);
    seen.add(a.stdout);
  }
});

t.test('--version prints the package version', async (t) => {
  for (const args of [['--version'], ['-V'], ['version']]) {
    const r = await cliRun(args);
    t.equal(r.status, 0);
    t.match(r.stdout, new RegExp(`^dns-tproxy ${pkg.version.replace(/\./g, '\\.')} `));
  }
});

t.test('command-line mistakes: one line (plus where to look), exit 2', async (t) => {
  for (const args of [['chek'], ['check'], ['cache', 'flsh', '--config', 'x.yaml'], ['network', 'sideways', '--config', 'x.yaml'], ['run', '--bogus'], ['help', 'nope'], []]) {
    const r = await cliRun(args);
    t.equal(r.status, 2, `${args.join(' ') || '(nothing)'} exits 2`);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
    t.equal(r.stdout, '');
  }
  const r = await cliRun(['chek']);
  t.match(r.stderr, /unknown command "chek" \(did you mean "check"\?\)/);
});

t.test('missing config file: one line, exit 2', async (t) => {
  const r = await cliRun(['check', '--config', path.join(dir, 'nope.yaml')]);
  t.equal(r.status, 2);
  t.match(r.stderr, /^config error: cannot read config .*nope\.yaml: no such file\n$/);
});

// Permission failures need an unprivileged process: as root (CI) the child runs as nobody.
const asRoot = process.getuid?.() === 0;
const unprivileged = asRoot ? { uid: 65534, gid: 65534 } : {};

t.test('unreadable config file: one line, exit 2', async (t) => {
  const f = path.join(dir, 'secret.yaml');
  fs.writeFileSync(f, 'upstreams: []\n', { mode: 0o600 });
  if (!asRoot) fs.chmodSync(f, 0o000);
  fs.chmodSync(dir, 0o755);
  const r = await cliRun(['check', '--config', f], { ...unprivileged });
  t.equal(r.status, 2);
  t.match(r.stderr, /^config error: cannot read config .*secret\.yaml: permission denied\n$/);
});

t.test('run without the right to bind port 53: one line, exit 4', async (t) => {
  const f = path.join(dir, 'port53.yaml');
  fs.writeFileSync(f, 'listen:\n  plainTcp: ["127.0.0.1:53"]\nupstreams:\n  - url: "udp://192.0.2.1:53"\n', { mode: 0o644 });
  const r = await cliRun(['run', '--config', f], { ...unprivileged });
  t.equal(r.status, 4, r.stderr);
  const errLines = r.stderr.split('\n').filter((l) => l && !l.startsWith('{'));
  t.equal(errLines.length, 1, r.stderr);
  t.match(errLines[0], /^dns-tproxy: permission denied: cannot listen: .*EACCES/);
});

async function closedPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

t.test('cache flush with no server running: one line, exit 3', async (t) => {
  const port = await closedPort();
  const f = path.join(dir, 'flush.yaml');
  fs.writeFileSync(f, `upstreams:\n  - url: "udp://192.0.2.1:53"\nmetrics:\n  listen: "127.0.0.1:${port}"\n`);
  const r = await cliRun(['cache', 'flush', '--config', f]);
  t.equal(r.status, 3);
  t.match(r.stderr, new RegExp(`^dns-tproxy cache flush: no server answers at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\); is dns-tproxy running with this config\\?\\n$`));
  t.equal(r.stdout, '');
});

t.test('cache flush without metrics.listen: one line, exit 2', async (t) => {
  const f = path.join(dir, 'nometrics.yaml');
  fs.writeFileSync(f, 'upstreams:\n  - url: "udp://192.0.2.1:53"\n');
  const r = await cliRun(['cache', 'flush', '--config', f]);
  t.equal(r.status, 2);
  t.equal(r.stderr.split('\n').filter(Boolean).length, 1);
});

t.test('run that cannot bind (address in use): one line, exit 1', async (t) => {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => s.close());
  const port = s.address().port;
  const f = path.join(dir, 'inuse.yaml');
  fs.writeFileSync(f, `listen:\n  plainTcp: ["127.0.0.1:${port}"]\nupstreams:\n  - url: "udp://192.0.2.1:53"\n`);
  const r = await cliRun(['run', '--config', f]);
  t.equal(r.status, 1);
  const errLines = r.stderr.split('\n').filter((l) => l && !l.startsWith('{'));
  t.equal(errLines.length, 1, r.stderr);
  t.match(errLines[0], /cannot listen: .*EADDRINUSE/);
});
