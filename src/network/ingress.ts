// Which side of the gateway is the LAN. With `network.interfaces: []` (the default) the answer is
// derived from the routing table, so a typical router needs no configuration: an interface that
// carries a default route (v4 or v6) leads to the internet and is never intercepted; every other one
// is. Independently, the transparent listeners admit only clients from the LAN side: the on-link
// prefixes of the intercepting interfaces (which covers LAN clients with global IPv6 addresses from a
// delegated prefix), the private, ULA and link-local ranges, the gateway's own addresses (local mode)
// and `network.clientRanges` (routed sub-LANs). Everything else is dropped without a reply.
import { parseCidr, type Cidr } from './cidr.js';
import type { ResolvedNetworkConfig } from './config.js';
import { IP, run } from './exec.js';
import { SAFE_IFNAME } from './ruleset.js';
import { ClientAcl } from '../listen/acl.js';
import os from 'node:os';

/** One entry of `ip -j addr show`. */
export interface IpLink {
  ifname?: string;
  addr_info?: Array<{ family?: string; local?: string; prefixlen?: number; scope?: string }>;
}

/** One entry of `ip -j route show table all`. */
export interface IpRoute {
  dst?: string;
  dev?: string;
  gateway?: string;
  type?: string;
  nexthops?: Array<{ dev?: string; gateway?: string }>;
}

/**
 * Always admitted: RFC 1918, RFC 3927 link-local, loopback, ULA, IPv6 link-local. 100.64.0.0/10 (RFC
 * 6598) is not: behind carrier-grade NAT it is the WAN side's address space; list it in clientRanges
 * where it is used inside (Tailscale, a CGN-style LAN).
 */
export const BUILTIN_CLIENT_RANGES: readonly string[] = [
  '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16', '127.0.0.0/8',
  '::1/128', 'fc00::/7', 'fe80::/10',
];

export type RangeOrigin = 'on-link' | 'built-in' | 'clientRanges' | 'own address';

export interface Ingress {
  /** true when `network.interfaces` is empty and the interfaces were derived from the routes */
  derived: boolean;
  /** interfaces carrying a default route; the ruleset skips them (derived mode only) */
  wanInterfaces: string[];
  /** interfaces intercepted, as they exist now */
  lanInterfaces: string[];
  /** set when the derivation could not split LAN from WAN and intercepts on every interface */
  note?: string;
  /** the transparent listeners' ACL */
  ranges: Array<{ cidr: Cidr; origin: RangeOrigin; dev?: string }>;
}

/** nft-style interface match: an exact name, or a prefix ending in `*`. */
export function interfaceMatches(patterns: readonly string[], name: string): boolean {
  return patterns.some((p) => (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : name === p));
}

function isUnicast(r: IpRoute): boolean {
  return r.type === undefined || r.type === 'unicast';
}

function routeDevs(r: IpRoute): string[] {
  const devs = r.dev ? [r.dev] : [];
  for (const h of r.nexthops ?? []) if (h.dev) devs.push(h.dev);
  return devs;
}

function tryCidr(text: string): Cidr | undefined {
  try {
    return parseCidr(text);
  } catch {
    return undefined;
  }
}

/** Pure derivation from `ip -j addr` and `ip -j route show table all` (both families) output. */
export function deriveIngress(cfg: ResolvedNetworkConfig, links: IpLink[], routes: IpRoute[]): Ingress {
  const names = links.map((l) => l.ifname).filter((n): n is string => typeof n === 'string' && n !== 'lo');
  const wan = new Set<string>();
  for (const r of routes) {
    if (r.dst !== 'default' || !isUnicast(r)) continue;
    // A name nft cannot be given safely stays intercepted (the ACL still guards it).
    for (const d of routeDevs(r)) if (d !== 'lo' && SAFE_IFNAME.test(d)) wan.add(d);
  }
  const derived = cfg.interfaces.length === 0;
  let wanInterfaces: string[] = [];
  let lan: string[];
  let note: string | undefined;
  if (!derived) {
    lan = names.filter((n) => interfaceMatches(cfg.interfaces, n));
  } else {
    // A LAN candidate has an address of its own beyond link-local; an interface with none (a bridge
    // port, a down link) carries no routed clients.
    const hasAddress = (l: IpLink) => (l.addr_info ?? []).some((a) => a.scope !== 'link' && a.scope !== 'host');
    const candidates = links.filter((l) => l.ifname && l.ifname !== 'lo' && !wan.has(l.ifname) && hasAddress(l)).map((l) => l.ifname!);
    if (wan.size === 0) {
      lan = names;
      note = 'no default route: intercepting on every interface but lo';
    } else if (candidates.length === 0) {
      // One-armed gateway (clients and the default route share one link): intercept there; the ACL
      // still admits only the LAN side.
      lan = names;
      note = `every addressed interface carries the default route (${[...wan].join(', ')}): intercepting on all of them`;
    } else {
      wanInterfaces = [...wan].sort();
      lan = names.filter((n) => !wan.has(n));
    }
  }
  const lanSet = new Set(lan);
  const ranges: Ingress['ranges'] = [];
  const seen = new Set<string>();
  const add = (cidr: Cidr | undefined, origin: RangeOrigin, dev?: string) => {
    if (!cidr || seen.has(cidr.text)) return;
    seen.add(cidr.text);
    ranges.push(dev ? { cidr, origin, dev } : { cidr, origin });
  };
  for (const l of links) {
    for (const a of l.addr_info ?? []) {
      if (!a.local || typeof a.prefixlen !== 'number') continue;
      if (l.ifname && lanSet.has(l.ifname)) add(tryCidr(`${a.local}/${a.prefixlen}`), 'on-link', l.ifname);
    }
  }
  // Prefixes routed onto a LAN link without a gateway are on-link too (a second prefix on the link).
  for (const r of routes) {
    if (!isUnicast(r) || r.gateway || r.nexthops || !r.dst || r.dst === 'default' || !r.dev || !lanSet.has(r.dev)) continue;
    add(tryCidr(r.dst), 'on-link', r.dev);
  }
  for (const c of BUILTIN_CLIENT_RANGES) add(parseCidr(c), 'built-in');
  for (const c of cfg.clientRanges) add(c, 'clientRanges');
  // Local mode reroutes the gateway's own queries, sourced from its own (possibly public) addresses.
  for (const l of links) {
    for (const a of l.addr_info ?? []) {
      if (a.local) add(tryCidr(a.local), 'own address', l.ifname);
    }
  }
  return { derived, wanInterfaces, lanInterfaces: lan, note, ranges };
}

async function ipJson(args: string[]): Promise<unknown[]> {
  const r = await run(IP, ['-j', ...args]);
  if (r.code !== 0) throw new Error(`ip -j ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  const v = JSON.parse(r.stdout || '[]') as unknown;
  if (!Array.isArray(v)) throw new Error(`ip -j ${args.join(' ')}: expected a JSON list`);
  return v;
}

/** Reads the interfaces and routes of this network namespace and derives the ingress plan. */
export async function readIngress(c: ResolvedNetworkConfig): Promise<Ingress> {
  const [links, r4, r6] = await Promise.all([
    ipJson(['addr', 'show']),
    ipJson(['-4', 'route', 'show', 'table', 'all']),
    // A kernel without IPv6 has no v6 routes to read.
    ipJson(['-6', 'route', 'show', 'table', 'all']).catch(() => []),
  ]);
  return deriveIngress(c, links as IpLink[], [...r4, ...r6] as IpRoute[]);
}

/** `os.networkInterfaces()` in the shape of `ip -j addr` (no process to spawn; no routes). */
export function linksFromOs(ifaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces()): IpLink[] {
  return Object.entries(ifaces).map(([ifname, addrs]) => ({
    ifname,
    addr_info: (addrs ?? []).map((a) => ({
      family: a.family === 'IPv4' ? 'inet' : 'inet6',
      local: a.address,
      prefixlen: Number(a.cidr?.split('/')[1] ?? (a.family === 'IPv4' ? 32 : 128)),
      scope: a.internal ? 'host' : a.address.toLowerCase().startsWith('fe80:') ? 'link' : 'global',
    })),
  }));
}

/** The ACL prefixes (text) for ClientAcl. */
export function aclCidrs(ingress: Ingress): string[] {
  return ingress.ranges.map((r) => r.cidr.text);
}

/** Human-readable lines for `network show`. */
export function describeIngress(ingress: Ingress): string {
  const lines: string[] = [];
  const how = ingress.derived
    ? ingress.wanInterfaces.length
      ? `derived: every interface but lo and those carrying a default route (${ingress.wanInterfaces.join(', ')})`
      : `derived: ${ingress.note}`
    : 'network.interfaces';
  lines.push(`intercepting on: ${ingress.lanInterfaces.join(', ') || '(none)'} (${how})`);
  if (ingress.note && !ingress.derived) lines.push(`note: ${ingress.note}`);
  lines.push('transparent listeners admit clients from (others are dropped, counted in dns_tproxy_dropped_total{reason="acl"}):');
  const order: RangeOrigin[] = ['on-link', 'clientRanges', 'built-in', 'own address'];
  for (const o of order) {
    const rs = ingress.ranges.filter((r) => r.origin === o);
    if (rs.length) lines.push(`  ${o.padEnd(12)} ${rs.map((r) => (r.dev && o === 'on-link' ? `${r.cidr.text} (${r.dev})` : r.cidr.text)).join(', ')}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * The transparent listeners' ACL, kept current: prefixes change at run time (a renumbered delegated
 * IPv6 prefix, a new LAN interface), so the derivation is redone every `refreshMs` and on reload. The
 * listeners hold one ClientAcl whose prefix list is swapped in place; a failed refresh keeps the last
 * good list (counted).
 */
export class IngressAcl {
  readonly acl: ClientAcl;
  ingress: Ingress | null = null;
  refreshFailures = 0;
  private timer: NodeJS.Timeout | null = null;

  /**
   * Starts with a provisional list read without spawning anything (os.networkInterfaces: the on-link
   * prefixes of every interface, as if none carried a default route), so the listeners open at once;
   * refresh() narrows it to the LAN side when `ip` has answered (spawning it takes a second on a
   * loaded machine).
   */
  constructor(private cfg: ResolvedNetworkConfig, private readonly onError: (e: Error) => void = () => undefined) {
    this.acl = new ClientAcl(aclCidrs(deriveIngress(cfg, linksFromOs(), [])));
  }

  async refresh(next?: ResolvedNetworkConfig): Promise<void> {
    if (next) this.cfg = next;
    try {
      const ingress = await readIngress(this.cfg);
      this.acl.replace(aclCidrs(ingress));
      this.ingress = ingress;
    } catch (e) {
      // The last good list (or the provisional one) stays.
      this.refreshFailures++;
      this.onError(e as Error);
    }
  }

  start(refreshMs = 30_000): void {
    this.timer = setInterval(() => void this.refresh(), refreshMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
