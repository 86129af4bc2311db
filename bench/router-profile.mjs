#!/usr/bin/env node
// node bench/router-profile.mjs [--seconds 120] [--qps 5000] [--memory-mb 160] [--list 1000000] [--cache 100000]
//
// A home router's budget: the server runs in a cgroup (v1 memory + cpu, or v2) limited to 160 MB of memory
// and one core, with a 1M-domain blocklist and a 100k-entry cache that fills, and serves 5k qps of mixed
// traffic through the real TPROXY path for 2 minutes (dnsperf in the lab's client namespace). The mix:
// 60 % repeated names (cache hits after their first answer), 30 % names never asked before (misses that
// keep filling and then churning the cache), 10 % names on the blocklist. Prints one JSON line every
// 5 s (RSS, cgroup memory, CPU % of a core) and a summary: OOM kills, loss, max RSS, mean CPU.
// Needs root and the lab tools (see .ci/run). Not a test: figures go to the README, never into asserts.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { Lab, labUnavailable, baseConfig, SERVER_V4, ROOT, nsExec, waitFor, sleep } from '../test/lab/lib.js';

const { values: opt } = parseArgs({
  options: {
    seconds: { type: 'string', default: '120' }, qps: { type: 'string', default: '5000' },
    'memory-mb': { type: 'string', default: '160' }, list: { type: 'string', default: '1000000' },
    cache: { type: 'string', default: '100000' },
    // Extra YAML appended to the config, e.g. --extra 'store: false' (\n for new lines).
    extra: { type: 'string', default: '' },
  },
});
const SECONDS = Number(opt.seconds), QPS = Number(opt.qps), MEMORY_MB = Number(opt['memory-mb']);
const LIST_SIZE = Number(opt.list), CACHE_ENTRIES = Number(opt.cache);

const why = labUnavailable(['dnsperf', 'curl']);
if (why) { console.error(`router-profile: ${why}`); process.exit(1); }

/** A cgroup limited to MEMORY_MB and one core; v1 (memory + cpu controllers) or v2, whichever is mounted. */
function makeCgroup(name) {
  const v1mem = '/sys/fs/cgroup/memory', v1cpu = '/sys/fs/cgroup/cpu';
  if (fs.existsSync(path.join(v1mem, 'memory.limit_in_bytes'))) {
    const mem = path.join(v1mem, name), cpu = path.join(v1cpu, name);
    fs.mkdirSync(mem, { recursive: true });
    fs.mkdirSync(cpu, { recursive: true });
    fs.writeFileSync(path.join(mem, 'memory.limit_in_bytes'), String(MEMORY_MB * 1048576));
    // Swap would hide an overrun; v1 only has this file when swap accounting is on.
    try { fs.writeFileSync(path.join(mem, 'memory.memsw.limit_in_bytes'), String(MEMORY_MB * 1048576)); } catch { /* no swap accounting */ }
    fs.writeFileSync(path.join(cpu, 'cpu.cfs_period_us'), '100000');
    fs.writeFileSync(path.join(cpu, 'cpu.cfs_quota_us'), '100000');
    return {
      version: 1, dirs: [mem, cpu],
      memoryBytes: () => Number(fs.readFileSync(path.join(mem, 'memory.usage_in_bytes'), 'utf8')),
      oomKills: () => Number(/oom_kill (\d+)/.exec(fs.readFileSync(path.join(mem, 'memory.oom_control'), 'utf8'))?.[1] ?? 0),
      remove: () => { for (const d of [mem, cpu]) try { fs.rmdirSync(d); } catch { /* still has a process */ } },
    };
  }
  const v2 = fs.existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';
  const dir = path.join(v2, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'memory.max'), String(MEMORY_MB * 1048576));
  fs.writeFileSync(path.join(dir, 'cpu.max'), '100000 100000');
  return {
    version: 2, dirs: [dir],
    memoryBytes: () => Number(fs.readFileSync(path.join(dir, 'memory.current'), 'utf8')),
    oomKills: () => Number(/oom_kill (\d+)/.exec(fs.readFileSync(path.join(dir, 'memory.events'), 'utf8'))?.[1] ?? 0),
    remove: () => { try { fs.rmdirSync(dir); } catch { /* still has a process */ } },
  };
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
const rssMB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

const lab = new Lab().up();
const cgroupName = `dns-tproxy-router-${process.pid}`;
const cg = makeCgroup(cgroupName);
try {
  await lab.startUnbound();
  const listFile = path.join(lab.dir, 'big-list.txt');
  const out = fs.createWriteStream(listFile);
  for (let i = 0; i < LIST_SIZE; i++) out.write(`blocked${i}.ads${i % 997}.test\n`);
  await new Promise((r) => out.end(r));

  // One dnsperf pass over this file takes SECONDS at QPS, so every "new" name is asked exactly once.
  const total = SECONDS * QPS;
  const lines = new Array(total);
  for (let i = 0; i < total; i++) {
    const r = i % 10;
    if (r < 6) lines[i] = `hot${i % 5000}.wild.test A`;
    else if (r < 9) lines[i] = `new${i}.wild.test A`;
    else lines[i] = `blocked${(i * 7919) % LIST_SIZE}.ads${((i * 7919) % LIST_SIZE) % 997}.test A`;
  }
  const queryFile = path.join(lab.dir, 'mix.txt');
  fs.writeFileSync(queryFile, lines.join('\n') + '\n');

  const config = lab.writeConfig('router.yaml', baseConfig(lab, {
    extra: `cache:\n  maxEntries: ${CACHE_ENTRIES}\nfilter:\n  lists:\n    - name: big\n      path: "${listFile}"\nstateDir: "${lab.dir}/state"\n${opt.extra.replace(/\\n/g, '\n')}\n`,
  }));
  // The shell joins the cgroups, then becomes the server (exec), so the limits apply to it alone. It joins
  // before `ip netns exec`, which mounts a fresh /sys where the cgroup hierarchy is not visible.
  const join = cg.dirs.map((d) => `echo $$ > ${d}/cgroup.procs`).join('; ');
  const log = path.join(lab.dir, 'server.log');
  const logFd = fs.openSync(log, 'a');
  const proc = spawn('sh', ['-c', `${join}; exec ip netns exec ${lab.gw} ${process.execPath} ${path.join(ROOT, 'dist/cli.js')} run --config ${config}`], { stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  lab.procs.push(proc);
  const t0 = Date.now();
  await waitFor(() => {
    if (proc.exitCode !== null || proc.signalCode) throw new Error(`server exited: ${fs.readFileSync(log, 'utf8')}`);
    return /status: NOERROR/.test(lab.dig([`@${SERVER_V4}`, 'a.lab.test', 'A', '+tries=1', '+time=1'], true));
  }, 120_000, 'dns-tproxy answering with the 1M list loaded');
  const pid = Number(fs.readFileSync(`${cg.dirs[0]}/cgroup.procs`, 'utf8').trim().split('\n')[0]);
  console.log(JSON.stringify({ phase: 'ready', secondsToReady: (Date.now() - t0) / 1000, rssMB: +rssMB(pid).toFixed(1), cgroup: `v${cg.version}` }));

  const samples = [];
  let lastCpu = cpuSeconds(pid), lastAt = Date.now();
  const sampler = setInterval(() => {
    try {
      const now = Date.now(), cpu = cpuSeconds(pid);
      const s = { t: Math.round((now - t0) / 1000), rssMB: +rssMB(pid).toFixed(1), cgroupMB: +(cg.memoryBytes() / 1048576).toFixed(1), cpuPct: +((cpu - lastCpu) / ((now - lastAt) / 1000) * 100).toFixed(1) };
      lastCpu = cpu; lastAt = now;
      samples.push(s);
      console.log(JSON.stringify(s));
    } catch { /* the process is gone: the summary reports it (oomKills, alive) */ }
  }, 5000);
  const perf = await new Promise((resolve) => {
    const child = lab.spawnIn(lab.client, 'dnsperf', ['-s', SERVER_V4, '-d', queryFile, '-n', '1', '-Q', String(QPS), '-c', '8', '-t', '2'], path.join(lab.dir, 'dnsperf.log'));
    child.on('exit', () => resolve(fs.readFileSync(path.join(lab.dir, 'dnsperf.log'), 'utf8')));
  });
  clearInterval(sampler);
  await sleep(500);
  const sent = Number(/Queries sent:\s+(\d+)/.exec(perf)?.[1] ?? 0);
  const completed = Number(/Queries completed:\s+(\d+)/.exec(perf)?.[1] ?? 0);
  const alive = proc.exitCode === null && !proc.signalCode;
  if (!alive) console.log(JSON.stringify({ phase: 'server-exited', exitCode: proc.exitCode, signal: proc.signalCode }));
  const metrics = alive ? nsExec(lab.gw, 'curl', ['-s', 'http://127.0.0.1:9153/metrics']) : '';
  console.log(JSON.stringify({
    phase: 'summary', seconds: SECONDS, offeredQps: QPS, memoryLimitMB: MEMORY_MB, cpuLimitCores: 1, alive,
    oomKills: cg.oomKills(), sent, completed, lossPct: sent ? +((1 - completed / sent) * 100).toFixed(3) : null,
    cacheEntries: Number(/^dns_tproxy_cache_entries (\d+)/m.exec(metrics)?.[1] ?? NaN),
    maxRssMB: Math.max(...samples.map((s) => s.rssMB)), maxCgroupMB: Math.max(...samples.map((s) => s.cgroupMB)),
    meanCpuPct: +(samples.reduce((a, s) => a + s.cpuPct, 0) / Math.max(1, samples.length)).toFixed(1),
  }));
} finally {
  await lab.down();
  await sleep(300);
  cg.remove();
}
