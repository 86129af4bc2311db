// Lab tests for src/network: run the compiled module inside throwaway network
// namespaces (never the host's). Root only; skipped with a reason otherwise.
import t from 'tap';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = join(ROOT, 'dist/network/index.js');
const PORTS = { udpPort: 15353, tcpPort: 15353 };

function skipReason() {
  if (process.platform !== 'linux') return 'linux only';
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, nft)';
  if (!existsSync(DIST)) return `${DIST} missing: run npx tsc -b first`;
  for (const [bin, arg] of [['nft', '--version'], ['ip', '-V']]) {
    if (spawnSync(bin, [arg]).status !== 0) return `${bin} not available (apt-get install nftables iproute2)`;
  }
  const probe = `dtp-probe-${process.pid}`;
  if (spawnSync('ip', ['netns', 'add', probe]).status !== 0) return 'cannot create network namespaces';
  const nftOk = spawnSync('ip', ['netns', 'exec', probe, 'nft', 'list', 'ruleset']).status === 0;
  spawnSync('ip', ['netns', 'del', probe]);
  if (!nftOk) return 'nft does not work inside a network namespace';
  return undefined;
}

const reason = skipReason();
if (reason) {
  console.log(`# skipping network lab tests: ${reason}`);
  t.plan(0, reason);
} else {
  await main();
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'dtp-lab-'));
  const namespaces = [];
  const children = [];
  t.teardown(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const ns of namespaces) spawnSync('ip', ['netns', 'del', ns]);
    rmSync(work, { recursive: true, force: true });
  });

  // helper executed inside a namespace: node helper.mjs OP CFG_JSON PORTS_JSON -> JSON on stdout
  const helper = join(work, 'helper.mjs');
  writeFileSync(
    helper,
    `const m = await import(${JSON.stringify(pathToFileURL(DIST).href)});
const [op, cfg, ports] = [process.argv[2], JSON.parse(process.argv[3] || '{}'), JSON.parse(process.argv[4] || '{}')];
let r = null;
if (op === 'up') await m.networkUp(cfg, ports);
else if (op === 'down') await m.networkDown(cfg);
else if (op === 'show') r = await m.networkShow(cfg, ports);
else if (op === 'stale') r = await m.cleanupStale(cfg);
else if (op === 'exit') r = await m.networkExit(cfg);
else throw new Error('bad op ' + op);
process.stdout.write(JSON.stringify(r));
`,
  );
  // client: send one UDP datagram (and optionally TCP) to HOST:53, print replies as JSON
  const client = join(work, 'client.mjs');
  writeFileSync(
    client,
    `import dgram from 'node:dgram'; import net from 'node:net';
const [host, mode, waitMs] = [process.argv[2], process.argv[3] || 'udp', Number(process.argv[4] || 2000)];
const out = {};
const done = () => { process.stdout.write(JSON.stringify(out)); process.exit(0); };
const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
const timer = setTimeout(() => { s.close(); mode === 'udp+tcp' ? tcp() : done(); }, waitMs);
s.on('message', (m, r) => { out.udp = { from: r.address + ':' + r.port, data: m.toString() }; clearTimeout(timer); s.close(); mode === 'udp+tcp' ? tcp() : done(); });
s.send('hello', 53, host);
function tcp() {
  const c = net.connect({ host, port: 53 }, () => c.write('hello'));
  c.setTimeout(waitMs, () => { out.tcp = { error: 'timeout' }; c.destroy(); done(); });
  c.on('data', (d) => { out.tcp = { from: c.remoteAddress + ':' + c.remotePort, data: d.toString() }; c.destroy(); done(); });
  c.on('error', (e) => { out.tcp = { error: e.message }; done(); });
}
`,
  );

  let seq = 0;
  const newNs = () => {
    const ns = `dtp-${process.pid}-${seq++}`;
    execFileSync('ip', ['netns', 'add', ns]);
    namespaces.push(ns);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    return ns;
  };
  const sh = (ns, cmd, args, input) =>
    execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
  const mod = (ns, op, cfg = {}, ports = PORTS) => {
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, helper, op, JSON.stringify(cfg), JSON.stringify(ports)], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`${op} failed: ${r.stderr}`);
    return JSON.parse(r.stdout || 'null');
  };
  const snapshot = (ns) =>
    [
      ['nft', ['list', 'ruleset']],
      ['ip', ['rule']],
      ['ip', ['-6', 'rule']],
      ['ip', ['route', 'show', 'table', 'all']],
      ['ip', ['-6', 'route', 'show', 'table', 'all']],
    ]
      .map(([c, a]) => `### ${c} ${a.join(' ')}\n${sh(ns, c, a)}`)
      .join('\n');
  const ourRules = (ns, fam) => sh(ns, 'ip', [fam, 'rule']).split('\n').filter((l) => /^10053:/.test(l));
  const table = (ns) => sh(ns, 'nft', ['list', 'table', 'inet', 'dns_tproxy']);
  const counter = (text, re) => {
    const m = new RegExp(re.source + '.*?counter packets (\\d+)').exec(text);
    return m ? Number(m[1]) : NaN;
  };

  /** gateway + client joined by a veth; client routes everything via the gateway */
  const topology = () => {
    const g = newNs();
    const c = newNs();
    execFileSync('ip', ['-n', g, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v0', 'netns', c]);
    for (const [ns, v4, v6] of [
      [g, '192.0.2.1/24', '2001:db8:1::1/64'],
      [c, '192.0.2.2/24', '2001:db8:1::2/64'],
    ]) {
      execFileSync('ip', ['-n', ns, 'addr', 'add', v4, 'dev', 'v0']);
      execFileSync('ip', ['-n', ns, '-6', 'addr', 'add', v6, 'dev', 'v0', 'nodad']);
      execFileSync('ip', ['-n', ns, 'link', 'set', 'v0', 'up']);
    }
    execFileSync('ip', ['-n', c, 'route', 'add', 'default', 'via', '192.0.2.1']);
    execFileSync('ip', ['-n', c, '-6', 'route', 'add', 'default', 'via', '2001:db8:1::1']);
    // the gateway's own (local-mode) traffic needs somewhere to go before it is rerouted
    execFileSync('ip', ['-n', g, 'route', 'add', 'default', 'via', '192.0.2.2']);
    execFileSync('ip', ['-n', g, '-6', 'route', 'add', 'default', 'via', '2001:db8:1::2']);
    return { g, c };
  };
  const query = (ns, host, mode = 'udp', waitMs = 1500) =>
    JSON.parse(sh(ns, process.execPath, [client, host, mode, String(waitMs)]));

  t.test('up twice then down leaves no residue', async (t) => {
    const ns = newNs();
    const before = snapshot(ns);
    mod(ns, 'up');
    const once = snapshot(ns);
    mod(ns, 'up');
    t.equal(snapshot(ns), once, 'second up changes nothing');
    t.equal(ourRules(ns, '-4').length, 1, 'one v4 rule');
    t.equal(ourRules(ns, '-6').length, 1, 'one v6 rule');
    t.match(sh(ns, 'ip', ['route', 'show', 'table', '153']), /local default dev lo/);
    t.match(sh(ns, 'ip', ['-6', 'route', 'show', 'table', '153']), /local default dev lo/);
    const show = mod(ns, 'show');
    for (const name of ['nft-table', 'ip-rule-v4', 'ip-rule-v6', 'route-v4', 'route-v6']) {
      t.ok(show.checks.find((c) => c.name === name)?.ok, `${name} ok`);
    }
    t.equal(show.ok, false, 'not ok overall: no listener bound');
    t.match(show.checks.find((c) => c.name === 'listener-udp').detail, /nothing bound/);
    mod(ns, 'down');
    t.equal(snapshot(ns), before, 'snapshot after down equals before up');
    mod(ns, 'down');
    t.equal(snapshot(ns), before, 'down when already down is a no-op');
    t.same(mod(ns, 'stale'), { found: [] });
  });

  t.test('show names the missing rule; cleanupStale reports residue', async (t) => {
    const ns = newNs();
    const before = snapshot(ns);
    mod(ns, 'up', { local: true });
    sh(ns, 'ip', ['rule', 'del', 'pref', '10053']);
    const show = mod(ns, 'show', { local: true });
    t.equal(show.ok, false);
    const bad = show.checks.filter((c) => !c.ok).map((c) => c.name);
    t.ok(bad.includes('ip-rule-v4'), `failing checks: ${bad.join(', ')}`);
    t.notOk(bad.includes('ip-rule-v6'));
    t.match(show.text, /FAIL\s+ip-rule-v4\s+missing: 10053: fwmark 0x1d53 lookup 153/);
    t.ok(show.checks.find((c) => c.name === 'nft-table').ok, 'output chains present');
    mod(ns, 'up', { local: true });
    t.ok(mod(ns, 'show', { local: true }).checks.find((c) => c.name === 'ip-rule-v4').ok, 'up repairs the rule');
    const stale = mod(ns, 'stale');
    t.ok(stale.found.includes('nft table inet dns_tproxy'));
    t.ok(stale.found.some((f) => f.startsWith('ip rule 10053')));
    t.ok(stale.found.some((f) => f.startsWith('ip -6 route')));
    t.equal(snapshot(ns), before);
  });

  t.test('ipv6: false installs no IPv6 anything', async (t) => {
    const ns = newNs();
    const before = snapshot(ns);
    mod(ns, 'up');
    mod(ns, 'up', { ipv6: false }); // switching off v6 must also remove the v6 half
    const text = table(ns);
    t.notMatch(text, /ip6|ipv6/);
    t.match(text, /tproxy ip to :15353/);
    t.equal(ourRules(ns, '-6').length, 0, 'no ip -6 rule');
    t.equal(sh(ns, 'ip', ['-6', 'route', 'show', 'table', '153']).trim(), '');
    t.equal(ourRules(ns, '-4').length, 1);
    const show = mod(ns, 'show', { ipv6: false });
    t.same(
      show.checks.map((c) => c.name),
      ['nft-table', 'ip-rule-v4', 'route-v4', 'listener-udp', 'listener-tcp'],
    );
    mod(ns, 'down', { ipv6: false });
    t.equal(snapshot(ns), before);
  });

  t.test('client DNS to a foreign server hits the tproxy rules', async (t) => {
    const { g, c } = topology();
    mod(g, 'up');
    query(c, '198.51.100.53', 'udp', 300);
    query(c, '2001:db8:53::53', 'udp', 300);
    const text = table(g);
    t.ok(counter(text, /meta nfproto ipv4 meta l4proto udp/) >= 1, 'ipv4/udp counter incremented');
    t.ok(counter(text, /meta nfproto ipv6 meta l4proto udp/) >= 1, 'ipv6/udp counter incremented');
    t.equal(counter(text, /meta nfproto ipv4 meta l4proto tcp/), 0, 'tcp untouched');
    // a query to the gateway's own address is left to the local resolver
    query(c, '192.0.2.1', 'udp', 300);
    t.equal(counter(table(g), /meta nfproto ipv4 meta l4proto udp/), counter(text, /meta nfproto ipv4 meta l4proto udp/));
    // failMode closed: no listener -> explicit drop
    mod(g, 'up', { failMode: 'closed' });
    query(c, '198.51.100.53', 'udp', 300);
    t.match(table(g), /counter packets [1-9]\d* bytes \d+ drop/, 'closed: dropped while no listener');
    mod(g, 'down');
  });

  t.test('failMode open: with no listener DNS still reaches the real server', async (t) => {
    const { g, c } = topology();
    const s = newNs();
    execFileSync('ip', ['-n', g, 'link', 'add', 'v1', 'type', 'veth', 'peer', 'name', 'v1', 'netns', s]);
    execFileSync('ip', ['-n', g, 'addr', 'add', '198.51.100.1/24', 'dev', 'v1']);
    execFileSync('ip', ['-n', s, 'addr', 'add', '198.51.100.53/24', 'dev', 'v1']);
    execFileSync('ip', ['-n', g, 'link', 'set', 'v1', 'up']);
    execFileSync('ip', ['-n', s, 'link', 'set', 'v1', 'up']);
    execFileSync('ip', ['-n', s, 'route', 'add', 'default', 'via', '198.51.100.1']);
    // A router's shape: the server side is the WAN (default route there), the client side the LAN.
    // (topology() points the gateway's defaults at the client, which would make v0 the WAN.)
    execFileSync('ip', ['-n', g, 'route', 'replace', 'default', 'via', '198.51.100.53', 'dev', 'v1']);
    execFileSync('ip', ['-n', g, '-6', 'route', 'del', 'default']);
    sh(g, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    const server = spawn('ip', ['netns', 'exec', s, process.execPath, '-e',
      `const d=require('dgram').createSocket('udp4');d.on('message',(m,r)=>d.send('real:'+m,r.port,r.address));d.bind(53,()=>console.log('ready'));`],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(server);
    await new Promise((res) => server.stdout.once('data', res));
    mod(g, 'up'); // failMode open (default), nothing bound on 15353 (e.g. dns-tproxy crashed)
    const r = query(c, '198.51.100.53');
    t.same(r.udp, { from: '198.51.100.53:53', data: 'real:hello' }, 'answered by the original server');
    t.ok(counter(table(g), /meta nfproto ipv4 meta l4proto udp/) >= 1, 'the tproxy rule was tried');
    mod(g, 'up', { failMode: 'closed' });
    t.same(query(c, '198.51.100.53', 'udp', 800), {}, 'failMode closed: no answer');
    mod(g, 'down');
    server.kill('SIGTERM');
  });

  const python = spawnSync('python3', ['-c', 'import socket; socket.SO_MARK']).status === 0;
  t.test('end to end: answered from the original destination', { skip: python ? false : 'python3 (for an IP_TRANSPARENT responder) not available' }, async (t) => {
    const { g, c } = topology();
    const responder = join(work, 'responder.py');
    writeFileSync(responder, RESPONDER_PY);
    const child = spawn('ip', ['netns', 'exec', g, 'python3', responder, String(PORTS.udpPort)], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    await new Promise((res, rej) => {
      child.stdout.once('data', res);
      child.once('exit', (code) => rej(new Error(`responder exited ${code}`)));
    });
    mod(g, 'up');
    t.ok(mod(g, 'show').ok, 'show is ok with a listener bound');
    for (const host of ['198.51.100.53', '2001:db8:53::53']) {
      const r = query(c, host, 'udp+tcp');
      t.same(r.udp, { from: `${host}:53`, data: `udp:${host}:hello` }, `udp ${host}`);
      t.same(r.tcp, { from: `${host}:53`, data: `tcp:${host}:hello` }, `tcp ${host}`);
    }

    // local mode: the gateway's own DNS is rerouted into the listener ...
    mod(g, 'up', { local: true });
    const before = table(g);
    const r = query(g, '198.51.100.53', 'udp+tcp');
    t.same(r.udp, { from: '198.51.100.53:53', data: 'udp:198.51.100.53:hello' }, 'local udp intercepted');
    t.same(r.tcp, { from: '198.51.100.53:53', data: 'tcp:198.51.100.53:hello' }, 'local tcp intercepted');
    // ... but a socket carrying selfMark (dns-tproxy's upstream) is not
    const marked = sh(g, 'python3', ['-c', SELFMARK_PY, '198.51.100.53', String(0x1d54)]);
    t.equal(marked.trim(), 'timeout', 'self-marked query not intercepted');
    const after = table(g);
    t.equal(
      counter(after, /meta nfproto ipv4 meta l4proto udp/),
      counter(before, /meta nfproto ipv4 meta l4proto udp/) + 1,
      'exactly one more intercepted UDP packet: no loop, self-marked one skipped',
    );
    mod(g, 'down');
    child.kill('SIGTERM');
  });

  // ---- `run --manage-network` -------------------------------------------------
  // DNS_TPROXY_CLI runs these against another build (e.g. an older commit's, to show a test fails there).
  // A CLI that is missing or lost --manage-network is a regression in our code: a failure, not a skip.
  const cli = process.env.DNS_TPROXY_CLI || join(ROOT, 'dist/cli.js');
  let cliReason;
  if (!existsSync(cli)) cliReason = `${cli} not built`;
  else {
    const help = spawnSync(process.execPath, [cli, 'run', '--help'], { encoding: 'utf8', timeout: 10000 });
    if (!`${help.stdout}${help.stderr}`.includes('manage-network')) cliReason = '`dns-tproxy run --help` does not mention --manage-network';
  }
  t.test('the CLI offers run --manage-network', async (t) => { t.equal(cliReason, undefined, cliReason ?? 'it does'); });

  const startRun = (ns, configFile) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, cli, 'run', '--config', configFile, '--manage-network'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stderrText = () => stderr;
    children.push(child);
    return child;
  };
  // A bound, not a speed claim: on a loaded 2-core machine start-up alone has taken over 15 s.
  const waitOk = async (ns, cfg, child, ms = 60_000) => {
    const end = Date.now() + ms;
    let last;
    while (Date.now() < end) {
      if (child.exitCode !== null || child.signalCode !== null) return { ok: false, text: `dns-tproxy exited (${child.exitCode ?? child.signalCode})` };
      // `show` alone is not enough after a crash: the stale rules already look healthy while the new
      // run is still clearing them, so also wait for the run's own "network up" log line.
      last = mod(ns, 'show', cfg);
      if (last.ok && /"msg":"network up"/.test(child.stderrText())) return last;
      await new Promise((r) => setTimeout(r, 250));
    }
    return last;
  };
  const exited = (child) => new Promise((res) => (child.exitCode !== null || child.signalCode !== null ? res() : child.once('exit', res)));
  const writeConfig = (network) => {
    const file = join(work, `config-${seq++}.yaml`);
    writeFileSync(
      file,
      `listen:
  tproxy:
    udp: "[::]:${PORTS.udpPort}"
    tcp: "[::]:${PORTS.tcpPort}"
upstreams:
  - url: "https://198.51.100.10/dns-query"
network: ${JSON.stringify(network)}
`,
    );
    return file;
  };

  if (!cliReason) t.test('run --manage-network: SIGKILL then restart comes up clean', async (t) => {
    const ns = newNs();
    const before = snapshot(ns);
    const file = writeConfig({ failMode: 'open' });
    const first = startRun(ns, file);
    const s1 = await waitOk(ns, {}, first);
    t.ok(s1?.ok, `first run up: ${s1?.text} ${first.stderrText()}`);
    if (!s1?.ok) return;
    first.kill('SIGKILL');
    await exited(first);
    t.ok(ourRules(ns, '-4').length === 1, 'crash leaves the rules behind (stale)');
    const second = startRun(ns, file);
    const s2 = await waitOk(ns, {}, second);
    t.ok(s2?.ok, `second run up: ${s2?.text} ${second.stderrText()}`);
    t.equal(ourRules(ns, '-4').length, 1, 'no duplicated v4 rule');
    t.equal(ourRules(ns, '-6').length, 1, 'no duplicated v6 rule');
    second.kill('SIGTERM');
    await exited(second);
    const after = snapshot(ns);
    const msg = 'failMode open: clean exit removes everything';
    t.equal(after, before, after === before ? msg : `${msg}; exit ${second.exitCode ?? second.signalCode}; stderr: ${second.stderrText().slice(-1500)}`);
  });

  if (!cliReason) t.test('run --manage-network local mode does not loop', async (t) => {
    const { g } = topology();
    const file = writeConfig({ local: true });
    const child = startRun(g, file);
    const s = await waitOk(g, { local: true }, child);
    t.ok(s?.ok, `up: ${s?.text} ${child.stderrText()}`);
    if (!s?.ok) return;
    // a real DNS query (example.com A) from the gateway itself
    const q = Buffer.from('123401000001000000000000076578616d706c6503636f6d0000010001', 'hex');
    sh(g, process.execPath, [
      '-e',
      `const s=require('dgram').createSocket('udp4');s.send(Buffer.from('${q.toString('hex')}','hex'),53,'198.51.100.53',()=>setTimeout(()=>process.exit(0),3000));`,
    ]);
    const text = table(g);
    const marked = counter(text, /chain local_mark[\s\S]*?fib daddr type local return\s*/);
    const udp = counter(text, /meta nfproto ipv4 meta l4proto udp/);
    t.ok(udp >= 1 && udp < 10, `intercepted ${udp} UDP packets (bounded)`);
    t.ok(!(marked > 20), `output chain marked ${marked} packets (bounded)`);
    t.equal(child.exitCode, null, 'dns-tproxy still running');
    child.kill('SIGTERM');
    await exited(child);
  });
}

const RESPONDER_PY = String.raw`
import socket, struct, sys, select
PORT = int(sys.argv[1])
IP_TRANSPARENT, IP_RECVORIGDSTADDR, IPV6_TRANSPARENT, IPV6_RECVORIGDSTADDR = 19, 20, 75, 74
V6 = socket.IPPROTO_IPV6
def transparent(s):
    s.setsockopt(V6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
    s.setsockopt(V6, IPV6_TRANSPARENT, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s
u = transparent(socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
u.setsockopt(socket.SOL_IP, IP_RECVORIGDSTADDR, 1)
u.setsockopt(V6, IPV6_RECVORIGDSTADDR, 1)
u.bind(('::', PORT))
t = transparent(socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
t.bind(('::', PORT)); t.listen(16)
print('ready', flush=True)
def plain(a):
    return a[7:] if a.startswith('::ffff:') else a
while True:
    r, _, _ = select.select([u, t], [], [])
    if u in r:
        data, anc, _, peer = u.recvmsg(2048, 256)
        dst = None
        for lvl, typ, cd in anc:
            port = struct.unpack('!H', cd[2:4])[0]
            if lvl == socket.SOL_IP and typ == IP_RECVORIGDSTADDR:
                dst = ('::ffff:' + socket.inet_ntop(socket.AF_INET, cd[4:8]), port)
            if lvl == V6 and typ == IPV6_RECVORIGDSTADDR:
                dst = (socket.inet_ntop(socket.AF_INET6, cd[8:24]), port)
        o = transparent(socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        o.bind(dst)
        o.sendto(b'udp:' + plain(dst[0]).encode() + b':' + data, peer)
        o.close()
    if t in r:
        c, peer = t.accept()
        dst = c.getsockname()
        data = c.recv(2048)
        c.sendall(b'tcp:' + plain(dst[0]).encode() + b':' + data)
        c.close()
`;

const SELFMARK_PY = String.raw`
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, int(sys.argv[2]))
s.settimeout(1)
s.sendto(b'hello', (sys.argv[1], 53))
try:
    print(s.recvfrom(2048))
except socket.timeout:
    print('timeout')
`;
