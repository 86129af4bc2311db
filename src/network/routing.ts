// Policy routing: `ip rule fwmark MARK/MASK lookup TABLE` and
// `local default dev lo table TABLE`, for IPv4 and IPv6. Every mutation is
// preceded by a lookup so repeated calls never duplicate anything.
import { readFileSync } from 'node:fs';
import type { ResolvedNetworkConfig } from './config.js';
import { IP, run, runOk } from './exec.js';

export type Family = 4 | 6;

export interface RuleLine {
  pref: number;
  fwmark?: number;
  mask?: number;
  lookup?: string;
  raw: string;
}

const famArg = (f: Family): string[] => (f === 6 ? ['-6'] : ['-4']);

/** Parse `ip rule show` text output (works with iproute2 and ip-full). */
export function parseRules(text: string): RuleLine[] {
  const out: RuleLine[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+):\s+(.*)$/.exec(line.trim());
    if (!m) continue;
    const rest = m[2];
    const r: RuleLine = { pref: Number(m[1]), raw: line.trim().replace(/\s+/g, ' ') };
    const fm = /\bfwmark (0x[0-9a-f]+|\d+)(?:\/(0x[0-9a-f]+|\d+))?/i.exec(rest);
    if (fm) {
      r.fwmark = Number(fm[1]);
      r.mask = fm[2] === undefined ? 0xffffffff : Number(fm[2]);
    }
    const lk = /\b(?:lookup|table) (\S+)/.exec(rest);
    if (lk) r.lookup = lk[1];
    out.push(r);
  }
  return out;
}

let tableNames: Map<string, number> | undefined;
/** Map rt_tables names -> ids, so a rule printed as `lookup dnstp` still matches 153. */
function tableIdOf(name: string): number | undefined {
  if (/^\d+$/.test(name)) return Number(name);
  if (!tableNames) {
    tableNames = new Map();
    for (const f of ['/etc/iproute2/rt_tables', '/usr/share/iproute2/rt_tables', '/usr/lib/iproute2/rt_tables']) {
      try {
        for (const line of readFileSync(f, 'utf8').split('\n')) {
          const m = /^\s*(\d+)\s+(\S+)/.exec(line);
          if (m && !tableNames.has(m[2])) tableNames.set(m[2], Number(m[1]));
        }
      } catch {
        /* file absent */
      }
    }
  }
  return tableNames.get(name);
}

function isOurRule(r: RuleLine, cfg: ResolvedNetworkConfig): boolean {
  return (
    r.pref === cfg.rulePriority &&
    r.fwmark === cfg.fwmark &&
    r.mask === cfg.fwmarkMask &&
    r.lookup !== undefined &&
    tableIdOf(r.lookup) === cfg.routeTable &&
    !/\bnot\b/.test(r.raw) &&
    /^\d+: from all fwmark/.test(r.raw)
  );
}

export async function findRules(cfg: ResolvedNetworkConfig, fam: Family): Promise<RuleLine[]> {
  const r = await run(IP, [...famArg(fam), 'rule', 'show']);
  if (r.code !== 0) return [];
  return parseRules(r.stdout).filter((x) => isOurRule(x, cfg));
}

function ruleSelector(cfg: ResolvedNetworkConfig): string[] {
  return [
    'pref',
    String(cfg.rulePriority),
    'fwmark',
    `0x${cfg.fwmark.toString(16)}/0x${cfg.fwmarkMask.toString(16)}`,
    'table',
    String(cfg.routeTable),
  ];
}

export async function ensureRule(cfg: ResolvedNetworkConfig, fam: Family): Promise<boolean> {
  if ((await findRules(cfg, fam)).length) return false;
  await runOk(IP, [...famArg(fam), 'rule', 'add', ...ruleSelector(cfg)]);
  return true;
}

/** Remove our rule (all copies, should several exist). Returns how many were removed. */
export async function removeRule(cfg: ResolvedNetworkConfig, fam: Family): Promise<number> {
  let removed = 0;
  for (let i = 0; i < 32; i++) {
    if (!(await findRules(cfg, fam)).length) break;
    await runOk(IP, [...famArg(fam), 'rule', 'del', ...ruleSelector(cfg)]);
    removed++;
  }
  return removed;
}

const DEFAULT_DST: Record<Family, string> = { 4: '0.0.0.0/0', 6: '::/0' };

/** Our route line in `ip route show table T`, or undefined. */
export async function findRoute(cfg: ResolvedNetworkConfig, fam: Family): Promise<string | undefined> {
  // A table that never existed makes newer kernels answer with an error: treat as empty.
  const r = await run(IP, [...famArg(fam), 'route', 'show', 'table', String(cfg.routeTable)]);
  if (r.code !== 0) return undefined;
  return r.stdout
    .split('\n')
    .map((l) => l.trim())
    .find((l) => /^local (default|0\.0\.0\.0\/0|::\/0) dev lo\b/.test(l));
}

export async function ensureRoute(cfg: ResolvedNetworkConfig, fam: Family): Promise<boolean> {
  if (await findRoute(cfg, fam)) return false;
  await runOk(IP, [...famArg(fam), 'route', 'replace', 'local', DEFAULT_DST[fam], 'dev', 'lo', 'table', String(cfg.routeTable)]);
  return true;
}

export async function removeRoute(cfg: ResolvedNetworkConfig, fam: Family): Promise<boolean> {
  if (!(await findRoute(cfg, fam))) return false;
  await runOk(IP, [...famArg(fam), 'route', 'del', 'local', DEFAULT_DST[fam], 'dev', 'lo', 'table', String(cfg.routeTable)]);
  return true;
}
