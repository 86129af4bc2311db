// The web console's static files: the app from console/, the UI libraries from node_modules, and
// console/index.html for every view URL so a view opened directly (or reloaded) works.
//
// Every servable URL is a key in a map built once when the handler is created, from a walk of
// console/ and a fixed list of vendor files; a request is looked up by its exact path, so no
// request path ever reaches the file system and traversal (`..`, `%2e%2e`, `//`, `\`) cannot escape.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import crypto from 'node:crypto';
import type http from 'node:http';

export const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/** URLs of the single-page app's views: each is answered with console/index.html. */
export const CONSOLE_VIEWS = ['/', '/queries', '/devices', '/lists', '/audit', '/login'] as const;

const DEFAULT_ROOT = fileURLToPath(new URL('../../console/', import.meta.url));

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
};

/**
 * Vendor URL → [a file the package exports (to find its directory), the file under that directory].
 * Preact's hooks import the bare specifier "preact", which a browser cannot resolve without an import
 * map (an inline script, which the CSP forbids), so it is rewritten to the sibling vendor URL.
 */
const VENDOR: Record<string, { anchor: string; file: string; rewrite?: Record<string, string> }> = {
  '/vendor/preact.mjs': { anchor: 'preact/package.json', file: 'dist/preact.mjs' },
  '/vendor/hooks.mjs': { anchor: 'preact/hooks/package.json', file: 'dist/hooks.mjs', rewrite: { preact: './preact.mjs' } },
  // htm's exports map has no "./package.json"; its CommonJS entry sits next to the ES module.
  '/vendor/htm.mjs': { anchor: 'htm', file: 'htm.mjs' },
  '/vendor/uplot.mjs': { anchor: 'uplot/package.json', file: 'dist/uPlot.esm.js' },
  '/vendor/uplot.css': { anchor: 'uplot/package.json', file: 'dist/uPlot.min.css' },
};

// Vendor files change only with the package version; app files may change with any upgrade and are
// revalidated (ETag) on every load.
const CACHE_VENDOR = 'public, max-age=31536000, immutable';
const CACHE_APP = 'no-cache';

interface Asset {
  body: Buffer;
  gzip: Buffer | null;
  type: string;
  etag: string;
  cache: string;
}

export interface ConsoleHandlerOptions {
  /** Directory of the app's files (default: the package's console/). */
  root?: string;
}

export type ConsoleHandler = ((req: http.IncomingMessage, res: http.ServerResponse) => boolean) & {
  /** Why a file could not be loaded (the handler then answers its URL with 404). */
  problems: string[];
  /** The URLs it serves, views excluded. */
  urls: string[];
};

function makeAsset(body: Buffer, ext: string, cache: string): Asset {
  const type = MIME[ext] ?? 'application/octet-stream';
  const compressible = /^text\/|json|svg|manifest/.test(type);
  const gz = compressible && body.length > 256 ? zlib.gzipSync(body, { level: 9 }) : null;
  const etag = `"${crypto.createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
  return { body, gzip: gz && gz.length < body.length ? gz : null, type, etag, cache };
}

/** Replaces `from "<bare>"` / `import "<bare>"` for the given specifiers. */
export function rewriteBareImports(src: string, map: Record<string, string>): string {
  return src.replace(/\b(from|import)(\s*)(["'])([^"']+)\3/g, (m, kw: string, sp: string, q: string, spec: string) =>
    map[spec] !== undefined ? `${kw}${sp}${q}${map[spec]}${q}` : m);
}

function walk(dir: string, base: string, out: Map<string, string>, depth = 0): void {
  if (depth > 8) return;
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    if (ent.name.startsWith('.')) continue;
    const full = path.join(dir, ent.name);
    const url = `${base}/${ent.name}`;
    if (ent.isDirectory()) walk(full, url, out, depth + 1);
    else if (ent.isFile() && MIME[path.extname(ent.name)]) out.set(url, full);
  }
}

export function createConsoleHandler(opts: ConsoleHandlerOptions = {}): ConsoleHandler {
  const root = opts.root ?? DEFAULT_ROOT;
  const assets = new Map<string, Asset>();
  const problems: string[] = [];

  const files = new Map<string, string>();
  try { walk(root, '', files); } catch (e) { problems.push(`console files: ${(e as Error).message}`); }
  for (const [url, file] of files) {
    try { assets.set(url, makeAsset(fs.readFileSync(file), path.extname(file), CACHE_APP)); } catch (e) { problems.push(`${url}: ${(e as Error).message}`); }
  }

  const require = createRequire(import.meta.url);
  for (const [url, v] of Object.entries(VENDOR)) {
    try {
      const file = path.join(path.dirname(require.resolve(v.anchor)), v.file);
      let body = fs.readFileSync(file);
      if (v.rewrite) body = Buffer.from(rewriteBareImports(body.toString('utf8'), v.rewrite));
      assets.set(url, makeAsset(body, path.extname(url), CACHE_VENDOR));
    } catch (e) { problems.push(`${url}: ${(e as Error).message}`); }
  }

  const index = assets.get('/index.html');
  if (!index) problems.push('console/index.html missing: the views cannot be served');
  const views = new Set<string>(CONSOLE_VIEWS);

  const handler = ((req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    const raw = req.url ?? '/';
    const q = raw.indexOf('?');
    const pathname = q < 0 ? raw : raw.slice(0, q);
    if (pathname === '/api' || pathname.startsWith('/api/')) return false;

    const headers: Record<string, string> = {
      'content-security-policy': CONSOLE_CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
      'cross-origin-opener-policy': 'same-origin',
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...headers, allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return true;
    }
    const asset = views.has(pathname) || (pathname.length > 1 && pathname.endsWith('/') && views.has(pathname.slice(0, -1)))
      ? index : assets.get(pathname);
    if (!asset) {
      res.writeHead(404, { ...headers, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }).end('not found\n');
      return true;
    }
    headers['content-type'] = asset.type;
    headers['cache-control'] = asset.cache;
    headers.etag = asset.etag;
    headers.vary = 'Accept-Encoding';
    if (req.headers['if-none-match'] === asset.etag) {
      res.writeHead(304, headers).end();
      return true;
    }
    let body = asset.body;
    if (asset.gzip && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''))) {
      body = asset.gzip;
      headers['content-encoding'] = 'gzip';
    }
    headers['content-length'] = String(body.length);
    res.writeHead(200, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  }) as ConsoleHandler;
  handler.problems = problems;
  handler.urls = [...assets.keys()].sort();
  return handler;
}
