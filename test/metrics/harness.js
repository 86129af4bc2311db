// The whole DnsServer in process, on plain 127.0.0.1 listeners, with fake plain-DNS upstreams on
// loopback: no root, no namespaces. Used by test/server.test.js and the scrape-driven alert and
// dashboard tests. Names the fake upstream understands:
//   fail.*   SERVFAIL            drop.*   never answered (the upstream times out)
//   short.*  A with TTL 1        cname.*  CNAME to ads.example (a listed name) plus its A record
//   anything else: A 192.0.2.1 / AAAA 2001:db8::1, TTL 300
import dgram from 'node:dgram';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import dnsPacket from 'dns-packet';
import { parseConfig } from '../../dist/config/load.js';
import { DnsServer } from '../../dist/server.js';

/** A loopback port free right now (bound and released; the kernel does not hand it out again soon). */
export async function freePort(kind = 'udp') {
  if (kind === 'udp') {
    const s = dgram.createSocket('udp4');
    await new Promise((r) => s.bind(0, '127.0.0.1', r));
    const { port } = s.address();
    await new Promise((r) => s.close(r));
    return port;
  }
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** A fake plain-DNS upstream on 127.0.0.1 (UDP). Counts what it was asked. */
export async function fakeUpstream({ answerAddress = '192.0.2.1' } = {}) {
  const sock = dgram.createSocket('udp4');
  const seen = new Map();
  const up = { port: 0, seen, total: 0, paused: false };
  sock.on('message', (msg, rinfo) => {
    let q;
    try { q = dnsPacket.decode(msg); } catch { return; }
    const question = q.questions[0];
    if (!question) return;
    const name = question.name.toLowerCase();
    up.total++;
    seen.set(name, (seen.get(name) ?? 0) + 1);
    if (name.startsWith('drop.') || up.paused) return;
    const reply = { type: 'response', id: q.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: q.questions, answers: [] };
    const ttl = name.startsWith('short.') ? 1 : 300;
    if (name.startsWith('fail.')) reply.flags |= 2; // SERVFAIL
    else if (name.startsWith('cname.')) {
      reply.answers.push({ type: 'CNAME', name: question.name, ttl, data: 'ads.example' });
      reply.answers.push({ type: 'A', name: 'ads.example', ttl, data: '192.0.2.66' });
    } else if (question.type === 'A') reply.answers.push({ type: 'A', name: question.name, ttl, data: answerAddress });
    else if (question.type === 'AAAA') reply.answers.push({ type: 'AAAA', name: question.name, ttl, data: '2001:db8::1' });
    sock.send(dnsPacket.encode(reply), rinfo.port, rinfo.address);
  });
  await new Promise((r) => sock.bind(0, '127.0.0.1', r));
  up.port = sock.address().port;
  up.close = () => new Promise((r) => sock.close(r));
  return up;
}

/**
 * Starts a DnsServer from YAML made by `yaml({ dns, metrics, upstream, forwardUpstream, dir })`.
 * Returns helpers to query it and scrape it.
 */
export async function startServer(t, yaml, { log = () => {} } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dns-tproxy-server-'));
  const upstream = await fakeUpstream();
  const forwardUpstream = await fakeUpstream({ answerAddress: '198.51.100.7' });
  const dns = await freePort('udp');
  const metrics = await freePort('tcp');
  fs.writeFileSync(path.join(dir, 'ads.txt'), '||ads.example^\n||tracker.example^\n');
  const text = yaml({ dns, metrics, upstream: upstream.port, forwardUpstream: forwardUpstream.port, dir });
  const file = path.join(dir, 'config.yaml');
  fs.writeFileSync(file, text);
  const cfg = parseConfig(text, file);
  const logged = [];
  const server = new DnsServer(cfg, (level, msg, fields) => { logged.push({ level, msg, ...fields }); log(level, msg, fields); });
  await server.start();
  const client = dgram.createSocket('udp4');
  await new Promise((r) => client.bind(0, '127.0.0.1', r));
  const waiting = new Map();
  let nextId = 1;
  client.on('message', (msg) => {
    const id = msg.readUInt16BE(0);
    const w = waiting.get(id);
    if (w) { waiting.delete(id); clearTimeout(w.timer); w.resolve(msg); }
  });
  const h = {
    server, cfg, file, dir, upstream, forwardUpstream, dnsPort: dns, metricsPort: metrics, logged,
    /** Sends raw bytes (their ID must be unique among outstanding queries); null if no answer within `timeoutMs`. */
    sendRaw(bytes, timeoutMs = 3000) {
      const id = bytes.readUInt16BE(0);
      return new Promise((resolve) => {
        const timer = setTimeout(() => { waiting.delete(id); resolve(null); }, timeoutMs);
        waiting.set(id, { resolve, timer });
        client.send(bytes, dns, '127.0.0.1');
      });
    },
    /** One query over UDP; the decoded answer, or null when none came within `timeoutMs`. */
    async query(name, type = 'A', { timeoutMs = 3000, flags = dnsPacket.RECURSION_DESIRED, edns = false } = {}) {
      const id = (nextId = (nextId % 65535) + 1);
      const bytes = dnsPacket.encode({ type: 'query', id, flags, questions: [{ type, name, class: 'IN' }],
        additionals: edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232 }] : [] });
      const raw = await h.sendRaw(bytes, timeoutMs);
      return raw ? dnsPacket.decode(raw) : null;
    },
    nextId() { return (nextId = (nextId % 65535) + 1); },
    async scrape() {
      const res = await fetch(`http://127.0.0.1:${metrics}/metrics`);
      return res.text();
    },
    async close() {
      if (h.closed) return;
      h.closed = true;
      for (const w of waiting.values()) clearTimeout(w.timer);
      await new Promise((r) => client.close(r));
      await server.close();
      await upstream.close();
      await forwardUpstream.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  t.teardown(() => h.close());
  return h;
}

/** The default server config of these tests: every part that exports metrics is on. */
export function fullConfig({ plainAllow = ['127.0.0.0/8'], extra = '' } = {}) {
  return ({ dns, metrics, upstream, forwardUpstream, dir }) => `listen:
  plain: ["127.0.0.1:${dns}"]
  plainTcp: ["127.0.0.1:${dns}"]
  plainAllow: ${JSON.stringify(plainAllow)}
upstreams:
  - url: "udp://127.0.0.1:${upstream}"
upstream:
  timeoutMs: 200
  hedgeMs: 0
  failureThreshold: 1000
metrics:
  listen: "127.0.0.1:${metrics}"
filter:
  lists:
    - name: ads
      path: ads.txt
local:
  - "nas.home A 192.168.1.10"
forward:
  - domain: corp.example
    to: "127.0.0.1:${forwardUpstream}"
log:
  output: ${JSON.stringify(path.join(dir, 'query.log'))}
stateDir: ${JSON.stringify(path.join(dir, 'state'))}
${extra}`;
}

/** Prometheus text exposition → [{ name, labels, value }] (comments skipped). */
export function parseExposition(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}
