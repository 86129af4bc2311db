// Read-only inspection: nft table, ip rules, routes and tproxy listeners.
import { readFile } from 'node:fs/promises';
import type { ListenPorts, ResolvedNetworkConfig } from './config.js';
import { NFT, run } from './exec.js';
import { expectedChains, hex } from './ruleset.js';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/** `nft list table inet X` text, or undefined if the table does not exist. */
export async function listTable(table: string): Promise<string | undefined> {
  const r = await run(NFT, ['list', 'table', 'inet', table]);
  return r.code === 0 ? r.stdout : undefined;
}

export function chainsIn(text: string): string[] {
  return [...text.matchAll(/^\s*chain (\S+) \{/gm)].map((m) => m[1]);
}

/** Sum of packet counters per divert rule, keyed "ipv4/udp" etc. */
export function divertCounters(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/meta nfproto (ipv[46]) meta l4proto (udp|tcp) counter packets (\d+)/g)) {
    out[`${m[1]}/${m[2]}`] = (out[`${m[1]}/${m[2]}`] ?? 0) + Number(m[3]);
  }
  return out;
}

export function nftCheck(cfg: ResolvedNetworkConfig, ports: ListenPorts, text: string | undefined): Check {
  const name = 'nft-table';
  if (text === undefined) return { name, ok: false, detail: `table inet ${cfg.table} not found` };
  const have = chainsIn(text);
  const missing = expectedChains(cfg).filter((c) => !have.includes(c));
  const problems: string[] = [];
  if (missing.length) problems.push(`missing chains: ${missing.join(', ')}`);
  const fams = cfg.ipv6 ? ['ip', 'ip6'] : ['ip'];
  for (const f of fams) {
    const nf = f === 'ip' ? 'ipv4' : 'ipv6';
    const protos: Array<[string, number]> = [['udp', ports.udpPort]];
    if (cfg.tcp) protos.push(['tcp', ports.tcpPort]);
    for (const [proto, port] of protos) {
      const re = new RegExp(`meta nfproto ${nf} meta l4proto ${proto} .*tproxy ${f} to :${port}\\b`);
      if (!re.test(text)) problems.push(`no ${nf}/${proto} tproxy rule to :${port}`);
    }
  }
  if (!cfg.ipv6 && /tproxy ip6/.test(text)) problems.push('unexpected IPv6 tproxy rules (ipv6: false)');
  const counters = Object.entries(divertCounters(text))
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return problems.length
    ? { name, ok: false, detail: `table inet ${cfg.table}: ${problems.join('; ')}` }
    : { name, ok: true, detail: `table inet ${cfg.table}, chains ${have.join(', ')}; intercepted packets ${counters}` };
}

interface SocketEntry {
  port: number;
  state: string;
}

async function readProcNet(file: string): Promise<SocketEntry[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return [];
  }
  const out: SocketEntry[] = [];
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 4) continue;
    const port = parseInt(cols[1].split(':').pop() ?? '', 16);
    if (Number.isFinite(port)) out.push({ port, state: cols[3] });
  }
  return out;
}

/** Is something bound on `port` (UDP) / listening (TCP, state 0A) in this netns? */
export async function listening(proto: 'udp' | 'tcp', port: number): Promise<string[]> {
  const found: string[] = [];
  for (const v of ['', '6']) {
    const entries = await readProcNet(`/proc/net/${proto}${v}`);
    if (entries.some((e) => e.port === port && (proto === 'udp' || e.state === '0A'))) {
      found.push(`${proto}${v}`);
    }
  }
  return found;
}

export function formatChecks(checks: Check[]): string {
  const w = Math.max(...checks.map((c) => c.name.length));
  return checks.map((c) => `${c.ok ? 'OK  ' : 'FAIL'}  ${c.name.padEnd(w)}  ${c.detail}`).join('\n');
}

export function ruleText(cfg: ResolvedNetworkConfig): string {
  const mask = cfg.fwmarkMask === 0xffffffff ? '' : `/${hex(cfg.fwmarkMask)}`;
  return `${cfg.rulePriority}: fwmark ${hex(cfg.fwmark)}${mask} lookup ${cfg.routeTable}`;
}
