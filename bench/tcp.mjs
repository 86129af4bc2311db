#!/usr/bin/env node
// DNS-over-TCP throughput through the real TPROXY path (the lab topology of test/lab/lib.js: client ns →
// gateway ns with nft tproxy tcp/udp dport 53 → DoH to unbound), this project side by side with dnsdist
// in the same run. Cached answers: a hit set of 1000 names, warmed first, then `dnsperf -m tcp`.
//
//   sudo node bench/tcp.mjs [--seconds 10] [--clients 16] [--threads 2] [--outstanding 500] [--who project,dnsdist]
//
// dnsdist cannot open a TPROXY socket itself (transparent=true sets only IP_FREEBIND), so it runs with
// the LD_PRELOAD shim /work/shared/bench/tshim.c (IP_TRANSPARENT on every bound socket), as
// /work/shared/bench/peers.sh does. Compare rows of one run only.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, labUnavailable, nsExec, sleep, waitFor, SERVER_V4, ROOT } from '../test/lab/lib.js';

const argv = process.argv.slice(2);
const opt = (name, def) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : def);
const SECS = Number(opt('seconds', 10));
const CLIENTS = Number(opt('clients', 16));
const THREADS = Number(opt('threads', 2));
const OUTSTANDING = Number(opt('outstanding', 500));
const WHO = opt('who', 'project,dnsdist').split(',');
// Our default closes a connection after 1000 queries; dnsperf's long-lived connections would lose the
// queries already in flight at that moment, so the bench lifts it (dnsdist has no such limit by default).
const MAXQ = Number(opt('max-queries', 100_000_000));
const TSHIM = opt('tshim', '/work/shared/bench/tshim.c');

const why = labUnavailable(['dnsperf', 'gcc', ...(WHO.includes('dnsdist') ? ['dnsdist'] : [])]);
if (why) { console.error(`bench/tcp.mjs: ${why} (apt-get install -y dnsperf dnsdist gcc)`); process.exit(2); }

const lab = new Lab().up();
process.on('SIGINT', async () => { await lab.down(); process.exit(130); });
try {
  await lab.startUnbound();
  const hit = path.join(lab.dir, 'hit.txt');
  fs.writeFileSync(hit, Array.from({ length: 1000 }, (_, i) => `h${i}.wild.test A\n`).join(''));

  const contenders = {
    project: async () => {
      const cfg = lab.writeConfig('project.yaml', `listen:
  tproxy:
    udp: "[::]:53"
    tcp: "[::]:53"
  tcp:
    maxConnectionsPerClient: 1024
    maxQueriesPerConnection: ${MAXQ}
upstreams:
  - url: "https://127.0.0.1:${lab.unbound.port}/dns-query"
    ca: "${lab.unbound.ca}"
`);
      return lab.startServer(cfg, { waitName: 'h0.wild.test' });
    },
    dnsdist: async () => {
      const so = path.join(lab.dir, 'tshim.so');
      execFileSync('gcc', ['-shared', '-fPIC', '-O2', '-o', so, TSHIM, '-ldl']);
      const conf = path.join(lab.dir, 'dnsdist.conf');
      fs.writeFileSync(conf, `setLocal('0.0.0.0:53', {transparent=true})
newServer({address="127.0.0.1:${lab.unbound.port}", tls="openssl", subjectName="doh.test", dohPath="/dns-query", caStore="${lab.unbound.ca}", validateCertificates=true, checkName="h0.wild.test.", maxInFlight=1000})
pc = newPacketCache(200000, {maxTTL=86400, minTTL=0})
getPool(""):setCache(pc)
setSecurityPollSuffix("")
`);
      const log = path.join(lab.dir, 'dnsdist.log');
      const proc = lab.spawnIn(lab.gw, 'env', [`LD_PRELOAD=${so}`, 'dnsdist', '--supervised', '--disable-syslog', '-C', conf], log);
      await waitFor(() => {
        if (proc.exitCode !== null) throw new Error(`dnsdist exited: ${fs.readFileSync(log, 'utf8')}`);
        return /status: NOERROR/.test(lab.dig([`@${SERVER_V4}`, '+tcp', 'h0.wild.test', 'A', '+tries=1', '+time=1'], true));
      }, 20_000, 'dnsdist answering through TPROXY');
      return proc;
    },
  };

  const perf = (extra) => nsExec(lab.client, 'dnsperf', ['-m', 'tcp', '-s', SERVER_V4, '-d', hit, ...extra], { timeout: (SECS + 60) * 1000 });
  const rows = [];
  for (const who of WHO) {
    if (!contenders[who]) { console.error(`unknown contender ${who}`); continue; }
    const proc = await contenders[who]();
    // The answer must come from the intercepted address over TCP, or the row means nothing.
    const check = lab.dig([`@${SERVER_V4}`, '+tcp', 'h1.wild.test', 'A', '+tries=1', '+time=2']);
    if (!/SERVER: 198\.51\.100\.53#53\(198\.51\.100\.53\) \(TCP\)/.test(check) || !/status: NOERROR/.test(check)) throw new Error(`${who}: bad TCP answer:\n${check}`);
    perf(['-n', '2', '-c', '4', '-q', '200']); // warm: every name cached
    await sleep(500);
    const out = perf(['-l', String(SECS), '-c', String(CLIENTS), '-T', String(THREADS), '-q', String(OUTSTANDING)]);
    const num = (re) => { const m = re.exec(out); return m ? Number(m[1]) : NaN; };
    rows.push({
      who, qps: num(/Queries per second:\s+([\d.]+)/), sent: num(/Queries sent:\s+(\d+)/),
      lost: num(/Queries lost:\s+\d+ \(([\d.]+)%\)/), meanMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
      sdMs: num(/Latency StdDev \(s\):\s+([\d.]+)/) * 1000, maxMs: num(/Average Latency \(s\):\s+[\d.]+ \(min [\d.]+, max ([\d.]+)\)/) * 1000,
    });
    if (process.env.BENCH_VERBOSE) console.log(out);
    await lab.stop(proc);
    await sleep(1000);
  }
  console.log(`dnsperf -m tcp -s ${SERVER_V4} -d hit.txt(1000 names, warmed) -l ${SECS} -c ${CLIENTS} -T ${THREADS} -q ${OUTSTANDING}   (node ${process.version}, ${ROOT})`);
  console.log(`${'who'.padEnd(10)} ${'qps'.padStart(10)} ${'lost%'.padStart(7)} ${'mean_ms'.padStart(9)} ${'sd_ms'.padStart(8)} ${'max_ms'.padStart(8)}`);
  for (const r of rows) {
    console.log(`${r.who.padEnd(10)} ${r.qps.toFixed(0).padStart(10)} ${r.lost.toFixed(2).padStart(7)} ${r.meanMs.toFixed(3).padStart(9)} ${r.sdMs.toFixed(3).padStart(8)} ${r.maxMs.toFixed(1).padStart(8)}`);
  }
} finally {
  await lab.down();
}
