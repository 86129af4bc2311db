#!/usr/bin/env node
// node bench/cache-rss.mjs [entries]: server RSS before and after filling the cache with N distinct names
// through the real TPROXY path (issue target: 100k cached entries within 80 MB RSS).
import fs from 'node:fs';
import path from 'node:path';
import { Lab, labUnavailable, baseConfig, SERVER_V4, nsExec } from '../test/lab/lib.js';

const n = Number(process.argv[2] ?? 100000);
const why = labUnavailable(['dnsperf', 'curl']);
if (why) { console.error(why); process.exit(1); }
const lab = new Lab().up();
const status = (pid, field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
const rss = (pid) => status(pid, 'VmRSS');
// File-backed pages are mostly the node binary's own code: the floor no heap work can lower.
const split = (pid) => ({ anonMB: +status(pid, 'RssAnon').toFixed(1), fileMB: +status(pid, 'RssFile').toFixed(1) });
try {
  await lab.startUnbound();
  const srv = await lab.startServer(lab.writeConfig('rss.yaml', baseConfig(lab)));
  const file = path.join(lab.dir, 'names.txt');
  fs.writeFileSync(file, Array.from({ length: n }, (_, i) => `c${i}.wild.test A`).join('\n') + '\n');
  const before = rss(srv.pid);
  const splitBefore = split(srv.pid);
  nsExec(lab.client, 'dnsperf', ['-s', SERVER_V4, '-d', file, '-n', '1', '-q', '500', '-Q', '8000'], { timeout: 300_000 });
  const m = nsExec(lab.gw, 'curl', ['-s', 'http://127.0.0.1:9153/metrics']);
  const entries = Number(/^dns_tproxy_cache_entries (\d+)/m.exec(m)?.[1]);
  const bytes = Number(/^dns_tproxy_cache_bytes (\d+)/m.exec(m)?.[1]);
  const g = (re, text = m) => +(Number(re.exec(text)?.[1] ?? 0) / 1048576).toFixed(1);
  console.log(JSON.stringify({ heapUsedMB: g(/^dns_tproxy_nodejs_heap_size_used_bytes (\S+)/m), heapTotalMB: g(/^dns_tproxy_nodejs_heap_size_total_bytes (\S+)/m), externalMB: g(/^dns_tproxy_nodejs_external_memory_bytes (\S+)/m) }));
  const justAfter = rss(srv.pid);
  await new Promise((r) => setTimeout(r, 30000));
  const after30 = rss(srv.pid);
  // By 65 s V8's memory reducer has collected and the server's 30-s malloc trim has run after it.
  await new Promise((r) => setTimeout(r, 35000));
  const m2 = nsExec(lab.gw, 'curl', ['-s', 'http://127.0.0.1:9153/metrics']);
  const spaces = Object.fromEntries([...m2.matchAll(/^dns_tproxy_nodejs_heap_space_size_total_bytes\{space="(\w+)"\} (\S+)/gm)].map((x) => [x[1], +(Number(x[2]) / 1048576).toFixed(1)]));
  console.log(JSON.stringify({ heapUsedAfterIdleMB: g.call(null, /^dns_tproxy_nodejs_heap_size_used_bytes (\S+)/m, m2), externalAfterIdleMB: g(/^dns_tproxy_nodejs_external_memory_bytes (\S+)/m, m2), heapSpaceTotalMB: spaces }));
  console.log(JSON.stringify({ entries, cacheBytesMB: +(bytes / 1048576).toFixed(1), rssBeforeMB: +before.toFixed(1), rssAfterFillMB: +justAfter.toFixed(1), rssAfter30sIdleMB: +after30.toFixed(1), rssAfter65sIdleMB: +rss(srv.pid).toFixed(1) }));
  console.log(JSON.stringify({ before: splitBefore, after65sIdle: split(srv.pid) }));
} finally { await lab.down(); }
