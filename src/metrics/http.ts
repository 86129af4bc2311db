// /metrics, /healthz, /readyz and the admin endpoints, on one loopback listener by default.
import http from 'node:http';
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
}

export function startHttp(listen: string, ep: HttpEndpoints): Promise<http.Server> {
  const { host, port } = parseHostPort(listen);
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    try {
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
