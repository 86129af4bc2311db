// What both stores share: the bounded queue between the query path and the disk. append() only
// pushes into a ring; a timer (or a full batch) hands batches to the backend, at most
// `maxInflightBatches` at a time. When the backend falls behind the ring fills and the oldest
// unwritten records are overwritten and counted: the queries themselves never wait.
import type { ClientEntry, QueryRecord, QueryStore, RecordListener, SearchQuery, SearchResult, StatsQuery, StatsResult } from './types.js';
import type { DeviceResolver } from '../devices/types.js';

export interface BatchingOptions {
  /** Records held in memory before the oldest are dropped. */
  queueMax?: number;
  /** Records per write transaction. */
  batchMax?: number;
  /** Flush interval, ms. */
  flushMs?: number;
  maxInflightBatches?: number;
  onError?: (e: Error) => void;
  /** Records without a device MAC are looked up again just before they are written (see flush). */
  devices?: DeviceResolver | null;
}

export const DEFAULT_QUEUE_MAX = 100_000;
export const DEFAULT_BATCH_MAX = 1000;
export const DEFAULT_FLUSH_MS = 100;

export abstract class BatchingStore implements QueryStore {
  abstract readonly backend: 'sqlite' | 'postgres';
  private readonly ring: (QueryRecord | undefined)[];
  private head = 0;
  private size = 0;
  private inflight = 0;
  /** Armed only while records wait: an idle server has no flush wakeups (10/s with an interval). */
  private timer: NodeJS.Timeout | null = null;
  private readonly flushMs: number;
  private flushScheduled = false;
  private closing = false;
  private readonly listeners = new Set<RecordListener>();
  private idleWaiters: (() => void)[] = [];
  private lastErrorAt = 0;
  /** Device fill-in runs batch after batch, so batches still reach the backend in append order. */
  private ready: Promise<void> = Promise.resolve();
  protected readonly queueMax: number;
  protected readonly batchMax: number;
  private readonly maxInflight: number;
  written = 0;
  droppedUnwritten = 0;
  batches = 0;
  failedBatches = 0;

  constructor(protected readonly bopts: BatchingOptions = {}) {
    this.queueMax = Math.max(1, bopts.queueMax ?? DEFAULT_QUEUE_MAX);
    this.batchMax = Math.max(1, bopts.batchMax ?? DEFAULT_BATCH_MAX);
    this.maxInflight = Math.max(1, bopts.maxInflightBatches ?? 2);
    this.ring = new Array(this.queueMax);
    this.flushMs = bopts.flushMs ?? DEFAULT_FLUSH_MS;
  }

  private armFlushTimer(): void {
    if (this.timer !== null || this.closing) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
      // Records the in-flight bound held back wait for the next tick of the timer.
      if (this.size > 0) this.armFlushTimer();
    }, this.flushMs);
    this.timer.unref();
  }

  get queueDepth(): number { return this.size; }

  append(r: QueryRecord): void {
    if (this.closing) { this.droppedUnwritten++; return; }
    if (this.size === this.queueMax) {
      // Full: the oldest unwritten record makes room.
      this.head = (this.head + 1) % this.queueMax;
      this.size--;
      this.droppedUnwritten++;
    }
    this.ring[(this.head + this.size) % this.queueMax] = r;
    this.size++;
    if (this.timer === null) this.armFlushTimer();
    if (this.size >= this.batchMax && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => { this.flushScheduled = false; this.flush(); });
    }
    if (this.listeners.size) {
      for (const l of this.listeners) {
        try { l(r); } catch { this.listeners.delete(l); }
      }
    }
  }

  subscribe(listener: RecordListener): () => void {
    this.listeners.add(listener);
    return () => { this.listeners.delete(listener); };
  }

  private take(): QueryRecord[] {
    const n = Math.min(this.size, this.batchMax);
    const out = new Array<QueryRecord>(n);
    for (let i = 0; i < n; i++) {
      out[i] = this.ring[this.head]!;
      this.ring[this.head] = undefined;
      this.head = (this.head + 1) % this.queueMax;
    }
    this.size -= n;
    return out;
  }

  /** Hands queued records to the backend, as far as the in-flight bound allows. */
  flush(): void {
    while (this.size > 0 && this.inflight < this.maxInflight) {
      const batch = this.take();
      this.inflight++;
      const ready = this.bopts.devices ? this.ready.then(() => this.fillDevices(batch)) : null;
      if (ready) this.ready = ready.catch(() => {});
      (ready ? ready.then(() => this.writeBatch(batch)) : this.writeBatch(batch)).then(() => {
        this.written += batch.length;
        this.batches++;
      }, (e: Error) => {
        this.failedBatches++;
        this.droppedUnwritten += batch.length;
        // One report per minute at most: a full disk would otherwise log ten times a second.
        const now = Date.now();
        if (now - this.lastErrorAt > 60_000) { this.lastErrorAt = now; this.bopts.onError?.(e); }
      }).finally(() => {
        this.inflight--;
        if (this.size >= this.batchMax || (this.closing && this.size > 0)) this.flush();
        if (this.size === 0 && this.inflight === 0) { const w = this.idleWaiters; this.idleWaiters = []; for (const f of w) f(); }
      });
    }
  }

  /**
   * The first query from a new address (an IPv6 privacy address) usually arrives before the neighbour
   * table has been re-read; by the time its batch is written, that read has finished (bounded wait).
   */
  private async fillDevices(batch: QueryRecord[]): Promise<void> {
    const d = this.bopts.devices!;
    if (!batch.some((r) => !r.device?.mac)) return;
    await d.settle?.(1000);
    for (const r of batch) {
      if (r.device?.mac || r.kind === 'bypass') continue;
      const info = d.lookup(r.client);
      if (info.name !== undefined || info.mac !== undefined) r.device = info;
    }
  }

  /** Resolves when everything appended so far has been written (or dropped). */
  drain(): Promise<void> {
    if (this.size === 0 && this.inflight === 0) return Promise.resolve();
    const p = new Promise<void>((r) => this.idleWaiters.push(r));
    this.flush();
    return p;
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null; }
    this.listeners.clear();
    await this.drain();
    await this.closeBackend();
  }

  protected abstract writeBatch(records: QueryRecord[]): Promise<void>;
  protected abstract closeBackend(): Promise<void>;
  abstract search(q: SearchQuery): Promise<SearchResult>;
  abstract stats(q: StatsQuery): Promise<StatsResult>;
  abstract clients(): Promise<ClientEntry[]>;
}
