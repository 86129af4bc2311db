// The worker thread that owns the SQLite database: batches arrive by message and are written in one
// transaction each; searches and statistics run here too, so the DNS event loop never waits on
// fsync or on a long query.
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteDb, type SqliteOptions } from './sqlite-db.js';
import type { QueryRecord } from './types.js';

export type ToWorker =
  | { op: 'append'; records: QueryRecord[] }
  | { op: 'call'; id: number; method: 'search' | 'stats' | 'clients' | 'maintain' | 'count' | 'sizeBytes'; args: unknown[] }
  | { op: 'close' };
export type FromWorker =
  | { op: 'ready' }
  | { op: 'failed'; error: string }
  | { op: 'appended'; n: number; error?: string }
  | { op: 'result'; id: number; value?: unknown; error?: string; errorName?: string }
  | { op: 'closed' };

const MAINTAIN_EVERY_MS = 60_000;
const port = parentPort!;
const opts = workerData as SqliteOptions & { maintainEveryMs?: number };
let db: SqliteDb;
try {
  db = new SqliteDb(opts);
  db.maintain();
  port.postMessage({ op: 'ready' } satisfies FromWorker);
} catch (e) {
  port.postMessage({ op: 'failed', error: (e as Error).message } satisfies FromWorker);
  process.exit(0);
}
const every = opts.maintainEveryMs ?? MAINTAIN_EVERY_MS;
const timer = every > 0 ? setInterval(() => { try { db.maintain(); } catch { /* next round */ } }, every) : null;

port.on('message', (m: ToWorker) => {
  if (m.op === 'append') {
    try {
      db.append(m.records);
      port.postMessage({ op: 'appended', n: m.records.length } satisfies FromWorker);
    } catch (e) {
      port.postMessage({ op: 'appended', n: m.records.length, error: (e as Error).message } satisfies FromWorker);
    }
  } else if (m.op === 'call') {
    try {
      const fn = db[m.method] as (...a: unknown[]) => unknown;
      port.postMessage({ op: 'result', id: m.id, value: fn.apply(db, m.args) } satisfies FromWorker);
    } catch (e) {
      port.postMessage({ op: 'result', id: m.id, error: (e as Error).message, errorName: (e as Error).name } satisfies FromWorker);
    }
  } else if (m.op === 'close') {
    if (timer) clearInterval(timer);
    try { db.close(); } catch { /* closing anyway */ }
    port.postMessage({ op: 'closed' } satisfies FromWorker);
    port.close();
  }
});
