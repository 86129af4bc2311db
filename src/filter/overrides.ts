// Runtime policy set through the HTTP API: block/allow rules, pausing, and device → group assignments.
// The filter stage consults this layer before the lists. Changes take effect on the next query (the
// lists' engine is not rebuilt), and are kept in small JSON files under stateDir, written atomically
// (tmp + rename), so they survive restarts.
//
// Precedence: an allow rule beats the lists' blocks (and CNAME inspection); a block rule beats
// everything else (lists' allows, local records, forward zones) but an allow rule. A rule for a name
// covers the name and all its subdomains. A pause turns every block off (lists' and rules'), for
// everyone or one group; local records and forward zones still apply.
//
// Hot path: the filter stage reads one field, `hot`, per query. It is 0 unless some rule, pause or
// assignment exists; only then does a query pay for the suffix walk and the pause check.
import fs from 'node:fs';
import path from 'node:path';
import type { FilterEngine } from './engine.js';
import type { BlockDecision } from './types.js';
import { BlockTemplates, optRR } from './wire.js';
import { ipToBytes as ipBytes, isV4Mapped, v6Key } from './net.js';

export type RuleAction = 'block' | 'allow';

export interface OverrideRule {
  id: string;
  action: RuleAction;
  /** Lower-case, no trailing dot; covers its subdomains. */
  name: string;
  /** Group the rule applies to; absent = every client. */
  group?: string;
  createdAt: number;
  createdBy: string;
}

export interface PauseEntry {
  /** null = everyone */
  group: string | null;
  /** ms epoch when blocking resumes by itself; null = until resumed */
  until: number | null;
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => { const t = setTimeout(fn, Math.min(ms, 2 ** 31 - 1)); t.unref(); return t; },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface OverridesOptions {
  /** Where rules.json, pause.json and client-groups.json live; without it nothing is persisted. */
  stateDir?: string;
  clock?: Clock;
  /** Addresses currently known for a device id (`mac:..`, `name:..`); `ip:<addr>` ids need none. */
  addressesOf?: (deviceId: string) => string[];
  /** Called after a rule change with the rule's name (the server flushes that name from the cache). */
  onRuleChange?: (name: string) => void;
}

/** Why a name is not acceptable as a rule target, or null. */
export function invalidRuleName(name: string): string | null {
  if (name.length === 0) return 'name is empty';
  if (name.length > 253) return 'name is longer than 253 characters';
  const labels = name.split('.');
  for (const l of labels) {
    if (l.length === 0) return 'name has an empty label';
    if (l.length > 63) return 'name has a label longer than 63 characters';
    if (!/^[a-z0-9_-]+$/.test(l)) return `label "${l}" may hold only letters, digits, "-" and "_" (a rule covers subdomains by itself: no wildcards)`;
  }
  return null;
}

/** Lower-case, no trailing dot: the form the filter stage hands us. */
export function normalizeRuleName(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, '');
}

interface CompiledRule { readonly rule: OverrideRule; readonly group: string | null }

/** What the overrides say about one query: pass to the lists, allow over them, or block. */
export const enum Verdict { None = 0, Allow = 1, Block = 2 }

export class RuntimeOverrides {
  /** Non-zero while any rule, pause or assignment exists: the filter stage's single check per query. */
  hot = 0;
  private rules: OverrideRule[] = [];
  private nextId = 1;
  private byName = new Map<string, CompiledRule[]>();
  private pauseAll: PauseEntry | null = null;
  private readonly pauseGroups = new Map<string, PauseEntry>();
  private pauseTimer: unknown = null;
  /** device id → group name */
  private assignments = new Map<string, string>();
  private assignedFor: FilterEngine | null = null;
  private assignedV4 = new Map<number, number>();
  private assignedV6 = new Map<string, number>();
  private assignRefresh: unknown = null;
  /** The rule that decided the last Verdict (valid until the next call). */
  lastRule: OverrideRule | null = null;
  private readonly clock: Clock;
  private readonly templates = new WeakMap<FilterEngine, BlockTemplates>();
  private readonly decisions = new WeakMap<FilterEngine, BlockDecision[]>();
  /** Queries blocked and allowed by rules, and blocks skipped by a pause (for metrics). */
  blockedByRule = 0;
  allowedByRule = 0;
  pausedSkips = 0;

  constructor(private readonly opts: OverridesOptions = {}) {
    this.clock = opts.clock ?? realClock;
  }

  // ------------------------------------------------------------ persistence

  /** Read the state files; a missing file is an empty state, a corrupt one an error naming the file. */
  load(): void {
    const dir = this.opts.stateDir;
    if (!dir) return;
    const rules = readJson(path.join(dir, 'rules.json')) as { nextId?: number; rules?: OverrideRule[] } | null;
    if (rules) {
      this.rules = (rules.rules ?? []).filter((r) => r && (r.action === 'block' || r.action === 'allow') && typeof r.name === 'string' && invalidRuleName(r.name) === null);
      this.nextId = Math.max(rules.nextId ?? 1, ...this.rules.map((r) => Number(r.id) + 1).filter(Number.isFinite), 1);
    }
    const pause = readJson(path.join(dir, 'pause.json')) as { entries?: PauseEntry[] } | null;
    const now = this.clock.now();
    for (const e of pause?.entries ?? []) {
      if (e.until !== null && e.until <= now) continue;
      if (e.group === null) this.pauseAll = e; else this.pauseGroups.set(e.group, e);
    }
    const groups = readJson(path.join(dir, 'client-groups.json')) as { assignments?: Record<string, string> } | null;
    this.assignments = new Map(Object.entries(groups?.assignments ?? {}));
    this.compileRules();
    this.schedulePauseEnd();
    this.update();
  }

  private save(file: 'rules.json' | 'pause.json' | 'client-groups.json', body: unknown): void {
    if (this.opts.stateDir) writeJsonAtomic(path.join(this.opts.stateDir, file), body);
  }

  // ------------------------------------------------------------ rules

  list(): OverrideRule[] { return this.rules.slice(); }

  /** Adds a rule (or returns the identical one already there). The name must be normalised and valid. */
  add(action: RuleAction, name: string, group: string | undefined, by: string): { rule: OverrideRule; created: boolean } {
    const same = this.rules.find((r) => r.action === action && r.name === name && r.group === group);
    if (same) return { rule: same, created: false };
    const rule: OverrideRule = { id: String(this.nextId), action, name, ...(group !== undefined ? { group } : {}), createdAt: this.clock.now(), createdBy: by };
    const next = [...this.rules, rule];
    // Persist first: a rule that could not be written must not be in force, or it would vanish on restart.
    this.save('rules.json', { nextId: this.nextId + 1, rules: next });
    this.nextId++;
    this.rules = next;
    this.compileRules();
    this.update();
    this.opts.onRuleChange?.(name);
    return { rule, created: true };
  }

  remove(id: string): OverrideRule | null {
    const rule = this.rules.find((r) => r.id === id);
    if (!rule) return null;
    const next = this.rules.filter((r) => r !== rule);
    this.save('rules.json', { nextId: this.nextId, rules: next });
    this.rules = next;
    this.compileRules();
    this.update();
    this.opts.onRuleChange?.(rule.name);
    return rule;
  }

  private compileRules(): void {
    const m = new Map<string, CompiledRule[]>();
    for (const r of this.rules) {
      let l = m.get(r.name);
      if (!l) m.set(r.name, l = []);
      l.push({ rule: r, group: r.group ?? null });
    }
    this.byName = m;
  }

  /**
   * The rules' verdict for a name (lower-case, no trailing dot) asked by a client of `group`. Any
   * matching allow wins over any matching block, whatever their depth (like an AdBlock exception).
   */
  verdict(name: string, group: string): Verdict {
    if (this.byName.size === 0) return Verdict.None;
    let block: OverrideRule | null = null;
    let i = 0;
    for (;;) {
      const l = this.byName.get(i === 0 ? name : name.slice(i));
      if (l !== undefined) {
        for (let j = 0; j < l.length; j++) {
          const c = l[j]!;
          if (c.group !== null && c.group !== group) continue;
          if (c.rule.action === 'allow') { this.lastRule = c.rule; return Verdict.Allow; }
          block ??= c.rule;
        }
      }
      const dot = name.indexOf('.', i);
      if (dot < 0) break;
      i = dot + 1;
    }
    this.lastRule = block;
    return block === null ? Verdict.None : Verdict.Block;
  }

  /** A block answer shaped by the engine's templates (the group's block mode, its TTL), with EDE 15. */
  blockDecision(eng: FilterEngine, group: number, name: string): BlockDecision {
    let ds = this.decisions.get(eng);
    if (!ds) this.decisions.set(eng, ds = []);
    let d = ds[group];
    if (d === undefined) {
      d = { kind: 'block', mode: eng.groups[group]?.mode ?? 'nxdomain', ede: 15, list: 'runtime', rule: '', name: '', viaCname: false, src: 0, templates: this.templatesFor(eng) };
      ds[group] = d;
    }
    // The answer bytes depend on mode and templates alone; name and rule only describe it.
    return name === d.name ? d : { ...d, name };
  }

  private templatesFor(eng: FilterEngine): BlockTemplates {
    let t = this.templates.get(eng);
    if (!t) {
      // The engine's templates, with an EDE EXTRA-TEXT naming this layer rather than a list.
      const base = eng.templates;
      const opts: (Uint8Array | undefined)[] = [];
      t = Object.create(base, {
        opt: { value: (_src: number, ede: number, doBit: boolean) => (opts[(ede === 17 ? 2 : 0) + (doBit ? 1 : 0)] ??= optRR(doBit, ede, 'runtime rule')) },
      }) as BlockTemplates;
      this.templates.set(eng, t);
    }
    return t;
  }

  // ------------------------------------------------------------ pause

  /** Pause blocking for everyone (group null) or one group; seconds null = until resumed. */
  pause(group: string | null, seconds: number | null): PauseEntry {
    const e: PauseEntry = { group, until: seconds === null ? null : this.clock.now() + seconds * 1000 };
    if (group === null) this.pauseAll = e; else this.pauseGroups.set(group, e);
    this.savePause();
    this.schedulePauseEnd();
    this.update();
    return e;
  }

  /** Resume one group, everyone (null) or, with `all`, every pause. Returns whether anything was paused. */
  resume(group: string | null, all = false): boolean {
    let had = false;
    if (all || group === null) { had = this.pauseAll !== null; this.pauseAll = null; }
    if (all) { had ||= this.pauseGroups.size > 0; this.pauseGroups.clear(); } else if (group !== null) had = this.pauseGroups.delete(group);
    this.savePause();
    this.schedulePauseEnd();
    this.update();
    return had;
  }

  /** The pauses in force (expired ones are dropped on the way). */
  pauses(): PauseEntry[] {
    this.expirePauses();
    const out: PauseEntry[] = [];
    if (this.pauseAll) out.push({ ...this.pauseAll });
    for (const e of this.pauseGroups.values()) out.push({ ...e });
    return out;
  }

  /** Whether blocking is paused for a client of `group`. Checks the clock, so a late timer cannot extend a pause. */
  paused(group: string): boolean {
    const now = this.clock.now();
    const a = this.pauseAll;
    if (a !== null && (a.until === null || a.until > now)) return true;
    if (this.pauseGroups.size === 0) return false;
    const g = this.pauseGroups.get(group);
    return g !== undefined && (g.until === null || g.until > now);
  }

  private expirePauses(): boolean {
    const now = this.clock.now();
    let changed = false;
    if (this.pauseAll && this.pauseAll.until !== null && this.pauseAll.until <= now) { this.pauseAll = null; changed = true; }
    for (const [g, e] of this.pauseGroups) if (e.until !== null && e.until <= now) { this.pauseGroups.delete(g); changed = true; }
    return changed;
  }

  private savePause(): void {
    const entries: PauseEntry[] = [];
    if (this.pauseAll) entries.push(this.pauseAll);
    entries.push(...this.pauseGroups.values());
    this.save('pause.json', { entries });
  }

  /** One timer for the earliest pause end: it drops expired pauses and clears `hot` when nothing is left. */
  private schedulePauseEnd(): void {
    if (this.pauseTimer !== null) this.clock.clearTimeout(this.pauseTimer);
    this.pauseTimer = null;
    let next = Infinity;
    if (this.pauseAll?.until != null) next = this.pauseAll.until;
    for (const e of this.pauseGroups.values()) if (e.until !== null && e.until < next) next = e.until;
    if (next === Infinity) return;
    this.pauseTimer = this.clock.setTimeout(() => { this.tick(); }, Math.max(0, next - this.clock.now()) + 5);
  }

  /** Expire due pauses now (the timer calls it; fake clocks in tests call it directly). */
  tick(): void {
    this.pauseTimer = null;
    if (this.expirePauses()) { try { this.savePause(); } catch { /* the in-memory state is what counts; the file is rewritten on the next change */ } }
    this.schedulePauseEnd();
    this.update();
  }

  // ------------------------------------------------------------ device → group assignments

  assignmentsList(): Record<string, string> { return Object.fromEntries(this.assignments); }
  assignmentOf(deviceId: string): string | undefined { return this.assignments.get(deviceId); }

  /** Put a device into a group (null removes the assignment, leaving the config's groups in charge). */
  assign(deviceId: string, group: string | null): void {
    const next = new Map(this.assignments);
    if (group === null) next.delete(deviceId); else next.set(deviceId, group);
    this.save('client-groups.json', { assignments: Object.fromEntries(next) });
    this.assignments = next;
    this.assignedFor = null;
    this.update();
  }

  /**
   * The assigned group index for the query's client, or -1. Addresses come from `ip:` ids and, for
   * MAC-keyed devices, from the device resolver (re-read every 10 s, so DHCP changes follow).
   */
  assignedGroup(eng: FilterEngine, family: 4 | 6, addr: Uint8Array, off: number): number {
    if (this.assignedFor !== eng) this.compileAssignments(eng);
    if (family === 6 && isV4Mapped(addr, off)) { family = 4; off += 12; }
    if (family === 4) {
      if (this.assignedV4.size === 0) return -1;
      return this.assignedV4.get(((addr[off]! << 24) | (addr[off + 1]! << 16) | (addr[off + 2]! << 8) | addr[off + 3]!) >>> 0) ?? -1;
    }
    if (this.assignedV6.size === 0) return -1;
    return this.assignedV6.get(v6Key(addr, off)) ?? -1;
  }

  assignedGroupOfIp(eng: FilterEngine, ip: string): number {
    const b = ipBytes(ip);
    return b ? this.assignedGroup(eng, b.family, b.bytes, 0) : -1;
  }

  private compileAssignments(eng: FilterEngine): void {
    const v4 = new Map<number, number>();
    const v6 = new Map<string, number>();
    for (const [id, groupName] of this.assignments) {
      const gi = eng.groups.findIndex((g, i) => i > 0 && g.name === groupName);
      const index = groupName === 'default' ? 0 : gi;
      if (index < 0) continue;
      const addrs = id.startsWith('ip:') ? [id.slice(3)] : (this.opts.addressesOf?.(id) ?? []);
      for (const a of addrs) {
        const b = ipBytes(a);
        if (!b) continue;
        if (b.family === 4) v4.set(((b.bytes[0]! << 24) | (b.bytes[1]! << 16) | (b.bytes[2]! << 8) | b.bytes[3]!) >>> 0, index);
        else v6.set(v6Key(b.bytes, 0), index);
      }
    }
    this.assignedV4 = v4;
    this.assignedV6 = v6;
    this.assignedFor = eng;
  }

  get hasAssignments(): boolean { return this.assignments.size > 0; }

  // ------------------------------------------------------------ state

  private update(): void {
    this.expirePauses();
    this.hot = (this.rules.length > 0 ? 1 : 0) | (this.pauseAll !== null || this.pauseGroups.size > 0 ? 2 : 0) | (this.assignments.size > 0 ? 4 : 0);
    if (this.assignments.size > 0 && this.assignRefresh === null && this.opts.addressesOf) {
      const refresh = () => { this.assignedFor = null; this.assignRefresh = this.clock.setTimeout(refresh, 10_000); };
      this.assignRefresh = this.clock.setTimeout(refresh, 10_000);
    } else if (this.assignments.size === 0 && this.assignRefresh !== null) {
      this.clock.clearTimeout(this.assignRefresh);
      this.assignRefresh = null;
    }
  }

  close(): void {
    if (this.pauseTimer !== null) this.clock.clearTimeout(this.pauseTimer);
    if (this.assignRefresh !== null) this.clock.clearTimeout(this.assignRefresh);
    this.pauseTimer = null;
    this.assignRefresh = null;
  }
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file} is not valid JSON (${(e as Error).message}); fix or remove it`);
  }
}

/** Write then rename: a crash leaves the old file or the new one, never half of one. */
export function writeJsonAtomic(file: string, body: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(body, null, 1) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}
