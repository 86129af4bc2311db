// Lab harness: real network namespaces, nft TPROXY, a real unbound DoH upstream and real clients.
//
//   client ns (10.77.0.2, fd00:77::2) ── veth ── gateway ns (10.77.0.1, fd00:77::1)
//                                                 nft tproxy udp/tcp dport 53 → dns-tproxy
//                                                 unbound DoH on 127.0.0.1:8443 (self-signed CA)
//                                                 ── veth ── far ns: owns 198.51.100.53 and
//                                                            2001:db8:53::53, runs NO DNS server
//
// An answer from 198.51.100.53 therefore proves interception.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SERVER_V4 = '198.51.100.53';
export const SERVER_V6 = '2001:db8:53::53';
const TOOLS = ['ip', 'nft', 'unbound', 'dig', 'openssl'];

let seq = 0;

/** Why root plus `tools` are not available here, or null. */
export function needRootAndTools(tools) {
  if (process.getuid?.() !== 0) return 'lab tests need root (network namespaces, nft)';
  for (const t of tools) {
    try { execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' }); } catch { return `lab tests need "${t}" (see .ci/run)`; }
  }
  return null;
}

/** Returns a reason to skip lab tests on this machine, or null. */
export function labUnavailable(extra = []) {
  const why = needRootAndTools([...TOOLS, ...extra]);
  if (why) return why;
  if (!fs.existsSync(path.join(ROOT, 'dist/cli.js'))) return 'dist/cli.js missing: run npm run build';
  return null;
}

/**
 * The start of every lab test file: a Lab that is up and torn down with the test, or null after
 * printing why this machine cannot run it (the file then reports a skip).
 */
export function openLab(t, tools = [], opts = {}) {
  const why = labUnavailable(tools);
  if (why) {
    t.comment(`skipping lab: ${why}`);
    t.skip(why);
    return null;
  }
  const lab = new Lab(opts).up();
  t.teardown(() => lab.down());
  // An error thrown at a test file's top level (a server that never came up) ends the process
  // without running t.teardown: without this, its namespaces and processes would be left behind.
  process.once('exit', () => lab.downNow());
  return lab;
}

export function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout: 60_000, ...opts });
}

export function nsExec(ns, cmd, args, opts) { return sh('ip', ['netns', 'exec', ns, cmd, ...args], opts); }

export class Lab {
  constructor(opts = {}) {
    const id = `${process.pid % 100000}${seq++}`;
    this.id = id;
    this.client = `dtc${id}`;
    this.gw = `dtg${id}`;
    this.far = `dtf${id}`;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `dtlab-${id}-`));
    this.procs = [];
    this.port = opts.port ?? 53;
    this.closed = false;
  }

  up() {
    const { client: C, gw: G, far: F, id } = this;
    for (const ns of [C, G, F]) sh('ip', ['netns', 'add', ns]);
    sh('ip', ['link', 'add', `dta${id}`, 'type', 'veth', 'peer', 'name', `dtb${id}`]);
    sh('ip', ['link', 'set', `dta${id}`, 'netns', C]);
    sh('ip', ['link', 'set', `dtb${id}`, 'netns', G]);
    sh('ip', ['link', 'add', `dtx${id}`, 'type', 'veth', 'peer', 'name', `dty${id}`]);
    sh('ip', ['link', 'set', `dtx${id}`, 'netns', G]);
    sh('ip', ['link', 'set', `dty${id}`, 'netns', F]);
    const run = (ns, ...a) => sh('ip', ['-n', ns, ...a]);
    for (const ns of [C, G, F]) run(ns, 'link', 'set', 'lo', 'up');
    // IPv6 DAD would delay the addresses by a second or two; the lab has no duplicates.
    for (const ns of [C, G, F]) nsExec(ns, 'sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    run(C, 'addr', 'add', '10.77.0.2/24', 'dev', `dta${id}`);
    run(C, '-6', 'addr', 'add', 'fd00:77::2/64', 'dev', `dta${id}`, 'nodad');
    run(G, 'addr', 'add', '10.77.0.1/24', 'dev', `dtb${id}`);
    run(G, '-6', 'addr', 'add', 'fd00:77::1/64', 'dev', `dtb${id}`, 'nodad');
    run(G, 'addr', 'add', '10.77.1.1/24', 'dev', `dtx${id}`);
    run(G, '-6', 'addr', 'add', 'fd00:78::1/64', 'dev', `dtx${id}`, 'nodad');
    run(F, 'addr', 'add', '10.77.1.2/24', 'dev', `dty${id}`);
    run(F, '-6', 'addr', 'add', 'fd00:78::2/64', 'dev', `dty${id}`, 'nodad');
    run(F, 'addr', 'add', `${SERVER_V4}/32`, 'dev', 'lo');
    run(F, '-6', 'addr', 'add', `${SERVER_V6}/128`, 'dev', 'lo');
    run(C, 'link', 'set', `dta${id}`, 'up');
    run(G, 'link', 'set', `dtb${id}`, 'up');
    run(G, 'link', 'set', `dtx${id}`, 'up');
    run(F, 'link', 'set', `dty${id}`, 'up');
    run(C, 'route', 'add', 'default', 'via', '10.77.0.1');
    run(C, '-6', 'route', 'add', 'default', 'via', 'fd00:77::1');
    run(G, 'route', 'add', `${SERVER_V4}/32`, 'via', '10.77.1.2');
    run(G, '-6', 'route', 'add', `${SERVER_V6}/128`, 'via', 'fd00:78::2');
    run(F, 'route', 'add', 'default', 'via', '10.77.1.1');
    run(F, '-6', 'route', 'add', 'default', 'via', 'fd00:78::1');
    nsExec(G, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    run(G, 'rule', 'add', 'fwmark', '1', 'lookup', '100');
    run(G, 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100');
    run(G, '-6', 'rule', 'add', 'fwmark', '1', 'lookup', '100');
    run(G, '-6', 'route', 'add', 'local', '::/0', 'dev', 'lo', 'table', '100');
    this.setTproxyPort(this.port);
    return this;
  }

  /** (Re)writes the gateway's interception rules to steer UDP port 53 to `port` and TCP to `tcpPort`. */
  setTproxyPort(port, tcpPort = port) {
    this.port = port;
    const rules = `
table inet dtlab
delete table inet dtlab
table inet dtlab {
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto udp udp dport 53 tproxy ip to :${port} meta mark set 1 accept
    meta l4proto tcp tcp dport 53 tproxy ip to :${tcpPort} meta mark set 1 accept
    meta l4proto udp udp dport 53 tproxy ip6 to :${port} meta mark set 1 accept
    meta l4proto tcp tcp dport 53 tproxy ip6 to :${tcpPort} meta mark set 1 accept
  }
}`;
    nsExec(this.gw, 'nft', ['-f', '-'], { input: rules });
  }

  /** Starts unbound with DoH on 127.0.0.1:`port` in the gateway; returns its CA path. */
  async startUnbound({ port = 8443, name = 'unbound', extra = '' } = {}) {
    const d = path.join(this.dir, name);
    fs.mkdirSync(d, { recursive: true });
    const key = path.join(d, 'key.pem'), ca = path.join(d, 'ca.pem');
    if (!fs.existsSync(ca)) {
      sh('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', ca, '-days', '2', '-subj', '/CN=doh.test',
        '-addext', 'subjectAltName=DNS:doh.test,IP:127.0.0.1']);
    }
    const conf = path.join(d, 'unbound.conf');
    fs.writeFileSync(conf, `server:
  interface: 127.0.0.1@${port}
  https-port: ${port}
  tls-service-key: "${key}"
  tls-service-pem: "${ca}"
${unboundRunsInDir(d)}
  log-queries: yes
  verbosity: 1
  access-control: 127.0.0.0/8 allow
  num-threads: 1
  do-not-query-localhost: yes
  local-zone: "lab.test." static
  local-data: "a.lab.test. 300 IN A 192.0.2.1"
  local-data: "a.lab.test. 300 IN AAAA 2001:db8::1"
  local-data: "short.lab.test. 2 IN A 192.0.2.2"
  local-zone: "wild.test." redirect
  local-data: "wild.test. 300 IN A 192.0.2.20"
  local-zone: "big.test." static
${Array.from({ length: 12 }, (_, i) => `  local-data: 'big.test. 300 IN TXT "${String(i).padStart(2, '0')}-${'x'.repeat(140)}"'`).join('\n')}
${extra}
`);
    const proc = this.spawnIn(this.gw, 'unbound', ['-d', '-c', conf], path.join(d, 'stdout.log'));
    const entry = { proc, ca, port, dir: d, conf };
    this[name] = entry;
    await waitFor(() => portOpen(this.gw, port), 10_000, `unbound on ${port}`);
    return entry;
  }

  /** Queries unbound has logged (log-queries) for a name. */
  unboundQueries(name, unboundName = 'unbound') {
    const log = path.join(this[unboundName].dir, 'unbound.log');
    if (!fs.existsSync(log)) return 0;
    return fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.includes(` ${name}. `)).length;
  }

  writeConfig(name, yaml) {
    const p = path.join(this.dir, name);
    fs.writeFileSync(p, yaml);
    return p;
  }

  /** Starts dns-tproxy in the gateway namespace and waits until it answers through TPROXY. */
  /** `cli`: another build's cli.js (benchmarks compare builds in one lab; DNS_TPROXY_CLI runs a test
   * file against another build, e.g. an older commit's, to show that its checks fail there). */
  async startServer(configPath, { waitName = 'a.lab.test', args = [], wait = true, nodeArgs = [], cli = process.env.DNS_TPROXY_CLI || path.join(ROOT, 'dist/cli.js') } = {}) {
    const log = path.join(this.dir, `server-${this.procs.length}.log`);
    const proc = this.spawnIn(this.gw, process.execPath, [...nodeArgs, cli, 'run', '--config', configPath, ...args], log);
    proc.logPath = log;
    this.server = proc;
    if (wait) {
      // 90 s bounds a failed start; it is not a speed claim: with several lab suites sharing two cores
      // (load average 20+) a healthy start (config validation on a worker thread, network set-up) has
      // taken over 20 s.
      await waitFor(() => {
        if (proc.exitCode !== null) throw new Error(`dns-tproxy exited: ${fs.readFileSync(log, 'utf8')}`);
        return /status: NOERROR/.test(this.dig([`@${SERVER_V4}`, waitName, 'A', '+tries=1', '+time=1'], true));
      }, 90_000, 'dns-tproxy answering through TPROXY');
    }
    return proc;
  }

  spawnIn(ns, cmd, args, logFile) {
    const out = fs.openSync(logFile, 'a');
    const proc = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', out, out], detached: false });
    fs.closeSync(out);
    this.procs.push(proc);
    return proc;
  }

  dig(args, tolerateFailure = false) {
    try { return nsExec(this.client, 'dig', args, { timeout: 30_000 }); } catch (e) {
      if (tolerateFailure) return String(e.stdout ?? '');
      throw e;
    }
  }

  get hasKdig() {
    try { sh('sh', ['-c', 'command -v kdig']); return true; } catch { return false; }
  }

  kdig(args) { return nsExec(this.client, 'kdig', [...args, '+retry=0', '+timeout=3'], { timeout: 30_000 }); }

  /** Runs test/lab/tools/client.js in the client namespace and parses its JSON output. */
  tool(args, timeout = 60_000) {
    const out = nsExec(this.client, process.execPath, [path.join(ROOT, 'test/lab/tools/client.js'), ...args], { timeout });
    return JSON.parse(out);
  }

  async stop(proc, signal = 'SIGTERM') {
    if (!proc || proc.exitCode !== null || proc.signalCode) return;
    const done = new Promise((r) => proc.once('exit', r));
    proc.kill(signal);
    await Promise.race([done, sleep(5000)]);
    if (proc.exitCode === null && !proc.signalCode) { proc.kill('SIGKILL'); await done; }
  }

  /** Synchronous teardown, for process exit. */
  downNow() {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.procs) if (p.exitCode === null && !p.signalCode) { try { p.kill('SIGKILL'); } catch { /* gone */ } }
    for (const ns of [this.client, this.gw, this.far]) { try { sh('ip', ['netns', 'del', ns]); } catch { /* already gone */ } }
    if (!process.env.KEEP_LAB) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  async down() {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.procs) if (p.exitCode === null && !p.signalCode) p.kill('SIGKILL');
    await sleep(200);
    for (const ns of [this.client, this.gw, this.far]) { try { sh('ip', ['netns', 'del', ns]); } catch { /* already gone */ } }
    if (!process.env.KEEP_LAB) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** unbound.conf lines that keep an unbound in the foreground with its pid file and log in `d`. */
export function unboundRunsInDir(d) {
  return `  do-daemonize: no
  username: ""
  chroot: ""
  directory: "${d}"
  pidfile: "${d}/unbound.pid"
  use-syslog: no
  logfile: "${d}/unbound.log"`;
}

export function portOpen(ns, port) {
  try { return nsExec(ns, 'ss', ['-ltnH', `sport = :${port}`]).trim().length > 0; } catch { return false; }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(fn, timeoutMs, what) {
  const until = Date.now() + timeoutMs;
  let last;
  while (Date.now() < until) {
    try { if (await fn()) return; } catch (e) { last = e; if (/exited/.test(e.message)) throw e; }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

/** The standard test config: TPROXY UDP+TCP on `port`, one DoH upstream (the lab's unbound). */
export function baseConfig(lab, { port = lab.port, extra = '', upstreams } = {}) {
  const ups = upstreams ?? [`  - url: "https://127.0.0.1:${lab.unbound.port}/dns-query"\n    ca: "${lab.unbound.ca}"`];
  return `listen:
  tproxy:
    udp: "[::]:${port}"
    tcp: "[::]:${port}"
upstreams:
${ups.join('\n')}
metrics:
  listen: "127.0.0.1:9153"
${extra}`;
}

/**
 * Removes the lab's own interception (nft table dtlab, the fwmark 1 rules and route table 100) so a
 * test can let dns-tproxy set up the gateway itself (`run --manage-network`, `network up`).
 */
export function removeLabInterception(lab) {
  const G = lab.gw;
  nsExec(G, 'nft', ['delete', 'table', 'inet', 'dtlab']);
  for (const fam of ['-4', '-6']) {
    sh('ip', ['-n', G, fam, 'rule', 'del', 'fwmark', '1', 'lookup', '100']);
    sh('ip', ['-n', G, fam, 'route', 'del', 'local', fam === '-4' ? '0.0.0.0/0' : '::/0', 'dev', 'lo', 'table', '100']);
  }
}

/** The metrics text of the dns-tproxy running in the lab's gateway (metrics.listen 127.0.0.1:9153). */
export function labMetrics(lab, port = 9153) {
  return nsExec(lab.gw, process.execPath, ['-e',
    `fetch('http://127.0.0.1:${port}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t), (e) => { console.error(e.message); process.exit(1); })`]);
}

/** One sample of a Prometheus text exposition, e.g. metricValue(text, 'dns_tproxy_dropped_total', { reason: 'acl' }). */
export function metricValue(text, name, labels = {}) {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return NaN;
}
