// Encrypted-DNS bypass control, the network half (issue #19). A table of its own next to the TPROXY
// table (`<network.table>_bypass`, so the two rulesets never have to be edited together), hooked on
// forward, i.e. traffic the gateway routes for LAN clients and never its own:
//   - TCP and UDP 853 (DoT, DoQ) from clients: rejected;
//   - TCP and UDP 443 to the addresses of the bypass lists (sets dst4/dst6: IPs, CIDRs and the
//     addresses of listed hostnames, resolved through our own upstreams and re-resolved on TTL):
//     rejected with a TCP reset or ICMP administratively prohibited, so a client falls back to plain
//     DNS at once instead of waiting for a timeout;
//   - every attempt is counted per (client, protocol, port) in a dynamic set with counters
//     (attempts4/attempts6: TCP SYNs and UDP datagrams), which the server reads periodically.
// `mode: log` installs the counting without the rejects; groups with `bypass: off|log` are exempt
// (sets by source address and MAC). The sets are updated in place on list refresh and re-resolution:
// `flush set` + `add element` in one nft transaction, so no packet sees an empty set.
import fs from 'node:fs/promises';
import path from 'node:path';
import { createRequire } from 'node:module';
import { parseCidr, type Cidr } from './cidr.js';
import { resolveNetworkConfig, type NetworkConfig } from './config.js';
import { readIngress } from './ingress.js';
import { NFT, run, runOk } from './exec.js';
import { parseDuration } from '../filter/config.js';
import { fetchList, readCache, writeCache } from '../filter/sources.js';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { X509Certificate } from 'node:crypto';
import { BypassStage, clientOf, type BypassMode, type EncryptedEndpoint } from '../pipeline/bypass-stage.js';
import type { Config } from '../config/types.js';
import { parseHostPort } from '../config/address.js';
import type { FilterManager } from '../filter/manager.js';
import type { UpstreamPool } from '../upstream/pool.js';
import { QueryContext, type Responder } from '../pipeline/context.js';
import type { Registry } from 'prom-client';
import { CollectedMetric, type Sample } from '../metrics/collected.js';

export interface BypassListConfig { name: string; path?: string; url?: string; refresh?: string | number }
export interface BypassConfig { mode?: BypassMode; lists?: BypassListConfig[] }

const duration = { anyOf: [{ type: 'string', pattern: '^\\s*\\d+(\\.\\d+)?\\s*(ms|s|m|h|d)?\\s*$' }, { type: 'number', minimum: 1 }] };

/** JSON Schema of the top-level `bypass:` key. */
export const bypassSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    mode: { enum: ['block', 'log', 'off'] },
    lists: {
      type: 'array',
      items: {
        type: 'object', additionalProperties: false, required: ['name'],
        oneOf: [{ required: ['path'] }, { required: ['url'] }],
        properties: {
          name: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' },
          path: { type: 'string', minLength: 1 },
          /** https only: a list that decides what gets blocked must not be rewritable on the wire. */
          url: { type: 'string', pattern: '^https://' },
          /** Re-read period (files and URLs alike), e.g. "24h"; default 24h. */
          refresh: duration,
        },
      },
    },
  },
} as const;

/** The `bypass` value a group may carry (groups[].bypass). */
export const groupBypassSchema = { enum: ['log', 'off'] } as const;

/** The mode in force: `bypass:` absent or without lists still means block for canaries and 853. */
export function bypassModeOf(cfg: Config): BypassMode {
  const b = cfg.bypass as BypassConfig | undefined;
  if (b === undefined) return 'off';
  return b.mode ?? 'block';
}

export interface ParsedBypassList { v4: Cidr[]; v6: Cidr[]; hosts: string[]; bad: Array<{ line: number; text: string }> }

const HOST_RE = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * One entry per line: an IP, a CIDR or a hostname. `#` starts a comment; hosts-file lines
 * ("0.0.0.0 dns.example") give their name. Anything else is reported with its line number.
 */
export function parseBypassList(text: string): ParsedBypassList {
  const out: ParsedBypassList = { v4: [], v6: [], hosts: [], bad: [] };
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const body = lines[i].replace(/#.*$/, '').trim();
    if (!body) continue;
    const tok = body.split(/\s+/);
    let item = tok[0];
    if (tok.length === 2 && /^(0\.0\.0\.0|127\.0\.0\.1|::1?|::)$/.test(tok[0])) item = tok[1];
    else if (tok.length > 1) { out.bad.push({ line: i + 1, text: lines[i].slice(0, 100) }); continue; }
    if (/^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(item) && (item.includes(':') || /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(item))) {
      try {
        const c = parseCidr(item);
        (c.family === 4 ? out.v4 : out.v6).push(c);
      } catch { out.bad.push({ line: i + 1, text: lines[i].slice(0, 100) }); }
      continue;
    }
    const h = item.toLowerCase().replace(/\.$/, '');
    if (HOST_RE.test(h)) out.hosts.push(h);
    else out.bad.push({ line: i + 1, text: lines[i].slice(0, 100) });
  }
  return out;
}

export function bypassTableName(networkTable: string): string { return `${networkTable}_bypass`; }

export interface GroupExemptions { off4: Cidr[]; off6: Cidr[]; offMac: string[]; log4: Cidr[]; log6: Cidr[]; logMac: string[] }

const MAC_RE = /^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$/i;

/** Clients of groups that set `bypass: off|log` (CIDRs and MACs; other entries are the filter's business). */
export function groupExemptions(groups: unknown): GroupExemptions {
  const ex: GroupExemptions = { off4: [], off6: [], offMac: [], log4: [], log6: [], logMac: [] };
  if (!Array.isArray(groups)) return ex;
  for (const g of groups as Array<{ clients?: string[]; bypass?: string }>) {
    if (g.bypass !== 'off' && g.bypass !== 'log') continue;
    const off = g.bypass === 'off';
    for (const c of g.clients ?? []) {
      if (MAC_RE.test(c)) { (off ? ex.offMac : ex.logMac).push(c.toLowerCase().replace(/-/g, ':')); continue; }
      try {
        const cidr = parseCidr(c);
        if (cidr.family === 4) (off ? ex.off4 : ex.log4).push(cidr); else (off ? ex.off6 : ex.log6).push(cidr);
      } catch { /* not an address: the filter config check reports it */ }
    }
  }
  return ex;
}

export interface BypassRulesetInput {
  table: string;
  mode: BypassMode;
  /** Ingress interfaces of LAN clients (network.interfaces); empty = every forwarded packet… */
  interfaces: string[];
  /** …except those arriving on these (the WAN side, as the TPROXY table derives it). */
  excludeInterfaces?: string[];
  ipv6: boolean;
  exemptions: GroupExemptions;
  dst4?: Cidr[];
  dst6?: Cidr[];
}

const elems = (xs: Array<Cidr | string>) => xs.map((c) => (typeof c === 'string' ? c : c.text)).join(', ');
const setDef = (name: string, type: string, flags: string, items: Array<Cidr | string>) =>
  `  set ${name} {\n    type ${type};${flags ? ` flags ${flags};` : ''}${flags.includes('interval') ? ' auto-merge;' : ''}\n` +
  (items.length ? `    elements = { ${elems(items)} }\n` : '') + '  }\n';

/** The whole `nft -f -` script of the bypass table (atomic replace, like the TPROXY table). */
export function renderBypassRuleset(r: BypassRulesetInput): string {
  const t = r.table;
  const ex = r.exemptions;
  let out = `add table inet ${t}\ndelete table inet ${t}\ntable inet ${t} {\n`;
  out += setDef('dst4', 'ipv4_addr', 'interval', r.dst4 ?? []);
  out += setDef('dst6', 'ipv6_addr', 'interval', r.dst6 ?? []);
  out += '  set attempts4 {\n    type ipv4_addr . inet_proto . inet_service; flags dynamic; size 65536; counter;\n  }\n';
  out += '  set attempts6 {\n    type ipv6_addr . inet_proto . inet_service; flags dynamic; size 65536; counter;\n  }\n';
  out += setDef('off_src4', 'ipv4_addr', 'interval', ex.off4);
  out += setDef('off_src6', 'ipv6_addr', 'interval', ex.off6);
  out += setDef('off_mac', 'ether_addr', '', ex.offMac);
  out += setDef('log_src4', 'ipv4_addr', 'interval', ex.log4);
  out += setDef('log_src6', 'ipv6_addr', 'interval', ex.log6);
  out += setDef('log_mac', 'ether_addr', '', ex.logMac);
  const names = (xs: string[]) => `{ ${xs.map((i) => `"${i}"`).join(', ')} }`;
  const iif = r.interfaces.length ? `iifname ${names(r.interfaces)} `
    : r.excludeInterfaces?.length ? `iifname != ${names(r.excludeInterfaces)} ` : '';
  const fam = r.ipv6 ? '' : 'meta nfproto ipv4 ';
  out += '  chain forward {\n    type filter hook forward priority filter - 5; policy accept;\n';
  out += `    ${iif}${fam}meta l4proto { tcp, udp } th dport 853 jump attempt comment "DoT / DoQ"\n`;
  out += `    ${iif}ip daddr @dst4 meta l4proto { tcp, udp } th dport 443 jump attempt comment "DoH / DoH3 to listed resolvers"\n`;
  if (r.ipv6) out += `    ${iif}ip6 daddr @dst6 meta l4proto { tcp, udp } th dport 443 jump attempt comment "DoH / DoH3 to listed resolvers"\n`;
  out += '  }\n';
  out += '  chain attempt {\n';
  out += '    ip saddr @off_src4 return\n    ip6 saddr @off_src6 return\n    ether saddr @off_mac return\n';
  // One count per TCP connection attempt (the SYN), per datagram for UDP.
  out += '    meta l4proto tcp tcp flags & (syn | ack) != syn goto enforce\n';
  out += '    meta nfproto ipv4 add @attempts4 { ip saddr . meta l4proto . th dport }\n';
  out += '    meta nfproto ipv6 add @attempts6 { ip6 saddr . meta l4proto . th dport }\n';
  out += '    goto enforce\n  }\n';
  out += '  chain enforce {\n';
  if (r.mode === 'block') {
    out += '    ip saddr @log_src4 return\n    ip6 saddr @log_src6 return\n    ether saddr @log_mac return\n';
    out += '    meta l4proto tcp counter reject with tcp reset\n';
    out += '    counter reject with icmpx admin-prohibited\n';
  } else {
    out += '    return comment "mode log: counted only"\n';
  }
  out += '  }\n}\n';
  return out;
}

/** Script replacing the contents of dst4/dst6 in one transaction. */
export function renderSetUpdate(table: string, dst4: Cidr[], dst6: Cidr[]): string {
  let s = `flush set inet ${table} dst4\nflush set inet ${table} dst6\n`;
  if (dst4.length) s += `add element inet ${table} dst4 { ${elems(dst4)} }\n`;
  if (dst6.length) s += `add element inet ${table} dst6 { ${elems(dst6)} }\n`;
  return s;
}

export interface AttemptCount { client: string; proto: BypassProto; packets: number }
export type BypassProto = 'dot' | 'doq' | 'doh' | 'doh3';

export function protoOf(l4: string, port: number): BypassProto | null {
  if (port === 853) return l4 === 'tcp' ? 'dot' : l4 === 'udp' ? 'doq' : null;
  if (port === 443) return l4 === 'tcp' ? 'doh' : l4 === 'udp' ? 'doh3' : null;
  return null;
}

/** Counters of attempts4/attempts6 from `nft -j list set` output (either set). */
export function parseAttemptSet(json: string): AttemptCount[] {
  const out: AttemptCount[] = [];
  let doc: { nftables?: Array<{ set?: { elem?: Array<{ elem?: { val?: { concat?: unknown[] }; counter?: { packets?: number } } }> } }> };
  try { doc = JSON.parse(json); } catch { return out; }
  for (const item of doc.nftables ?? []) {
    for (const e of item.set?.elem ?? []) {
      const c = e.elem?.val?.concat;
      if (!Array.isArray(c) || c.length !== 3) continue;
      const proto = protoOf(String(c[1]), Number(c[2]));
      if (!proto) continue;
      out.push({ client: String(c[0]), proto, packets: Number(e.elem?.counter?.packets ?? 0) });
    }
  }
  return out;
}

export async function bypassTableExists(table: string): Promise<boolean> {
  return (await run(NFT, ['list', 'table', 'inet', table])).code === 0;
}

export async function bypassDown(table: string): Promise<boolean> {
  if (!(await bypassTableExists(table))) return false;
  await runOk(NFT, ['-f', '-'], `add table inet ${table}\ndelete table inet ${table}\n`);
  return true;
}

/** `network show`: the table's set sizes and counters, or why there is nothing to show. */
export async function bypassShow(table: string, mode: BypassMode): Promise<{ ok: boolean; text: string }> {
  if (mode === 'off') return { ok: true, text: 'bypass: off\n' };
  const r = await run(NFT, ['-j', 'list', 'table', 'inet', table]);
  if (r.code !== 0) return { ok: false, text: `bypass: mode ${mode}, but table inet ${table} is missing\n` };
  let doc: { nftables?: Array<{ set?: { name: string; elem?: unknown[] }; rule?: { expr?: Array<{ counter?: { packets: number } }> } }> };
  try { doc = JSON.parse(r.stdout); } catch { return { ok: false, text: 'bypass: unreadable nft output\n' }; }
  const sizes: string[] = [];
  let rejected = 0;
  for (const item of doc.nftables ?? []) {
    if (item.set) sizes.push(`${item.set.name}=${item.set.elem?.length ?? 0}`);
    for (const x of item.rule?.expr ?? []) if (x.counter) rejected += x.counter.packets;
  }
  const attempts = [...parseAttemptSet(r.stdout)];
  const byProto: Record<string, number> = {};
  for (const a of attempts) byProto[a.proto] = (byProto[a.proto] ?? 0) + a.packets;
  const top = attempts.sort((a, b) => b.packets - a.packets).slice(0, 10).map((a) => `${a.client} ${a.proto} ${a.packets}`);
  return {
    ok: true,
    text: `bypass: mode ${mode}, table inet ${table}; sets ${sizes.join(' ')}; rejected packets ${rejected}; ` +
      `attempts ${Object.entries(byProto).map(([k, v]) => `${k}=${v}`).join(' ') || 'none'}\n` +
      (top.length ? `  top clients: ${top.join(', ')}\n` : ''),
  };
}

// ---------------------------------------------------------------------------------------------------
// Runtime: lists, resolution, set updates, attempt counting (owned by the running server).

export type BypassLog = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
/** Resolves one name and type (1 = A, 28 = AAAA) through our own upstreams. */
export type BypassResolve = (name: string, qtype: 1 | 28) => Promise<{ addrs: string[]; ttl: number }>;

export interface BypassRecord { time: number; client: string; proto: string; count: number; name?: string }

export interface BypassControllerOptions {
  table: string;
  mode: BypassMode;
  lists: BypassListConfig[];
  baseDir: string;
  stateDir: string;
  resolve: BypassResolve;
  log: BypassLog;
  /** Called with the hostnames of all lists after each load (the DNS stage blocks them). */
  onNames: (names: string[]) => void;
  /** One record per client and protocol whose counter rose since the last read. */
  onAttempts?: (r: BypassRecord) => void;
  /** How often the nft counters are read (default 5 s). */
  pollMs?: number;
  /**
   * Whether this process updates the nft sets and reads their counters (default true). With several
   * workers only one does, or every attempt would be counted once per worker.
   */
  nft?: boolean;
  /** Re-resolution bounds for listed hostnames, seconds. */
  minTtl?: number;
  maxTtl?: number;
}

interface LoadedList { cfg: BypassListConfig; parsed: ParsedBypassList; timer: NodeJS.Timeout | null; failures: number }

export class BypassController {
  /** Attempts seen in the nft counters, by protocol (what dns_tproxy_bypass_attempts_total exports). */
  readonly attempts: Record<BypassProto | 'canary' | 'name', number> = { dot: 0, doq: 0, doh: 0, doh3: 0, canary: 0, name: 0 };
  /** Per client and protocol, the last counter value read (to turn counters into increments). */
  private readonly last = new Map<string, number>();
  readonly perClient = new Map<string, number>();
  private readonly lists: LoadedList[] = [];
  /** Resolved addresses of listed hostnames: name → { v4, v6, timer }. */
  private readonly resolved = new Map<string, { v4: string[]; v6: string[]; timer: NodeJS.Timeout | null }>();
  private pollTimer: NodeJS.Timeout | null = null;
  private pushTimer: NodeJS.Timeout | null = null;
  private closed = false;
  setUpdates = 0;
  setUpdateFailures = 0;
  resolveFailures = 0;
  pollFailures = 0;
  /** Elements in dst4/dst6 after the last update. */
  dst4Size = 0;
  dst6Size = 0;
  tablePresent = false;

  constructor(private readonly o: BypassControllerOptions) {}

  async start(): Promise<void> {
    for (const cfg of this.o.lists) {
      const l: LoadedList = { cfg, parsed: { v4: [], v6: [], hosts: [], bad: [] }, timer: null, failures: 0 };
      this.lists.push(l);
      await this.load(l);
      this.publishNames();
      const every = parseDuration(cfg.refresh, 24 * 3600_000);
      l.timer = setInterval(() => { void this.load(l).then(() => this.afterLoad()); }, every);
      l.timer.unref();
    }
    if (this.o.nft === false) { this.publishNames(); return; }
    this.tablePresent = await bypassTableExists(this.o.table).catch(() => false);
    // Hostnames are blocked in DNS from here on; their addresses follow in the background (a slow
    // upstream must not hold up the listeners).
    void this.afterLoad();
    // `run --manage-network` brings the table up after the listeners, and `network up` may run at any
    // time: each tick looks for it, fills it when it (re)appears, then reads its counters.
    this.pollTimer = setInterval(() => { void this.tick(); }, this.o.pollMs ?? 5000);
    this.pollTimer.unref();
  }

  private warnedMissing = false;
  private readonly failingNames = new Set<string>();

  private async tick(): Promise<void> {
    if (this.closed) return;
    const present = await bypassTableExists(this.o.table).catch(() => false);
    if (!present) {
      this.tablePresent = false;
      if (!this.warnedMissing && this.o.mode !== 'off') {
        this.warnedMissing = true;
        this.o.log('warn', 'bypass: nft table missing (run `network up` or `run --manage-network`); DNS-side bypass control only', { table: this.o.table });
      }
      return;
    }
    if (!this.tablePresent) {
      // New (or re-created) table: it holds only the file lists' addresses and fresh counters.
      this.tablePresent = true;
      this.warnedMissing = false;
      this.last.clear();
      await this.pushSets();
    }
    await this.poll();
  }

  private async load(l: LoadedList): Promise<void> {
    const { cfg } = l;
    try {
      let text: string;
      if (cfg.path) {
        text = await fs.readFile(path.resolve(this.o.baseDir, cfg.path), 'utf8');
      } else {
        const cached = await readCache(this.o.stateDir, `bypass-${cfg.name}`, cfg.url!).catch(() => null);
        try {
          const r = await fetchList(cfg.url!, cached ? { etag: cached.meta.etag, lastModified: cached.meta.lastModified } : null, 30_000, 16 << 20);
          if (r.status === 'ok') {
            await writeCache(this.o.stateDir, `bypass-${cfg.name}`, { url: cfg.url!, etag: r.etag, lastModified: r.lastModified, fetchedAt: Date.now(), bytes: r.data.length }, r.data).catch(() => {});
            text = r.data.toString('utf8');
          } else text = cached!.data.toString('utf8');
        } catch (e) {
          if (!cached) throw e;
          this.o.log('warn', 'bypass list download failed; using the cached copy', { list: cfg.name, error: (e as Error).message });
          text = cached.data.toString('utf8');
        }
      }
      l.parsed = parseBypassList(text);
      if (l.parsed.bad.length) {
        this.o.log('warn', 'bypass list has lines that are neither an IP, a CIDR nor a hostname', { list: cfg.name, bad: l.parsed.bad.length, first: l.parsed.bad.slice(0, 3) });
      }
    } catch (e) {
      l.failures++;
      // The last good contents stay in force.
      this.o.log('error', 'bypass list could not be loaded; keeping its previous contents', { list: cfg.name, error: (e as Error).message });
    }
  }

  /** Hostnames to the DNS stage, new ones resolved, gone ones forgotten, sets pushed. */
  private publishNames(): Set<string> {
    const hosts = new Set<string>();
    for (const l of this.lists) for (const h of l.parsed.hosts) hosts.add(h);
    this.o.onNames([...hosts]);
    return hosts;
  }

  private async afterLoad(): Promise<void> {
    const hosts = this.publishNames();
    if (this.o.nft === false) return; // addresses matter only to the process that fills the sets
    for (const [name, r] of this.resolved) {
      if (!hosts.has(name)) { if (r.timer) clearTimeout(r.timer); this.resolved.delete(name); }
    }
    await Promise.all([...hosts].filter((h) => !this.resolved.has(h)).map((h) => this.resolveHost(h, false)));
    await this.pushSets();
  }

  private async resolveHost(name: string, push: boolean): Promise<void> {
    if (this.closed) return;
    const entry = this.resolved.get(name) ?? { v4: [], v6: [], timer: null };
    this.resolved.set(name, entry);
    let ttl = this.o.maxTtl ?? 3600;
    const results = await Promise.allSettled([this.o.resolve(name, 1), this.o.resolve(name, 28)]);
    results.forEach((r, i) => {
      if (r.status === 'rejected') {
        // Retried within a minute; logged once per name and type until it works again.
        this.resolveFailures++;
        ttl = Math.min(ttl, 60);
        const key = `${name}/${i === 0 ? 'A' : 'AAAA'}`;
        if (!this.failingNames.has(key)) {
          this.failingNames.add(key);
          this.o.log('warn', 'bypass: cannot resolve a listed hostname; retrying', { name, type: i === 0 ? 'A' : 'AAAA', error: String((r.reason as Error)?.message ?? r.reason) });
        }
        return;
      }
      this.failingNames.delete(`${name}/${i === 0 ? 'A' : 'AAAA'}`);
      // A failed or empty answer keeps what we had: an address once listed stays blocked until it is
      // seen replaced.
      if (r.value.addrs.length) {
        if (i === 0) entry.v4 = r.value.addrs.filter((a) => !a.includes(':'));
        else entry.v6 = r.value.addrs.filter((a) => a.includes(':'));
        ttl = Math.min(ttl, r.value.ttl);
      }
    });
    ttl = Math.max(ttl, this.o.minTtl ?? 30);
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = setTimeout(() => { void this.resolveHost(name, true); }, ttl * 1000);
    entry.timer.unref();
    if (push) this.schedulePush();
  }

  /** Re-resolutions arrive one by one; one set update per second at most. */
  private schedulePush(): void {
    if (this.pushTimer || this.closed) return;
    this.pushTimer = setTimeout(() => { this.pushTimer = null; void this.pushSets(); }, 1000);
    this.pushTimer.unref();
  }

  /** The addresses that dst4/dst6 should hold now. */
  destinations(): { v4: Cidr[]; v6: Cidr[] } {
    const v4 = new Map<string, Cidr>(), v6 = new Map<string, Cidr>();
    for (const l of this.lists) {
      for (const c of l.parsed.v4) v4.set(c.text, c);
      for (const c of l.parsed.v6) v6.set(c.text, c);
    }
    for (const r of this.resolved.values()) {
      for (const a of r.v4) { try { const c = parseCidr(a); v4.set(c.text, c); } catch { /* not an address */ } }
      for (const a of r.v6) { try { const c = parseCidr(a); v6.set(c.text, c); } catch { /* not an address */ } }
    }
    return { v4: [...v4.values()], v6: [...v6.values()] };
  }

  private async pushSets(): Promise<void> {
    if (!this.tablePresent || this.closed) return;
    const d = this.destinations();
    try {
      await runOk(NFT, ['-f', '-'], renderSetUpdate(this.o.table, d.v4, d.v6));
      this.setUpdates++;
      if (d.v4.length !== this.dst4Size || d.v6.length !== this.dst6Size || this.setUpdates === 1) {
        this.o.log('info', 'bypass: address sets updated', { table: this.o.table, dst4: d.v4.length, dst6: d.v6.length, hostnames: this.resolved.size });
      }
      this.dst4Size = d.v4.length;
      this.dst6Size = d.v6.length;
    } catch (e) {
      this.setUpdateFailures++;
      this.o.log('error', 'bypass: nft set update failed; the previous contents stay', { error: (e as Error).message.slice(0, 300) });
    }
  }

  /** Reads the attempt counters and turns their increments into per-protocol totals and records. */
  async poll(): Promise<void> {
    if (this.closed) return;
    const now = Date.now();
    for (const set of ['attempts4', 'attempts6']) {
      const r = await run(NFT, ['-j', 'list', 'set', 'inet', this.o.table, set]).catch(() => null);
      if (!r || r.code !== 0) { this.pollFailures++; continue; }
      for (const a of parseAttemptSet(r.stdout)) {
        const key = `${a.client}|${a.proto}`;
        const prev = this.last.get(key) ?? 0;
        // A counter below the last reading was recreated (table reloaded): it counts from zero.
        const inc = a.packets >= prev ? a.packets - prev : a.packets;
        this.last.set(key, a.packets);
        if (inc <= 0) continue;
        this.count(a.client, a.proto, inc);
        this.o.onAttempts?.({ time: now, client: a.client, proto: a.proto, count: inc });
      }
    }
  }

  /** Attempts seen in DNS (canary and listed-name lookups) count here too. */
  count(client: string, proto: keyof BypassController['attempts'], n = 1): void {
    this.attempts[proto] += n;
    const key = `${client}|${proto}`;
    // Bounded: past 10k client×protocol keys only the per-protocol totals grow.
    if (this.perClient.has(key) || this.perClient.size < 10_000) this.perClient.set(key, (this.perClient.get(key) ?? 0) + n);
  }

  get hostnames(): number { return this.resolved.size; }

  /** Re-reads every list now (SIGHUP), then resolves new hostnames and updates the sets. */
  async refresh(): Promise<void> {
    for (const l of this.lists) await this.load(l);
    await this.afterLoad();
  }

  /** Resolves, then updates the sets (tests, and a start that must see its addresses in place). */
  async settle(): Promise<void> { await this.afterLoad(); }

  close(): void {
    this.closed = true;
    for (const l of this.lists) if (l.timer) clearInterval(l.timer);
    for (const r of this.resolved.values()) if (r.timer) clearTimeout(r.timer);
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.pushTimer) clearTimeout(this.pushTimer);
  }
}

// dns-packet for the few resolutions of listed hostnames (not a hot path).
const requireCjs = createRequire(import.meta.url);

export function encodeQuestion(name: string, qtype: 1 | 28): Buffer {
  const dnsPacket = requireCjs('dns-packet') as typeof import('dns-packet');
  return dnsPacket.encode({ type: 'query', id: 0, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: qtype === 1 ? 'A' : 'AAAA', name, class: 'IN' }] });
}

/** Addresses and the smallest TTL of an answer (CNAME chains followed by taking every A/AAAA). */
export function decodeAddresses(answer: Buffer, qtype: 1 | 28): { addrs: string[]; ttl: number } {
  const dnsPacket = requireCjs('dns-packet') as typeof import('dns-packet');
  const p = dnsPacket.decode(answer);
  const want = qtype === 1 ? 'A' : 'AAAA';
  const addrs: string[] = [];
  let ttl = Infinity;
  for (const a of p.answers ?? []) {
    if (a.type === want) { addrs.push(String(a.data)); ttl = Math.min(ttl, a.ttl ?? 0); }
  }
  return { addrs, ttl: Number.isFinite(ttl) ? ttl : 300 };
}

/** A BypassResolve that asks the server's current upstream pool directly (never the chain, whose bypass
 * stage would answer NXDOMAIN for exactly these names). */
export function upstreamResolver(pool: () => UpstreamPool, timeoutMs = 3000): BypassResolve {
  return (name, qtype) => new Promise((resolve, reject) => {
    const p = pool();
    const up = p.upstreams[p.pick(0)];
    const ctx = new QueryContext();
    ctx.responder = resolverResponder;
    up.send(encodeQuestion(name, qtype), ctx, {
      onUpstreamResult(_c, _u, answer, error) {
        if (!answer) { reject(new Error(`${name}: ${error ?? 'no answer'}`)); return; }
        try { resolve(decodeAddresses(answer, qtype)); } catch (e) { reject(e); }
      },
    }, performance.now() + timeoutMs);
  });
}

const resolverResponder: Responder = {
  transport: 'internal' as never,
  send() { /* answers come back through the handler */ },
  describe() { return { client: 'internal', clientPort: 0, server: '', serverPort: 0, family: 4 }; },
};

/** dns_tproxy_bypass_* metrics, read from the controller's and the stage's plain counters. */
export function registerBypassMetrics(registry: Registry, ctl: () => BypassController | null, stage: BypassStage | null): void {
  const add = (name: string, help: string, type: 'counter' | 'gauge', read: () => Sample[]) =>
    registry.registerMetric(new CollectedMetric(`dns_tproxy_${name}`, help, type, read) as never);
  add('bypass_attempts_total', 'Encrypted-DNS bypass attempts by LAN clients, by protocol (dot, doq, doh, doh3 from the nft counters; canary and name from DNS).', 'counter', () => {
    const c = ctl();
    const a = c?.attempts ?? { dot: 0, doq: 0, doh: 0, doh3: 0, canary: 0, name: 0 };
    return Object.entries(a).map(([proto, value]) => ({ labels: { proto }, value }));
  });
  add('bypass_set_elements', 'Addresses in the bypass nft sets.', 'gauge', () => {
    const c = ctl();
    return [{ labels: { set: 'dst4' }, value: c?.dst4Size ?? 0 }, { labels: { set: 'dst6' }, value: c?.dst6Size ?? 0 }];
  });
  if (stage) {
    add('bypass_dns_answers_total', 'Queries answered by the bypass stage, by kind.', 'counter', () => [
      { labels: { kind: 'canary' }, value: stage.canaryAnswers }, { labels: { kind: 'name' }, value: stage.nameBlocks },
      { labels: { kind: 'ddr' }, value: stage.ddrAnswers }, { labels: { kind: 'logged' }, value: stage.logged }]);
  }
}

// ---------------------------------------------------------------------------------------------------
// Wiring helpers for the server (kept here so src/server.ts needs only a few lines).

interface ServerLike {
  config: Config;
  readonly log: BypassLog;
  readonly upstreams: UpstreamPool;
  readonly filter: FilterManager | null;
  /** Workers: only the one that serves TCP (there is exactly one) runs the nft side. */
  readonly role?: { tcp: boolean };
}

/** Sink for query-history records (src/store QueryStore.append), looked up at call time. */
export type HistorySink = () => { append(r: Record<string, unknown>): void } | null | undefined;

/** Our DoT/DoH listeners as DDR names them (wildcard binds give no address hint). */
export function encryptedEndpoints(listen: Config['listen']): EncryptedEndpoint[] {
  const out: EncryptedEndpoint[] = [];
  const add = (alpn: 'dot' | 'h2', a: string) => {
    const { host, port } = parseHostPort(a);
    const wildcard = host === '0.0.0.0' || host === '::' || host === '';
    out.push({ alpn, port, v4: !wildcard && net.isIPv4(host) ? [host] : [], v6: !wildcard && net.isIPv6(host) ? [host] : [] });
  };
  for (const a of listen.dot ?? []) add('dot', a);
  for (const a of listen.doh ?? []) add('h2', a);
  return out;
}

/** The first DNS name on our certificate (DDR's TargetName), or "." without one. */
export function certificateName(certPath: string | undefined): string {
  if (!certPath) return '.';
  try {
    const x = new X509Certificate(readFileSync(certPath));
    const dns = /DNS:([^,\s]+)/.exec(x.subjectAltName ?? '');
    return dns ? dns[1] : '.';
  } catch { return '.'; }
}

/**
 * The bypass stage for a config, or null when there is nothing for it to do: no `bypass:` key and no
 * encrypted listeners to advertise. With listeners but no `bypass:`, it answers DDR only (forwarding
 * `_dns.resolver.arpa` would let a public resolver advertise itself).
 */
export function bypassStageFor(s: ServerLike, respond: (ctx: QueryContext) => void, history: HistorySink,
  counter: () => BypassController | null): BypassStage | null {
  const cfg = s.config;
  const endpoints = encryptedEndpoints(cfg.listen);
  const mode = bypassModeOf(cfg);
  if (mode === 'off' && cfg.bypass === undefined && endpoints.length === 0) return null;
  const overrides = new Map<string, BypassMode>();
  for (const g of (cfg.groups as Array<{ name: string; bypass?: BypassMode }> | undefined) ?? []) if (g.bypass) overrides.set(g.name, g.bypass);
  return new BypassStage(respond, {
    mode, endpoints, ddrTarget: certificateName(cfg.listen.tlsCert),
    groupMode: overrides.size === 0 ? null : (ctx) => {
      const eng = s.filter?.engine;
      if (!eng) return null;
      return overrides.get(eng.groupName(eng.groupOfIp(clientOf(ctx)))) ?? null;
    },
    onAttempt: (ctx, kind, name, blocked) => {
      const client = clientOf(ctx);
      counter()?.count(client, kind);
      history()?.append({ time: ctx.wallStarted || Date.now(), client, server: '', serverPort: 0, transport: ctx.responder.transport,
        qname: name, qtype: '', kind: 'bypass', rcode: blocked ? 'NXDOMAIN' : undefined, list: kind === 'canary' ? 'bypass-canary' : 'bypass' });
    },
  });
}

/** Starts list loading, resolution and counter polling when `bypass:` is configured. */
export async function startBypass(s: ServerLike, stage: BypassStage | null, history: HistorySink): Promise<BypassController | null> {
  const cfg = s.config;
  const b = cfg.bypass as BypassConfig | undefined;
  if (!b) return null;
  const netTable = ((cfg.network as { table?: string } | undefined)?.table) ?? 'dns_tproxy';
  const ctl = new BypassController({
    table: bypassTableName(netTable), mode: bypassModeOf(cfg), lists: b.lists ?? [], baseDir: cfg.baseDir, stateDir: cfg.stateDir,
    resolve: upstreamResolver(() => s.upstreams), log: s.log, nft: s.role?.tcp !== false,
    onNames: (names) => stage?.setNames(names),
    onAttempts: (r) => history()?.append({ time: r.time, client: r.client, server: '', serverPort: 0, transport: r.proto, qname: '', qtype: '', kind: 'bypass', answers: [`${r.count} attempt(s)`] }),
  });
  await ctl.start();
  return ctl;
}

/**
 * `network up` / `run --manage-network`: the bypass table with the static parts of the lists (URL
 * lists and hostnames are added by the running server). Same LAN side as the TPROXY table. Returns a
 * line for the log, or null when bypass is off (and any old table is removed).
 */
export async function bypassUpFor(cfg: Config): Promise<string | null> {
  const n = resolveNetworkConfig(cfg.network as NetworkConfig | undefined);
  const mode = bypassModeOf(cfg);
  const table = bypassTableName(n.table);
  let exclude: string[] = [];
  if (!n.interfaces.length) exclude = (await readIngress(n).catch(() => null))?.wanInterfaces ?? [];
  if (mode === 'off') { await bypassDown(table).catch(() => false); return null; }
  const b = cfg.bypass as BypassConfig;
  const v4: Cidr[] = [], v6: Cidr[] = [];
  for (const l of b.lists ?? []) {
    if (!l.path) continue; // url lists and hostnames arrive with the running server
    const p = parseBypassList(await fs.readFile(path.resolve(cfg.baseDir, l.path), 'utf8'));
    v4.push(...p.v4); v6.push(...p.v6);
  }
  await runOk(NFT, ['-f', '-'], renderBypassRuleset({ table, mode, interfaces: n.interfaces, excludeInterfaces: exclude, ipv6: n.ipv6,
    exemptions: groupExemptions(cfg.groups), dst4: v4, dst6: v6 }));
  return `bypass ${mode}: table inet ${table} (${v4.length + v6.length} listed addresses${exclude.length ? `; not on ${exclude.join(', ')}` : ''})`;
}

/** `network down` / exit: removes the bypass table (no error when absent). */
export async function bypassDownFor(cfg: Config): Promise<boolean> {
  const n = resolveNetworkConfig(cfg.network as NetworkConfig | undefined);
  return bypassDown(bypassTableName(n.table));
}

/** `network show`: the bypass part. */
export async function bypassShowFor(cfg: Config): Promise<{ ok: boolean; text: string }> {
  const n = resolveNetworkConfig(cfg.network as NetworkConfig | undefined);
  return bypassShow(bypassTableName(n.table), bypassModeOf(cfg));
}
