// Issue #19, first half: a LAN client that tries to walk past the gateway with encrypted DNS. A "public"
// resolver (unbound, DoH on 203.0.113.9:443, DoT on :853) sits on the WAN side; the client reaches it
// before dns-tproxy starts. With `bypass: block` under `run --manage-network`: DoT and DoH to it are
// rejected at once (reset / ICMP), the canaries answer NXDOMAIN, the listed hostname is blocked and the
// client's attempts are counted. With `log`: the same connections succeed and are counted.
import t from 'tap';
import path from 'node:path';
import { openLab, SERVER_V4, ROOT, nsExec, waitFor, sh } from './lib.js';
import { startPublicResolver, probe, kdig, metrics, sample, PUBLIC_V4 } from './encrypted-lib.js';

const lab = openLab(t, ['kdig']);
if (lab && process.env.KEEP_LAB) t.teardown(() => console.error('lab dir', lab.dir));
if (lab) {
  // Our upstream knows the public resolver's name, as the real one would.
  await lab.startUnbound({ extra: `  local-zone: "public.test." static\n  local-data: "doh.public.test. 300 IN A ${PUBLIC_V4}"\n  local-data: "www.public.test. 300 IN A 192.0.2.77"` });
  await startPublicResolver(lab);
  // run --manage-network installs its own TPROXY table; the lab's would be a second one.
  sh('ip', ['netns', 'exec', lab.gw, 'nft', 'delete', 'table', 'inet', 'dtlab']);
  const listFile = lab.writeConfig('doh-servers.txt', '# public DoH/DoT services\ndoh.public.test\n');
  const config = (mode) => lab.writeConfig(`bypass-${mode}.yaml`, `listen:
  tproxy:
    udp: "[::]:53"
    tcp: "[::]:53"
upstreams:
  - url: "https://127.0.0.1:${lab.unbound.port}/dns-query"
    ca: "${lab.unbound.ca}"
metrics:
  listen: "127.0.0.1:9153"
network:
  interfaces: ["dtb${lab.id}"]
bypass:
  mode: ${mode}
  lists:
    - { name: public-resolvers, path: "${listFile}" }
`);
  const cli = path.join(ROOT, 'dist/cli.js');
  const networkShow = (cfg) => {
    try { return nsExec(lab.gw, process.execPath, [cli, 'network', 'show', '--config', cfg]); } catch (e) { return String(e.stdout ?? ''); }
  };
  /** Starts dns-tproxy with --manage-network; stopped with the test even when it never comes up. */
  const start = async (t, cfg) => {
    const srv = await lab.startServer(cfg, { args: ['--manage-network'], wait: false });
    t.teardown(() => lab.stop(srv));
    // Generous: the machine may be busy; this bounds the test, it does not measure anything.
    await waitFor(() => {
      if (srv.exitCode !== null) throw new Error('dns-tproxy exited');
      return /status: NOERROR/.test(lab.dig([`@${SERVER_V4}`, 'a.lab.test', 'A', '+tries=1', '+time=1'], true));
    }, 90_000, 'dns-tproxy answering through TPROXY');
    return srv;
  };
  const dst4 = () => {
    try { return nsExec(lab.gw, 'nft', ['list', 'set', 'inet', 'dns_tproxy_bypass', 'dst4']); } catch { return ''; }
  };

  t.test('before dns-tproxy: the client reaches the public resolver over DoT and DoH', async (t) => {
    t.match(kdig(lab, [`@${PUBLIC_V4}`, '+tls', 'www.public.test', 'A']), /www\.public\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.77/, 'DoT answers');
    t.match(kdig(lab, [`@${PUBLIC_V4}`, '+https', 'www.public.test', 'A']), /www\.public\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.77/, 'DoH answers');
    t.equal(probe(lab, 'tcp', PUBLIC_V4, 853).code, 'CONNECTED');
    t.equal(probe(lab, 'tcp', PUBLIC_V4, 443).code, 'CONNECTED');
  });

  t.test('bypass block', async (t) => {
    const cfg = config('block');
    await start(t, cfg);
    // The listed hostname's address arrives in the set once our upstream has resolved it.
    await waitFor(() => dst4().includes(PUBLIC_V4), 60_000, `${PUBLIC_V4} in the bypass set`);

    t.test('DoT and DoQ (853) are rejected at once, not left to time out', async (t) => {
      const tcp = probe(lab, 'tcp', PUBLIC_V4, 853);
      t.equal(tcp.ok, false);
      t.equal(tcp.code, 'ECONNREFUSED', 'TCP reset');
      const udp = probe(lab, 'udp', PUBLIC_V4, 853);
      t.equal(udp.ok, false);
      t.match(udp.code, /^(EHOSTUNREACH|EACCES|ECONNREFUSED)$/, 'ICMP error, not silence');
      t.notMatch(kdig(lab, [`@${PUBLIC_V4}`, '+tls', 'www.public.test', 'A']), /status: NOERROR/, 'kdig +tls fails');
    });

    t.test('DoH to the listed resolver (443) is rejected at once', async (t) => {
      const tcp = probe(lab, 'tcp', PUBLIC_V4, 443);
      t.equal(tcp.ok, false);
      t.equal(tcp.code, 'ECONNREFUSED', 'TCP reset');
      const quic = probe(lab, 'udp', PUBLIC_V4, 443);
      t.match(quic.code, /^(EHOSTUNREACH|EACCES|ECONNREFUSED)$/, 'HTTP/3 gets an ICMP error');
      t.notMatch(kdig(lab, [`@${PUBLIC_V4}`, '+https', 'www.public.test', 'A']), /status: NOERROR/, 'kdig +https fails');
    });

    t.test('canaries and the listed hostname answer NXDOMAIN', async (t) => {
      for (const name of ['use-application-dns.net', 'mask.icloud.com', 'mask-h2.icloud.com', 'doh.public.test']) {
        t.match(lab.dig([`@${SERVER_V4}`, name, 'A', '+tries=1', '+time=3']), /status: NXDOMAIN/, name);
      }
      t.match(lab.dig([`@${SERVER_V4}`, 'www.public.test', 'A', '+tries=1', '+time=3']), /status: NOERROR/, 'other names in the zone resolve');
    });

    t.test("the client's attempts are counted, per protocol and per client", async (t) => {
      await waitFor(() => {
        const m = metrics(lab);
        return sample(m, 'dns_tproxy_bypass_attempts_total', { proto: 'dot' }) >= 1
          && sample(m, 'dns_tproxy_bypass_attempts_total', { proto: 'doh' }) >= 1
          && sample(m, 'dns_tproxy_bypass_attempts_total', { proto: 'canary' }) >= 3
          && sample(m, 'dns_tproxy_bypass_attempts_total', { proto: 'name' }) >= 1;
      }, 60_000, 'bypass attempt counters');
      const show = networkShow(cfg);
      t.match(show, /bypass: mode block, table inet dns_tproxy_bypass/);
      t.match(show, /10\.77\.0\.2 dot \d+/, 'attributed to the client');
      t.match(show, /dst4=1\b/, 'set size shown');
    });
  });

  t.test('bypass log: connections succeed and are counted', async (t) => {
    const cfg = config('log');
    await start(t, cfg);
    await waitFor(() => dst4().includes(PUBLIC_V4), 60_000, `${PUBLIC_V4} in the bypass set`);
    t.equal(probe(lab, 'tcp', PUBLIC_V4, 853).code, 'CONNECTED');
    t.equal(probe(lab, 'tcp', PUBLIC_V4, 443).code, 'CONNECTED');
    t.match(kdig(lab, [`@${PUBLIC_V4}`, '+tls', 'www.public.test', 'A']), /status: NOERROR/, 'DoT works');
    t.match(lab.dig([`@${SERVER_V4}`, 'doh.public.test', 'A', '+tries=1', '+time=3']), /status: NOERROR/, 'listed name resolves in log mode');
    await waitFor(() => {
      const m = metrics(lab);
      return sample(m, 'dns_tproxy_bypass_attempts_total', { proto: 'dot' }) >= 2
        && sample(m, 'dns_tproxy_bypass_attempts_total', { proto: 'doh' }) >= 1
        && sample(m, 'dns_tproxy_bypass_attempts_total', { proto: 'name' }) >= 1;
    }, 60_000, 'bypass attempt counters in log mode');
    t.match(networkShow(cfg), /bypass: mode log/);
  });
}
