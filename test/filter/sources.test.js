// List downloads (src/filter/sources.ts through FilterManager): https required unless the list says
// allowInsecure: true; a redirect never moves an https list to http (issue #15.1); conditional GET
// with If-Modified-Since (README promise, issue #21). Real local HTTP and HTTPS servers, a throw-away
// self-signed certificate trusted through an undici Agent; TLS verification itself is not bypassed.
import t from 'tap';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Agent } from 'undici';
import { FilterManager } from '../../dist/filter/index.js';
import { fetchList, MAX_REDIRECTS } from '../../dist/filter/sources.js';

const certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dt-lists-tls-'));
t.teardown(() => fs.rmSync(certDir, { recursive: true, force: true }));
const certFile = path.join(certDir, 'cert.pem');
const keyFile = path.join(certDir, 'key.pem');
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile,
  '-days', '2', '-subj', '/CN=lists.test', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
const trusting = new Agent({ connect: { ca: fs.readFileSync(certFile) } });
t.teardown(() => trusting.close());

/**
 * Serves `routes` ({ path: (req, res) => void }), recording every request; `base` is its origin.
 * The same routes answer on an http and an https server.
 */
async function servers(t, routes) {
  const seen = [];
  const handler = (scheme) => (req, res) => {
    seen.push({ scheme, url: req.url, ims: req.headers['if-modified-since'] ?? null, inm: req.headers['if-none-match'] ?? null });
    const route = routes[req.url];
    if (!route) {
      res.writeHead(404);
      res.end();
      return;
    }
    route(req, res, scheme);
  };
  const plain = http.createServer(handler('http'));
  const tls = https.createServer({ key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) }, handler('https'));
  await new Promise((r) => plain.listen(0, '127.0.0.1', r));
  await new Promise((r) => tls.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    plain.closeAllConnections();
    tls.closeAllConnections();
    plain.close();
    tls.close();
  });
  return { seen, http: `http://127.0.0.1:${plain.address().port}`, https: `https://127.0.0.1:${tls.address().port}` };
}

const list = (body) => (req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(body);
};
const redirect = (to, status = 302) => (req, res) => {
  res.writeHead(status, { location: typeof to === 'function' ? to() : to });
  res.end();
};
const verdict = (mgr, name) => mgr.engine.decide(name, 1, 0)?.kind ?? 'pass';
const manager = async (t, lists) => {
  const dir = t.testdir();
  const mgr = await FilterManager.create({ filter: { lists } }, { stateDir: path.join(dir, 'state'), baseDir: dir, fetchTimeoutMs: 5000, fetchDispatcher: trusting, retryMs: 3_600_000 });
  t.teardown(() => mgr.close());
  return mgr;
};

t.test('a plain http list URL is refused unless the list sets allowInsecure: true', async (t) => {
  const s = await servers(t, { '/a.txt': list('insecure.example\n') });
  const dir = t.testdir();
  await t.rejects(
    FilterManager.create({ filter: { lists: [{ name: 'a', url: `${s.http}/a.txt` }] } }, { stateDir: dir, baseDir: dir }),
    /list "a": plain http URL .* refused: use https, or set allowInsecure: true/,
  );
  t.equal(s.seen.length, 0, 'nothing was fetched');
  // The same refusal on a reload keeps the engine in force.
  const mgr = await manager(t, [{ name: 'a', url: `${s.http}/a.txt`, allowInsecure: true }]);
  t.equal(verdict(mgr, 'insecure.example'), 'block', 'allowed with allowInsecure: true');
  const r = await mgr.reload({ filter: { lists: [{ name: 'a', url: `${s.http}/a.txt`, allowInsecure: false }] } });
  t.equal(r.ok, false);
  t.match(r.error.message, /plain http URL/);
  t.equal(verdict(mgr, 'insecure.example'), 'block', 'the previous engine stays');
  // fetchList refuses on its own too (defence in depth), and other schemes always.
  await t.rejects(fetchList(`${s.http}/a.txt`, null, 1000, 1 << 20), /plain http URL/);
  await t.rejects(fetchList('file:///etc/passwd', null, 1000, 1 << 20, { allowInsecure: true }), /unsupported URL scheme file:/);
  t.equal(s.seen.length, 1, 'only the allowed download reached the server');
});

t.test('https lists load; https->https redirects are followed', async (t) => {
  let s;
  s = await servers(t, {
    '/list.txt': list('secure.example\n'),
    '/moved': redirect(() => `${s.https}/list.txt`, 301),
    '/relative': redirect('/list.txt', 308),
  });
  const mgr = await manager(t, [
    { name: 'direct', url: `${s.https}/list.txt` },
    { name: 'moved', url: `${s.https}/moved` },
    { name: 'relative', url: `${s.https}/relative` },
  ]);
  t.equal(verdict(mgr, 'secure.example'), 'block');
  t.match(mgr.stats.lists, [{ name: 'direct', rules: 1, failures: 0 }, { name: 'moved', rules: 1, failures: 0 }, { name: 'relative', rules: 1, failures: 0 }]);
  t.same(s.seen.map((x) => `${x.scheme} ${x.url}`), ['https /list.txt', 'https /moved', 'https /list.txt', 'https /relative', 'https /list.txt']);
});

t.test('an https list is never redirected to http, whatever allowInsecure says', async (t) => {
  let s;
  s = await servers(t, {
    '/list.txt': list('downgraded.example\n'),
    '/down': redirect(() => `${s.http}/list.txt`),
    '/hop': redirect(() => `${s.https}/down`, 307),
  });
  for (const allowInsecure of [false, true]) {
    s.seen.length = 0;
    const mgr = await manager(t, [{ name: 'down', url: `${s.https}/down`, allowInsecure }, { name: 'hop', url: `${s.https}/hop`, allowInsecure }]);
    t.equal(verdict(mgr, 'downgraded.example'), 'pass', `allowInsecure ${allowInsecure}: the http copy was not loaded`);
    t.match(mgr.stats.lists, [
      { name: 'down', rules: 0, failures: 1, lastError: /redirect from https:.* to http:.* refused: a list fetched over https is never downgraded/ },
      { name: 'hop', rules: 0, failures: 1, lastError: /never downgraded/ },
    ]);
    t.notOk(s.seen.some((x) => x.scheme === 'http'), 'the http server was never asked');
  }
});

t.test('http -> https upgrades are followed with allowInsecure; http -> http only with it', async (t) => {
  let s;
  s = await servers(t, {
    '/list.txt': list('upgraded.example\n'),
    '/up': redirect(() => `${s.https}/list.txt`),
    '/sideways': redirect(() => `${s.http}/list.txt`),
  });
  const mgr = await manager(t, [{ name: 'up', url: `${s.http}/up`, allowInsecure: true }, { name: 'side', url: `${s.http}/sideways`, allowInsecure: true }]);
  t.match(mgr.stats.lists, [{ name: 'up', rules: 1, failures: 0 }, { name: 'side', rules: 1, failures: 0 }]);
  t.same(s.seen.map((x) => `${x.scheme} ${x.url}`), ['http /up', 'https /list.txt', 'http /sideways', 'http /list.txt']);
});

t.test('redirect chains are bounded', async (t) => {
  let s;
  s = await servers(t, { '/loop': redirect(() => `${s.https}/loop`) });
  const mgr = await manager(t, [{ name: 'loop', url: `${s.https}/loop` }]);
  t.match(mgr.stats.lists[0], { rules: 0, failures: 1, lastError: `more than ${MAX_REDIRECTS} redirects` });
  t.equal(s.seen.length, MAX_REDIRECTS + 1, 'the first request plus MAX_REDIRECTS hops');
});

t.test('If-Modified-Since: a list with Last-Modified and no ETag is fetched conditionally', async (t) => {
  const lastModified = new Date(Date.UTC(2026, 0, 2, 3, 4, 5)).toUTCString();
  let body = 'dated.example\n';
  const s = await servers(t, {
    '/dated.txt': (req, res) => {
      if (req.headers['if-modified-since'] === lastModified) {
        res.writeHead(304);
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'last-modified': lastModified });
      res.end(body);
    },
  });
  const mgr = await manager(t, [{ name: 'dated', url: `${s.https}/dated.txt` }]);
  t.equal(verdict(mgr, 'dated.example'), 'block');
  const first = mgr.engine;
  body = 'changed.example\n'; // served only to a client that does not send the date back
  await mgr.refreshNow();
  t.same(s.seen.map((x) => x.ims), [null, lastModified], 'the second request carries If-Modified-Since: <Last-Modified>');
  t.same(s.seen.map((x) => x.inm), [null, null], 'no ETag was offered, so none is sent');
  t.match(mgr.stats.lists[0], { fetches: 2, notModified: 1, failures: 0 });
  t.equal(mgr.engine, first, 'a 304 does not rebuild');
  t.equal(verdict(mgr, 'changed.example'), 'pass');
});
