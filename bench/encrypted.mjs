#!/usr/bin/env node
// DoT and DoH listener throughput on cached names (issue #19), this project against dnsdist's DoT and DoH
// frontends with the same certificate, in one run, in the lab topology of test/lab/lib.js (client ns →
// gateway ns listening on 10.77.0.1:853 / :443, upstream DoH to unbound). Reports max qps (dnsperf at
// saturation) and server CPU µs per query (utime+stime of the server process, all threads, over the run).
//
// Also measures two bare node:http2 servers that answer every DoH request with a fixed message and no DNS
// work at all: the core 'stream' API (what src/listen/doh.ts uses) and the compat request/response API.
// They bound what any node:http2-based listener can do, which is how node:http2 was chosen over writing
// an HTTP/2 server by hand: if bare node:http2 already outruns dnsdist, the protocol layer is not the
// bottleneck a hand-written one would remove.
//
//   sudo node bench/encrypted.mjs [--seconds 10] [--clients 16] [--threads 2] [--outstanding 200]
//                                 [--who project,dnsdist,h2core,h2compat] [--modes dot,doh] [--doh-tool h2load|dnsperf]
//
// dnsdist is needed for its rows only (apt-get install dnsdist); compare rows of one run only.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, labUnavailable, nsExec, sleep, waitFor, portOpen, ROOT } from '../test/lab/lib.js';
import { makeCert, GW_LAN_V4 } from '../test/lab/encrypted-lib.js';

const argv = process.argv.slice(2);
const opt = (name, def) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : def);
const SECS = Number(opt('seconds', 10));
const CLIENTS = Number(opt('clients', 16));
const THREADS = Number(opt('threads', 2));
const OUTSTANDING = Number(opt('outstanding', 200));
const WHO = opt('who', 'project,dnsdist,h2core,h2compat').split(',');
const MODES = opt('modes', 'dot,doh').split(',');
/** DoH load generator: h2load (default; see below why not dnsperf) or dnsperf. */
const DOH_TOOL = opt('doh-tool', 'h2load');
const HZ = 100; // USER_HZ: /proc/<pid>/stat times are in these ticks

const why = labUnavailable(['dnsperf', ...(DOH_TOOL === 'h2load' ? ['h2load'] : []), ...(WHO.includes('dnsdist') ? ['dnsdist'] : [])]);
if (why) { console.error(`bench/encrypted.mjs: ${why} (apt-get install -y dnsperf dnsdist nghttp2-client)`); process.exit(2); }

/** CPU seconds used so far by a process and all its threads. */
function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / HZ;
}

const lab = new Lab().up();
process.on('SIGINT', async () => { await lab.down(); process.exit(130); });
try {
  await lab.startUnbound();
  const { cert, key } = makeCert(path.join(lab.dir, 'gw-cert'), 'gw.lab.test', `DNS:gw.lab.test,IP:${GW_LAN_V4}`);
  const hit = path.join(lab.dir, 'hit.txt');
  fs.writeFileSync(hit, Array.from({ length: 1000 }, (_, i) => `h${i}.wild.test A\n`).join(''));

  const bare = (api) => async () => {
    // A fixed answer (h0.wild.test A 192.0.2.20) with the query's ID: no parsing, no cache, no pipeline.
    const script = path.join(lab.dir, `bare-${api}.mjs`);
    fs.writeFileSync(script, `import http2 from 'node:http2'; import fs from 'node:fs';
const ans = Buffer.from('0000818000010001000000000268300477696c6404746573740000010001c00c000100010000012c0004c0000214', 'hex');
const s = http2.createSecureServer({ cert: fs.readFileSync(${JSON.stringify(cert)}), key: fs.readFileSync(${JSON.stringify(key)}), allowHTTP1: true, settings: { maxConcurrentStreams: 256 } });
const reply = (body, id) => { const a = Buffer.from(ans); a[0] = id[0]; a[1] = id[1]; return a; };
${api !== 'compat'
    ? `s.on('stream', (st, h) => { const c = []; st.on('data', (d) => c.push(d)); st.on('end', () => { const q = h[':method'] === 'POST' ? Buffer.concat(c) : Buffer.from(h[':path'].split('dns=')[1] ?? '', 'base64url'); st.respond({ ':status': 200, 'content-type': 'application/dns-message' }); ${api === 'core-end' ? 'st.end(reply(null, q));' : 'st.write(reply(null, q)); st.end();'} }); });`
    : `s.on('request', (req, res) => { const c = []; req.on('data', (d) => c.push(d)); req.on('end', () => { const q = req.method === 'POST' ? Buffer.concat(c) : Buffer.from(req.url.split('dns=')[1] ?? '', 'base64url'); res.writeHead(200, { 'content-type': 'application/dns-message' }); res.end(reply(null, q)); }); });`}
${api === 'core-nodelay' ? "s.on('secureConnection', (so) => so.setNoDelay(true));" : ''}
s.listen(443, ${JSON.stringify(GW_LAN_V4)});
`);
    const proc = lab.spawnIn(lab.gw, process.execPath, [script], path.join(lab.dir, `bare-${api}.log`));
    await waitFor(() => portOpen(lab.gw, 443), 30_000, `bare node:http2 (${api})`);
    return { proc, modes: ['doh'] };
  };

  const contenders = {
    project: async () => {
      const cfg = lab.writeConfig('project.yaml', `listen:
  plain: ["127.0.0.1:5353"]
  tlsCert: "${cert}"
  tlsKey: "${key}"
  dot: ["${GW_LAN_V4}:853"]
  doh: ["${GW_LAN_V4}:443"]
  tcp:
    maxConnectionsPerClient: 1024
    maxQueriesPerConnection: 100000000
upstreams:
  - url: "https://127.0.0.1:${lab.unbound.port}/dns-query"
    ca: "${lab.unbound.ca}"
`);
      const proc = await lab.startServer(cfg, { wait: false });
      await waitFor(() => {
        if (proc.exitCode !== null) throw new Error(`dns-tproxy exited: ${fs.readFileSync(proc.logPath, 'utf8')}`);
        return portOpen(lab.gw, 853) && portOpen(lab.gw, 443);
      }, 90_000, 'dns-tproxy DoT/DoH listeners');
      return { proc, modes: ['dot', 'doh'] };
    },
    dnsdist: async () => {
      const conf = path.join(lab.dir, 'dnsdist.conf');
      fs.writeFileSync(conf, `setLocal('127.0.0.1:5354')
addTLSLocal('${GW_LAN_V4}:853', '${cert}', '${key}')
addDOHLocal('${GW_LAN_V4}:443', '${cert}', '${key}', '/dns-query')
newServer({address="127.0.0.1:${lab.unbound.port}", tls="openssl", subjectName="doh.test", dohPath="/dns-query", caStore="${lab.unbound.ca}", validateCertificates=true, checkName="h0.wild.test.", maxInFlight=1000})
pc = newPacketCache(200000, {maxTTL=86400, minTTL=0})
getPool(""):setCache(pc)
setSecurityPollSuffix("")
`);
      const log = path.join(lab.dir, 'dnsdist.log');
      const proc = lab.spawnIn(lab.gw, 'dnsdist', ['--supervised', '--disable-syslog', '-C', conf], log);
      await waitFor(() => {
        if (proc.exitCode !== null) throw new Error(`dnsdist exited: ${fs.readFileSync(log, 'utf8')}`);
        return portOpen(lab.gw, 853) && portOpen(lab.gw, 443);
      }, 30_000, 'dnsdist DoT/DoH frontends');
      return { proc, modes: ['dot', 'doh'] };
    },
    h2core: bare('core'),
    // The same, but the body passed to end(): measured slower than write() then end() (see README).
    h2coreend: bare('core-end'),
    // The core API with TCP_NODELAY on the TLS socket (node:http2 leaves Nagle on).
    h2corend: bare('core-nodelay'),
    h2compat: bare('compat'),
  };

  const perf = (mode, extra) => {
    const args = mode === 'dot'
      ? ['-m', 'dot', '-s', GW_LAN_V4, '-p', '853']
      : ['-m', 'doh', '-s', GW_LAN_V4, '-p', '443', '-O', `doh-uri=https://${GW_LAN_V4}/dns-query`, '-O', 'doh-method=POST'];
    return nsExec(lab.client, 'dnsperf', [...args, '-d', hit, ...extra], { timeout: (SECS + 90) * 1000 });
  };
  // Debian's dnsperf 2.10 loses DoH answers once more than one query is outstanding (DNS-OARC/dnsperf#240:
  // the HTTP/2 200s arrive, the answers are never matched; dnsdist shows the same), so DoH load comes from
  // h2load (nghttp2-client): POST application/dns-message of one cached query (h0.wild.test A, ID 0).
  const h2load = (extra) => nsExec(lab.client, 'h2load', ['-d', qbin, '-H', 'content-type: application/dns-message', ...extra,
    `https://${GW_LAN_V4}/dns-query`], { timeout: (SECS + 90) * 1000 });
  const qbin = path.join(lab.dir, 'q.bin');
  fs.writeFileSync(qbin, Buffer.from('0000010000010000000000000268300477696c6404746573740000010001', 'hex'));
  const useH2load = DOH_TOOL === 'h2load';
  const rows = [];
  for (const who of WHO) {
    if (!contenders[who]) { console.error(`unknown contender ${who}`); continue; }
    const { proc, modes } = await contenders[who]();
    try {
      for (const mode of MODES.filter((m) => modes.includes(m))) {
        const num = (out, re) => { const m = re.exec(out); return m ? Number(m[1]) : NaN; };
        if (mode === 'doh' && useH2load) {
          h2load(['-n', '2000', '-c', '4', '-m', '16']); // warm
          await sleep(500);
          const c0 = cpuSeconds(proc.pid);
          const out = h2load(['-D', String(SECS), '-c', String(CLIENTS), '-m', String(Math.max(1, Math.floor(OUTSTANDING / CLIENTS))), '-t', String(THREADS)]);
          const cpu = cpuSeconds(proc.pid) - c0;
          const ok = num(out, /(\d+) succeeded/);
          rows.push({ who, mode: 'doh*', qps: num(out, /finished in [\d.]+s, ([\d.]+) req\/s/), completed: ok,
            lost: 100 * (1 - ok / num(out, /requests: (\d+) total/)), noerrorShare: ok ? num(out, /status codes: (\d+) 2xx/) / ok : 0,
            meanMs: num(out, /time for request:\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)ms/), cpuUs: ok ? (cpu * 1e6) / ok : NaN });
          if (process.env.BENCH_VERBOSE) console.log(out);
          continue;
        }
        perf(mode, ['-n', '2', '-c', '4', '-q', '100']); // warm: every name cached
        await sleep(500);
        const c0 = cpuSeconds(proc.pid);
        const out = perf(mode, ['-l', String(SECS), '-c', String(CLIENTS), '-T', String(THREADS), '-q', String(OUTSTANDING)]);
        const cpu = cpuSeconds(proc.pid) - c0;
        const completed = num(out, /Queries completed:\s+(\d+)/);
        const noerror = num(out, /NOERROR (\d+)/);
        rows.push({
          who, mode, qps: num(out, /Queries per second:\s+([\d.]+)/), completed, lost: num(out, /Queries lost:\s+\d+ \(([\d.]+)%\)/),
          noerrorShare: completed ? noerror / completed : 0,
          meanMs: num(out, /Average Latency \(s\):\s+([\d.]+)/) * 1000, cpuUs: completed ? (cpu * 1e6) / completed : NaN,
        });
        if (process.env.BENCH_VERBOSE) console.log(out);
      }
    } finally {
      await lab.stop(proc);
      await sleep(1000);
    }
  }
  console.log(`dot: dnsperf -m dot -s ${GW_LAN_V4} -d hit.txt(1000 names, warmed) -l ${SECS} -c ${CLIENTS} -T ${THREADS} -q ${OUTSTANDING}; ` +
    `doh*: h2load POST -D ${SECS} -c ${CLIENTS} -m ${Math.max(1, Math.floor(OUTSTANDING / CLIENTS))} -t ${THREADS} (one cached name)   (node ${process.version}, ${ROOT})`);
  console.log(`${'who'.padEnd(10)} ${'mode'.padEnd(5)} ${'qps'.padStart(9)} ${'lost%'.padStart(6)} ${'NOERROR'.padStart(8)} ${'mean_ms'.padStart(8)} ${'cpu_us/q'.padStart(9)}`);
  for (const r of rows) {
    console.log(`${r.who.padEnd(10)} ${r.mode.padEnd(5)} ${r.qps.toFixed(0).padStart(9)} ${r.lost.toFixed(2).padStart(6)} ${(r.noerrorShare * 100).toFixed(0).padStart(7)}% ${r.meanMs.toFixed(2).padStart(8)} ${r.cpuUs.toFixed(1).padStart(9)}`);
  }
  for (const mode of MODES) {
    const m = (r) => r.mode.replace('*', '') === mode;
    const p = rows.find((r) => r.who === 'project' && m(r)), d = rows.find((r) => r.who === 'dnsdist' && m(r));
    if (p && d) console.log(`${mode}: project/dnsdist qps ${(p.qps / d.qps).toFixed(2)}x, cpu/query ${(p.cpuUs / d.cpuUs).toFixed(2)}x (targets: >= 1, <= 1.2)`);
  }
} finally {
  await lab.down();
}
