// Loading the config for a long-running server, on a worker thread. yaml, ajv and the validator ajv
// generates take ~10 MB of resident memory (heap, compiled code and malloc'd parser state) that a
// server needs for a few hundred milliseconds (mostly ajv compiling the schema) at start and on SIGHUP.
// In a worker they go away with its isolate; only the plain, validated config comes back (a structured
// clone). `check`, `network` and `cache flush` are short-lived and load in process.
import { Worker } from 'node:worker_threads';
import { ConfigError } from '../errors.js';
import type { Config } from './types.js';

/** What the worker posts back. */
export type LoadReply =
  | { ok: true; config: Config }
  | { ok: false; configError: boolean; message: string; file?: string; line?: number; keyPath?: string };

export function loadConfigIsolated(file: string): Promise<Config> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const w = new Worker(new URL('./load-worker.js', import.meta.url), { workerData: file, stdout: false, stderr: false });
    w.once('message', (m: LoadReply) => {
      settled = true;
      if (m.ok) resolve(m.config);
      else if (m.configError) reject(new ConfigError(m.message, m.file, m.line, m.keyPath));
      else reject(new Error(m.message));
    });
    w.once('error', (e) => { if (!settled) { settled = true; reject(e); } });
    w.once('exit', (code) => {
      if (!settled) { settled = true; reject(new Error(`config loader exited with code ${code} before replying`)); }
    });
  });
}
