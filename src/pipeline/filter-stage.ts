// Stage 2: policy. It needs only the parsed question and the client, so it runs right after
// validation; blocked and local names never reach the cache or the network, and the client's group
// (which decides the lists that apply) becomes part of the cache key. Conditionally forwarded domains
// leave the chain here for their own upstream (so they are not cached: their answers depend on a
// different resolver than the cache's).
import type { Stage, Next } from './chain.js';
import { isStream, type QueryContext } from './context.js';
import { qnameString } from '../dns/wire.js';
import { syncScratch } from './scratch.js';
import type { FilterManager } from '../filter/manager.js';
import { writeBlockedAnswer, writeLocalAnswer } from '../filter/wire.js';
import type { Decision } from '../filter/types.js';
import { RuntimeOverrides, Verdict, type OverrideRule } from '../filter/overrides.js';

/** Whatever can take a query off the chain for a forward zone (a ForwardStage on its own upstream). */
export interface ZoneForwarder { query(ctx: QueryContext, next: Next): void }

export class FilterStage implements Stage {
  readonly name = 'filter';
  blocked = 0;
  local = 0;
  forwarded = 0;
  /** Set once the manager has loaded its lists (server start), before any listener opens. */
  manager: FilterManager | null = null;
  /** Runtime rules and pauses (the HTTP API); the server swaps in the persistent instance at start. */
  overrides = new RuntimeOverrides();

  constructor(private readonly respond: (ctx: QueryContext) => void,
    private readonly zoneForwarder: (upstream: string) => ZoneForwarder) {}

  query(ctx: QueryContext, next: Next): void {
    const m = this.manager;
    if (m === null) { next(ctx); return; }
    const eng = m.engine;
    ctx.group = groupOf(ctx, eng);
    const q = ctx.q;
    const name = qnameString(ctx.buf, 0, q.qnameEnd);
    // Runtime rules, pauses and device assignments: one field read per query while there are none.
    if (this.overrides.hot !== 0) { this.queryOverridden(ctx, next, eng, name); return; }
    this.apply(ctx, next, eng, eng.decide(name, q.qtype, ctx.group, eng.needsClientIp ? ctx.responder.describe(ctx).client : undefined));
  }

  private apply(ctx: QueryContext, next: Next, eng: FilterManager['engine'], d: Decision | null): void {
    const q = ctx.q;
    if (d === null) { next(ctx); return; }
    if (d.kind === 'forward') {
      this.forwarded++;
      ctx.decision = { kind: 'forward', rule: d.domain, list: d.upstream, group: eng.groupName(ctx.group) };
      this.zoneForwarder(d.upstream).query(ctx, next);
      return;
    }
    const write = d.kind === 'block' ? writeBlockedAnswer : writeLocalAnswer;
    const n = write(ctx.buf, 0, ctx.len, q.questionEnd, q.qtype, q.hasOpt, q.doBit, d, syncScratch, 0);
    if (n < 0) { next(ctx); return; }
    if (d.kind === 'block') this.blocked++; else this.local++;
    ctx.decision = describe(d, eng.groupName(ctx.group));
    ctx.setAnswer(syncScratch, 0, n);
    this.respond(ctx);
  }

  /** The slow path while overrides exist: an assigned group first, then allow/block rules, then pause. */
  private queryOverridden(ctx: QueryContext, next: Next, eng: FilterManager['engine'], name: string): void {
    const ov = this.overrides;
    if (ov.hasAssignments) {
      const g = isStream(ctx.responder.transport)
        ? ov.assignedGroupOfIp(eng, (ctx.conn as { clientIp: string }).clientIp)
        : ov.assignedGroup(eng, ctx.meta[1] === 6 ? 6 : 4, ctx.metaBytes, 32);
      if (g >= 0) ctx.group = g;
    }
    const group = eng.groupName(ctx.group);
    const v = ov.verdict(name, group);
    const paused = ov.paused(group);
    const q = ctx.q;
    if (v === Verdict.Block && !paused) {
      const rule = ov.lastRule!;
      const n = writeBlockedAnswer(ctx.buf, 0, ctx.len, q.questionEnd, q.qtype, q.hasOpt, q.doBit, ov.blockDecision(eng, ctx.group, name), syncScratch, 0);
      if (n >= 0) {
        ov.blockedByRule++;
        this.blocked++;
        ctx.decision = { kind: 'block', list: 'runtime', rule: ruleText(rule), group };
        ctx.setAnswer(syncScratch, 0, n);
        this.respond(ctx);
        return;
      }
    }
    let d = eng.decide(name, q.qtype, ctx.group, eng.needsClientIp ? ctx.responder.describe(ctx).client : undefined);
    if (d !== null && d.kind === 'block') {
      if (v === Verdict.Allow) { ov.allowedByRule++; d = null; } else if (paused) { ov.pausedSkips++; d = null; }
    }
    this.apply(ctx, next, eng, d);
  }

  /** True when an allow rule or a pause keeps CNAME inspection from blocking this answer. */
  cnameExempt(ctx: QueryContext, eng: FilterManager['engine']): boolean {
    const ov = this.overrides;
    const group = eng.groupName(ctx.group);
    if (ov.paused(group)) return true;
    return ov.verdict(qnameString(ctx.buf, 0, ctx.q.qnameEnd), group) === Verdict.Allow;
  }
}

function ruleText(r: OverrideRule): string {
  return `${r.action} ${r.name}${r.group !== undefined ? ` (group ${r.group})` : ''} #${r.id}`;
}

/**
 * After the cache in the chain, so that on the way back it runs before the cache stores the answer:
 * a CNAME chain that lands on a blocked name is blocked once, cached as blocked, and cache hits pay
 * nothing for the inspection.
 */
export class CnameInspectStage implements Stage {
  readonly name = 'cname-inspect';
  blocked = 0;
  private readonly out = Buffer.allocUnsafe(4096);
  constructor(private readonly filter: FilterStage) {}

  query(ctx: QueryContext, next: Next): void { next(ctx); }

  answer(ctx: QueryContext): void {
    const m = this.filter.manager;
    const a = ctx.ansBuf;
    if (m === null || a === null || ctx.upstreamFailed) return;
    // ANCOUNT < 2 cannot hold a CNAME plus its target.
    if (((a[ctx.ansOff + 6] << 8) | a[ctx.ansOff + 7]) < 2) return;
    const eng = m.engine;
    if (this.filter.overrides.hot !== 0 && this.filter.cnameExempt(ctx, eng)) return;
    const d = eng.inspectAnswer(a.subarray(ctx.ansOff, ctx.ansOff + ctx.ansLen), ctx.ansLen, ctx.group);
    if (d === null || d.kind !== 'block') return;
    const q = ctx.q;
    const n = writeBlockedAnswer(ctx.buf, 0, ctx.len, q.questionEnd, q.qtype, q.hasOpt, q.doBit, d, this.out, 0);
    if (n < 0) return;
    this.blocked++;
    ctx.decision = describe(d, eng.groupName(ctx.group));
    // A fresh copy: the cache may store it, and this.out is reused by the next answer.
    ctx.setAnswer(Buffer.from(this.out.subarray(0, n)), 0, n);
  }
}

function groupOf(ctx: QueryContext, eng: FilterManager['engine']): number {
  if (eng.groupCount === 0) return 0;
  if (isStream(ctx.responder.transport)) return eng.groupOfIp((ctx.conn as { clientIp: string }).clientIp);
  // Raw source bytes from the native metadata (family at int 1, address at byte 32): no string.
  return eng.groupOf(ctx.meta[1] === 6 ? 6 : 4, ctx.metaBytes, 32);
}

function describe(d: Decision, group: string): QueryContext['decision'] {
  if (d.kind === 'block') return { kind: d.viaCname ? 'block-cname' : 'block', list: d.list, rule: d.rule, group };
  if (d.kind === 'local') return { kind: 'local', rule: d.name, group };
  return { kind: 'forward', list: d.upstream, rule: d.domain, group };
}
