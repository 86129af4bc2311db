// The console's static handler alone, over a real loopback HTTP server: MIME types, caching, the
// SPA fallback for view URLs, 404s, path traversal, the CSP header, and the JS + CSS size budget.
import t from 'tap';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { createConsoleHandler, rewriteBareImports, CONSOLE_CSP, CONSOLE_VIEWS } from '../../dist/console/static.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const EXPECTED_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const BUDGET_GZIP = 150 * 1024;

async function serve(t, handler) {
  const server = http.createServer((req, res) => {
    if (!handler(req, res)) res.writeHead(599, { 'x-not-handled': '1' }).end();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => server.close(r)));
  return server.address().port;
}

/** A raw request: the path goes on the wire exactly as given (no URL normalisation). */
function get(port, rawPath, { method = 'GET', headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: rawPath, method, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('the CSP is the one the brief fixes', async (t) => {
  t.equal(CONSOLE_CSP, EXPECTED_CSP);
});

t.test('every view URL serves index.html, also opened directly with a query string', async (t) => {
  const handler = createConsoleHandler();
  t.same(handler.problems, [], 'all files and vendor modules load');
  const port = await serve(t, handler);
  const index = fs.readFileSync(path.join(ROOT, 'console/index.html'));
  t.same([...CONSOLE_VIEWS].sort(), ['/', '/audit', '/devices', '/lists', '/login', '/queries']);
  for (const v of [...CONSOLE_VIEWS, '/queries?name=x.test&client=tv', '/devices/', '/login?next=%2Fqueries']) {
    const r = await get(port, v);
    t.equal(r.status, 200, `${v} → 200`);
    t.equal(r.headers['content-type'], 'text/html; charset=utf-8', `${v} is HTML`);
    t.equal(r.headers['content-security-policy'], EXPECTED_CSP, `${v} carries the CSP`);
    t.equal(r.headers['cache-control'], 'no-cache', `${v} is revalidated`);
    t.equal(r.headers['x-content-type-options'], 'nosniff');
    t.ok(r.body.equals(index), `${v} is console/index.html`);
  }
});

t.test('MIME types and cache headers of app and vendor files', async (t) => {
  const port = await serve(t, createConsoleHandler());
  const cases = [
    ['/app.js', 'text/javascript; charset=utf-8', 'no-cache'],
    ['/app.css', 'text/css; charset=utf-8', 'no-cache'],
    ['/views/queries.js', 'text/javascript; charset=utf-8', 'no-cache'],
    ['/favicon.svg', 'image/svg+xml', 'no-cache'],
    ['/vendor/preact.mjs', 'text/javascript; charset=utf-8', 'public, max-age=31536000, immutable'],
    ['/vendor/hooks.mjs', 'text/javascript; charset=utf-8', 'public, max-age=31536000, immutable'],
    ['/vendor/htm.mjs', 'text/javascript; charset=utf-8', 'public, max-age=31536000, immutable'],
    ['/vendor/uplot.mjs', 'text/javascript; charset=utf-8', 'public, max-age=31536000, immutable'],
    ['/vendor/uplot.css', 'text/css; charset=utf-8', 'public, max-age=31536000, immutable'],
  ];
  for (const [url, type, cache] of cases) {
    const r = await get(port, url);
    t.equal(r.status, 200, `${url} → 200`);
    t.equal(r.headers['content-type'], type, `${url} type`);
    t.equal(r.headers['cache-control'], cache, `${url} cache`);
    t.equal(r.headers['content-security-policy'], EXPECTED_CSP, `${url} CSP`);
    t.equal(Number(r.headers['content-length']), r.body.length, `${url} length`);
  }
  // The vendor files are the installed packages' own files (hooks with its one import rewritten).
  const preact = fs.readFileSync(path.join(ROOT, 'node_modules/preact/dist/preact.mjs'));
  t.ok((await get(port, '/vendor/preact.mjs')).body.equals(preact), 'preact.mjs is the package file');
  const hooks = (await get(port, '/vendor/hooks.mjs')).body.toString();
  t.notMatch(hooks, /from\s*["']preact["']/, 'no bare "preact" import left in hooks');
  t.match(hooks, /from\s*["']\.\/preact\.mjs["']/, 'hooks import the sibling vendor URL');
});

t.test('gzip when accepted, ETag revalidation, HEAD, methods', async (t) => {
  const port = await serve(t, createConsoleHandler());
  const plain = await get(port, '/vendor/uplot.mjs');
  const gz = await get(port, '/vendor/uplot.mjs', { headers: { 'accept-encoding': 'gzip, br' } });
  t.equal(gz.headers['content-encoding'], 'gzip');
  t.ok(zlib.gunzipSync(gz.body).equals(plain.body), 'gzip body inflates to the plain one');
  t.ok(gz.body.length < plain.body.length / 2);
  t.equal(plain.headers['content-encoding'], undefined, 'no gzip unless asked');
  const again = await get(port, '/app.js', { headers: { 'if-none-match': plain.headers.etag === undefined ? 'x' : (await get(port, '/app.js')).headers.etag } });
  t.equal(again.status, 304, 'matching ETag → 304');
  t.equal(again.body.length, 0);
  const head = await get(port, '/queries', { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.body.length, 0, 'HEAD has no body');
  for (const m of ['POST', 'PUT', 'DELETE']) {
    const r = await get(port, '/queries', { method: m });
    t.equal(r.status, 405, `${m} → 405`);
    t.equal(r.headers.allow, 'GET, HEAD');
  }
});

t.test('anything else is 404; /api/ is left to the API server', async (t) => {
  const port = await serve(t, createConsoleHandler());
  for (const u of ['/nope', '/queries/extra', '/index.htm', '/vendor/react.mjs', '/vendor/', '/app.js/', '/views', '/settings']) {
    const r = await get(port, u);
    t.equal(r.status, 404, `${u} → 404`);
    t.equal(r.headers['content-security-policy'], EXPECTED_CSP, `${u} 404 carries the CSP`);
  }
  for (const u of ['/api', '/api/v1/queries', '/api/v1/login?x=1']) {
    const r = await get(port, u);
    t.equal(r.headers['x-not-handled'], '1', `${u} not handled by the console`);
  }
});

t.test('path traversal cannot reach any file outside the served set', async (t) => {
  // A sentinel file next to the console directory in a copy: a handler that joined paths would serve it.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'console-trav-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.cpSync(path.join(ROOT, 'console'), path.join(dir, 'console'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'secret.txt'), 'SENTINEL-SECRET');
  fs.writeFileSync(path.join(dir, 'console', '.hidden.js'), 'SENTINEL-HIDDEN');
  const port = await serve(t, createConsoleHandler({ root: path.join(dir, 'console') }));
  t.equal((await get(port, '/app.js')).status, 200, 'control: the copy is served');
  const attempts = [
    '/../secret.txt', '/..%2fsecret.txt', '/%2e%2e/secret.txt', '/%2e%2e%2fsecret.txt', '/views/../../secret.txt',
    '/vendor/../../secret.txt', '/vendor/%2e%2e/%2e%2e/secret.txt', '//secret.txt', '/.\\..\\secret.txt', '/..\\secret.txt',
    '/views/%2e%2e%5c%2e%2e%5csecret.txt', '/./../secret.txt', '/.hidden.js', '/views/.././../secret.txt',
    '/vendor/../../../../../../etc/passwd', '/%2e%2e/%2e%2e/%2e%2e/etc/passwd', '/vendor/preact/package.json',
    '/node_modules/preact/package.json', '/vendor/..%2f..%2fpackage.json', '/app.js%00.html', '/queries/../../secret.txt',
  ];
  for (const a of attempts) {
    const r = await get(port, a);
    t.equal(r.status, 404, `${a} → 404`);
    t.notMatch(r.body.toString(), /SENTINEL|root:|"name"/, `${a} leaks nothing`);
  }
});

t.test('index.html has no inline script or style; app code sets no inline styles', async (t) => {
  const index = fs.readFileSync(path.join(ROOT, 'console/index.html'), 'utf8');
  const scripts = [...index.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
  t.ok(scripts.length >= 1, 'has a script');
  for (const [, attrs, body] of scripts) {
    t.match(attrs, /\bsrc=/, 'every script has src');
    t.equal(body.trim(), '', 'and no inline body');
  }
  t.notMatch(index, /<style\b/i, 'no <style>');
  t.notMatch(index, /\sstyle\s*=/i, 'no style attribute');
  t.notMatch(index, /\son[a-z]+\s*=/i, 'no inline event handler');
  const js = [];
  const walk = (d) => { for (const e of fs.readdirSync(d, { withFileTypes: true })) { const f = path.join(d, e.name); if (e.isDirectory()) walk(f); else if (f.endsWith('.js')) js.push(f); } };
  walk(path.join(ROOT, 'console'));
  for (const f of js) t.notMatch(fs.readFileSync(f, 'utf8'), /\sstyle=\$?\{?|innerHTML|eval\(|new Function/, `${path.relative(ROOT, f)}: no style attribute, innerHTML or eval`);
});

/** Every URL the index page loads: its stylesheets and scripts, and the module graph behind them. */
async function loadedByIndex(port) {
  const index = (await get(port, '/')).body.toString();
  const queue = [
    ...[...index.matchAll(/<link\b[^>]*rel="stylesheet"[^>]*href="([^"]+)"/g)].map((m) => m[1]),
    ...[...index.matchAll(/<script\b[^>]*src="([^"]+)"/g)].map((m) => m[1]),
  ];
  const seen = new Map();
  while (queue.length) {
    const url = queue.shift();
    if (seen.has(url)) continue;
    const r = await get(port, url);
    seen.set(url, r);
    if (/\.m?js$/.test(url)) {
      const src = r.body.toString();
      // Static imports and re-exports (`import x from "…"`, `import "…"`, `export {x} from "…"`) and import("…").
      const re = /\b(?:import|export)\s*(?:[\w*{}\s,$]+?\s*from\s*)?["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/g;
      for (const m of src.matchAll(re)) {
        const spec = m[1] ?? m[2];
        if (!spec.startsWith('/') && !spec.startsWith('.')) throw new Error(`${url} imports bare specifier ${spec}`);
        queue.push(new URL(spec, `http://x${url}`).pathname);
      }
    }
  }
  return seen;
}

t.test(`JS + CSS the index page loads is at most ${BUDGET_GZIP / 1024} KB gzip`, async (t) => {
  const port = await serve(t, createConsoleHandler());
  const loaded = await loadedByIndex(port);
  let raw = 0, gz = 0;
  const rows = [];
  for (const [url, r] of loaded) {
    t.equal(r.status, 200, `${url} loads`);
    const size = zlib.gzipSync(r.body, { level: 9 }).length;
    raw += r.body.length;
    gz += size;
    rows.push(`${url} ${r.body.length} B, ${size} B gzip`);
  }
  for (const u of ['/app.js', '/app.css', '/vendor/preact.mjs', '/vendor/hooks.mjs', '/vendor/htm.mjs', '/vendor/uplot.mjs', '/vendor/uplot.css', '/views/queries.js', '/views/overview.js']) {
    t.ok(loaded.has(u), `the crawl reached ${u}`);
  }
  // index.html preloads exactly the module graph below app.js, so none of it waits for its importer.
  const index = (await get(port, '/')).body.toString();
  const preloaded = [...index.matchAll(/<link\b[^>]*rel="modulepreload"[^>]*href="([^"]+)"/g)].map((m) => m[1]).sort();
  const modules = [...loaded.keys()].filter((u) => /\.m?js$/.test(u) && u !== '/app.js').sort();
  t.same(preloaded, modules, 'every module the app imports is modulepreloaded, and nothing else');
  t.comment(rows.join('\n'));
  t.comment(`total: ${loaded.size} files, ${raw} B, ${gz} B gzip (budget ${BUDGET_GZIP})`);
  t.ok(gz <= BUDGET_GZIP, `${gz} B gzip ≤ ${BUDGET_GZIP}`);
});

t.test('a missing console directory or index is reported, never thrown', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'console-empty-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const handler = createConsoleHandler({ root: path.join(dir, 'does-not-exist') });
  t.ok(handler.problems.some((p) => /console files/.test(p)), 'missing directory reported');
  t.ok(handler.problems.some((p) => /index\.html missing/.test(p)), 'missing index reported');
  const port = await serve(t, handler);
  t.equal((await get(port, '/')).status, 404, 'views are 404 without an index');
  t.equal((await get(port, '/vendor/preact.mjs')).status, 200, 'vendor files still served');
});

t.test('rewriteBareImports touches only the named specifiers', async (t) => {
  t.equal(rewriteBareImports('import{a}from"preact";import b from \'htm\';import "x"', { preact: './preact.mjs', x: './x.mjs' }),
    'import{a}from"./preact.mjs";import b from \'htm\';import "./x.mjs"');
  t.equal(rewriteBareImports('const s = "preact";', { preact: './p.mjs' }), 'const s = "preact";', 'strings that are not imports stay');
});
