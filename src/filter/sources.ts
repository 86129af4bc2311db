// List sources: local files and url lists (conditional GET + disk cache).
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

// undici is loaded on the first download: a config without url lists never pays its memory.
let undiciFetch: typeof import('undici').fetch | null = null;
async function lazyFetch(...args: Parameters<typeof import('undici').fetch>): ReturnType<typeof import('undici').fetch> {
  undiciFetch ??= (await import('undici')).fetch;
  return undiciFetch(...args);
}

export interface CacheMeta {
  url: string;
  etag: string | null;
  lastModified: string | null;
  fetchedAt: number;
  bytes: number;
}

export function cachePaths(stateDir: string, name: string, url: string): { data: string; meta: string; dir: string } {
  const safe = name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64);
  const h = createHash('sha256').update(url).digest('hex').slice(0, 12);
  const dir = join(stateDir, 'filter-lists');
  return { dir, data: join(dir, `${safe}-${h}.txt`), meta: join(dir, `${safe}-${h}.json`) };
}

export async function readCache(stateDir: string, name: string, url: string): Promise<{ data: Buffer; meta: CacheMeta } | null> {
  const p = cachePaths(stateDir, name, url);
  try {
    const meta = JSON.parse(await readFile(p.meta, 'utf8')) as CacheMeta;
    if (meta.url !== url) return null;
    const data = await readFile(p.data);
    return { data, meta };
  } catch {
    return null;
  }
}

/** The cached copy's metadata and data file path, without reading the data (a build reads it in chunks). */
export async function readCacheMeta(stateDir: string, name: string, url: string): Promise<{ file: string; meta: CacheMeta } | null> {
  const p = cachePaths(stateDir, name, url);
  try {
    const meta = JSON.parse(await readFile(p.meta, 'utf8')) as CacheMeta;
    if (meta.url !== url) return null;
    if (!(await stat(p.data)).isFile()) return null;
    return { file: p.data, meta };
  } catch {
    return null;
  }
}

/** Rewrite only the metadata (a 304 refreshes the timestamp; the data file stays as it is). */
export async function writeCacheMeta(stateDir: string, name: string, meta: CacheMeta): Promise<void> {
  const p = cachePaths(stateDir, name, meta.url);
  const tmpm = `${p.meta}.${process.pid}.tmp`;
  await writeFile(tmpm, JSON.stringify(meta));
  await rename(tmpm, p.meta);
}

export async function writeCache(stateDir: string, name: string, meta: CacheMeta, data: Buffer): Promise<void> {
  const p = cachePaths(stateDir, name, meta.url);
  await mkdir(p.dir, { recursive: true });
  const tmp = `${p.data}.${process.pid}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, p.data);
  const tmpm = `${p.meta}.${process.pid}.tmp`;
  await writeFile(tmpm, JSON.stringify(meta));
  await rename(tmpm, p.meta);
}

export type FetchResult =
  | { status: 'ok'; data: Buffer; etag: string | null; lastModified: string | null }
  | { status: 'not-modified' };

/** How a list may be fetched. */
export interface FetchPolicy {
  /** allow a plain http:// list URL (the list's `allowInsecure: true`); an https URL is never downgraded */
  allowInsecure?: boolean;
  /** undici dispatcher (e.g. an Agent trusting a private CA); the global one when absent */
  dispatcher?: import('undici').Dispatcher;
}

/** Redirects followed per download, like a browser's limit but smaller: list hosts need one or two. */
export const MAX_REDIRECTS = 5;

/** Why a list URL may not be fetched under `policy`, or null. */
export function urlRefusal(url: string, allowInsecure: boolean): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `invalid URL "${url}"`;
  }
  if (u.protocol === 'https:') return null;
  if (u.protocol === 'http:') return allowInsecure ? null : `plain http URL ${url} refused: use https, or set allowInsecure: true on this list`;
  return `unsupported URL scheme ${u.protocol}`;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/**
 * Conditional GET with a timeout and a size cap. Throws on network/HTTP errors. Redirects are followed
 * here, not by undici, so that each hop is checked: a plain-http hop only when the list allows it, and
 * never from https to anything weaker (a hostile or compromised mirror must not be able to move a
 * list off TLS, whatever the list's allowInsecure says).
 */
export async function fetchList(
  url: string,
  prev: { etag: string | null; lastModified: string | null } | null,
  timeoutMs: number,
  maxBytes: number,
  policy: FetchPolicy = {},
): Promise<FetchResult> {
  const allowInsecure = policy.allowInsecure === true;
  const refused = urlRefusal(url, allowInsecure);
  if (refused !== null) throw new Error(refused);
  const headers: Record<string, string> = { 'user-agent': 'dns-tproxy-filter/1', accept: 'text/plain, */*' };
  if (prev?.etag) headers['if-none-match'] = prev.etag;
  if (prev?.lastModified) headers['if-modified-since'] = prev.lastModified;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error(`timeout after ${timeoutMs} ms`)), timeoutMs);
  try {
    let current = new URL(url);
    let res = await lazyFetch(current, { headers, signal: ac.signal, redirect: 'manual', dispatcher: policy.dispatcher });
    for (let hops = 0; REDIRECT_STATUSES.has(res.status); hops++) {
      await res.body?.cancel().catch(() => {});
      const location = res.headers.get('location');
      if (location === null) throw new Error(`HTTP ${res.status} without a Location`);
      if (hops >= MAX_REDIRECTS) throw new Error(`more than ${MAX_REDIRECTS} redirects`);
      const next = new URL(location, current);
      if (current.protocol === 'https:' && next.protocol !== 'https:') {
        throw new Error(`redirect from ${current.href} to ${next.href} refused: a list fetched over https is never downgraded`);
      }
      const why = urlRefusal(next.href, allowInsecure);
      if (why !== null) throw new Error(`redirect to ${next.href} refused: ${why}`);
      current = next;
      res = await lazyFetch(current, { headers, signal: ac.signal, redirect: 'manual', dispatcher: policy.dispatcher });
    }
    if (res.status === 304) {
      await res.body?.cancel().catch(() => {});
      return { status: 'not-modified' };
    }
    if (res.status < 200 || res.status > 299) {
      await res.body?.cancel().catch(() => {});
      throw new Error(`HTTP ${res.status}`);
    }
    const declared = Number(res.headers.get('content-length') ?? '0');
    if (declared > maxBytes) {
      await res.body?.cancel().catch(() => {});
      throw new Error(`list larger than ${maxBytes} bytes`);
    }
    const chunks: Buffer[] = [];
    let total = 0;
    if (res.body) {
      for await (const c of res.body as AsyncIterable<Uint8Array>) {
        total += c.byteLength;
        if (total > maxBytes) {
          ac.abort(new Error('too large'));
          throw new Error(`list larger than ${maxBytes} bytes`);
        }
        chunks.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
      }
    }
    return {
      status: 'ok',
      data: Buffer.concat(chunks, total),
      etag: res.headers.get('etag'),
      lastModified: res.headers.get('last-modified'),
    };
  } catch (e) {
    if (ac.signal.aborted && ac.signal.reason instanceof Error && /timeout/.test(ac.signal.reason.message)) throw ac.signal.reason;
    throw e;
  } finally {
    clearTimeout(timer);
  }
}
