// A real stack for the console API tests: a DnsServer (plain UDP listener on 127.0.0.1) forwarding to a
// fake plain-DNS upstream on loopback, the SQLite query store in a temporary stateDir, and the console
// API on an ephemeral port. Requests are plain node:http so that Host, Origin and Cookie are ours to set.
import dgram from 'node:dgram';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import dnsPacket from 'dns-packet';
import { parseConfig } from '../../dist/config/load.js';
import { DnsServer } from '../../dist/server.js';
import { hashPassword } from '../../dist/api/auth.js';

export const PASSWORD = 'correct horse battery staple';
let hash = null;
/** A low scrypt cost keeps the many logins of these tests cheap; the format carries its own cost. */
export async function passwordHash() { return (hash ??= await hashPassword(PASSWORD, { n: 1024, r: 8, p: 1 })); }

/** A plain-DNS upstream on loopback: A → 192.0.2.<n>, counting the questions it saw. */
export async function fakeUpstream() {
  const s = dgram.createSocket('udp4');
  const seen = [];
  s.on('message', (msg, rinfo) => {
    let q;
    try { q = dnsPacket.decode(msg); } catch { return; }
    const question = q.questions[0];
    seen.push(question.name.toLowerCase());
    const answers = question.type === 'A' ? [{ name: question.name, type: 'A', ttl: 60, data: `192.0.2.${seen.length % 250 + 1}` }] : [];
    s.send(dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: q.questions, answers }), rinfo.port, rinfo.address);
  });
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  return { port: s.address().port, seen, close: () => s.close() };
}

async function freeUdpPort() {
  const s = dgram.createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const p = s.address().port;
  await new Promise((r) => s.close(r));
  return p;
}

/**
 * Starts the stack. `console` (yaml lines under console:) and `extra` (top-level yaml) adjust the
 * config; `stateDir` reuses a directory (restart tests).
 */
export async function startStack(t, { stateDir, extra = '', consoleYaml = '', withConsole = true, upstream } = {}) {
  const dir = stateDir ?? t.testdir();
  const up = upstream ?? await fakeUpstream();
  const dnsPort = await freeUdpPort();
  const yaml = `listen:
  plain: ["127.0.0.1:${dnsPort}"]
upstreams:
  - url: "udp://127.0.0.1:${up.port}"
stateDir: "${dir}"
store:
  path: "${path.join(dir, 'queries.db')}"
filter:
  block: ["listed.example"]
groups:
  - name: kids
    clients: ["10.99.0.0/16"]
${withConsole ? `console:
  listen: "127.0.0.1:0"
  names: ["dns.home.arpa"]
  users:
    - name: alice
      password: "${await passwordHash()}"
${consoleYaml}` : ''}${extra}`;
  const cfg = parseConfig(yaml, path.join(dir, 'config.yaml'));
  const logs = [];
  const server = new DnsServer(cfg, (level, msg, fields) => logs.push({ level, msg, ...fields }));
  await server.start();
  t.teardown(async () => { await server.close(); if (!upstream) up.close(); });
  const client = dgram.createSocket('udp4');
  await new Promise((r) => client.bind(0, '127.0.0.1', r));
  t.teardown(() => client.close());
  let nextId = 1;
  /** One query through the plain listener; resolves with the decoded answer. */
  const query = (name, type = 'A') => new Promise((resolve, reject) => {
    const id = nextId++ & 0xffff;
    const timer = setTimeout(() => { client.off('message', onMsg); reject(new Error(`no answer for ${name}`)); }, 3000);
    const onMsg = (msg) => {
      const a = dnsPacket.decode(msg);
      if (a.id !== id) return;
      clearTimeout(timer);
      client.off('message', onMsg);
      resolve(a);
    };
    client.on('message', onMsg);
    client.send(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] }), dnsPort, '127.0.0.1');
  });
  return { server, api: server.console, dir, dnsPort, upstream: up, query, logs, clientPort: client.address().port };
}

/**
 * An HTTP client for one console: request(method, path, { body, cookie, origin, host, headers, raw }).
 * origin defaults to the console's own for state-changing methods; pass origin: null to omit it.
 */
export function httpClient(api) {
  const port = api.address.port;
  const own = `http://127.0.0.1:${port}`;
  const jar = { cookie: null };
  const request = (method, p, opts = {}) => new Promise((resolve, reject) => {
    const headers = { host: opts.host ?? `127.0.0.1:${port}`, ...(opts.headers ?? {}) };
    const changing = method !== 'GET' && method !== 'HEAD';
    const origin = opts.origin === undefined ? (changing ? own : undefined) : opts.origin;
    if (origin !== undefined && origin !== null) headers.origin = origin;
    const cookie = opts.cookie === undefined ? jar.cookie : opts.cookie;
    if (cookie) headers.cookie = cookie;
    let data = null;
    if (opts.raw !== undefined) data = Buffer.from(opts.raw);
    else if (opts.body !== undefined) { data = Buffer.from(JSON.stringify(opts.body)); headers['content-type'] = 'application/json'; }
    if (data) headers['content-length'] = data.length;
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers, setHost: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        const setCookie = res.headers['set-cookie']?.[0];
        if (setCookie && opts.keepCookie !== false) {
          const v = setCookie.split(';')[0];
          jar.cookie = v.endsWith('=') ? null : v;
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`timeout ${method} ${p}`)));
    if (data) req.write(data);
    req.end();
  });
  return {
    port, own, jar, request,
    get: (p, o) => request('GET', p, o),
    post: (p, body, o = {}) => request('POST', p, { ...o, body }),
    del: (p, o) => request('DELETE', p, o),
    async login(user = 'alice', password = PASSWORD) {
      return request('POST', '/api/v1/login', { body: { user, password } });
    },
  };
}

/** Polls `fn` until it returns a truthy value, at most `tries` times; returns [value, attempts]. */
export async function poll(fn, tries = 50, everyMs = 20) {
  for (let i = 1; i <= tries; i++) {
    const v = await fn();
    if (v) return [v, i];
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return [null, tries];
}

export function readAudit(dir) {
  const f = path.join(dir, 'audit.log');
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l)) : [];
}
