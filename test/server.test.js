// The whole DnsServer, no root: plain listeners on 127.0.0.1, fake plain-DNS upstreams on loopback
// (test/metrics/harness.js). Covers server.ts, listen/udp.ts + tcp.ts, listen/acl.ts, the pipeline
// (validate, filter, cache, CNAME inspection, conditional forwarding, finish, audit), the metrics and
// admin endpoint, and SIGHUP through dist/cli.js. Every wait is bounded by a count, never asserted on.
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';
import { startServer, fullConfig, parseExposition, freePort } from './metrics/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const metric = (samples, name, labels = {}) => samples
  .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  .reduce((a, s) => a + s.value, 0);

/** Polls `fn` until it returns a truthy value; at most `tries` times, 20 ms apart. */
async function until(fn, tries = 250) {
  for (let i = 0; i < tries; i++) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
  return null;
}

/** The cache and the cache stage read this clock (the stage otherwise uses each query's arrival time). */
function fakeClock(h, clock) {
  h.server.cache.now = clock;
  h.server.cacheStage.now = clock;
}

/** One DNS query over TCP (2-byte length framing); the decoded answer. */
function tcpQuery(port, name, type = 'A', id = 7) {
  return new Promise((resolve, reject) => {
    const q = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });
    const s = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => { s.destroy(); resolve(null); }, 5000);
    s.on('connect', () => { const l = Buffer.alloc(2); l.writeUInt16BE(q.length); s.write(Buffer.concat([l, q])); });
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) { clearTimeout(timer); s.end(); resolve(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0)))); }
    });
    s.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

t.test('queries through the whole pipeline, counted once in every metric', async (t) => {
  const h = await startServer(t, fullConfig());
  const a = await h.query('www.example');
  t.equal(a.rcode, 'NOERROR');
  t.same(a.answers.map((x) => x.data), ['192.0.2.1'], 'answer from the upstream');
  t.ok(a.flags & dnsPacket.RECURSION_AVAILABLE, 'RA on a normal answer');
  const again = await h.query('www.example');
  t.same(again.answers.map((x) => x.data), ['192.0.2.1'], 'the same answer from the cache');
  t.equal(h.upstream.seen.get('www.example'), 1, 'the upstream was asked once');

  const blocked = await h.query('ads.example');
  t.equal(blocked.rcode, 'NXDOMAIN', 'a listed name is blocked');
  t.equal(h.upstream.seen.get('ads.example'), undefined, 'and never sent upstream');

  const local = await h.query('nas.home');
  t.same(local.answers.map((x) => x.data), ['192.168.1.10'], 'local record');

  const fwd = await h.query('host.corp.example');
  t.same(fwd.answers.map((x) => x.data), ['198.51.100.7'], 'conditional forwarding goes to the forward target');
  t.equal(h.forwardUpstream.seen.get('host.corp.example'), 1);
  t.equal(h.upstream.seen.get('host.corp.example'), undefined, 'not to the default upstream');

  const viaCname = await h.query('cname.example');
  t.equal(viaCname.rcode, 'NXDOMAIN', 'CNAME inspection blocks an answer whose CNAME target is listed');
  t.equal(h.upstream.seen.get('cname.example'), 1, 'the name itself was resolved upstream');

  const tcp = await tcpQuery(h.dnsPort, 'tcp.example');
  t.same(tcp.answers.map((x) => x.data), ['192.0.2.1'], 'plain TCP listener');

  const s = parseExposition(await h.scrape());
  t.equal(metric(s, 'dns_tproxy_queries_total'), 7, 'seven queries, counted once');
  t.equal(metric(s, 'dns_tproxy_queries_total', { transport: 'plain' }), 6);
  t.equal(metric(s, 'dns_tproxy_queries_total', { transport: 'tcp' }), 1);
  t.equal(metric(s, 'dns_tproxy_queries_by_type_total'), 7);
  t.equal(metric(s, 'dns_tproxy_answer_latency_seconds_count'), 7, 'every answer has a latency sample');
  t.equal(metric(s, 'dns_tproxy_answer_latency_seconds_count', { source: 'cache' }), 1);
  t.equal(metric(s, 'dns_tproxy_answer_latency_seconds_count', { source: 'blocked' }), 2, 'listed name + CNAME-blocked');
  t.equal(metric(s, 'dns_tproxy_answer_latency_seconds_count', { source: 'local' }), 1);
  t.equal(metric(s, 'dns_tproxy_answer_latency_seconds_count', { source: 'upstream' }), 3, 'www, corp (forwarded), tcp');
  t.equal(metric(s, 'dns_tproxy_answer_latency_seconds_bucket', { source: 'cache', le: '+Inf' }), 1);
  t.equal(metric(s, 'dns_tproxy_build_info'), 1);
  t.equal(metric(s, 'dns_tproxy_filter_answers_total', { kind: 'block-cname' }), 1);
  t.equal(metric(s, 'dns_tproxy_cache_hits_total'), 1);

  // the audit trail: one query-log line per answer
  const lines = await until(() => {
    const f = path.join(h.dir, 'query.log');
    const l = fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim().split('\n').filter(Boolean) : [];
    return l.length >= 7 ? l : null;
  });
  t.ok(lines, 'query log written');
  t.equal(lines.length, 7);
  t.ok(lines.map((l) => JSON.parse(l)).some((e) => e.qname === 'ads.example' && e.filter?.action === 'block'));
});

t.test('the plain listener ACL refuses a source outside plainAllow: no answer, counted', async (t) => {
  const h = await startServer(t, fullConfig({ plainAllow: ['10.0.0.0/8'] }));
  t.equal(await h.query('www.example', 'A', { timeoutMs: 500 }), null, 'no answer, not even REFUSED');
  t.equal(h.upstream.total, 0, 'nothing went upstream');
  const s = parseExposition(await h.scrape());
  t.equal(metric(s, 'dns_tproxy_dropped_total', { reason: 'acl' }), 1);
  t.equal(metric(s, 'dns_tproxy_queries_total'), 0);
  await t.rejects(tcpQuery(h.dnsPort, 'tcp.example').then((r) => { if (r === null) throw new Error('closed'); return r; }), 'TCP from outside the ACL gets no answer');
});

t.test('stale answers (RFC 8767) and the prefetch-triggered refresh, on a fake clock', async (t) => {
  const h = await startServer(t, fullConfig());
  let now = Date.now();
  fakeClock(h, () => now);
  await h.query('pop.example');
  await h.query('pop.example');
  await h.query('pop.example');
  t.equal(h.upstream.seen.get('pop.example'), 1);
  now += 280_000; // 20 s left of 300: inside the last 10 %
  const a = await h.query('pop.example');
  t.equal(a.rcode, 'NOERROR', 'served from the cache');
  t.ok(await until(() => h.upstream.seen.get('pop.example') === 2), 'a popular entry near expiry is refreshed in the background');
  const s1 = parseExposition(await h.scrape());
  t.equal(metric(s1, 'dns_tproxy_cache_prefetches_total'), 1);

  await h.query('old.example');
  now += 400_000; // expired (TTL 300), within staleMaxAge
  h.upstream.paused = true; // the upstream stops answering: timeouts
  const stale = await h.query('old.example', 'A', { timeoutMs: 5000 });
  t.equal(stale.rcode, 'NOERROR', 'answered from the expired entry when the upstream fails');
  t.equal(stale.answers[0].ttl, 30, 'with the stale TTL (RFC 8767: 30 s)');
  const s2 = parseExposition(await h.scrape());
  t.equal(metric(s2, 'dns_tproxy_cache_stale_total'), 1);
  t.equal(metric(s2, 'dns_tproxy_answer_latency_seconds_count', { source: 'stale' }), 1);
});

t.test('optimistic cache: an expired entry is answered at once and refreshed behind', async (t) => {
  const h = await startServer(t, fullConfig({ extra: 'cache:\n  optimistic: true\n' }));
  let now = Date.now();
  fakeClock(h, () => now);
  await h.query('opt.example');
  now += 301_000;
  h.upstream.paused = true; // an optimistic answer must not wait for the upstream at all
  const a = await h.query('opt.example', 'A', { timeoutMs: 5000 });
  t.equal(a.rcode, 'NOERROR');
  t.same(a.answers.map((x) => x.data), ['192.0.2.1'], 'the expired answer');
  t.ok(await until(() => h.upstream.seen.get('opt.example') === 2), 'and a refresh was sent');
  const s = parseExposition(await h.scrape());
  t.equal(metric(s, 'dns_tproxy_answers_total', { rcode: 'SERVFAIL' }), 0, 'no SERVFAIL while the upstream is silent');
});

t.test('a full context pool: UDP drops counted as queue_full, TCP answered SERVFAIL', async (t) => {
  // A small pool: maxInflight 1 → 258 contexts; identical queries coalesce and hold one each.
  const small = await startServer(t, (p) => fullConfig()(p).replace('timeoutMs: 200', 'timeoutMs: 5000\n  maxInflight: 1'));
  const poolSize = small.server.pool.capacity ?? 258;
  const sock = dgram.createSocket('udp4');
  t.teardown(() => sock.close());
  for (let i = 0; i < poolSize + 40; i++) {
    const q = dnsPacket.encode({ type: 'query', id: i + 1, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'drop.same.example', class: 'IN' }] });
    sock.send(q, small.dnsPort, '127.0.0.1');
  }
  const full = await until(async () => metric(parseExposition(await small.scrape()), 'dns_tproxy_dropped_total', { reason: 'queue_full' }) > 0);
  t.ok(full, 'UDP queries beyond the pool are dropped and counted as queue_full');
  const s = parseExposition(await small.scrape());
  t.equal(metric(s, 'dns_tproxy_inflight_queries'), small.server.pool.inUse, 'in-flight gauge is the pool');
  const tcp = await tcpQuery(small.dnsPort, 'tcp.example');
  t.equal(tcp?.rcode, 'SERVFAIL', 'a TCP query meets the full pool: SERVFAIL, not silence');
  t.equal(small.upstream.seen.get('drop.same.example'), 1, 'coalesced: one upstream query for all of them');
});

t.test('unknown opcodes are answered exactly as unbound answers them', async (t) => {
  const unbound = '/usr/sbin/unbound';
  if (!fs.existsSync(unbound)) { t.fail('unbound is not installed (apt-get install unbound); CI installs it'); return; }
  const port = await freePort('udp');
  const dir = fs.mkdtempSync(path.join(root, '.unbound-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'unbound.conf'), `server:\n  interface: 127.0.0.1\n  port: ${port}\n  do-daemonize: no\n  username: ""\n  chroot: ""\n`
    + `  directory: "${dir}"\n  pidfile: ""\n  use-syslog: no\n  access-control: 127.0.0.0/8 allow\n  do-ip6: no\n  module-config: "iterator"\nremote-control:\n  control-enable: no\n`);
  const ub = spawn(unbound, ['-d', '-c', path.join(dir, 'unbound.conf')], { stdio: 'ignore' });
  t.teardown(() => ub.kill('SIGKILL'));
  const h = await startServer(t, fullConfig());
  const sock = dgram.createSocket('udp4');
  t.teardown(() => sock.close());
  const ask = (bytes, p, timeoutMs = 1000) => new Promise((resolve) => {
    const timer = setTimeout(() => { sock.off('message', on); resolve(null); }, timeoutMs);
    const on = (msg) => { if (msg.readUInt16BE(0) === bytes.readUInt16BE(0)) { clearTimeout(timer); sock.off('message', on); resolve(msg); } };
    sock.on('message', on);
    sock.send(bytes, p, '127.0.0.1');
  });
  let id = 100;
  const probe = (opcode, { edns, rd, cd }) => {
    const q = Buffer.from(dnsPacket.encode({ type: 'query', id: ++id, flags: (rd ? dnsPacket.RECURSION_DESIRED : 0) | (cd ? dnsPacket.CHECKING_DISABLED : 0),
      questions: [{ type: 'SOA', name: 'example', class: 'IN' }],
      additionals: edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 4096, options: [{ code: 10, data: Buffer.alloc(8, 7) }] }] : [] }));
    q[2] = (q[2] & 0x87) | (opcode << 3);
    return q;
  };
  // unbound answers once it is up: wait for its first answer (bounded).
  t.ok(await until(() => ask(probe(15, {}), port, 200)), 'unbound is answering');
  for (const opcode of [3, 6, 7, 15]) {
    for (const v of [{ edns: false, rd: true }, { edns: true, rd: true }, { edns: false, rd: false, cd: true }]) {
      const q = probe(opcode, v);
      const ours = await ask(q, h.dnsPort);
      const theirs = await ask(q, port);
      t.ok(theirs, `unbound answered opcode ${opcode}`);
      t.same(ours && ours.toString('hex'), theirs.toString('hex'), `opcode ${opcode} ${JSON.stringify(v)}: byte for byte as unbound`);
      t.equal(ours[3] & 0x0f, 4, 'NOTIMP');
      t.equal(ours[3] & 0x80, 0, 'RA not claimed');
    }
  }
  const s = parseExposition(await h.scrape());
  t.equal(metric(s, 'dns_tproxy_formerr_total', { rcode: 'NOTIMP' }), 12);
});

t.test('privacy: log.anonymize applies to /stats/top as it does to the query log', async (t) => {
  const anon = await startServer(t, (p) => fullConfig({ extra: 'stats:\n  sampleEvery: 1\n' })(p).replace(/log:\n  output: (.*)\n/, 'log:\n  output: $1\n  anonymize: { mode: truncate }\n'));
  await anon.query('a.example');
  await anon.query('b.example');
  const top = await (await fetch(`http://127.0.0.1:${anon.metricsPort}/stats/top`)).json();
  t.same(top.clients.map((c) => c.key), ['127.0.0.0'], '/stats/top shows the truncated address');
  const lines = await until(() => {
    const f = path.join(anon.dir, 'query.log');
    const l = fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim().split('\n').filter(Boolean) : [];
    return l.length >= 2 ? l : null;
  });
  t.same(lines.map((l) => JSON.parse(l).client), ['127.0.0.0', '127.0.0.0'], 'as the query log does');
});

t.test('admin endpoint: Host check (DNS rebinding) and the admin token', async (t) => {
  const s = await startServer(t, (p) => fullConfig()(p).replace(/metrics:\n  listen: (.*)\n/, 'metrics:\n  listen: $1\n  adminToken: "0123456789abcdef-secret"\n  hosts: ["gw1.lan"]\n'));
  const base = `http://127.0.0.1:${s.metricsPort}`;
  const req = (p, opts = {}) => new Promise((resolve, reject) => {
    // node:http: fetch() does not let a caller set Host.
    const r = require_http.request({ host: '127.0.0.1', port: s.metricsPort, path: p, method: opts.method ?? 'GET', headers: opts.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => { body += d; }).on('end', () => resolve({ status: res.statusCode, body }));
    });
    r.on('error', reject);
    r.end();
  });
  t.equal((await req('/metrics', { headers: { host: 'evil.example' } })).status, 421, 'a rebinding name is refused');
  t.equal((await req('/stats/top', { headers: { host: 'evil.example:80' } })).status, 421);
  t.equal((await req('/metrics', { headers: { host: `127.0.0.1:${s.metricsPort}` } })).status, 200, 'an IP literal is served');
  t.equal((await req('/metrics', { headers: { host: 'localhost' } })).status, 200, 'localhost is served');
  t.equal((await req('/metrics', { headers: { host: 'GW1.lan.' } })).status, 200, 'a name in metrics.hosts is served');
  await s.query('www.example');
  t.equal((await req('/admin/cache/flush', { method: 'POST' })).status, 401, 'admin without the token: 401');
  t.equal((await req('/admin/cache/flush', { method: 'POST', headers: { authorization: 'Bearer wrong-token-0123456789' } })).status, 401);
  t.equal((await req('/admin/cache/flush', { method: 'POST', headers: { authorization: 'Bearer 0123456789abcdef-secret', origin: 'http://evil.example' } })).status, 403,
    'a cross-origin browser post is refused even with the token');
  t.equal(s.server.cache.entries, 1, 'nothing was flushed by refused requests');
  const ok = await req('/admin/cache/flush', { method: 'POST', headers: { authorization: 'Bearer 0123456789abcdef-secret' } });
  t.equal(ok.status, 200);
  t.same(JSON.parse(ok.body), { flushed: 1 });
  // The CLI sends the token from the config.
  const r = await runCli(['cache', 'flush', '--config', s.file]);
  t.equal(r.status, 0, r.stderr);
  t.same(JSON.parse(r.stdout), { flushed: 0 });
  void base;
});

import { createRequire } from 'node:module';
const require_http = createRequire(import.meta.url)('node:http');

function runCli(args) {
  return new Promise((resolve) => {
    const p = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, path.join(root, 'dist/cli.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    p.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('close', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr, proc: p }); });
  });
}

t.test('SIGHUP through dist/cli.js: a bad config is refused and counted, counters survive a good reload', async (t) => {
  const dns = await freePort('udp');
  const metrics = await freePort('tcp');
  const up = await (await import('./metrics/harness.js')).fakeUpstream();
  t.teardown(() => up.close());
  const dir = fs.mkdtempSync(path.join(root, '.reload-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'c.yaml');
  const good = `listen:\n  plain: ["127.0.0.1:${dns}"]\nupstreams:\n  - url: "udp://127.0.0.1:${up.port}"\nmetrics:\n  listen: "127.0.0.1:${metrics}"\n`;
  fs.writeFileSync(file, good);
  const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, path.join(root, 'dist/cli.js'), 'run', '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
  t.teardown(() => child.kill('SIGKILL'));
  const scrape = async () => { try { return parseExposition(await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text()); } catch { return null; } };
  t.ok(await until(scrape), 'server up');
  const sock = dgram.createSocket('udp4');
  t.teardown(() => sock.close());
  const q = (id) => new Promise((resolve) => {
    sock.once('message', resolve);
    sock.send(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: `r${id}.example`, class: 'IN' }] }), dns, '127.0.0.1');
  });
  await q(1);
  await q(2);
  fs.writeFileSync(file, good + 'groups:\n  - name: kids\n    clients: ["banana"]\n');
  child.kill('SIGHUP');
  const failed = await until(async () => { const s = await scrape(); return s && metric(s, 'dns_tproxy_config_reload_failures_total') === 1 ? s : null; });
  t.ok(failed, 'the reload failure is counted');
  t.match(stderr, /reload rejected; keeping the running config.*banana/);
  t.equal(metric(failed, 'dns_tproxy_queries_total'), 2, 'the running config keeps serving, counters intact');
  fs.writeFileSync(file, good);
  child.kill('SIGHUP');
  const reloaded = await until(async () => { const s = await scrape(); return s && metric(s, 'dns_tproxy_config_reloads_total') === 1 ? s : null; });
  t.ok(reloaded, 'the good reload is counted');
  await q(3);
  const after = await scrape();
  t.equal(metric(after, 'dns_tproxy_queries_total'), 3, 'a reload does not reset the query counters');
  t.equal(metric(after, 'dns_tproxy_config_reload_failures_total'), 1);
  t.equal(metric(after, 'dns_tproxy_upstream_requests_total'), 3, 'nor the upstream counters (same upstream, carried over)');
});
