// Worker-thread side of load-isolated.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { loadConfigFile } from './load.js';
import { ConfigError } from '../errors.js';
import type { LoadReply } from './load-isolated.js';

let reply: LoadReply;
try {
  reply = { ok: true, config: loadConfigFile(workerData as string) };
} catch (e) {
  reply = e instanceof ConfigError
    ? { ok: false, configError: true, message: e.message, file: e.file, line: e.line, keyPath: e.keyPath }
    : { ok: false, configError: false, message: (e as Error).message ?? String(e) };
}
parentPort!.postMessage(reply);
