// Placeholder glue between the CLI and src/network (finished when the network module lands).
import type { Config } from '../config/types.js';
import type { LogFn } from '../server.js';

export async function upForRun(_cfg: Config, log: LogFn): Promise<void> { log('warn', 'network management not available in this build'); }
export async function downForExit(_cfg: Config, _log: LogFn): Promise<void> { /* nothing installed */ }
export async function networkCommand(_sub: string | undefined, _cfg: Config): Promise<number> {
  process.stderr.write('network commands are not available in this build\n');
  return 2;
}
