// Lab helpers for issue #19 (encrypted-DNS bypass control, DoT/DoH listeners): a "public" resolver on
// the WAN side, the gateway's certificate, a connection probe run in the client namespace, metrics.
import fs from 'node:fs';
import path from 'node:path';
import { sh, nsExec, portOpen, waitFor, ROOT, unboundRunsInDir } from './lib.js';

export const PUBLIC_V4 = '203.0.113.9';
export const GW_LAN_V4 = '10.77.0.1';

/** A self-signed certificate with the given SANs in `dir`; returns { cert, key }. */
export function makeCert(dir, cn, sans) {
  fs.mkdirSync(dir, { recursive: true });
  const cert = path.join(dir, 'cert.pem'), key = path.join(dir, 'key.pem');
  sh('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
    '-days', '2', '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${sans}`]);
  return { cert, key };
}

/**
 * unbound in the far namespace on 203.0.113.9 with DoH (:443) and DoT (:853), reachable from the client
 * through the gateway: the kind of public resolver a browser would use behind our back.
 */
export async function startPublicResolver(lab) {
  const d = path.join(lab.dir, 'public');
  const { cert, key } = makeCert(d, 'doh.public.test', `DNS:doh.public.test,IP:${PUBLIC_V4}`);
  sh('ip', ['-n', lab.far, 'addr', 'add', `${PUBLIC_V4}/32`, 'dev', 'lo']);
  sh('ip', ['-n', lab.gw, 'route', 'add', `${PUBLIC_V4}/32`, 'via', '10.77.1.2']);
  const conf = path.join(d, 'unbound.conf');
  fs.writeFileSync(conf, `server:
  interface: ${PUBLIC_V4}@443
  interface: ${PUBLIC_V4}@853
  https-port: 443
  tls-port: 853
  tls-service-key: "${key}"
  tls-service-pem: "${cert}"
${unboundRunsInDir(d)}
  verbosity: 1
  access-control: 0.0.0.0/0 allow
  num-threads: 1
  local-zone: "public.test." static
  local-data: "www.public.test. 300 IN A 192.0.2.77"
`);
  const proc = lab.spawnIn(lab.far, 'unbound', ['-d', '-c', conf], path.join(d, 'stdout.log'));
  await waitFor(() => portOpen(lab.far, 443) && portOpen(lab.far, 853), 10_000, 'public unbound on 443 and 853');
  return { proc, cert };
}

/**
 * Runs test/lab/tools/connect-probe.js in the client namespace: one TCP (or UDP) attempt with a bound,
 * reported as { ok, code, ms } (code: ECONNREFUSED for a reset, EHOSTUNREACH/EACCES for ICMP, TIMEOUT).
 */
export function probe(lab, proto, host, port, timeoutMs = 2000) {
  const out = nsExec(lab.client, process.execPath, [path.join(ROOT, 'test/lab/tools/connect-probe.js'), proto, host, String(port), String(timeoutMs)], { timeout: 20_000 });
  return JSON.parse(out);
}

/** kdig in the client namespace; returns stdout (also on failure). */
export function kdig(lab, args) {
  try { return nsExec(lab.client, 'kdig', [...args, '+retry=0', '+timeout=2'], { timeout: 20_000 }); } catch (e) { return `${e.stdout ?? ''}${e.stderr ?? ''}`; }
}

/** The gateway's /metrics text. */
export function metrics(lab, port = 9153) {
  return nsExec(lab.gw, process.execPath, ['-e', `fetch("http://127.0.0.1:${port}/metrics").then(r=>r.text()).then(t=>process.stdout.write(t))`]);
}

/** One sample's value from metrics text, 0 when absent. */
export function sample(text, name, labels = {}) {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.split(' ').pop());
  }
  return 0;
}
