// One deadline mechanism for every transport and the forward stage. Each owner used to run its own
// setInterval sweep (every 10 or 25 ms) for its whole life, so an idle process woke ~135 times a second.
// Here a single setTimeout is armed only while something is due: at the earliest due time, but never
// sooner than `resolutionMs` after the previous run, so a busy owner sweeps at most 1000/resolutionMs
// times a second (as before) and an idle one not at all.
//
// Items are kept in insertion order (a Set); a run visits the due ones and finds the next due time in
// the same pass. The owner's visit() may remove the item or move its due time.

/** setTimeout/clearTimeout, injectable so tests can run the sweeper on a fake clock. */
export interface TimerApi {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: TimerApi = {
  setTimeout(fn, ms) { const h = setTimeout(fn, ms); h.unref(); return h; },
  clearTimeout(h) { clearTimeout(h as NodeJS.Timeout); },
};

export interface Due { due: number }

export interface DeadlineOptions {
  /** Least time between two runs while busy. */
  resolutionMs?: number;
  now?: () => number;
  timers?: TimerApi;
}

export class DeadlineSweeper<T extends Due> {
  private readonly items = new Set<T>();
  private handle: unknown = null;
  /** When the armed timer fires (Infinity: none armed). */
  private armedAt = Infinity;
  private lastRun = -Infinity;
  private running = false;
  private readonly resolutionMs: number;
  private readonly now: () => number;
  private readonly timers: TimerApi;
  private readonly fire = (): void => { this.handle = null; this.armedAt = Infinity; this.run(); };
  /** Timer callbacks so far (tests and the idle benchmark's reasoning). */
  runs = 0;

  constructor(private readonly visit: (item: T, now: number) => void, opts: DeadlineOptions = {}) {
    this.resolutionMs = opts.resolutionMs ?? 10;
    this.now = opts.now ?? (() => performance.now());
    this.timers = opts.timers ?? realTimers;
  }

  get size(): number { return this.items.size; }

  /** Watches `item` until delete(); it is visited once now >= item.due. */
  add(item: T): void {
    this.items.add(item);
    if (!this.running && item.due < this.armedAt) this.arm(item.due);
  }

  /** `item.due` moved earlier than before: make sure the timer is early enough. */
  moved(item: T): void {
    if (!this.running && this.items.has(item) && item.due < this.armedAt) this.arm(item.due);
  }

  delete(item: T): void {
    if (!this.items.delete(item) || this.running || this.items.size > 0) return;
    this.disarm();
  }

  /** Whether a timer is armed (tests: nothing armed when nothing is in flight). */
  get armed(): boolean { return this.handle !== null; }

  /** Visits every due item now; public so a fake-clock test can drive it. */
  run(): void {
    if (this.running) return;
    this.running = true;
    this.runs++;
    const now = this.now();
    this.lastRun = now;
    let next = Infinity;
    try {
      for (const item of this.items) {
        if (item.due <= now) this.visit(item, now);
        // visit() may have removed it or moved its due time.
        if (this.items.has(item) && item.due < next) next = item.due;
      }
    } finally {
      this.running = false;
    }
    this.disarm();
    if (this.items.size > 0) this.arm(next);
  }

  private arm(at: number): void {
    const earliest = this.lastRun + this.resolutionMs;
    if (at < earliest) at = earliest;
    if (at >= this.armedAt || at === Infinity) return;
    if (this.handle !== null) this.timers.clearTimeout(this.handle);
    this.armedAt = at;
    // +1: libuv's millisecond clock may fire a fraction of a millisecond early by performance.now().
    this.handle = this.timers.setTimeout(this.fire, Math.max(0, Math.ceil(at - this.now())) + 1);
  }

  private disarm(): void {
    if (this.handle !== null) this.timers.clearTimeout(this.handle);
    this.handle = null;
    this.armedAt = Infinity;
  }

  /** Forgets every item and the timer. */
  clear(): void {
    this.items.clear();
    this.disarm();
  }

  /** The watched items (a copy; for close()). */
  values(): T[] { return [...this.items]; }
}
