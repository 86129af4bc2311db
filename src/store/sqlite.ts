// The embedded store (default): a bounded in-memory queue on the DNS thread, SQLite in a worker.
import { Worker } from 'node:worker_threads';
import { BatchingStore, type BatchingOptions } from './batching.js';
import type { SqliteOptions } from './sqlite-db.js';
import type { FromWorker, ToWorker } from './sqlite-worker.js';
import type { ClientEntry, QueryRecord, SearchQuery, SearchResult, StatsQuery, StatsResult } from './types.js';
import type { DeviceResolver } from '../devices/types.js';
import { mergeClients, type GroupOf } from './clients.js';

export interface SqliteStoreOptions extends SqliteOptions, BatchingOptions {
  devices?: DeviceResolver | null;
  groupOf?: GroupOf;
  /** Retention round interval in the worker, ms (0: only at open). */
  maintainEveryMs?: number;
}

export class SqliteStore extends BatchingStore {
  readonly backend = 'sqlite' as const;
  private readonly worker: Worker;
  private readonly appendWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextCall = 1;
  private closedPromise: Promise<void> | null = null;
  private dead: Error | null = null;
  devices: DeviceResolver | null;

  private constructor(readonly opts: SqliteStoreOptions, worker: Worker) {
    super(opts);
    this.worker = worker;
    this.devices = opts.devices ?? null;
    worker.on('message', (m: FromWorker) => this.onMessage(m));
    worker.on('error', (e) => this.fail(e));
    worker.on('exit', () => this.fail(new Error('store worker exited')));
  }

  /** Opens (or creates) the database; rejects if it cannot be opened. */
  static async open(opts: SqliteStoreOptions): Promise<SqliteStore> {
    const { devices: _d, groupOf: _g, onError: _e, ...data } = opts;
    const worker = new Worker(new URL('./sqlite-worker.js', import.meta.url), { workerData: data });
    await new Promise<void>((resolve, reject) => {
      const onMsg = (m: FromWorker) => {
        worker.off('error', onErr);
        worker.off('message', onMsg);
        if (m.op === 'ready') resolve();
        else { void worker.terminate(); reject(new Error(`cannot open query store ${opts.path}: ${(m as { error?: string }).error ?? m.op}`)); }
      };
      const onErr = (e: Error) => { worker.off('message', onMsg); reject(e); };
      worker.on('message', onMsg);
      worker.once('error', onErr);
    });
    return new SqliteStore(opts, worker);
  }

  private onMessage(m: FromWorker): void {
    if (m.op === 'appended') {
      const w = this.appendWaiters.shift();
      if (m.error) w?.reject(new Error(m.error)); else w?.resolve();
    } else if (m.op === 'result') {
      const c = this.calls.get(m.id);
      if (!c) return;
      this.calls.delete(m.id);
      if (m.error !== undefined) { const e = m.errorName === 'RangeError' ? new RangeError(m.error) : new Error(m.error); c.reject(e); } else c.resolve(m.value);
    }
  }

  private fail(e: Error): void {
    if (this.dead) return;
    this.dead = e;
    for (const w of this.appendWaiters.splice(0)) w.reject(e);
    for (const c of this.calls.values()) c.reject(e);
    this.calls.clear();
  }

  protected writeBatch(records: QueryRecord[]): Promise<void> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      this.appendWaiters.push({ resolve, reject });
      this.worker.postMessage({ op: 'append', records } satisfies ToWorker);
    });
  }

  private call<T>(method: Extract<ToWorker, { op: 'call' }>['method'], ...args: unknown[]): Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextCall++;
    return new Promise<T>((resolve, reject) => {
      this.calls.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ op: 'call', id, method, args } satisfies ToWorker);
    });
  }

  search(q: SearchQuery): Promise<SearchResult> { return this.call('search', q); }
  stats(q: StatsQuery): Promise<StatsResult> { return this.call('stats', q); }
  async clients(): Promise<ClientEntry[]> {
    return mergeClients(await this.call<ClientEntry[]>('clients'), this.devices, this.opts.groupOf);
  }
  /** Runs retention now (tests pass a fixed clock). */
  maintain(now?: number): Promise<number> { return this.call('maintain', now); }
  count(): Promise<number> { return this.call('count'); }
  sizeBytes(): Promise<number> { return this.call('sizeBytes'); }

  protected closeBackend(): Promise<void> {
    if (this.closedPromise) return this.closedPromise;
    this.closedPromise = new Promise<void>((resolve) => {
      if (this.dead) { resolve(); return; }
      this.worker.once('exit', () => resolve());
      this.worker.on('message', (m: FromWorker) => { if (m.op === 'closed') void this.worker.terminate(); });
      this.worker.postMessage({ op: 'close' } satisfies ToWorker);
    });
    return this.closedPromise;
  }
}
