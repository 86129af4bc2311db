// How a subsystem takes part in configuration: the JSON-Schema fragment of the top-level keys it owns
// and a semantic check for what a schema cannot say (addresses that parse, files that exist, names
// that refer to something). The composition root (src/config-parts.ts) gathers the parts; `check`,
// `run` and SIGHUP all load through the same gathered list, so a config `check` accepts is one `run`
// accepts.
import type { Config } from './types.js';

export type KeyPath = readonly (string | number)[];

/** Report one problem at a key path (e.g. ['groups', 0, 'clients', 2]); checking goes on after it. */
export type ConfigReport = (path: KeyPath, message: string) => void;

export interface ConfigPart {
  /** For messages and tests. */
  name: string;
  /** Schema fragments keyed by the top-level key they describe. */
  schema?: Record<string, object>;
  /** Runs after schema validation and defaults; reports every problem it finds. Must not throw. */
  check?: (cfg: Config, report: ConfigReport) => void;
}

/** Runs `fn`; a thrown error becomes a report at `path` with the error's own message. */
export function reportThrown(report: ConfigReport, path: KeyPath, fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    report(path, (e as Error).message ?? String(e));
    return false;
  }
}
