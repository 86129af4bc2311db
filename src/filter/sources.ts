// List sources: local files and url lists (conditional GET + disk cache).
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
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

/** Conditional GET with a timeout and a size cap. Throws on network/HTTP errors. */
export async function fetchList(
  url: string,
  prev: { etag: string | null; lastModified: string | null } | null,
  timeoutMs: number,
  maxBytes: number,
): Promise<FetchResult> {
  const headers: Record<string, string> = { 'user-agent': 'dns-tproxy-filter/1', accept: 'text/plain, */*' };
  if (prev?.etag) headers['if-none-match'] = prev.etag;
  if (prev?.lastModified) headers['if-modified-since'] = prev.lastModified;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error(`timeout after ${timeoutMs} ms`)), timeoutMs);
  try {
    const res = await lazyFetch(url, { headers, signal: ac.signal, redirect: 'follow' });
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
