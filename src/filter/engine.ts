// FilterEngine: an immutable compiled view of the filtering configuration.
// Built (asynchronously, in chunks so the event loop keeps serving) by
// buildEngine(); swapped in atomically by FilterManager.
import { open } from 'node:fs/promises';
import type { BlockMode, EdeCode, FilterConfig } from './config.js';
import { LocalZone } from './local.js';
import { cidrMatchBytes, ipToBytes, isV4Mapped, normalizeMac, parseCidr, parseIPv4, parseIPv6, readU32, v6Key, type Cidr } from './net.js';
import {
  C_ALLOW, C_BLOCK, C_IALLOW, C_IMP, ListParser, S_CHILDREN, S_EXACT, S_SUBTREE,
  normalizeDomain, parseRule, ruleText, type ClientSpec, type ListSink, type Modifiers, type ParsedRule,
} from './parse.js';
import { DomainTable, HASH_SEED, hashBytes, hfinal, hstep } from './table.js';
import type { BadLine, BlockDecision, Decision, ForwardDecision, LocalDecision } from './types.js';
import { BlockTemplates, readName, skipName } from './wire.js';
import { anyOfRules, type RuleMatcher } from './regex-guard.js';

// kind = cls * 3 + scope (0..11); bit 12 = "complex rules exist for this key"
const K_COMPLEX = 12;
const NKINDS = 13;
const B_COMPLEX = 1 << K_COMPLEX;
function clsBits(cls: number): number {
  return 7 << (cls * 3);
}
const BLOCK_BITS = clsBits(C_BLOCK);
const ALLOW_BITS = clsBits(C_ALLOW);
const IMP_BITS = clsBits(C_IMP);
const IALLOW_BITS = clsBits(C_IALLOW);
// bits relevant at the full name (exact + subtree) and at a parent suffix (subtree + children)
let M_FULL = B_COMPLEX;
let M_PARENT = B_COMPLEX;
for (let c = 0; c < 4; c++) {
  M_FULL |= (1 << (c * 3 + S_EXACT)) | (1 << (c * 3 + S_SUBTREE));
  M_PARENT |= (1 << (c * 3 + S_SUBTREE)) | (1 << (c * 3 + S_CHILDREN));
}
const SAMPLE_LIMIT = 100;
/** 255 wire octets, each shown as at most 4 characters (\DDD), plus the dots. */
const MAX_NAME_CHARS = 1024;

export interface SourceInfo {
  id: number;
  name: string;
  ede: EdeCode;
  /** rules accepted */
  rules: number;
  badLines: number;
  unsupported: number;
  samples: BadLine[];
}

interface Combo {
  kinds: number[][]; // per kind: source ids
}

interface ComplexRule {
  cls: number;
  scope: number;
  src: number;
  mods: Modifiers;
  domain: string;
  dead?: boolean;
}

interface RegexRule {
  cls: number;
  re: RuleMatcher;
  pattern: string;
  src: number;
  mods: Modifiers | null;
  dead?: boolean;
}

interface BadFilter {
  cls: number;
  scope: number;
  target: string;
  isRegex: boolean;
  modKey: string;
}

class BlockDecisionImpl implements BlockDecision {
  readonly kind = 'block' as const;
  private _rule: string | null = null;
  constructor(
    readonly mode: BlockMode,
    readonly ede: EdeCode,
    readonly list: string,
    readonly src: number,
    readonly templates: BlockTemplates,
    readonly name: string,
    readonly viaCname: boolean,
    private readonly eng: FilterEngine,
    readonly slot: number,
    readonly k: number,
    private readonly obj: ComplexRule | RegexRule | null,
    readonly group: number,
  ) {}
  get rule(): string {
    if (this._rule === null) this._rule = this.eng.describeRule(this.slot, this.k, this.obj);
    return this._rule;
  }
  toJSON(): object {
    return { kind: this.kind, mode: this.mode, ede: this.ede, list: this.list, rule: this.rule, name: this.name, viaCname: this.viaCname };
  }
}

export interface GroupInfo {
  name: string;
  mode: BlockMode;
  /** source ids in attribution priority order */
  sources: number[];
  cidrs: Cidr[];
  macs: string[];
}

export interface NeighbourEntry {
  ip: string;
  mac: string;
}

export class FilterEngine {
  /** true when some $client rule needs the client IP string passed to decide() */
  readonly needsClientIp: boolean;
  readonly builtAt = Date.now();
  buildMs = 0;
  /** blocks counted per source id (decide() and inspectAnswer() count automatically) */
  readonly blockCounts: Float64Array;
  readonly cnameInspection: boolean;

  // v4 group matching: parallel arrays in group order
  private readonly v4net: Uint32Array;
  private readonly v4mask: Uint32Array;
  private readonly v4group: Uint16Array;
  private readonly v6net: Uint32Array;
  private readonly v6mask: Uint32Array;
  private readonly v6group: Uint16Array;
  private readonly macGroup = new Map<string, number>();
  private nbV4 = new Map<number, number>();
  private nbV6 = new Map<string, number>();
  private readonly groupByName = new Map<string, number>();

  private readonly gk: Uint16Array; // (group, combo) -> kind bits present for that group
  private readonly rank: Int32Array; // (group, source) -> priority or -1
  private readonly nSrc: number;
  private readonly nCombos: number;
  private readonly groupRegex: RegexRule[][];
  /**
   * Per group: one program matching where any of the group's regex rules match (null: one rule, or
   * the union did not compile). Most names match no rule; they pay one automaton pass instead of one
   * per rule (bench/filter-bench.js: 1,000 rules cost ~4 µs instead of ~600 µs per name).
   */
  private readonly groupRegexGate: (RuleMatcher | null)[];
  private readonly groupMode: BlockMode[];

  /** @internal */
  constructor(
    readonly sources: SourceInfo[],
    readonly groups: GroupInfo[], // index 0 = default
    private readonly rules: DomainTable,
    private readonly combos: Combo[],
    private readonly complex: Map<string, ComplexRule[]>,
    regexes: RegexRule[],
    private readonly local: LocalZone | null,
    private readonly localTable: DomainTable | null,
    private readonly localNames: string[],
    private readonly fwdTable: DomainTable | null,
    private readonly fwdDecisions: ForwardDecision[],
    readonly templates: BlockTemplates,
    cnameInspection: boolean,
  ) {
    this.cnameInspection = cnameInspection;
    const G = groups.length;
    this.nSrc = sources.length;
    this.nCombos = combos.length;
    this.blockCounts = new Float64Array(this.nSrc);
    this.rank = new Int32Array(G * this.nSrc).fill(-1);
    groups.forEach((g, gi) => g.sources.forEach((s, r) => {
      if (this.rank[gi * this.nSrc + s] === -1) this.rank[gi * this.nSrc + s] = r;
    }));
    this.gk = new Uint16Array(G * this.nCombos);
    for (let c = 0; c < this.nCombos; c++) {
      const kinds = combos[c]!.kinds;
      for (let gi = 0; gi < G; gi++) {
        let bits = 0;
        for (let k = 0; k < NKINDS; k++) {
          const l = kinds[k]!;
          for (let j = 0; j < l.length; j++) if (this.rank[gi * this.nSrc + l[j]!]! >= 0) {
            bits |= 1 << k;
            break;
          }
        }
        this.gk[gi * this.nCombos + c] = bits;
      }
    }
    const live = regexes.filter((r) => !r.dead);
    this.groupRegex = groups.map((_, gi) => live
      .filter((r) => this.rank[gi * this.nSrc + r.src]! >= 0)
      .sort((a, b) => this.rank[gi * this.nSrc + a.src]! - this.rank[gi * this.nSrc + b.src]!));
    const gates = new Map<string, RuleMatcher | null>();
    this.groupRegexGate = this.groupRegex.map((rx) => {
      if (rx.length < 2) return null;
      const patterns = rx.map((r) => r.pattern);
      const key = patterns.join('\n');
      if (!gates.has(key)) gates.set(key, anyOfRules(patterns));
      return gates.get(key)!;
    });
    this.groupMode = groups.map((g) => g.mode);
    let needs = false;
    const hasClient = (m: Modifiers | null): boolean => !!m?.clients?.some((c) => c.cidr !== null);
    for (const r of live) if (hasClient(r.mods)) needs = true;
    for (const l of complex.values()) for (const r of l) if (!r.dead && hasClient(r.mods)) needs = true;
    this.needsClientIp = needs;

    const v4: [number, number, number][] = [];
    const v6: [Uint32Array, Uint32Array, number][] = [];
    groups.forEach((g, gi) => {
      if (gi === 0) return;
      this.groupByName.set(g.name.toLowerCase(), gi);
      for (const c of g.cidrs) {
        if (c.family === 4) v4.push([c.net[0]!, c.mask[0]!, gi]);
        else v6.push([c.net, c.mask, gi]);
      }
      for (const m of g.macs) if (!this.macGroup.has(m)) this.macGroup.set(m, gi);
    });
    this.v4net = Uint32Array.from(v4.map((x) => x[0]));
    this.v4mask = Uint32Array.from(v4.map((x) => x[1]));
    this.v4group = Uint16Array.from(v4.map((x) => x[2]));
    this.v6net = new Uint32Array(v6.length * 4);
    this.v6mask = new Uint32Array(v6.length * 4);
    this.v6group = Uint16Array.from(v6.map((x) => x[2]));
    v6.forEach((x, i) => {
      this.v6net.set(x[0], i * 4);
      this.v6mask.set(x[1], i * 4);
    });
  }

  // ---------------------------------------------------------------- groups

  /** true when some group matches clients by MAC address */
  get usesMac(): boolean {
    return this.macGroup.size > 0;
  }

  /** Feed the neighbour table (IP -> MAC) used for MAC-based groups. */
  setNeighbours(entries: NeighbourEntry[]): void {
    const v4 = new Map<number, number>();
    const v6 = new Map<string, number>();
    for (const e of entries) {
      const mac = normalizeMac(e.mac);
      if (!mac) continue;
      const g = this.macGroup.get(mac);
      if (g === undefined) continue;
      const a = parseIPv4(e.ip);
      if (a !== null) v4.set(a, g);
      else {
        const b = parseIPv6(e.ip);
        if (b) v6.set(v6Key(b, 0), g);
      }
    }
    this.nbV4 = v4;
    this.nbV6 = v6;
  }

  /**
   * Group index for a client address given as raw network-order bytes
   * (4 bytes for family 4, 16 for family 6; IPv4-mapped IPv6 is treated as v4).
   * 0 = default (no group), i > 0 = config group i-1. First matching group wins.
   */
  groupOf(family: 4 | 6, addr: Uint8Array, offset: number): number {
    if (family === 6 && addr[offset] === 0 && isV4Mapped(addr, offset)) {
      family = 4;
      offset += 12;
    }
    let best = 0xffff;
    if (family === 4) {
      const v = ((addr[offset]! << 24) | (addr[offset + 1]! << 16) | (addr[offset + 2]! << 8) | addr[offset + 3]!) >>> 0;
      const n = this.v4net.length;
      for (let i = 0; i < n; i++) {
        if (((v & this.v4mask[i]!) >>> 0) === this.v4net[i]) {
          best = this.v4group[i]!;
          break;
        }
      }
      if (this.nbV4.size > 0) {
        const g = this.nbV4.get(v);
        if (g !== undefined && g < best) best = g;
      }
    } else {
      const w0 = readU32(addr, offset);
      const w1 = readU32(addr, offset + 4);
      const w2 = readU32(addr, offset + 8);
      const w3 = readU32(addr, offset + 12);
      const n = this.v6group.length;
      const net = this.v6net;
      const mask = this.v6mask;
      for (let i = 0; i < n; i++) {
        const o = i * 4;
        if (((w0 & mask[o]!) >>> 0) === net[o] && ((w1 & mask[o + 1]!) >>> 0) === net[o + 1] &&
          ((w2 & mask[o + 2]!) >>> 0) === net[o + 2] && ((w3 & mask[o + 3]!) >>> 0) === net[o + 3]) {
          best = this.v6group[i]!;
          break;
        }
      }
      if (this.nbV6.size > 0) {
        const g = this.nbV6.get(v6Key(addr, offset));
        if (g !== undefined && g < best) best = g;
      }
    }
    return best === 0xffff ? 0 : best;
  }

  /** Convenience: group index for an address string. */
  groupOfIp(ip: string): number {
    const b = ipToBytes(ip);
    return b ? this.groupOf(b.family, b.bytes, 0) : 0;
  }

  groupName(index: number): string {
    return this.groups[index]?.name ?? 'default';
  }

  get groupCount(): number {
    return this.groups.length;
  }

  // ---------------------------------------------------------------- decide

  // scratch for complex/regex evaluation (engine is used from one thread)
  private cBlock: ComplexRule | RegexRule | null = null;
  private cImp: ComplexRule | RegexRule | null = null;

  /**
   * Decide what to do with a query. qnameLower: lower-case, no trailing dot.
   * Order: local records > (important-exception > important block > exception > block) > forward > null (pass).
   * Blocks are counted in blockCounts.
   */
  decide(qnameLower: string, qtype: number, group: number, clientIp?: string): Decision | null {
    return this.evaluate(qnameLower, qtype, group, clientIp, true, false);
  }

  private evaluate(q: string, qtype: number, group: number, clientIp: string | undefined, full: boolean, viaCname: boolean): Decision | null {
    const n = q.length;
    // A name is at most 253 characters as text, but up to ~1,000 with \DDD escapes (qnameString):
    // such names are still filtered (their parent labels can be listed), never waved through.
    if (n === 0 || n > MAX_NAME_CHARS) return null;
    const rules = this.rules;
    const slots = rules.slots;
    const gk = this.gk;
    const gbase = group * this.nCombos;
    const fwd = full ? this.fwdTable : null;
    const hasRules = rules.size > 0;
    let fwdSlot = -1;
    let blockSlot = -1;
    let blockK = 0;
    let blockObj: ComplexRule | RegexRule | null = null;
    let impSlot = -1;
    let impK = 0;
    let impObj: ComplexRule | RegexRule | null = null;
    let allow = false;
    let iallow = false;
    let h = HASH_SEED;
    let fh = 0;
    for (let i = n - 1; ; i--) {
      const c = i >= 0 ? q.charCodeAt(i) : 46;
      if (c === 46) {
        const start = i + 1;
        fh = hfinal(h);
        if (hasRules) {
          const slot = rules.find(q, start, fh);
          if (slot >= 0) {
            const bits = gk[gbase + slots[slot * 3 + 2]!]! & (start === 0 ? M_FULL : M_PARENT);
            if (bits !== 0) {
              if (bits & IALLOW_BITS) iallow = true;
              if (bits & ALLOW_BITS) allow = true;
              if (bits & IMP_BITS) {
                impSlot = slot;
                impK = 31 - Math.clz32(bits & IMP_BITS);
                impObj = null;
              }
              if (bits & BLOCK_BITS) {
                blockSlot = slot;
                blockK = 31 - Math.clz32(bits & BLOCK_BITS);
                blockObj = null;
              }
              if (bits & B_COMPLEX) {
                const r = this.evalComplex(q, start, qtype, group, clientIp);
                if (r & 8) iallow = true;
                if (r & 2) allow = true;
                if (r & 4) impObj = this.cImp;
                if (r & 1) blockObj = this.cBlock;
              }
            }
          }
        }
        if (fwd !== null) {
          const s = fwd.find(q, start, fh);
          if (s >= 0) fwdSlot = s;
        }
        if (i < 0) break;
      }
      h = hstep(h, c);
    }
    if (full && this.localTable !== null) {
      const s = this.localTable.find(q, 0, fh);
      if (s >= 0) return this.local!.answer(this.localNames[this.localTable.value(s)]!, qtype);
    }
    if (!iallow) {
      const rx = this.groupRegex[group];
      const gate = this.groupRegexGate[group];
      if (rx !== undefined && rx.length > 0 && (gate == null || gate.test(q))) {
        for (let j = 0; j < rx.length; j++) {
          const r = rx[j]!;
          if (r.cls === C_IMP ? impObj !== null || impSlot >= 0 : r.cls === C_BLOCK ? blockObj !== null || blockSlot >= 0 : false) continue;
          if (!r.re.test(q)) continue;
          if (r.mods !== null && !this.modsMatch(r.mods, qtype, group, clientIp)) continue;
          if (r.cls === C_IALLOW) {
            iallow = true;
            break;
          } else if (r.cls === C_ALLOW) allow = true;
          else if (r.cls === C_IMP) impObj = r;
          else blockObj = r;
        }
      }
    }
    if (!iallow) {
      if (impObj !== null) return this.block(impObj.src, -1, 0, impObj, group, q, viaCname);
      if (impSlot >= 0) return this.block(this.pickSource(impSlot, impK, group), impSlot, impK, null, group, q, viaCname);
      if (!allow) {
        if (blockObj !== null) return this.block(blockObj.src, -1, 0, blockObj, group, q, viaCname);
        if (blockSlot >= 0) return this.block(this.pickSource(blockSlot, blockK, group), blockSlot, blockK, null, group, q, viaCname);
      }
    }
    if (fwdSlot >= 0) return this.fwdDecisions[this.fwdTable!.value(fwdSlot)]!;
    return null;
  }

  private pickSource(slot: number, k: number, group: number): number {
    const l = this.combos[this.rules.value(slot)]!.kinds[k]!;
    let best = l[0]!;
    let bestRank = 0x7fffffff;
    const base = group * this.nSrc;
    for (let j = 0; j < l.length; j++) {
      const r = this.rank[base + l[j]!]!;
      if (r >= 0 && r < bestRank) {
        bestRank = r;
        best = l[j]!;
      }
    }
    return best;
  }

  // small direct-mapped cache of recent decisions (they are immutable, so reusing them is safe)
  private readonly dcache: (BlockDecisionImpl | undefined)[] = new Array<BlockDecisionImpl | undefined>(1024).fill(undefined);

  private block(src: number, slot: number, k: number, obj: ComplexRule | RegexRule | null, group: number, name: string, viaCname: boolean): BlockDecision {
    this.blockCounts[src]!++;
    const ci = slot >= 0 ? (Math.imul(slot, 0x9e3779b1) ^ (k << 4) ^ group) & 1023 : -1;
    if (ci >= 0) {
      const d = this.dcache[ci];
      if (d !== undefined && d.slot === slot && d.k === k && d.group === group && d.viaCname === viaCname && d.name === name) return d;
    }
    const s = this.sources[src]!;
    const d = new BlockDecisionImpl(this.groupMode[group]!, s.ede, s.name, src, this.templates, name, viaCname, this, slot, k, obj, group);
    if (ci >= 0) this.dcache[ci] = d;
    return d;
  }

  /** returns bits: 1 block, 2 allow, 4 important, 8 important-allow (cBlock/cImp set) */
  private evalComplex(q: string, start: number, qtype: number, group: number, clientIp: string | undefined): number {
    const list = this.complex.get(start === 0 ? q : q.slice(start));
    if (list === undefined) return 0;
    let res = 0;
    const base = group * this.nSrc;
    for (const r of list) {
      if (r.dead || this.rank[base + r.src]! < 0) continue;
      if (start === 0 ? r.scope === S_CHILDREN : r.scope === S_EXACT) continue;
      if (!this.modsMatch(r.mods, qtype, group, clientIp)) continue;
      if (r.cls === C_BLOCK) {
        res |= 1;
        this.cBlock = r;
      } else if (r.cls === C_ALLOW) res |= 2;
      else if (r.cls === C_IMP) {
        res |= 4;
        this.cImp = r;
      } else res |= 8;
    }
    return res;
  }

  private modsMatch(m: Modifiers, qtype: number, group: number, clientIp: string | undefined): boolean {
    if (m.dnstypes !== null && m.dnstypes.has(qtype) === m.dnstypesNeg) return false;
    if (m.clients !== null && !this.clientMatch(m.clients, group, clientIp)) return false;
    return true;
  }

  private clientMatch(specs: ClientSpec[], group: number, clientIp: string | undefined): boolean {
    let anyPos = false;
    let pos = false;
    let ip: { family: 4 | 6; bytes: Uint8Array } | null | undefined;
    const gname = group > 0 ? this.groups[group]!.name.toLowerCase() : null;
    for (const s of specs) {
      let m: boolean;
      if (s.cidr) {
        if (ip === undefined) ip = clientIp ? ipToBytes(clientIp) : null;
        m = ip !== null && cidrMatchBytes(s.cidr, ip.family, ip.bytes, 0);
      } else m = s.name === gname;
      if (s.neg) {
        if (m) return false;
      } else {
        anyPos = true;
        if (m) pos = true;
      }
    }
    return anyPos ? pos : true;
  }

  /** Reconstruct the canonical text of a matched rule. */
  describeRule(slot: number, k: number, obj: ComplexRule | RegexRule | null): string {
    if (obj !== null) {
      if ('re' in obj) return ruleText(obj.cls, S_SUBTREE, obj.pattern, true, obj.mods?.key ?? '');
      return ruleText(obj.cls, obj.scope, obj.domain, false, obj.mods.key);
    }
    const cls = Math.floor(k / 3);
    return ruleText(cls, k % 3, this.rules.key(slot), false, '');
  }

  /**
   * Inspect an upstream answer: if any CNAME target in the answer section is
   * blocked for `group`, return a block decision (viaCname = true). Names may
   * be compressed; malformed data / pointer loops are treated as "no verdict".
   */
  inspectAnswer(answer: Uint8Array, len: number, group: number): Decision | null {
    if (!this.cnameInspection || this.rules.size === 0 && this.groupRegex[group]?.length === 0) return null;
    const end = Math.min(len, answer.length);
    if (end < 12) return null;
    const qd = (answer[4]! << 8) | answer[5]!;
    const an = (answer[6]! << 8) | answer[7]!;
    let off = 12;
    let qtype = 0;
    for (let i = 0; i < qd; i++) {
      off = skipName(answer, off, end);
      if (off < 0 || off + 4 > end) return null;
      if (i === 0) qtype = (answer[off]! << 8) | answer[off + 1]!;
      off += 4;
    }
    for (let i = 0; i < an; i++) {
      off = skipName(answer, off, end);
      if (off < 0 || off + 10 > end) return null;
      const type = (answer[off]! << 8) | answer[off + 1]!;
      const rdlen = (answer[off + 8]! << 8) | answer[off + 9]!;
      const rd = off + 10;
      if (rd + rdlen > end) return null;
      if (type === 5) {
        const target = readName(answer, 0, rd, rd + rdlen <= end ? end : end);
        if (target !== null && target.length > 0) {
          const d = this.evaluate(target, qtype, group, undefined, false, true);
          if (d !== null) return d;
        }
      }
      off = rd + rdlen;
    }
    return null;
  }

  /**
   * Count a block served without calling decide() (e.g. from a response
   * cache). decide()/inspectAnswer() already count their own decisions.
   */
  countBlock(decision: Decision): void {
    if (decision.kind === 'block') this.blockCounts[decision.src]!++;
  }

  /** Merged source (list) names -> number of blocks since this engine was built. */
  blockedByList(): Record<string, number> {
    const out: Record<string, number> = {};
    this.sources.forEach((s, i) => {
      out[s.name] = (out[s.name] ?? 0) + this.blockCounts[i]!;
    });
    return out;
  }

  get info(): { entries: number; tableBytes: number; complexRules: number; regexRules: number; combos: number; localNames: number; forwardZones: number } {
    let complex = 0;
    for (const l of this.complex.values()) complex += l.filter((r) => !r.dead).length;
    return {
      entries: this.rules.size,
      tableBytes: this.rules.bytes,
      complexRules: complex,
      regexRules: this.groupRegex.reduce((a, l) => Math.max(a, l.length), 0),
      combos: this.nCombos,
      localNames: this.localNames.length,
      forwardZones: this.fwdDecisions.length,
    };
  }
}

// ==================================================================== builder

export interface ListInput {
  name: string;
  /** list content; null = not available (counted as empty, unless `file` is set) */
  data: Buffer | null;
  /**
   * A file to read the content from instead, in chunks: a large list is then never held in memory
   * whole next to the table it is parsed into (issue #20).
   */
  file?: string;
  ede?: EdeCode;
  hosts?: 'exact' | 'subdomains';
}

export interface BuildOptions {
  /** yield to the event loop every N lines (default 50_000) */
  chunkLines?: number;
  regexMaxLength?: number;
}

class Builder {
  readonly table: DomainTable;
  readonly combos: Combo[] = [{ kinds: Array.from({ length: NKINDS }, () => []) }];
  private readonly comboIds = new Map<string, number>([[this.comboKey(this.combos[0]!), 0]]);
  private readonly trans = new Map<number, number>();
  readonly complex = new Map<string, ComplexRule[]>();
  readonly regexes: RegexRule[] = [];
  readonly badfilters: BadFilter[] = [];
  readonly sources: SourceInfo[] = [];

  constructor(expected: number, arenaBytes: number) {
    this.table = new DomainTable(expected, Math.max(1024, Math.min(expected * 24, arenaBytes)));
  }

  private comboKey(c: Combo): string {
    return c.kinds.map((l) => l.join('.')).join('|');
  }

  private intern(c: Combo): number {
    const key = this.comboKey(c);
    let id = this.comboIds.get(key);
    if (id === undefined) {
      id = this.combos.length;
      this.combos.push(c);
      this.comboIds.set(key, id);
    }
    return id;
  }

  private withKind(meta: number, k: number, src: number): number {
    const tk = (meta * 16 + k) * 65536 + src;
    let r = this.trans.get(tk);
    if (r !== undefined) return r;
    const old = this.combos[meta]!;
    if (old.kinds[k]!.includes(src)) r = meta;
    else {
      const kinds = old.kinds.map((l, i) => (i === k ? [...l, src].sort((a, b) => a - b) : l));
      r = this.intern({ kinds });
    }
    this.trans.set(tk, r);
    return r;
  }

  private withoutKind(meta: number, k: number): number {
    const old = this.combos[meta]!;
    if (old.kinds[k]!.length === 0) return meta;
    return this.intern({ kinds: old.kinds.map((l, i) => (i === k ? [] : l)) });
  }

  addSource(name: string, ede: EdeCode): SourceInfo {
    const s: SourceInfo = { id: this.sources.length, name, ede, rules: 0, badLines: 0, unsupported: 0, samples: [] };
    this.sources.push(s);
    return s;
  }

  addBytes(k: number, src: number, b: Uint8Array, s: number, e: number): void {
    const t = this.table;
    const slot = t.upsertBytes(b, s, e, hashBytes(b, s, e), 0);
    const meta = t.value(slot);
    t.setValue(slot, this.withKind(meta, k, src));
  }

  addDomainString(k: number, src: number, d: string): void {
    const b = Buffer.from(d, 'latin1');
    this.addBytes(k, src, b, 0, b.length);
  }

  addParsed(r: ParsedRule, src: SourceInfo): void {
    if (r.t === 'domain') {
      if (r.mods?.badfilter) {
        for (const d of r.domains) this.badfilters.push({ cls: r.cls, scope: r.scope, target: d, isRegex: false, modKey: r.mods.key });
        return;
      }
      const simple = r.mods === null || (r.mods.dnstypes === null && r.mods.clients === null);
      for (const d of r.domains) {
        if (simple) this.addDomainString(r.cls * 3 + r.scope, src.id, d);
        else {
          this.addDomainString(K_COMPLEX, src.id, d);
          const list = this.complex.get(d) ?? [];
          list.push({ cls: r.cls, scope: r.scope, src: src.id, mods: r.mods!, domain: d });
          this.complex.set(d, list);
        }
        src.rules++;
      }
    } else if (r.t === 'regex') {
      if (r.mods?.badfilter) {
        this.badfilters.push({ cls: r.cls, scope: S_SUBTREE, target: r.pattern, isRegex: true, modKey: r.mods.key });
        return;
      }
      this.regexes.push({ cls: r.cls, re: r.re, pattern: r.pattern, src: src.id, mods: r.mods });
      src.rules++;
    }
  }

  sink(src: SourceInfo, label: string): ListSink {
    const sample = (line: number, text: string, reason: string, kind: 'bad' | 'unsupported'): void => {
      if (src.samples.length < SAMPLE_LIMIT) src.samples.push({ source: label, line, text: text.slice(0, 200), reason, kind });
    };
    return {
      addDomain: (cls, scope, b, s, e) => {
        this.addBytes(cls * 3 + scope, src.id, b, s, e);
        src.rules++;
      },
      addParsed: (r) => this.addParsed(r, src),
      bad: (line, text, reason) => {
        src.badLines++;
        sample(line, text, reason, 'bad');
      },
      unsupported: (line, text, reason) => {
        src.unsupported++;
        sample(line, text, reason, 'unsupported');
      },
    };
  }

  applyBadfilters(): void {
    for (const bf of this.badfilters) {
      if (bf.isRegex) {
        for (const r of this.regexes) if (r.pattern === bf.target && r.cls === bf.cls && (r.mods?.key ?? '') === bf.modKey) r.dead = true;
        continue;
      }
      const base = bf.modKey.split(',').filter((x) => x && x !== 'important').join(',');
      if (base === '') {
        const slot = this.table.findString(bf.target);
        if (slot >= 0) this.table.setValue(slot, this.withoutKind(this.table.value(slot), bf.cls * 3 + bf.scope));
      }
      for (const r of this.complex.get(bf.target) ?? []) {
        if (r.cls === bf.cls && r.scope === bf.scope && r.mods.key === bf.modKey) r.dead = true;
      }
    }
  }
}

function countLines(b: Buffer): number {
  let n = 1;
  let p = 0;
  for (;;) {
    p = b.indexOf(10, p);
    if (p < 0) return n;
    n++;
    p++;
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

const READ_CHUNK = 1 << 20;

/** Lines and bytes of a file, read in chunks. */
async function countFileLines(file: string): Promise<{ lines: number; bytes: number }> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    let lines = 1;
    let bytes = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) return { lines, bytes };
      bytes += bytesRead;
      for (let p = buf.indexOf(10); p >= 0 && p < bytesRead; p = buf.indexOf(10, p + 1)) lines++;
    }
  } finally {
    await fh.close();
  }
}

/** Parse a list file chunk by chunk (whole lines per chunk; a line longer than the buffer grows it). */
async function parseFile(file: string, sink: ListSink, opts: { hostsScope: number; regexMaxLength: number }, chunkLines: number): Promise<void> {
  const fh = await open(file, 'r');
  try {
    let buf = Buffer.allocUnsafe(READ_CHUNK);
    let have = 0;
    let line = 0;
    let first = true;
    for (;;) {
      if (have === buf.length) {
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, have);
        buf = bigger;
      }
      const { bytesRead } = await fh.read(buf, have, buf.length - have, null);
      const eof = bytesRead === 0;
      have += bytesRead;
      const end = eof ? have : buf.lastIndexOf(10, have - 1) + 1;
      if (end > 0) {
        const p = new ListParser(buf.subarray(0, end), sink, { ...opts, continues: !first });
        p.line = line;
        while (!p.step(chunkLines)) await tick();
        line = p.line;
        first = false;
        buf.copy(buf, 0, end, have);
        have -= end;
      }
      if (eof) return;
    }
  } finally {
    await fh.close();
  }
}

/** Normalise a forward target: bare "ip" / "ip:port" / "[v6]:port" become udp://…; schemes are validated. */
export function normalizeUpstream(to: string): string {
  const t = to.trim();
  const m = /^(udp|tcp|tls|https):\/\/(.+)$/i.exec(t);
  if (m) {
    const scheme = m[1]!.toLowerCase();
    if (scheme === 'https') {
      new URL(t); // throws if invalid
      return t;
    }
    return `${scheme}://${hostPort(m[2]!, scheme === 'tls' ? 853 : 53, to)}`;
  }
  return `udp://${hostPort(t, 53, to)}`;
}

function hostPort(s: string, defPort: number, orig: string): string {
  let host = s;
  let port = defPort;
  const b = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (b) {
    host = b[1]!;
    if (b[2]) port = Number(b[2]);
  } else if (parseIPv6(s)) {
    host = s;
  } else {
    const i = s.lastIndexOf(':');
    if (i >= 0) {
      host = s.slice(0, i);
      port = Number(s.slice(i + 1));
    }
  }
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`forward target "${orig}": bad port`);
  if (parseIPv4(host) === null && parseIPv6(host) === null && normalizeDomain(host) === null) {
    throw new Error(`forward target "${orig}": bad host`);
  }
  return parseIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Compile a configuration plus list contents into an engine. Throws on
 * configuration errors (unknown list names, bad CIDRs, bad local records…);
 * bad lines inside lists are only counted.
 */
export async function buildEngine(cfg: FilterConfig, lists: ListInput[], opts: BuildOptions = {}): Promise<FilterEngine> {
  const t0 = performance.now();
  const f = cfg.filter ?? {};
  const enabled = f.enabled !== false;
  const chunk = opts.chunkLines ?? 50_000;
  const regexMaxLength = opts.regexMaxLength ?? f.regexMaxLength ?? 512;
  let expected = 64;
  // Key bytes never exceed the list bytes plus one length byte per line (except IDNs in punycode,
  // which grow the arena), so the arena starts at that size rather than a per-line guess.
  let listBytes = 0;
  if (enabled) {
    for (const l of lists) {
      if (l.data) {
        expected += countLines(l.data);
        listBytes += l.data.length;
      } else if (l.file !== undefined) {
        const c = await countFileLines(l.file);
        expected += c.lines;
        listBytes += c.bytes;
      }
    }
  }
  const b = new Builder(expected, listBytes + expected);

  // sources: lists first, then inline global, then each group's inline
  const listIds = new Map<string, number>();
  for (const l of lists) {
    if (listIds.has(l.name)) throw new Error(`duplicate list name "${l.name}"`);
    const s = b.addSource(l.name, l.ede ?? 15);
    listIds.set(l.name, s.id);
  }
  const inline = b.addSource('inline', 15);

  const addInline = (src: SourceInfo, rules: string[] | undefined, allowSection: boolean, label: string): void => {
    const sink = b.sink(src, label);
    (rules ?? []).forEach((text, i) => {
      const r = parseRule(text, { allowSection, regexMaxLength, hostsScope: S_EXACT });
      if (r.t === 'bad') sink.bad(i + 1, text, r.reason);
      else if (r.t === 'unsupported') sink.unsupported(i + 1, text, r.reason);
      else if (r.t !== 'skip') b.addParsed(r, src);
    });
  };

  if (enabled) {
    for (const l of lists) {
      const src = b.sources[listIds.get(l.name)!]!;
      const popts = { hostsScope: l.hosts === 'subdomains' ? S_SUBTREE : S_EXACT, regexMaxLength };
      if (l.data) {
        const p = new ListParser(l.data, b.sink(src, l.name), popts);
        while (!p.step(chunk)) await tick();
      } else if (l.file !== undefined) {
        await parseFile(l.file, b.sink(src, l.name), popts, chunk);
      }
    }
    addInline(inline, f.block, false, 'filter.block');
    addInline(inline, f.allow, true, 'filter.allow');
  }

  const defaultMode: BlockMode = f.mode ?? 'nxdomain';
  const groups: GroupInfo[] = [{ name: 'default', mode: defaultMode, sources: enabled ? [...listIds.values(), inline.id] : [], cidrs: [], macs: [] }];
  const seenGroups = new Set<string>();
  for (const g of cfg.groups ?? []) {
    if (seenGroups.has(g.name)) throw new Error(`duplicate group name "${g.name}"`);
    seenGroups.add(g.name);
    const gs = b.addSource(`group:${g.name}`, g.ede ?? 17);
    if (enabled) {
      addInline(gs, g.block, false, `groups.${g.name}.block`);
      addInline(gs, g.allow, true, `groups.${g.name}.allow`);
    }
    const srcs: number[] = [gs.id];
    for (const ln of g.lists ?? [...listIds.keys()]) {
      const id = listIds.get(ln);
      if (id === undefined) {
        if ((f.lists ?? []).some((x) => x.name === ln)) continue; // disabled list
        throw new Error(`group "${g.name}" references unknown list "${ln}"`);
      }
      srcs.push(id);
    }
    if (g.inheritGlobal !== false) srcs.push(inline.id);
    const cidrs: Cidr[] = [];
    const macs: string[] = [];
    for (const c of g.clients) {
      const mac = normalizeMac(c);
      if (mac) {
        macs.push(mac);
        continue;
      }
      const cidr = parseCidr(c);
      if (!cidr) throw new Error(`group "${g.name}": invalid client "${c}" (expected IP, CIDR or MAC)`);
      cidrs.push(cidr);
    }
    groups.push({ name: g.name, mode: g.mode ?? defaultMode, sources: enabled ? srcs : [], cidrs, macs });
  }
  if (enabled) b.applyBadfilters();
  b.table.compact();

  // local records
  let local: LocalZone | null = null;
  let localTable: DomainTable | null = null;
  const localNames: string[] = [];
  if (cfg.local && cfg.local.length > 0) {
    local = new LocalZone(f.localTtl ?? 300);
    for (const e of cfg.local) local.add(e);
    localTable = new DomainTable(local.names.size);
    for (const name of local.names.keys()) {
      localTable.setValue(localTable.upsertString(name, 0), localNames.length);
      localNames.push(name);
    }
  }

  // conditional forwarding
  let fwdTable: DomainTable | null = null;
  const fwd: ForwardDecision[] = [];
  if (cfg.forward && cfg.forward.length > 0) {
    fwdTable = new DomainTable(cfg.forward.length);
    for (const fw of cfg.forward) {
      const d = normalizeDomain(fw.domain);
      if (d === null) throw new Error(`forward: invalid domain "${fw.domain}"`);
      const slot = fwdTable.upsertString(d, 0xffffffff);
      if (fwdTable.value(slot) !== 0xffffffff) throw new Error(`forward: duplicate domain "${fw.domain}"`);
      fwdTable.setValue(slot, fwd.length);
      fwd.push(Object.freeze({ kind: 'forward' as const, upstream: normalizeUpstream(fw.to), domain: d }));
    }
  }

  // block templates
  const ttl = f.blockTtl ?? 60;
  const a4: Uint8Array[] = [];
  const a6: Uint8Array[] = [];
  for (const a of f.customAddresses ?? []) {
    const v4 = parseIPv4(a);
    if (v4 !== null) a4.push(Uint8Array.of(v4 >>> 24, (v4 >>> 16) & 255, (v4 >>> 8) & 255, v4 & 255));
    else {
      const v6 = parseIPv6(a);
      if (!v6) throw new Error(`filter.customAddresses: invalid address "${a}"`);
      a6.push(v6);
    }
  }
  const modes = [defaultMode, ...groups.map((g) => g.mode)];
  if (modes.includes('custom') && a4.length + a6.length === 0) throw new Error('block mode "custom" needs filter.customAddresses');
  const templates = new BlockTemplates(ttl, a4, a6, b.sources.map((s) => s.name));

  const eng = new FilterEngine(
    b.sources, groups, b.table, b.combos, b.complex, b.regexes, local, localTable, localNames, fwdTable, fwd, templates,
    f.cnameInspection !== false,
  );
  eng.buildMs = performance.now() - t0;
  return eng;
}

export { C_ALLOW, C_BLOCK, C_IALLOW, C_IMP };
