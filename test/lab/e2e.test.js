// The product as users run it: dns-tproxy sets up the gateway itself (`run --manage-network`, and
// `network up` then `run`) with its default network settings, the lab's real unbound DoH upstream,
// and real clients (dig, kdig) asking a far address that runs no DNS server. An answer therefore
// proves the product's own ruleset intercepted the query. And the WAN side (#15.3): a host on the
// internet side querying a LAN address through the gateway gets no answer, while a LAN client with
// a global IPv6 address (2001:db8:77::2, as from a delegated prefix) does.
//
//   client ns: 10.77.0.2, fd00:77::2, 2001:db8:77::2 ── dtb (LAN) gateway dtx (WAN, default route) ── far ns:
//   10.77.1.2, fd00:78::2; 198.51.100.53, 2001:db8:53::53 (no DNS server); "internet" sources 203.0.113.7, 2001:db8:ff::7
//
// DNS_TPROXY_CLI=/path/to/cli.js runs the same checks against another build (e.g. an older commit's).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { openLab, baseConfig, SERVER_V4, SERVER_V6, ROOT, sh, nsExec, removeLabInterception, labMetrics, metricValue, waitFor } from './lib.js';

const CLI = process.env.DNS_TPROXY_CLI || path.join(ROOT, 'dist/cli.js');
const PORT = 15353;
const INTERNET_V4 = '203.0.113.7';
const INTERNET_V6 = '2001:db8:ff::7';
const LAN_GLOBAL_V6 = '2001:db8:77::2';

const lab = openLab(t, ['kdig']);
if (lab) {
  await lab.startUnbound();
  removeLabInterception(lab);
  const { gw: G, client: C, far: F, id } = lab;
  const ip = (ns, ...a) => sh('ip', ['-n', ns, ...a]);
  // A router's shape: the far side is the WAN and carries the default routes.
  ip(G, 'route', 'add', 'default', 'via', '10.77.1.2');
  ip(G, '-6', 'route', 'add', 'default', 'via', 'fd00:78::2');
  // A global IPv6 prefix on the LAN, as from prefix delegation; the client takes an address in it.
  ip(G, '-6', 'addr', 'add', '2001:db8:77::1/64', 'dev', `dtb${id}`, 'nodad');
  ip(C, '-6', 'addr', 'add', `${LAN_GLOBAL_V6}/64`, 'dev', `dta${id}`, 'nodad');
  // Internet-side hosts: source addresses on the far side, routed there by the gateway's default route.
  ip(F, 'addr', 'add', `${INTERNET_V4}/32`, 'dev', 'lo');
  ip(F, '-6', 'addr', 'add', `${INTERNET_V6}/128`, 'dev', 'lo');

  const cfgText = (network = '') => baseConfig(lab, { port: PORT }) + (network ? `network:\n${network}` : '');
  const cli = (...args) => nsExec(G, process.execPath, [CLI, ...args], { timeout: 60_000 });
  const digIn = (ns, args) => {
    const r = spawnSync('ip', ['netns', 'exec', ns, 'dig', ...args], { encoding: 'utf8', timeout: 30_000 });
    return r.stdout + r.stderr;
  };
  const kdig = (args) => nsExec(C, 'kdig', [...args, '+retry=0', '+timeout=3'], { timeout: 30_000 });
  /** The product's divert counters as `network show` prints them ("intercepted packets ipv4/udp=N ..."). */
  const intercepted = (cfgPath) => {
    const r = spawnSync('ip', ['netns', 'exec', G, process.execPath, CLI, 'network', 'show', '--config', cfgPath], { encoding: 'utf8', timeout: 60_000 });
    const out = {};
    for (const m of r.stdout.matchAll(/(ipv[46]\/(?:udp|tcp))=(\d+)/g)) out[m[1]] = Number(m[2]);
    return { ...out, text: r.stdout };
  };

  /** Real clients, real answers: v4 and v6, UDP and TCP, dig and kdig, to a far address. */
  function assertAnswered(t, what) {
    for (const [server, proto] of [[SERVER_V4, []], [SERVER_V4, ['+tcp']], [SERVER_V6, []], [SERVER_V6, ['+tcp']]]) {
      const out = lab.dig([`@${server}`, 'a.lab.test', 'A', '+tries=1', '+time=3', ...proto]);
      t.match(out, /status: NOERROR/, `${what}: dig @${server} ${proto.join(' ') || 'udp'} answered`);
      t.match(out, /a\.lab\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.1/, 'with the upstream\'s record');
      t.match(out, new RegExp(`SERVER: ${server.replace(/\./g, '\\.')}#53`), 'from the address the client asked');
    }
    for (const [server, proto] of [[SERVER_V4, '+notcp'], [SERVER_V6, '+tcp']]) {
      const out = kdig([`@${server}`, 'a.lab.test', 'AAAA', proto]);
      t.match(out, /status: NOERROR/, `${what}: kdig @${server} ${proto} answered`);
      t.match(out, /2001:db8::1/);
    }
  }

  t.test('run --manage-network with default network settings: real answers through the product\'s own rules', async (t) => {
    const cfg = lab.writeConfig('e2e-manage.yaml', cfgText());
    const srv = await lab.startServer(cfg, { args: ['--manage-network'], cli: CLI });
    t.teardown(() => lab.stop(srv));
    t.match(nsExec(G, 'nft', ['list', 'tables']), /table inet dns_tproxy/, 'the product installed its table');
    t.notMatch(nsExec(G, 'nft', ['list', 'tables']), /dtlab/, 'the lab\'s own table is gone');
    assertAnswered(t, 'manage-network');
    t.equal(fs.readFileSync(path.join(lab.dir, 'unbound', 'unbound.log'), 'utf8').includes('a.lab.test.'), true, 'unbound answered it (not a stub)');
    await lab.stop(srv);
    t.notMatch(nsExec(G, 'nft', ['list', 'tables']), /dns_tproxy/, 'failMode open: the table is removed on exit');
  });

  t.test('network up, then run, then network down', async (t) => {
    const cfg = lab.writeConfig('e2e-up.yaml', cfgText());
    t.match(cli('network', 'up', '--config', cfg), /network up/);
    t.teardown(() => { try { cli('network', 'down', '--config', cfg); } catch { /* lab gone */ } });
    const srv = await lab.startServer(cfg, { cli: CLI });
    t.teardown(() => lab.stop(srv));
    assertAnswered(t, 'network up + run');
    const show = intercepted(cfg);
    t.match(show.text, /dns-tproxy network: OK/, 'network show is OK with the server running');
    t.ok(show['ipv4/udp'] > 0 && show['ipv4/tcp'] > 0 && show['ipv6/udp'] > 0 && show['ipv6/tcp'] > 0, `every family and protocol was intercepted: ${JSON.stringify({ ...show, text: undefined })}`);
    await lab.stop(srv);
    t.match(cli('network', 'down', '--config', cfg), /network down/);
    t.notMatch(nsExec(G, 'nft', ['list', 'tables']), /dns_tproxy/);
  });

  t.test('the WAN side is never answered; a LAN client with a global IPv6 address is', async (t) => {
    const cfg = lab.writeConfig('e2e-wan.yaml', cfgText());
    const srv = await lab.startServer(cfg, { args: ['--manage-network'], cli: CLI });
    t.teardown(() => lab.stop(srv));
    const lanGlobal = lab.dig([`@${SERVER_V6}`, '-b', LAN_GLOBAL_V6, 'a.lab.test', 'A', '+tries=1', '+time=3']);
    t.match(lanGlobal, /status: NOERROR/, 'the LAN client with a global IPv6 address is answered');
    t.match(lanGlobal, /192\.0\.2\.1/);
    const lanGlobalTcp = lab.dig([`@${SERVER_V6}`, '-b', LAN_GLOBAL_V6, 'a.lab.test', 'A', '+tries=1', '+time=3', '+tcp']);
    t.match(lanGlobalTcp, /status: NOERROR/, 'over TCP too');
    const before = intercepted(cfg);
    // From the internet side, to LAN addresses behind the gateway (v4, the LAN's ULA and its global v6).
    for (const [src, dst] of [[INTERNET_V4, '10.77.0.2'], [INTERNET_V6, LAN_GLOBAL_V6], [INTERNET_V6, 'fd00:77::2']]) {
      for (const proto of [[], ['+tcp']]) {
        const out = digIn(F, [`@${dst}`, '-b', src, `wan-${lab.id}.wild.test`, 'A', '+tries=1', '+time=2', ...proto]);
        t.notMatch(out, /status: /, `no answer from ${src} to ${dst} ${proto.join(' ') || 'udp'} (${out.trim().split('\n').pop()})`);
      }
    }
    const after = intercepted(cfg);
    for (const k of ['ipv4/udp', 'ipv4/tcp', 'ipv6/udp', 'ipv6/tcp']) t.equal(after[k], before[k], `${k}: nothing from the WAN side was intercepted`);
    t.equal(lab.unboundQueries(`wan-${lab.id}.wild.test`), 0, 'nothing reached the upstream');
    t.match(after.text, new RegExp(`intercepting on: .*dtb${id}`), 'network show names the LAN interface');
    t.match(after.text, new RegExp(`carrying a default route \\(dtx${id}\\)`), 'and the WAN one');
    t.match(after.text, /2001:db8:77::\/64 \(dtb/, 'and the delegated prefix as on-link');
  });

  t.test('intercepting on the WAN interface too (explicit interfaces): the ingress ACL drops and counts', async (t) => {
    const cfg = lab.writeConfig('e2e-acl.yaml', cfgText(`  interfaces: ["dtb${id}", "dtx${id}"]\n`));
    const srv = await lab.startServer(cfg, { args: ['--manage-network'], cli: CLI });
    t.teardown(() => lab.stop(srv));
    const before = intercepted(cfg);
    const dropped0 = metricValue(labMetrics(lab), 'dns_tproxy_dropped_total', { reason: 'acl' });
    const out4 = digIn(F, [`@10.77.0.2`, '-b', INTERNET_V4, `acl-${lab.id}.wild.test`, 'A', '+tries=1', '+time=2']);
    const out6 = digIn(F, [`@${LAN_GLOBAL_V6}`, '-b', INTERNET_V6, `acl-${lab.id}.wild.test`, 'A', '+tries=1', '+time=2']);
    t.notMatch(out4, /status: /, 'no answer over IPv4 (no REFUSED either)');
    t.notMatch(out6, /status: /, 'no answer over IPv6');
    t.match(out4, /timed out|no servers could be reached/, 'the query timed out');
    const after = intercepted(cfg);
    t.equal(after['ipv4/udp'] - before['ipv4/udp'], 1, 'the v4 query was intercepted (one packet)');
    t.equal(after['ipv6/udp'] - before['ipv6/udp'], 1, 'the v6 query was intercepted (one packet)');
    await waitFor(() => metricValue(labMetrics(lab), 'dns_tproxy_dropped_total', { reason: 'acl' }) - dropped0 === 2, 5000, 'two ACL drops counted');
    t.pass('dns_tproxy_dropped_total{reason="acl"} rose by exactly 2');
    const tcp = digIn(F, [`@10.77.0.2`, '-b', INTERNET_V4, `acl-${lab.id}.wild.test`, 'A', '+tries=1', '+time=2', '+tcp']);
    t.notMatch(tcp, /status: /, 'TCP from the internet side: no answer');
    t.ok(metricValue(labMetrics(lab), 'dns_tproxy_tcp_connections_total', { listener: 'tproxy-tcp', kind: 'rejected_acl' }) >= 1,
      'the TCP connection was refused by the ACL (tcp_connections_total{kind="rejected_acl"})');
    t.equal(lab.unboundQueries(`acl-${lab.id}.wild.test`), 0, 'nothing reached the upstream');
    const lan = lab.dig([`@${SERVER_V4}`, 'a.lab.test', 'A', '+tries=1', '+time=3']);
    t.match(lan, /status: NOERROR/, 'the LAN client is still answered');
  });
}
