// Lists added or switched on/off through the API, kept in <stateDir>/lists.json and laid over the
// config's filter.lists whenever the filter is (re)built: at start, on SIGHUP, and on each API change.
import fs from 'node:fs';
import path from 'node:path';
import type { FilterConfig, ListConfig } from '../filter/config.js';
import { writeJsonAtomic } from '../filter/overrides.js';

export interface RuntimeListsState {
  /** Lists added through the API. */
  added: ListConfig[];
  /** enabled/disabled set through the API, by list name (config lists and added ones). */
  enabled: Record<string, boolean>;
}

export const LIST_NAME_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

export class RuntimeLists {
  private state: RuntimeListsState = { added: [], enabled: {} };
  private readonly file: string;

  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'lists.json');
  }

  load(): void {
    let text: string;
    try { text = fs.readFileSync(this.file, 'utf8'); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new Error(`cannot read ${this.file}: ${(e as Error).message}`);
    }
    let raw: Partial<RuntimeListsState>;
    try { raw = JSON.parse(text) as Partial<RuntimeListsState>; } catch (e) {
      throw new Error(`${this.file} is not valid JSON (${(e as Error).message}); fix or remove it`);
    }
    this.state = {
      added: (raw.added ?? []).filter((l) => l && typeof l.name === 'string' && LIST_NAME_RE.test(l.name) && (typeof l.url === 'string') !== (typeof l.path === 'string')),
      enabled: Object.fromEntries(Object.entries(raw.enabled ?? {}).filter(([, v]) => typeof v === 'boolean')),
    };
  }

  get snapshot(): RuntimeListsState { return { added: this.state.added.map((l) => ({ ...l })), enabled: { ...this.state.enabled } }; }

  isAdded(name: string): boolean { return this.state.added.some((l) => l.name === name); }

  /** The filter config with the API's lists and switches laid over the config file's. */
  merge(base: FilterConfig | null, state: RuntimeListsState = this.state): FilterConfig {
    const b = base ?? {};
    const lists = [...(b.filter?.lists ?? []), ...state.added].map((l) =>
      (state.enabled[l.name] === undefined ? l : { ...l, enabled: state.enabled[l.name] }));
    return { ...b, filter: { ...(b.filter ?? {}), lists } };
  }

  /** Every list, disabled ones included, with where it came from. */
  all(base: FilterConfig | null): Array<ListConfig & { origin: 'config' | 'api' }> {
    const merged = this.merge(base).filter!.lists!;
    return merged.map((l) => ({ ...l, origin: this.isAdded(l.name) ? 'api' as const : 'config' as const }));
  }

  /** The state a change would produce; commit() it once the filter has accepted it. */
  withAdded(l: ListConfig): RuntimeListsState {
    const s = this.snapshot;
    s.added.push(l);
    return s;
  }

  withEnabled(name: string, enabled: boolean): RuntimeListsState {
    const s = this.snapshot;
    s.enabled[name] = enabled;
    return s;
  }

  withRemoved(name: string): RuntimeListsState {
    const s = this.snapshot;
    s.added = s.added.filter((l) => l.name !== name);
    delete s.enabled[name];
    return s;
  }

  commit(s: RuntimeListsState): void {
    writeJsonAtomic(this.file, s);
    this.state = s;
  }
}
