// Which device is behind a client address, from every source we have, folded into one map that
// lookup() reads synchronously. Sources refresh in the background:
//   config names (win) > DHCP leases (dnsmasq, odhcpd, ISC dhcpd; watched) > reverse lookups;
//   the kernel neighbour table gives the MAC of v4 and v6 clients, so the rotating IPv6 privacy
//   addresses of one device (same MAC) become one device.
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import type { DeviceEntry, DeviceInfo, DeviceResolver } from './types.js';
import { canonicalMac, detectLeaseFormat, LEASE_PARSERS, parseIpNeighJson, parseProcArp, type AddressFact, type LeaseFormat } from './parse.js';

export interface DeviceNameConfig { name: string; mac?: string; addresses?: string[] }
export interface LeaseFileConfig { path: string; format?: LeaseFormat }
export interface DevicesConfig {
  leases?: (string | LeaseFileConfig)[];
  /** Read the kernel neighbour table (default true). */
  neighbours?: boolean;
  neighbourIntervalMs?: number;
  /** "host:port" of a local resolver for PTR lookups of unnamed clients; off when absent. */
  reverseResolver?: string;
  names?: DeviceNameConfig[];
  /** Lease files are also polled at this interval, for file systems where change events are lost. */
  pollMs?: number;
}

export const devicesSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    leases: {
      type: 'array',
      items: {
        oneOf: [
          { type: 'string', minLength: 1 },
          { type: 'object', additionalProperties: false, required: ['path'], properties: { path: { type: 'string', minLength: 1 }, format: { enum: ['dnsmasq', 'odhcpd', 'dhcpd'] } } },
        ],
      },
    },
    neighbours: { type: 'boolean' },
    neighbourIntervalMs: { type: 'integer', minimum: 1000 },
    reverseResolver: { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]|[0-9.]+)(:[0-9]{1,5})?$' },
    names: {
      type: 'array',
      items: {
        type: 'object', additionalProperties: false, required: ['name'],
        properties: { name: { type: 'string', minLength: 1, maxLength: 63 }, mac: { type: 'string' }, addresses: { type: 'array', items: { type: 'string' } } },
      },
    },
    pollMs: { type: 'integer', minimum: 100 },
  },
} as const;

const DEFAULT_NEIGHBOUR_MS = 30_000;
const DEFAULT_POLL_MS = 10_000;
const DEBOUNCE_MS = 300;
/** An unknown address triggers an early neighbour refresh, at most this often. */
const NEIGHBOUR_NUDGE_MS = 500;
const LOOKUP_CACHE_MAX = 10_000;
const REVERSE_CACHE_MAX = 4096;
const REVERSE_PENDING_MAX = 64;
const REVERSE_TTL_MS = 3_600_000;
const REVERSE_NEGATIVE_TTL_MS = 600_000;

type Log = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export interface DeviceTableOptions {
  baseDir?: string;
  log?: Log;
  /** Replaces `ip -j neigh show` (tests feed a fixture). */
  readNeighbours?: () => Promise<AddressFact[]>;
}

interface LeaseSource { file: string; format?: LeaseFormat; facts: AddressFact[]; watcher: fs.FSWatcher | null; mtimeMs: number; timer: NodeJS.Timeout | null; kind: LeaseFormat | null }

/** "::ffff:192.0.2.1" → "192.0.2.1"; lower case. */
export function normalizeAddress(a: string): string {
  const s = a.toLowerCase();
  return s.startsWith('::ffff:') && s.includes('.') ? s.slice(7) : s;
}

export class DeviceTable implements DeviceResolver {
  private readonly leases: LeaseSource[] = [];
  private neigh = new Map<string, string>();
  private readonly reverse = new Map<string, { name: string | null; until: number }>();
  private readonly reversePending = new Set<string>();
  private readonly resolver: Resolver | null;
  private cache = new Map<string, DeviceInfo>();
  // Folded views, rebuilt on every source change.
  private macOf = new Map<string, string>();
  private nameOfMac = new Map<string, { name: string; source: DeviceEntry['source'] }>();
  private nameOfAddr = new Map<string, { name: string; source: DeviceEntry['source'] }>();
  private readonly configByAddr = new Map<string, string>();
  private readonly configByMac = new Map<string, string>();
  private neighTimer: NodeJS.Timeout | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private lastNudge = 0;
  /** Addresses that already caused an early neighbour read since the last periodic one. */
  private readonly nudged = new Set<string>();
  private neighRunning = false;
  /** The coalesced early neighbour read that new addresses are waiting for, if any. */
  private nudgePending: Promise<void> | null = null;
  private nudgeTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Counters for metrics and tests. */
  leaseReloads = 0;
  neighbourRefreshes = 0;
  reverseLookups = 0;

  private constructor(readonly cfg: DevicesConfig, private readonly opts: DeviceTableOptions) {
    for (const n of cfg.names ?? []) {
      const mac = n.mac ? canonicalMac(n.mac) : null;
      if (mac) this.configByMac.set(mac, n.name);
      for (const a of n.addresses ?? []) this.configByAddr.set(normalizeAddress(a), n.name);
    }
    if (cfg.reverseResolver) {
      this.resolver = new Resolver({ timeout: 2000, tries: 1 });
      this.resolver.setServers([cfg.reverseResolver]);
    } else this.resolver = null;
  }

  /** Reads every source once (so the first queries are named), then watches them. */
  static async create(cfg: DevicesConfig, opts: DeviceTableOptions = {}): Promise<DeviceTable> {
    const t = new DeviceTable(cfg, opts);
    for (const l of cfg.leases ?? []) {
      const spec = typeof l === 'string' ? { path: l } : l;
      const file = path.resolve(opts.baseDir ?? '.', spec.path);
      t.leases.push({ file, format: spec.format, facts: [], watcher: null, mtimeMs: -1, timer: null, kind: null });
    }
    await Promise.all(t.leases.map((s) => t.loadLease(s)));
    if (cfg.neighbours !== false) await t.refreshNeighbours();
    t.rebuild();
    t.watch();
    return t;
  }

  private async loadLease(s: LeaseSource): Promise<void> {
    let text: string;
    try {
      const st = await fs.promises.stat(s.file);
      s.mtimeMs = st.mtimeMs;
      text = await fs.promises.readFile(s.file, 'utf8');
    } catch (e) {
      // A lease file that does not exist yet (DHCP server not started) is not an error.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.opts.log?.('warn', 'cannot read lease file', { file: s.file, error: (e as Error).message });
      s.facts = [];
      return;
    }
    const kind = s.format ?? detectLeaseFormat(text);
    s.kind = kind;
    s.facts = LEASE_PARSERS[kind](text);
    this.leaseReloads++;
  }

  private reloadSoon(s: LeaseSource): void {
    if (this.closed || s.timer) return;
    s.timer = setTimeout(() => {
      s.timer = null;
      void this.loadLease(s).then(() => { if (!this.closed) this.rebuild(); });
    }, DEBOUNCE_MS);
    s.timer.unref();
  }

  private watch(): void {
    for (const s of this.leases) {
      try {
        // Watch the directory: DHCP servers often replace the file (write + rename).
        const base = path.basename(s.file);
        s.watcher = fs.watch(path.dirname(s.file), { persistent: false }, (_ev, f) => { if (!f || f.toString() === base) this.reloadSoon(s); });
        s.watcher.on('error', () => { s.watcher?.close(); s.watcher = null; });
      } catch {
        s.watcher = null; // polling below still covers it
      }
    }
    if (this.leases.length) {
      this.pollTimer = setInterval(() => {
        for (const s of this.leases) {
          fs.stat(s.file, (err, st) => {
            const m = err ? -1 : st.mtimeMs;
            if (m !== s.mtimeMs) { s.mtimeMs = m; this.reloadSoon(s); }
          });
        }
      }, this.cfg.pollMs ?? DEFAULT_POLL_MS);
      this.pollTimer.unref();
    }
    if (this.cfg.neighbours !== false) {
      this.neighTimer = setInterval(() => { this.nudged.clear(); void this.refreshNeighbours().then(() => this.rebuild()); }, this.cfg.neighbourIntervalMs ?? DEFAULT_NEIGHBOUR_MS);
      this.neighTimer.unref();
    }
  }

  /** Re-reads the neighbour table now (also called by tests). */
  async refreshNeighbours(): Promise<void> {
    if (this.neighRunning || this.closed) return;
    this.neighRunning = true;
    try {
      const facts = await (this.opts.readNeighbours ?? readKernelNeighbours)();
      const m = new Map<string, string>();
      for (const f of facts) if (f.mac) m.set(normalizeAddress(f.address), f.mac);
      this.neigh = m;
      this.neighbourRefreshes++;
    } catch {
      // keep the previous table
    } finally {
      this.neighRunning = false;
    }
  }

  /** Folds all sources into the lookup maps and forgets cached lookups. */
  rebuild(): void {
    const macOf = new Map<string, string>();
    const nameOfMac = new Map<string, { name: string; source: DeviceEntry['source'] }>();
    const nameOfAddr = new Map<string, { name: string; source: DeviceEntry['source'] }>();
    for (const s of this.leases) {
      for (const f of s.facts) {
        const a = normalizeAddress(f.address);
        if (f.mac) macOf.set(a, f.mac);
        if (f.name) {
          nameOfAddr.set(a, { name: f.name, source: s.kind ?? undefined });
          if (f.mac) nameOfMac.set(f.mac, { name: f.name, source: s.kind ?? undefined });
        }
      }
    }
    // The live neighbour table is the better witness of which MAC holds an address now.
    for (const [a, mac] of this.neigh) macOf.set(a, mac);
    const now = Date.now();
    for (const [a, r] of this.reverse) if (r.name && r.until > now && !nameOfAddr.has(a)) nameOfAddr.set(a, { name: r.name, source: 'reverse' });
    this.macOf = macOf; this.nameOfMac = nameOfMac; this.nameOfAddr = nameOfAddr;
    this.cache = new Map();
  }

  lookup(address: string): DeviceInfo {
    const hit = this.cache.get(address);
    if (hit) return hit;
    const a = normalizeAddress(address);
    const mac = this.macOf.get(a);
    const name = this.configByAddr.get(a) ?? (mac ? this.configByMac.get(mac) ?? this.nameOfMac.get(mac)?.name : undefined) ?? this.nameOfAddr.get(a)?.name;
    const info: DeviceInfo = { id: mac ? `mac:${mac}` : name && this.configByAddr.has(a) ? `name:${name}` : `ip:${a}` };
    if (name !== undefined) info.name = name;
    if (mac !== undefined) info.mac = mac;
    if (this.cache.size >= LOOKUP_CACHE_MAX) this.cache = new Map();
    this.cache.set(address, info);
    if (!mac && this.cfg.neighbours !== false) this.nudgeNeighbours(a);
    if (name === undefined && this.resolver) this.queueReverse(a);
    return info;
  }

  /**
   * A new address without a MAC (a new IPv6 privacy address, typically): read the neighbour table
   * early. Reads are coalesced and at most one per NEIGHBOUR_NUDGE_MS; every address seen until the
   * read starts is covered by it.
   */
  private nudgeNeighbours(a: string): void {
    if (this.nudged.has(a) || this.closed || this.nudged.size >= LOOKUP_CACHE_MAX) return;
    this.nudged.add(a);
    if (this.nudgePending) return;
    const wait = Math.max(0, this.lastNudge + NEIGHBOUR_NUDGE_MS - Date.now());
    this.nudgePending = new Promise<void>((resolve) => {
      this.nudgeTimer = setTimeout(() => {
        this.nudgeTimer = null;
        this.lastNudge = Date.now();
        void this.refreshNeighbours().then(() => { if (!this.closed) this.rebuild(); }).finally(() => { this.nudgePending = null; resolve(); });
      }, wait);
      this.nudgeTimer.unref();
    });
  }

  /**
   * Resolves once the early neighbour read that a new address triggered has finished, or after
   * `maxMs`: the store waits for it before writing, so the first query from a new address gets its MAC.
   */
  settle(maxMs = 1000): Promise<void> {
    const p = this.nudgePending;
    if (!p) return Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([p, new Promise<void>((r) => { timer = setTimeout(r, maxMs); timer.unref(); })]).finally(() => clearTimeout(timer));
  }

  private queueReverse(a: string): void {
    const known = this.reverse.get(a);
    if (known && known.until > Date.now()) return;
    if (this.reversePending.has(a) || this.reversePending.size >= REVERSE_PENDING_MAX || this.closed) return;
    this.reversePending.add(a);
    this.reverseLookups++;
    this.resolver!.reverse(a).then((names) => {
      const n = names[0]?.replace(/\.$/, '').split('.')[0];
      this.reverse.set(a, { name: n ? n.slice(0, 63) : null, until: Date.now() + (n ? REVERSE_TTL_MS : REVERSE_NEGATIVE_TTL_MS) });
    }, () => {
      this.reverse.set(a, { name: null, until: Date.now() + REVERSE_NEGATIVE_TTL_MS });
    }).finally(() => {
      this.reversePending.delete(a);
      if (this.reverse.size > REVERSE_CACHE_MAX) {
        const first = this.reverse.keys().next().value;
        if (first !== undefined) this.reverse.delete(first);
      }
      if (!this.closed) this.rebuild();
    });
  }

  list(): DeviceEntry[] {
    const byId = new Map<string, DeviceEntry>();
    const addrs = new Set<string>([...this.macOf.keys(), ...this.nameOfAddr.keys(), ...this.configByAddr.keys()]);
    for (const a of addrs) {
      const info = this.lookup(a);
      let e = byId.get(info.id);
      if (!e) {
        e = { ...info, addresses: [] };
        const mac = info.mac;
        e.source = this.configByAddr.has(a) || (mac && this.configByMac.has(mac)) ? 'config'
          : (mac && this.nameOfMac.get(mac)?.source) || this.nameOfAddr.get(a)?.source || 'neighbour';
        byId.set(info.id, e);
      }
      if (!e.addresses.includes(a)) e.addresses.push(a);
    }
    // Configured MACs not seen anywhere yet still show up, by name.
    for (const [mac, name] of this.configByMac) {
      const id = `mac:${mac}`;
      if (!byId.has(id)) byId.set(id, { id, name, mac, addresses: [], source: 'config' });
    }
    return [...byId.values()];
  }

  close(): void {
    this.closed = true;
    for (const s of this.leases) { s.watcher?.close(); if (s.timer) clearTimeout(s.timer); }
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.nudgeTimer) clearTimeout(this.nudgeTimer);
    if (this.neighTimer) clearInterval(this.neighTimer);
  }
}

/** `ip -j neigh show` (v4 and v6); /proc/net/arp when `ip` is missing or fails. */
export async function readKernelNeighbours(): Promise<AddressFact[]> {
  const json = await new Promise<string | null>((res) => {
    execFile('ip', ['-j', 'neigh', 'show'], { timeout: 2000, maxBuffer: 8 << 20 }, (err, stdout) => res(err ? null : stdout));
  });
  if (json !== null) return parseIpNeighJson(json);
  try { return parseProcArp(await fs.promises.readFile('/proc/net/arp', 'utf8')); } catch { return []; }
}
