// Issue #19, second half: the gateway's own DoT and DoH listeners answer LAN clients through the same
// pipeline as the transparent ones (cache, policy, metrics), real clients (kdig +tls, kdig +https,
// curl --doh-url, curl over HTTP/1.1), DDR names them, and the certificate reloads on SIGHUP.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { openLab, SERVER_V4, nsExec, waitFor } from './lib.js';
import { makeCert, kdig, metrics, sample, GW_LAN_V4 } from './encrypted-lib.js';

const lab = openLab(t, ['kdig', 'curl']);
if (lab) {
  await lab.startUnbound();
  const certDir = path.join(lab.dir, 'gw-cert');
  const { cert, key } = makeCert(certDir, 'gw1.lab.test', `DNS:gw.lab.test,IP:${GW_LAN_V4}`);
  const cfg = lab.writeConfig('encrypted.yaml', `listen:
  tproxy:
    udp: "[::]:53"
    tcp: "[::]:53"
  tlsCert: "${cert}"
  tlsKey: "${key}"
  dot: ["${GW_LAN_V4}:853"]
  doh: ["${GW_LAN_V4}:443"]
upstreams:
  - url: "https://127.0.0.1:${lab.unbound.port}/dns-query"
    ca: "${lab.unbound.ca}"
metrics:
  listen: "127.0.0.1:9153"
filter:
  block: ["blocked.lab.test"]
`);
  const srv = await lab.startServer(cfg);
  t.teardown(() => lab.stop(srv));

  t.test('kdig +tls: DoT on the gateway answers, and policy applies', async (t) => {
    const out = kdig(lab, [`@${GW_LAN_V4}`, '+tls', 'a.lab.test', 'A']);
    t.match(out, /status: NOERROR/);
    t.match(out, /a\.lab\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.1/);
    t.match(out, /TLS session/, 'over TLS');
    const blocked = kdig(lab, [`@${GW_LAN_V4}`, '+tls', 'blocked.lab.test', 'A']);
    t.match(blocked, /status: NXDOMAIN/, 'the filter applies to DoT clients too');
  });

  t.test('kdig +https: DoH (HTTP/2) on the gateway answers', async (t) => {
    const out = kdig(lab, [`@${GW_LAN_V4}`, '+https', 'a.lab.test', 'AAAA']);
    t.match(out, /status: NOERROR/);
    t.match(out, /a\.lab\.test\.\s+\d+\s+IN\s+AAAA\s+2001:db8::1/);
    t.match(out, /HTTP session \(HTTP\/2-POST\)-\(10\.77\.0\.1\/dns-query\)-\(status: 200\)/);
  });

  t.test('curl --doh-url resolves through our DoH listener', async (t) => {
    let err = '';
    try {
      nsExec(lab.client, 'curl', ['-sv', '--max-time', '3', '--doh-insecure', '--doh-url', `https://${GW_LAN_V4}/dns-query`, 'http://a.lab.test:9/'], { timeout: 20_000 });
    } catch (e) { err = String(e.stderr ?? ''); }
    // Nothing listens on 192.0.2.1:9; the point is that the name was resolved over DoH.
    t.match(err, /DoH A: 192\.0\.2\.1/);
  });

  t.test('HTTP/1.1 GET with curl', async (t) => {
    // a.lab.test A, ID 0, base64url without padding (RFC 8484 4.1).
    const q = Buffer.from('0000010000010000000000000161036c616204746573740000010001', 'hex').toString('base64url');
    const out = nsExec(lab.client, 'curl', ['-s', '-k', '--http1.1', '-o', '/dev/null', '-w', '%{http_code} %{http_version} %{content_type}',
      `https://${GW_LAN_V4}/dns-query?dns=${q}`], { timeout: 20_000 });
    t.equal(out, '200 1.1 application/dns-message');
  });

  t.test('DDR: _dns.resolver.arpa SVCB points at our DoT and DoH listeners', async (t) => {
    const out = kdig(lab, [`@${SERVER_V4}`, '_dns.resolver.arpa', 'SVCB']);
    t.match(out, /status: NOERROR/);
    t.match(out, /_dns\.resolver\.arpa\.\s+\d+\s+IN\s+SVCB\s+1 gw\.lab\.test\. alpn=dot port=853 ipv4hint=10\.77\.0\.1/);
    t.match(out, /SVCB\s+2 gw\.lab\.test\. alpn=h2,http\/1\.1 port=443 ipv4hint=10\.77\.0\.1/);
    t.equal(lab.unboundQueries('_dns.resolver.arpa'), 0, 'answered by us, never forwarded');
  });

  t.test('the transport shows in the metrics', async (t) => {
    const m = metrics(lab);
    t.ok(sample(m, 'dns_tproxy_queries_total', { transport: 'dot' }) >= 2, 'dot queries counted');
    t.ok(sample(m, 'dns_tproxy_queries_total', { transport: 'doh' }) >= 3, 'doh queries counted');
    t.ok(sample(m, 'dns_tproxy_doh_requests_total', { http: '1.1' }) >= 1);
    t.ok(sample(m, 'dns_tproxy_doh_requests_total', { http: '2' }) >= 2);
  });

  t.test('SIGHUP reloads the certificate', async (t) => {
    const subject = () => {
      try {
        const pem = nsExec(lab.client, 'sh', ['-c', `openssl s_client -connect ${GW_LAN_V4}:853 </dev/null 2>/dev/null | openssl x509 -noout -subject`], { timeout: 20_000 });
        return pem.trim();
      } catch { return ''; }
    };
    t.match(subject(), /CN = gw1\.lab\.test/);
    // A new pair, written the way certbot does (new files renamed over the old ones).
    const next = makeCert(path.join(lab.dir, 'gw-cert2'), 'gw2.lab.test', `IP:${GW_LAN_V4}`);
    fs.renameSync(next.cert, cert);
    fs.renameSync(next.key, key);
    srv.kill('SIGHUP');
    await waitFor(() => /CN = gw2\.lab\.test/.test(subject()), 15_000, 'the new certificate');
    t.pass('new connections get the new certificate');
    t.match(kdig(lab, [`@${GW_LAN_V4}`, '+tls', 'a.lab.test', 'A']), /status: NOERROR/, 'and are served');
  });
}
