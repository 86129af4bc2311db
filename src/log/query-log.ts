/**
 * Query log: the audit trail. One JSON object per line, one line per answered query.
 *
 * Design
 * - `write()` is called on the DNS hot path. It filters, anonymises and serialises the entry,
 *   then pushes the line onto a bounded in-memory queue (`bufferEntries`, default 10000) and
 *   returns. It never awaits, never blocks and never throws.
 * - A single background loop drains the queue in batches (up to ~256 KiB per write) with
 *   `fs.promises` file handles (or asynchronous `fs.write` on fd 1 for `output: stdout`).
 * - Queue full (slow / stalled disk)        -> the new entry is dropped, `stats.dropped++`.
 * - Write error (ENOSPC, EIO, missing dir…) -> `stats.errors++`, the batch in flight and the
 *   queue are dropped (counted in `dropped`), the file is closed, and while in the failed state
 *   every new entry is dropped. After a back-off (1 s doubling to 30 s) the next entry re-opens
 *   the file and tries again.
 *
 * Modes
 * - `off`:    nothing is logged.
 * - `errors`: only entries whose rcode is NOT `NOERROR` or `NXDOMAIN` (i.e. SERVFAIL, REFUSED,
 *             FORMERR, NOTIMP, … and synthetic codes like `TIMEOUT`/`DROPPED` if the caller
 *             uses them).
 * - `all`:    every entry.
 *
 * Rotation (file output only)
 * - `rotate.maxBytes`: before a batch is written, if the current file is non-empty and the batch
 *   would make it exceed `maxBytes`, the file is rotated first (a single batch larger than
 *   `maxBytes` still goes into one file).
 * - `rotate.interval` (`30s`, `15m`, `1h`, `1d`, …): periods are aligned to the UNIX epoch (UTC);
 *   the first batch written after a period boundary rotates the file. No traffic, no rotation.
 * - Naming: `file` is the live file, `file.1` the most recent rotated one, up to `file.<keep>`;
 *   older ones are deleted. `keep` defaults to 5; `keep: 0` discards the old file on rotation.
 * - `reopen()` closes the handle so the next batch re-opens the path (for external logrotate
 *   with `SIGHUP`).
 *
 * Anonymisation applies to `client` only (see anonymize.ts); `server` is the intercepted
 * destination, i.e. a DNS server address, and is kept.
 */
import { promises as fsp, write as fsWrite } from 'node:fs';
import { Anonymizer, type AnonymizeConfig } from './anonymize.js';

export interface QueryLogEntry {
  time: number; // epoch ms
  client: string;
  clientPort: number;
  server: string; // ORIGINAL destination address
  serverPort: number;
  transport: 'udp' | 'tcp' | 'plain' | 'dot' | 'doh';
  qname: string;
  qtype: string;
  rcode: string;
  answers?: string[];
  cache: 'hit' | 'miss' | 'stale' | 'none';
  filter?: { action: string; list?: string; rule?: string; group?: string };
  upstream?: string;
  latencyMs: number;
  /** The client's device (name, MAC) when known; left out when client addresses are anonymised. */
  device?: { name?: string; mac?: string };
}

export interface QueryLogConfig {
  mode: 'off' | 'errors' | 'all';
  output: 'stdout' | string;
  rotate?: { maxBytes?: number; interval?: '1h' | '1d' | string; keep?: number };
  anonymize?: AnonymizeConfig;
  bufferEntries?: number;
}

export interface QueryLogStats {
  written: number;
  dropped: number;
  errors: number;
  rotations: number;
  queued: number;
}

/** Test / embedding hooks that are not part of the user config. */
export interface QueryLogOptions {
  /** clock used for time-based rotation (epoch ms); default Date.now */
  now?: () => number;
  /** called on each write error (e.g. to log it once); must not throw */
  onError?: (err: Error) => void;
  /** The process-wide client-address privacy setting (shared with /stats/top and dnstap, so hashes agree). */
  anonymizer?: Anonymizer;
}

export const DEFAULT_BUFFER_ENTRIES = 10000;
export const DEFAULT_KEEP = 5;
const MAX_BATCH_BYTES = 256 * 1024;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30000;

/** rcodes that `mode: errors` does NOT log */
const NON_ERROR_RCODES = new Set(['NOERROR', 'NXDOMAIN']);

/** Parse `30s`, `15m`, `1h`, `1d`, `2w` (or a bare number of seconds) into ms; null if invalid. */
export function parseInterval(s: string | undefined): number | null {
  if (s === undefined) return null;
  const m = /^\s*(\d+)\s*(ms|s|m|h|d|w)?\s*$/.exec(String(s));
  if (!m) return null;
  const n = Number(m[1]);
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000, w: 604800000 };
  const ms = n * unit[m[2] ?? 's'];
  return ms > 0 ? ms : null;
}

/**
 * Short answer summary for `QueryLogEntry.answers` from dns-packet decoded answers,
 * e.g. `['CNAME x.example', 'A 192.0.2.1']`. Bounded to `max` items.
 */
export function summarizeAnswers(answers: ReadonlyArray<{ type?: string; data?: unknown }> | undefined, max = 16): string[] {
  const out: string[] = [];
  if (!answers) return out;
  for (const a of answers) {
    if (out.length >= max) break;
    if (!a || a.type === 'OPT') continue;
    let d: string;
    const v = a.data;
    if (typeof v === 'string' || typeof v === 'number') d = String(v);
    else if (Buffer.isBuffer(v)) d = `<${v.length}B>`;
    else if (Array.isArray(v)) d = v.map((x) => (Buffer.isBuffer(x) ? x.toString() : String(x))).join(' ');
    else if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (typeof o.exchange === 'string') d = `${o.preference ?? ''} ${o.exchange}`.trim();
      else if (typeof o.target === 'string') d = `${o.priority ?? ''} ${o.target}`.trim();
      else if (typeof o.mname === 'string') d = `${o.mname} ${o.rname ?? ''}`.trim();
      else d = '';
    } else d = '';
    out.push(d ? `${a.type ?? '?'} ${d}` : String(a.type ?? '?'));
  }
  return out;
}

interface Sink {
  write(buf: Buffer, now: number): Promise<void>;
  close(): Promise<void>;
  reopen(): void;
}

class StdoutSink implements Sink {
  write(buf: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      let off = 0;
      const step = (): void => {
        fsWrite(1, buf, off, buf.length - off, null, (err, n) => {
          if (err) {
            // fd 1 may be a non-blocking pipe: back off briefly instead of failing
            if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
              setTimeout(step, 5);
              return;
            }
            reject(err);
            return;
          }
          off += n;
          if (off < buf.length) step();
          else resolve();
        });
      };
      step();
    });
  }
  async close(): Promise<void> {}
  reopen(): void {}
}

class FileSink implements Sink {
  private fh: fsp.FileHandle | null = null;
  private size = 0;
  private periodStart = -1;
  private reopenRequested = false;

  constructor(
    private readonly path: string,
    private readonly maxBytes: number | null,
    private readonly intervalMs: number | null,
    private readonly keep: number,
    private readonly onRotate: () => void,
  ) {}

  private period(now: number): number {
    return this.intervalMs ? Math.floor(now / this.intervalMs) : 0;
  }

  private async open(now: number): Promise<void> {
    const fh = await fsp.open(this.path, 'a', 0o640);
    try {
      const st = await fh.stat();
      this.size = st.isFile() ? st.size : 0;
      if (this.intervalMs && this.periodStart < 0) {
        // an existing file written in an earlier period is rotated on first write
        this.periodStart = st.isFile() && st.size > 0 ? this.period(st.mtimeMs) : this.period(now);
      }
    } catch (e) {
      await fh.close().catch(() => {});
      throw e;
    }
    this.fh = fh;
  }

  private async closeHandle(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    if (fh) await fh.close().catch(() => {});
  }

  private async rotate(now: number): Promise<void> {
    await this.closeHandle();
    if (this.keep <= 0) {
      await fsp.rm(this.path, { force: true });
    } else {
      await fsp.rm(`${this.path}.${this.keep}`, { force: true });
      for (let i = this.keep - 1; i >= 1; i--) {
        await fsp.rename(`${this.path}.${i}`, `${this.path}.${i + 1}`).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'ENOENT') throw e;
        });
      }
      await fsp.rename(this.path, `${this.path}.1`).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
    }
    this.periodStart = this.period(now);
    this.size = 0;
    this.onRotate();
    await this.open(now);
  }

  async write(buf: Buffer, now: number): Promise<void> {
    if (this.reopenRequested) {
      this.reopenRequested = false;
      await this.closeHandle();
    }
    if (!this.fh) await this.open(now);
    if (this.size > 0) {
      const timeDue = this.intervalMs !== null && this.period(now) !== this.periodStart;
      const sizeDue = this.maxBytes !== null && this.size + buf.length > this.maxBytes;
      if (timeDue || sizeDue) await this.rotate(now);
    } else if (this.intervalMs !== null) {
      this.periodStart = this.period(now);
    }
    let off = 0;
    while (off < buf.length) {
      const { bytesWritten } = await this.fh!.write(buf, off, buf.length - off);
      if (bytesWritten <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
      off += bytesWritten;
      this.size += bytesWritten;
    }
  }

  async close(): Promise<void> {
    await this.closeHandle();
  }

  /** on error: drop the handle so the next attempt re-opens */
  async reset(): Promise<void> {
    await this.closeHandle();
  }

  reopen(): void {
    this.reopenRequested = true;
  }
}

export class QueryLog {
  private readonly mode: QueryLogConfig['mode'];
  private readonly bound: number;
  private readonly anon: Anonymizer;
  private readonly sink: Sink | null;
  private readonly now: () => number;
  private readonly onError?: (err: Error) => void;
  private queue: string[] = [];
  private queueHead = 0;
  private running = false;
  private scheduled = false;
  private closed = false;
  private failedUntil = 0;
  private retryMs = RETRY_MIN_MS;
  private waiters: Array<() => void> = [];
  private readonly s = { written: 0, dropped: 0, errors: 0, rotations: 0 };

  constructor(cfg: QueryLogConfig, opts: QueryLogOptions = {}) {
    this.mode = cfg?.mode ?? 'all';
    this.bound = Math.max(1, Math.trunc(cfg?.bufferEntries ?? DEFAULT_BUFFER_ENTRIES) || DEFAULT_BUFFER_ENTRIES);
    this.anon = opts.anonymizer ?? new Anonymizer(cfg?.anonymize);
    this.now = opts.now ?? Date.now;
    this.onError = opts.onError;
    const output = cfg?.output ?? 'stdout';
    if (this.mode === 'off') this.sink = null;
    else if (output === 'stdout' || output === '-') this.sink = new StdoutSink();
    else {
      const r = cfg.rotate ?? {};
      const maxBytes = typeof r.maxBytes === 'number' && r.maxBytes > 0 ? r.maxBytes : null;
      this.sink = new FileSink(output, maxBytes, parseInterval(r.interval), Math.max(0, Math.trunc(r.keep ?? DEFAULT_KEEP)), () => {
        this.s.rotations++;
      });
    }
  }

  get stats(): QueryLogStats {
    return { ...this.s, queued: this.queue.length - this.queueHead };
  }

  /** Would an entry with this rcode be logged? Lets callers skip building entries. */
  wants(rcode: string): boolean {
    if (this.mode === 'off') return false;
    if (this.mode === 'errors') return !NON_ERROR_RCODES.has(rcode);
    return true;
  }

  write(e: QueryLogEntry): void {
    try {
      if (this.closed || !this.sink || !this.wants(e.rcode)) return;
      if (this.failedUntil > 0 && this.now() < this.failedUntil) {
        this.s.dropped++;
        return;
      }
      if (this.queue.length - this.queueHead >= this.bound) {
        this.s.dropped++;
        return;
      }
      const line = this.serialize(e);
      this.queue.push(line);
      this.schedule();
    } catch {
      this.s.dropped++;
    }
  }

  private serialize(e: QueryLogEntry): string {
    const o: Record<string, unknown> = {
      time: e.time,
      client: this.anon.apply(String(e.client)),
      clientPort: e.clientPort,
      server: e.server,
      serverPort: e.serverPort,
      transport: e.transport,
      qname: e.qname,
      qtype: e.qtype,
      rcode: e.rcode,
    };
    if (e.answers !== undefined) o.answers = e.answers;
    o.cache = e.cache;
    if (e.filter !== undefined) o.filter = e.filter;
    if (e.upstream !== undefined) o.upstream = e.upstream;
    o.latencyMs = e.latencyMs;
    if (e.device !== undefined && this.anon.mode === 'none') o.device = e.device;
    return JSON.stringify(o) + '\n';
  }

  private schedule(): void {
    if (this.running || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.drain();
    });
  }

  private takeBatch(): { buf: Buffer; count: number } {
    let bytes = 0;
    let i = this.queueHead;
    const end = this.queue.length;
    const parts: string[] = [];
    while (i < end && (parts.length === 0 || bytes < MAX_BATCH_BYTES)) {
      const l = this.queue[i++];
      parts.push(l);
      bytes += l.length;
    }
    this.queueHead = i;
    if (this.queueHead === this.queue.length) {
      this.queue = [];
      this.queueHead = 0;
    } else if (this.queueHead > 4096 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
    return { buf: Buffer.from(parts.join(''), 'utf8'), count: parts.length };
  }

  private async drain(): Promise<void> {
    if (this.running || !this.sink) return;
    this.running = true;
    try {
      while (this.queue.length - this.queueHead > 0) {
        const { buf, count } = this.takeBatch();
        try {
          await this.sink.write(buf, this.now());
          this.s.written += count;
          this.failedUntil = 0;
          this.retryMs = RETRY_MIN_MS;
        } catch (err) {
          this.s.errors++;
          const pending = this.queue.length - this.queueHead;
          this.s.dropped += count + pending;
          this.queue = [];
          this.queueHead = 0;
          this.failedUntil = this.now() + this.retryMs;
          this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
          if (this.sink instanceof FileSink) await this.sink.reset();
          try {
            this.onError?.(err as Error);
          } catch {
            /* ignore */
          }
        }
      }
    } finally {
      this.running = false;
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    }
  }

  /** Resolves once everything queued so far has been written (or dropped on error). */
  flush(): Promise<void> {
    if (!this.running && this.queue.length - this.queueHead === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      if (!this.running) this.schedule();
    });
  }

  /** Close the current file and re-open the path on the next write (external logrotate). */
  reopen(): void {
    this.sink?.reopen();
  }

  /** Retry immediately after a failure instead of waiting for the back-off (mainly for tests). */
  resetBackoff(): void {
    this.failedUntil = 0;
    this.retryMs = RETRY_MIN_MS;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    await this.sink?.close();
  }
}

const intervalPattern = '^\\s*\\d+\\s*(ms|s|m|h|d|w)?\\s*$';

/** JSON Schema (draft-07, ajv) for the `log:` config key. Defaults are applied with ajv `useDefaults`. */
export const queryLogSchema = {
  $id: 'dns-tproxy/log',
  type: 'object',
  additionalProperties: false,
  properties: {
    mode: { enum: ['off', 'errors', 'all'], default: 'all', description: "'errors' logs only rcodes other than NOERROR/NXDOMAIN" },
    output: { type: 'string', minLength: 1, default: 'stdout', description: "'stdout' or a file path" },
    rotate: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxBytes: { type: 'integer', minimum: 1, description: 'rotate before the file would exceed this size' },
        interval: { type: 'string', pattern: intervalPattern, description: 'rotate every period, e.g. 1h, 1d (UTC, epoch-aligned)' },
        keep: { type: 'integer', minimum: 0, maximum: 1000, default: DEFAULT_KEEP, description: 'rotated files kept: file.1 … file.N' },
      },
    },
    anonymize: {
      type: 'object',
      additionalProperties: false,
      properties: {
        mode: { enum: ['none', 'truncate', 'hash'], default: 'none' },
        v4Prefix: { type: 'integer', minimum: 0, maximum: 32, default: 24 },
        v6Prefix: { type: 'integer', minimum: 0, maximum: 128, default: 56 },
        salt: { type: 'string', description: 'HMAC key for mode hash; random per process if unset' },
      },
    },
    bufferEntries: { type: 'integer', minimum: 1, maximum: 10000000, default: DEFAULT_BUFFER_ENTRIES },
  },
} as const;
