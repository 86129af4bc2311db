// Console API authentication and request hygiene against the real server: passwd hashes, login,
// 401 without a session, wrong password, the login rate limit, Origin (403) and Host (421) checks,
// session expiry (fake clock), logout, security headers, and bad input that must never crash it.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConsoleApi } from '../../dist/api/server.js';
import { consoleConfigOf } from '../../dist/api/config.js';
import { hashPassword, verifyPassword, parseHash } from '../../dist/api/auth.js';
import { startStack, httpClient, passwordHash, PASSWORD } from './helpers.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/cli.js');

t.test('passwd prints a salted scrypt hash that verifies, and only for the same password', async (t) => {
  const a = execFileSync(process.execPath, [CLI, 'passwd'], { input: 's3cret\n', encoding: 'utf8' }).trim();
  const b = execFileSync(process.execPath, [CLI, 'passwd'], { input: 's3cret', encoding: 'utf8' }).trim();
  t.match(a, /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
  t.not(a, b, 'salted: two hashes of one password differ');
  t.equal(await verifyPassword('s3cret', a), true, 'the trailing newline of echo is not part of the password');
  t.equal(await verifyPassword('s3cret', b), true);
  t.equal(await verifyPassword('s3cret ', a), false);
  t.equal(await verifyPassword('S3cret', a), false);
  t.equal(await verifyPassword('s3cret', 'plaintext'), false, 'a malformed hash never matches');
  t.match(parseHash('scrypt$3$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA=='), /power of two/);
  t.match(parseHash(`scrypt$${2 ** 24}$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==`), /power of two up to/);
  let code = 0;
  try { execFileSync(process.execPath, [CLI, 'passwd'], { input: '', stdio: ['pipe', 'pipe', 'pipe'] }); } catch (e) { code = e.status; }
  t.equal(code, 2, 'an empty password is refused');
});

t.test('login, session, 401, wrong password, logout', async (t) => {
  const s = await startStack(t);
  const c = httpClient(s.api);
  const anon = await c.get('/api/v1/rules');
  t.equal(anon.status, 401);
  t.match(anon.json, { code: 'unauthenticated', error: /log in/ });
  for (const p of ['/api/v1/queries', '/api/v1/stats', '/api/v1/clients', '/api/v1/pause', '/api/v1/health', '/api/v1/lists', '/api/v1/audit', '/api/v1/stream']) {
    t.equal((await c.get(p)).status, 401, `GET ${p} needs a session`);
  }
  t.equal((await c.post('/api/v1/rules', { action: 'block', name: 'x.example' })).status, 401);

  const wrong = await c.login('alice', 'not it');
  t.equal(wrong.status, 401);
  t.equal(wrong.json.code, 'bad_credentials');
  t.notOk(wrong.headers['set-cookie'], 'no cookie for a wrong password');
  t.equal((await c.login('mallory', PASSWORD)).status, 401, 'unknown user');

  const ok = await c.login();
  t.equal(ok.status, 200);
  t.equal(ok.json.user, 'alice');
  const cookie = ok.headers['set-cookie'][0];
  t.match(cookie, /^dns_tproxy_session=[A-Za-z0-9_-]{40,};/);
  t.match(cookie, /HttpOnly/);
  t.match(cookie, /SameSite=Strict/);
  t.match(cookie, /Path=\//);
  t.notMatch(cookie, /Secure/, 'no Secure flag over plain HTTP (the browser would drop the cookie)');
  t.equal((await c.get('/api/v1/session')).json.user, 'alice');
  t.equal((await c.get('/api/v1/rules')).status, 200);
  t.equal((await c.get('/api/v1/rules', { cookie: 'dns_tproxy_session=forged' })).status, 401, 'a made-up cookie is no session');

  const saved = c.jar.cookie;
  const out = await c.post('/api/v1/logout', {});
  t.equal(out.status, 200);
  t.match(out.headers['set-cookie'][0], /Max-Age=0/);
  t.equal((await c.get('/api/v1/rules', { cookie: saved })).status, 401, 'the old cookie is dead after logout');
  t.equal(s.api.loginsOk, 1);
  t.equal(s.api.loginsFailed, 2);
});

t.test('Origin on state-changing requests; Host against DNS rebinding', async (t) => {
  const s = await startStack(t);
  const c = httpClient(s.api);
  t.equal((await c.login()).status, 200);
  const body = { action: 'block', name: 'origin.example' };
  let r = await c.post('/api/v1/rules', body, { origin: null });
  t.equal(r.status, 403);
  t.equal(r.json.code, 'origin_required');
  r = await c.post('/api/v1/rules', body, { origin: 'http://evil.example' });
  t.equal(r.status, 403);
  t.equal(r.json.code, 'bad_origin');
  r = await c.post('/api/v1/rules', body, { origin: `https://127.0.0.1:${c.port}` });
  t.equal(r.status, 403, 'another scheme is another origin');
  r = await c.post('/api/v1/login', { user: 'alice', password: PASSWORD }, { origin: 'http://evil.example', keepCookie: false });
  t.equal(r.status, 403, 'login too: no login CSRF');
  t.equal((await c.get('/api/v1/rules')).json.rules.length, 0, 'nothing was added');
  t.equal((await c.del('/api/v1/pause', { origin: 'null' })).status, 403);
  t.equal((await c.post('/api/v1/rules', body)).status, 201, 'our own Origin passes');

  for (const host of ['evil.example', `evil.example:${c.port}`, '127.0.0.1', `127.0.0.1:${c.port + 1}`, `localhost.evil.example:${c.port}`, '', 'a b']) {
    const h = await c.get('/api/v1/rules', { host });
    t.equal(h.status, 421, `Host "${host}" refused`);
    t.equal(h.json?.code, 'bad_host');
  }
  t.equal((await c.get('/', { host: `evil.example:${c.port}` })).status, 421, 'the console pages too');
  t.equal((await c.get('/api/v1/rules', { host: `dns.home.arpa:${c.port}` })).status, 200, 'a configured name');
  t.equal((await c.get('/api/v1/rules', { host: `DNS.Home.Arpa.:${c.port}` })).status, 200, 'names compare case-insensitively');
  t.equal((await c.get('/api/v1/rules', { host: `localhost:${c.port}` })).status, 200, 'localhost on a loopback listener');
  const viaName = await c.post('/api/v1/rules', { action: 'allow', name: 'n.example' }, { host: `dns.home.arpa:${c.port}`, origin: `http://dns.home.arpa:${c.port}` });
  t.equal(viaName.status, 201, 'the Origin must match the Host used');
});

t.test('login rate limit per address, with Retry-After, refilled with time (fake clock)', async (t) => {
  const s = await startStack(t, { withConsole: false });
  let now = 1_700_000_000_000;
  const cfg = consoleConfigOf({ listen: '127.0.0.1:0', users: [{ name: 'alice', password: await passwordHash() }] }, s.dir);
  const api = new ConsoleApi(s.server, cfg, { now: () => now });
  await api.listen();
  t.teardown(() => api.close());
  const c = httpClient(api);
  const statuses = [];
  for (let i = 0; i < 7; i++) statuses.push((await c.login('alice', `guess ${i}`)).status);
  t.same(statuses, [401, 401, 401, 401, 401, 429, 429], 'five guesses, then refused');
  const limited = await c.login();
  t.equal(limited.status, 429, 'even the right password while limited');
  t.equal(limited.json.code, 'rate_limited');
  t.ok(Number(limited.headers['retry-after']) >= 1, `Retry-After ${limited.headers['retry-after']}`);
  t.equal(api.loginsLimited, 3);
  now += 12_000;
  t.equal((await c.login()).status, 200, 'one attempt back after 12 s');
  t.equal((await c.login()).status, 429);
});

t.test('session expiry: idle and absolute (fake clock)', async (t) => {
  const s = await startStack(t, { withConsole: false });
  let now = 1_700_000_000_000;
  const cfg = consoleConfigOf({ listen: '127.0.0.1:0', users: [{ name: 'alice', password: await passwordHash() }], sessionTtlSeconds: 60, sessionMaxSeconds: 300 }, s.dir);
  const api = new ConsoleApi(s.server, cfg, { now: () => now });
  await api.listen();
  t.teardown(() => api.close());
  const c = httpClient(api);
  t.equal((await c.login()).status, 200);
  now += 59_000;
  t.equal((await c.get('/api/v1/rules')).status, 200, 'used within the idle time');
  now += 59_000;
  t.equal((await c.get('/api/v1/rules')).status, 200, 'each use extends the idle time');
  now += 60_000;
  t.equal((await c.get('/api/v1/rules')).status, 401, 'idle too long');

  t.equal((await c.login()).status, 200);
  for (let i = 0; i < 5; i++) { now += 50_000; t.equal((await c.get('/api/v1/rules')).status, 200); }
  now += 50_000;
  t.equal((await c.get('/api/v1/rules')).status, 401, 'absolute lifetime reached although active');
});

t.test('security headers on every response; bad input gets clear errors and the server lives', async (t) => {
  const s = await startStack(t);
  const c = httpClient(s.api);
  await c.login();
  const responses = [
    await c.get('/api/v1/rules'), await c.get('/api/v1/nope'), await c.get('/'), await c.get('/does-not-exist.js'),
    await c.get('/api/v1/rules', { cookie: '' }), await c.get('/x', { host: 'evil.example' }),
  ];
  for (const r of responses) {
    t.equal(r.headers['content-security-policy'], "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
    t.equal(r.headers['x-content-type-options'], 'nosniff');
    t.equal(r.headers['referrer-policy'], 'no-referrer');
  }
  const bad = async (method, p, opts, status, code) => {
    const r = await c.request(method, p, opts);
    t.equal(r.status, status, `${method} ${p} → ${status}`);
    t.equal(r.json?.code, code, `code ${code}`);
    t.type(r.json?.error, 'string');
  };
  await bad('POST', '/api/v1/rules', { raw: '{"action": "block",', headers: { 'content-type': 'application/json' } }, 400, 'bad_json');
  await bad('POST', '/api/v1/rules', { raw: '[1,2]', headers: { 'content-type': 'application/json' } }, 400, 'bad_json');
  await bad('POST', '/api/v1/rules', { raw: 'action=block', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 415, 'unsupported_media_type');
  await bad('POST', '/api/v1/rules', { raw: JSON.stringify({ name: 'x'.repeat(70_000) }), headers: { 'content-type': 'application/json' } }, 413, 'body_too_large');
  await bad('POST', '/api/v1/rules', { body: { action: 'deny', name: 'x.example' } }, 400, 'bad_request');
  await bad('POST', '/api/v1/rules', { body: { action: 'block', name: '*.x.example' } }, 400, 'bad_name');
  await bad('POST', '/api/v1/rules', { body: { action: 'block', name: 'a..b' } }, 400, 'bad_name');
  await bad('POST', '/api/v1/rules', { body: { action: 'block', name: 42 } }, 400, 'bad_request');
  await bad('POST', '/api/v1/rules', { body: { action: 'block', name: 'x.example', group: 'nosuch' } }, 400, 'unknown_group');
  await bad('GET', '/api/v1/queries?limit=0', {}, 400, 'bad_parameter');
  await bad('GET', '/api/v1/queries?limit=abc', {}, 400, 'bad_parameter');
  await bad('GET', '/api/v1/queries?from=yesterday', {}, 400, 'bad_parameter');
  await bad('GET', '/api/v1/queries?from=2000&to=1000', {}, 400, 'bad_parameter');
  await bad('GET', '/api/v1/queries?type=A;DROP', {}, 400, 'bad_parameter');
  await bad('GET', `/api/v1/queries?name=${'a'.repeat(300)}`, {}, 400, 'bad_parameter');
  await bad('GET', '/api/v1/stats?step=0', {}, 400, 'bad_parameter');
  await bad('GET', '/api/v1/stats?step=fortnight', {}, 400, 'bad_parameter');
  await bad('GET', '/api/v1/stats?from=0&to=86400000000&step=1000', {}, 400, 'bad_parameter');
  await bad('POST', '/api/v1/pause', { body: { seconds: -5 } }, 400, 'bad_request');
  await bad('POST', '/api/v1/pause', { body: { seconds: 1.5 } }, 400, 'bad_request');
  await bad('POST', '/api/v1/pause', { body: { seconds: '60' } }, 400, 'bad_request');
  await bad('DELETE', '/api/v1/rules/%E0%A4%A', {}, 400, 'bad_path');
  await bad('DELETE', '/api/v1/rules/12345', {}, 404, 'not_found');
  await bad('PUT', '/api/v1/clients/bogus', { body: { group: 'kids' } }, 400, 'bad_parameter');
  await bad('PUT', '/api/v1/clients/ip:300.1.1.1', { body: { group: 'kids' } }, 400, 'bad_parameter');
  await bad('PUT', '/api/v1/rules', { body: {} }, 405, 'method_not_allowed');
  await bad('GET', '/api/v1/nothing', {}, 404, 'not_found');
  await bad('POST', '/api/v1/login', { body: { user: ['alice'], password: PASSWORD } }, 400, 'bad_request');
  // Still serving, and still answering DNS.
  t.equal((await c.get('/api/v1/rules')).status, 200);
  const a = await s.query('alive.example');
  t.equal(a.rcode, 'NOERROR');
  t.equal(s.logs.filter((l) => l.level === 'error').length, 0, 'no internal errors logged');
});

t.test('a hash made by hashPassword works as a console user', async (t) => {
  const h = await hashPassword('pw', { n: 2048, r: 8, p: 1 });
  const s = await startStack(t, { withConsole: false });
  const cfg = consoleConfigOf({ listen: '127.0.0.1:0', users: [{ name: 'bob', password: h }] }, s.dir);
  const api = new ConsoleApi(s.server, cfg);
  await api.listen();
  t.teardown(() => api.close());
  const c = httpClient(api);
  t.equal((await c.login('bob', 'pw')).status, 200);
  t.throws(() => new ConsoleApi(s.server, consoleConfigOf({ users: [{ name: 'x', password: 'scrypt$3$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==' }] }, s.dir)), /power of two/);
});
