// Parsers for the files and tables that say which device is behind an address. They take text and
// never throw: a line they cannot read is skipped (lease files are rewritten while we read them).
import { normalizeMac } from '../filter/net.js';

export interface AddressFact {
  address: string;
  mac?: string;
  name?: string;
}

/** Lower-case, colon-separated, zero-padded ("a:b:c:d:e:f" and "aabbccddeeff" too); null if not a MAC. */
export function canonicalMac(s: string): string | null {
  const t = s.trim();
  if (/^[0-9a-f]{12}$/i.test(t)) return t.toLowerCase().replace(/(..)(?!$)/g, '$1:');
  const parts = t.split(/[:-]/);
  if (parts.length === 6 && parts.every((p) => /^[0-9a-f]{1,2}$/i.test(p))) return parts.map((p) => p.padStart(2, '0').toLowerCase()).join(':');
  return normalizeMac(t);
}

/** The MAC inside a DUID-LLT (type 1) or DUID-LL (type 3) with hardware type Ethernet; hex text in. */
export function macFromDuid(duid: string): string | undefined {
  const h = duid.replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]+$/.test(h)) return undefined;
  if (h.startsWith('00010001') && h.length === 8 + 8 + 12) return canonicalMac(h.slice(16)) ?? undefined;
  if (h.startsWith('00030001') && h.length === 8 + 12) return canonicalMac(h.slice(8)) ?? undefined;
  return undefined;
}

function hostName(s: string | undefined): string | undefined {
  if (!s || s === '*' || s === '-') return undefined;
  // Names are shown in the console and logs: keep them short and printable.
  const clean = s.replace(/[^\x21-\x7e]/g, '').slice(0, 63);
  return clean || undefined;
}

/**
 * dnsmasq `dhcp.leases`: `<expiry> <mac> <ip> <hostname|*> <client-id|*>`; after a `duid <server-duid>`
 * line, DHCPv6 leases `<expiry> <iaid> <ipv6> <hostname|*> <client-duid>`.
 */
export function parseDnsmasqLeases(text: string): AddressFact[] {
  const out: AddressFact[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[0] === 'duid') continue;
    const address = f[2];
    if (!address || !/^[0-9a-f.:]+$/i.test(address)) continue;
    const fact: AddressFact = { address: address.toLowerCase() };
    const mac = address.includes(':') ? macFromDuid(f[4] ?? '') : canonicalMac(f[1]);
    if (mac) fact.mac = mac;
    const name = hostName(f[3]);
    if (name) fact.name = name;
    out.push(fact);
  }
  return out;
}

/**
 * odhcpd: its state file (`# <iface> <duid|hwaddr> <iaid|ipv4> <hostname|-> <valid> <assigned> <len> <addr/len>...`)
 * and its hosts file (`<address> <fqdn> [<name>]`). Both kinds of line may be given.
 */
export function parseOdhcpd(text: string): AddressFact[] {
  const out: AddressFact[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    if (line.startsWith('#')) {
      const f = line.slice(1).trim().split(/\s+/);
      if (f.length < 8) continue;
      const v4 = f[2] === 'ipv4';
      const mac = v4 ? canonicalMac(f[1]) ?? undefined : macFromDuid(f[1]);
      let name = hostName(f[3]);
      if (name?.startsWith('broken\\x20')) name = undefined;
      for (const a of f.slice(7)) {
        const address = a.split('/')[0];
        if (!/^[0-9a-f.:]+$/i.test(address)) continue;
        const fact: AddressFact = { address: address.toLowerCase() };
        if (mac) fact.mac = mac;
        if (name) fact.name = name;
        out.push(fact);
      }
    } else {
      const f = line.split(/\s+/);
      if (f.length < 2 || !/^[0-9a-f.:]+$/i.test(f[0])) continue;
      const name = hostName(f[2] ?? f[1].split('.')[0]);
      if (name) out.push({ address: f[0].toLowerCase(), name });
    }
  }
  return out;
}

/**
 * ISC dhcpd `dhcpd.leases`: `lease <ip> { ... hardware ethernet <mac>; client-hostname "<name>"; binding
 * state <s>; }`. The file is a journal: later blocks for the same address replace earlier ones, and
 * leases whose binding state is not active are dropped.
 */
export function parseDhcpdLeases(text: string): AddressFact[] {
  const by = new Map<string, AddressFact | null>();
  const re = /lease\s+([0-9.]+)\s*\{([^}]*)\}/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    const address = m[1];
    const body = m[2];
    const state = /(?:^|[\s;])binding\s+state\s+(\w+)\s*;/.exec(body)?.[1];
    if (state && state !== 'active' && state !== 'static') { by.set(address, null); continue; }
    const fact: AddressFact = { address };
    const hw = /hardware\s+ethernet\s+([0-9a-f:]+)\s*;/i.exec(body);
    const mac = hw ? canonicalMac(hw[1]) : null;
    if (mac) fact.mac = mac;
    const hn = /client-hostname\s+"((?:[^"\\]|\\.)*)"\s*;/.exec(body);
    const name = hostName(hn?.[1]);
    if (name) fact.name = name;
    by.set(address, fact);
  }
  const out: AddressFact[] = [];
  for (const f of by.values()) if (f) out.push(f);
  return out;
}

/** `ip -j neigh show`: entries with a link-layer address (not FAILED/INCOMPLETE). */
export function parseIpNeighJson(text: string): AddressFact[] {
  let rows: unknown;
  try { rows = JSON.parse(text); } catch { return []; }
  if (!Array.isArray(rows)) return [];
  const out: AddressFact[] = [];
  for (const r of rows as { dst?: unknown; lladdr?: unknown; state?: unknown }[]) {
    if (!r || typeof r.dst !== 'string' || typeof r.lladdr !== 'string') continue;
    const states = Array.isArray(r.state) ? r.state : [];
    if (states.includes('FAILED') || states.includes('INCOMPLETE') || states.includes('NOARP')) continue;
    const mac = canonicalMac(r.lladdr);
    if (!mac || mac === '00:00:00:00:00:00') continue;
    out.push({ address: r.dst.toLowerCase(), mac });
  }
  return out;
}

/** /proc/net/arp, the IPv4 fallback when `ip` is missing. */
export function parseProcArp(text: string): AddressFact[] {
  const out: AddressFact[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue;
    const mac = canonicalMac(f[3]);
    if (mac && mac !== '00:00:00:00:00:00' && f[2] !== '0x0') out.push({ address: f[0], mac });
  }
  return out;
}

export type LeaseFormat = 'dnsmasq' | 'odhcpd' | 'dhcpd';
export const LEASE_PARSERS: Record<LeaseFormat, (t: string) => AddressFact[]> = {
  dnsmasq: parseDnsmasqLeases, odhcpd: parseOdhcpd, dhcpd: parseDhcpdLeases,
};

/** Guesses the format from the content, for `leases:` entries without `format`. */
export function detectLeaseFormat(text: string): LeaseFormat {
  if (/\blease\s+[0-9.]+\s*\{/.test(text)) return 'dhcpd';
  if (/^#\s+\S+\s+\S+\s+\S+\s+\S+\s+-?\d+\s+[0-9a-f]+\s+\d+\s/m.test(text)) return 'odhcpd';
  if (/^\d+\s+\S+\s+[0-9a-f.:]+\s+\S+/im.test(text)) return 'dnsmasq';
  return 'odhcpd';
}
