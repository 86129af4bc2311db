#!/usr/bin/env node
// npm run demo: the whole transparent path, offline, in throwaway network namespaces.
//   client ns ──> gateway ns (nft TPROXY → dns-tproxy → DoH → local unbound) ──> "remote" ns that owns
//   198.51.100.53 and 2001:db8:53::53 but runs no DNS server. Answers therefore prove interception.
import { Lab, labUnavailable, baseConfig, SERVER_V4, SERVER_V6, nsExec } from '../test/lab/lib.js';

const why = labUnavailable();
if (why) { console.error(`demo cannot run: ${why}`); process.exit(1); }

const step = (s) => console.log(`\n\x1b[1m== ${s}\x1b[0m`);
const lab = new Lab().up();
try {
  step('namespaces up: client → gateway (nft tproxy) → remote host with no DNS server');
  console.log(nsExec(lab.gw, 'nft', ['list', 'table', 'inet', 'dtlab']).trim());
  step('unbound serving DoH on 127.0.0.1:8443 inside the gateway (self-signed CA)');
  await lab.startUnbound();
  const cfg = lab.writeConfig('demo.yaml', baseConfig(lab));
  step('dns-tproxy run --config demo.yaml');
  await lab.startServer(cfg);
  for (const [server, type] of [[SERVER_V4, 'A'], [SERVER_V6, 'AAAA']]) {
    step(`client: dig @${server} a.lab.test ${type}`);
    const out = lab.dig([`@${server}`, 'a.lab.test', type, '+tries=1', '+time=3']);
    console.log(out.split('\n').filter((l) => /status:|IN\s+(A|AAAA)\s|SERVER:|Query time/.test(l)).join('\n'));
  }
  step('the same name again, 2 s later: answered from the cache, TTL counted down');
  await new Promise((r) => setTimeout(r, 2000));
  console.log(lab.dig([`@${SERVER_V4}`, 'a.lab.test', 'A', '+noall', '+answer']).trim());
  step('a query over TCP');
  console.log(lab.dig([`@${SERVER_V4}`, 'a.lab.test', 'A', '+tcp', '+noall', '+answer', '+stats']).split('\n').filter((l) => /IN\s+A|SERVER/.test(l)).join('\n'));
  step('metrics (excerpt)');
  const m = nsExec(lab.gw, 'curl', ['-s', 'http://127.0.0.1:9153/metrics']);
  console.log(m.split('\n').filter((l) => /^dns_tproxy_(queries_total|answers_total\{rcode="NOERROR"|cache_hits_total|cache_misses_total|upstream_requests_total)/.test(l)).join('\n'));
} finally {
  step('tearing down');
  await lab.down();
}
