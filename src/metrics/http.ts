// /metrics, /healthz, /readyz and the admin endpoints, on one loopback listener by default.
//
// Two guards, because a browser on the LAN can be made to talk to this port:
// - DNS rebinding: a page on evil.example re-resolves its own name to 127.0.0.1 and reads /metrics or
//   /stats/top. Its requests carry `Host: evil.example`; only IP literals, localhost and the names in
//   metrics.hosts are served.
// - Admin actions (POST /admin/...) need `Authorization: Bearer <metrics.adminToken>` when a token is
//   set (the config requires one whenever the listener is not loopback), and are refused when a browser
//   sent them from another origin (cross-site form posts).
import http from 'node:http';
import net from 'node:net';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Registry } from 'prom-client';
import { parseHostPort } from '../config/address.js';

export interface HttpEndpoints {
  registry: Registry;
  ready: () => { ready: boolean; reasons: string[] };
  /** Admin: POST /admin/cache/flush[?name=NAME] → number of entries removed. */
  flushCache?: (name?: string) => number;
  /** The same, answered by other processes (workers). */
  flushCacheAsync?: (name?: string) => Promise<number>;
  /** Extra JSON endpoints, e.g. /stats/top. */
  json?: Record<string, () => unknown>;
  /** metrics.adminToken: required as a bearer token on admin actions when set. */
  adminToken?: string;
  /** metrics.hosts: host names (besides IP literals and localhost) this endpoint answers to. */
  hosts?: readonly string[];
}

/** The host part of a Host header ("[::1]:9153" → "::1", "Example:80" → "example"). */
export function hostOf(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') < 0 ? undefined : h.indexOf(']'));
  const colon = h.lastIndexOf(':');
  return colon >= 0 && h.indexOf(':') === colon ? h.slice(0, colon) : h;
}

export function hostAllowed(header: string | undefined, names: ReadonlySet<string>): boolean {
  // HTTP/1.0 clients may send none; a browser always does.
  if (header === undefined) return true;
  const h = hostOf(header);
  return net.isIP(h) !== 0 || h === 'localhost' || names.has(h.replace(/\.$/, ''));
}

function tokenMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m) return false;
  // Fixed-length digests: the comparison time says nothing about the token's length or prefix.
  const a = createHash('sha256').update(m[1]).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}

export function startHttp(listen: string, ep: HttpEndpoints): Promise<http.Server> {
  const { host, port } = parseHostPort(listen);
  const names = new Set((ep.hosts ?? []).map((n) => n.toLowerCase().replace(/\.$/, '')));
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    try {
      if (!hostAllowed(req.headers.host, names)) {
        res.writeHead(421, { 'content-type': 'text/plain' }).end('misdirected request: unknown Host (add it to metrics.hosts)\n');
        return;
      }
      if (url.pathname.startsWith('/admin/')) {
        const origin = req.headers.origin;
        if (origin !== undefined && (origin === 'null' || !req.headers.host || hostOf(new URL(origin).host) !== hostOf(req.headers.host))) {
          res.writeHead(403, { 'content-type': 'text/plain' }).end('cross-origin admin request refused\n');
          return;
        }
        if (ep.adminToken !== undefined && !tokenMatches(req.headers.authorization, ep.adminToken)) {
          res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('admin token required (Authorization: Bearer <metrics.adminToken>)\n');
          return;
        }
      }
      if (url.pathname === '/metrics' && req.method === 'GET') {
        const body = await ep.registry.metrics();
        res.writeHead(200, { 'content-type': ep.registry.contentType });
        res.end(body);
      } else if (url.pathname === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (url.pathname === '/readyz') {
        const r = ep.ready();
        res.writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' }).end(r.ready ? 'ready\n' : `not ready: ${r.reasons.join('; ')}\n`);
      } else if (url.pathname === '/admin/cache/flush' && req.method === 'POST' && (ep.flushCache || ep.flushCacheAsync)) {
        const name = url.searchParams.get('name') ?? undefined;
        const n = ep.flushCache ? ep.flushCache(name) : await ep.flushCacheAsync!(name);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ flushed: n }) + '\n');
      } else if (ep.json && ep.json[url.pathname] && req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(ep.json[url.pathname]()) + '\n');
      } else {
        res.writeHead(404).end('not found\n');
      }
    } catch (e) {
      res.writeHead(500).end(String((e as Error).message) + '\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(server); });
  });
}
