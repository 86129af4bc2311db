// `network:` config key: JSON Schema, TypeScript shape, defaults and strict
// validation into a fully resolved form that the ruleset renderer trusts.
import { parseCidr, type Cidr } from './cidr.js';

export const DEFAULTS = {
  table: 'dns_tproxy',
  /** 0x1d53 = 7507 ("D53"): mark put on intercepted packets, selects the policy route */
  fwmark: 0x1d53,
  /** which bits of the packet mark belong to us; full 32 bits by default */
  fwmarkMask: 0xffffffff,
  routeTable: 153,
  rulePriority: 10053,
  /** SO_MARK carried by dns-tproxy's own upstream sockets (0x1d54 = fwmark + 1) */
  selfMark: 0x1d54,
  ipv6: true,
  tcp: true,
  local: false,
  failMode: 'open' as const,
};

export type FailMode = 'open' | 'closed';

export interface NetworkConfig {
  /** nft table name in family inet (default "dns_tproxy") */
  table?: string;
  /** packet mark for intercepted packets (default 0x1d53) */
  fwmark?: number | string;
  /** mask of the mark bits we own (default 0xffffffff) */
  fwmarkMask?: number | string;
  /** policy routing table holding `local default dev lo` (default 153) */
  routeTable?: number;
  /** `ip rule` / `ip -6 rule` priority (default 10053) */
  rulePriority?: number;
  /** ingress interfaces to intercept on; empty = every interface except lo. `eth*` wildcards allowed */
  interfaces?: string[];
  /** extra client ranges the transparent listeners admit besides the derived LAN side (routed sub-LANs) */
  clientRanges?: string[];
  /** client source filter (transit traffic only). include empty = all sources */
  sources?: { include?: string[]; exclude?: string[] };
  /** destinations never intercepted; interceptGateway: also intercept DNS aimed at the gateway's own addresses */
  destinations?: { exclude?: string[]; interceptGateway?: boolean };
  ipv6?: boolean;
  tcp?: boolean;
  /** also intercept DNS generated on the gateway itself (output chain mark + reroute) */
  local?: boolean;
  /** SO_MARK of dns-tproxy's own sockets; such packets are never intercepted (default 0x1d54) */
  selfMark?: number | string;
  /** local mode: socket owners (uid or user name) whose DNS is never intercepted */
  localExcludeUids?: Array<number | string>;
  /** local mode: cgroup v2 paths (relative to the cgroup2 root) whose DNS is never intercepted */
  localExcludeCgroups?: string[];
  /** what happens to DNS while dns-tproxy is not running (default "open") */
  failMode?: FailMode;
}

export interface ListenPorts {
  udpPort: number;
  tcpPort: number;
}

export interface ResolvedNetworkConfig {
  table: string;
  fwmark: number;
  fwmarkMask: number;
  routeTable: number;
  rulePriority: number;
  interfaces: string[];
  clientRanges: Cidr[];
  sources: { include: Cidr[]; exclude: Cidr[] };
  destinations: { exclude: Cidr[]; interceptGateway: boolean };
  ipv6: boolean;
  tcp: boolean;
  local: boolean;
  selfMark: number;
  localExcludeUids: Array<number | string>;
  localExcludeCgroups: string[];
  failMode: FailMode;
}

export class NetworkConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NetworkConfigError';
  }
}

const TABLE_RE = '^[A-Za-z][A-Za-z0-9_]{0,31}$';
// Linux interface names are at most 15 bytes; nft accepts a trailing `*` wildcard.
const IFACE_RE = '^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,14}\\*?$';
const HEX_RE = '^0[xX][0-9a-fA-F]{1,8}$';
const USER_RE = '^[a-z_][a-z0-9_-]{0,31}$';
const CGROUP_RE = '^[A-Za-z0-9_.@:-]+(/[A-Za-z0-9_.@:-]+)*$';
const CIDR_RE = '^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$';

const mark = (def: number, description: string) => ({
  description: `${description} Integer or hex string ("0x1d53"). Default ${def} (0x${def.toString(16)}).`,
  anyOf: [
    { type: 'integer', minimum: 0, maximum: 0xffffffff },
    { type: 'string', pattern: HEX_RE },
  ],
  default: def,
});

const cidrList = (description: string) => ({
  description,
  type: 'array',
  items: { type: 'string', pattern: CIDR_RE },
  default: [] as string[],
});

/** JSON Schema (draft-07, ajv) for the top-level `network:` key. */
export const networkSchema = {
  type: 'object',
  description:
    'Gateway network setup (nftables TPROXY + policy routing) applied by `dns-tproxy network up` and `run --manage-network`.',
  additionalProperties: false,
  properties: {
    table: {
      type: 'string',
      pattern: TABLE_RE,
      default: DEFAULTS.table,
      description: 'nftables table name (family inet) owned exclusively by dns-tproxy.',
    },
    fwmark: mark(DEFAULTS.fwmark, 'Mark set on intercepted packets; an ip rule sends marked packets to routeTable.'),
    fwmarkMask: mark(
      DEFAULTS.fwmarkMask,
      'Bits of the packet mark owned by dns-tproxy (other bits are preserved when marking).',
    ),
    routeTable: {
      type: 'integer',
      minimum: 1,
      maximum: 0xfffffffe,
      not: { enum: [253, 254, 255] },
      default: DEFAULTS.routeTable,
      description: 'Policy routing table that holds `local default dev lo` (v4 and v6).',
    },
    rulePriority: {
      type: 'integer',
      minimum: 1,
      maximum: 32765,
      default: DEFAULTS.rulePriority,
      description: 'Priority (pref) of the `ip rule fwmark ... lookup routeTable` rules.',
    },
    interfaces: {
      type: 'array',
      items: { type: 'string', pattern: IFACE_RE },
      default: [],
      description:
        'Ingress interfaces to intercept on (e.g. ["br-lan"], "wg*" allowed). Empty = derived: every interface except lo and those carrying a default route (the WAN side).',
    },
    clientRanges: cidrList(
      'Client ranges the transparent listeners admit besides the on-link prefixes of the intercepting interfaces and the private, ULA and link-local ranges (e.g. routed sub-LANs). Queries from other sources are dropped without a reply.',
    ),
    sources: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        include: cidrList(
          'Only intercept clients in these CIDRs (per family: a family with no entries is not intercepted). Empty = all.',
        ),
        exclude: cidrList('Never intercept clients in these CIDRs.'),
      },
    },
    destinations: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        exclude: cidrList('Never intercept DNS aimed at these server addresses.'),
        interceptGateway: {
          type: 'boolean',
          default: false,
          description:
            "Also intercept queries addressed to the gateway's own addresses. Default false: a local resolver (dnsmasq) keeps serving them.",
        },
      },
    },
    ipv6: { type: 'boolean', default: DEFAULTS.ipv6, description: 'Intercept IPv6 DNS too.' },
    tcp: { type: 'boolean', default: DEFAULTS.tcp, description: 'Intercept DNS over TCP too.' },
    local: {
      type: 'boolean',
      default: DEFAULTS.local,
      description: "Also intercept DNS generated on the gateway itself (output chain), except dns-tproxy's own.",
    },
    selfMark: mark(
      DEFAULTS.selfMark,
      "SO_MARK carried by dns-tproxy's upstream sockets; packets with it are never intercepted.",
    ),
    localExcludeUids: {
      type: 'array',
      items: {
        anyOf: [
          { type: 'integer', minimum: 0, maximum: 0xfffffffe },
          { type: 'string', pattern: USER_RE },
        ],
      },
      default: [],
      description: 'Local mode: never intercept DNS from sockets owned by these uids / user names.',
    },
    localExcludeCgroups: {
      type: 'array',
      items: { type: 'string', pattern: CGROUP_RE },
      default: [],
      description:
        'Local mode: never intercept DNS from these cgroup v2 paths (e.g. "system.slice/dns-tproxy.service"). Must exist when the rules load.',
    },
    failMode: {
      type: 'string',
      enum: ['open', 'closed'],
      default: DEFAULTS.failMode,
      description:
        'open (default): while dns-tproxy is down DNS flows to the original servers (rules removed on exit; if it crashed, packets fall through). closed: rules stay and DNS is dropped until dns-tproxy is back.',
    },
  },
} as const;

function parseMark(value: unknown, name: string, def: number): number {
  if (value === undefined || value === null) return def;
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && new RegExp(HEX_RE).test(value)) n = parseInt(value.slice(2), 16);
  else if (typeof value === 'string' && /^\d{1,10}$/.test(value)) n = Number(value);
  else throw new NetworkConfigError(`network.${name}: expected integer or hex string, got ${JSON.stringify(value)}`);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new NetworkConfigError(`network.${name}: ${value} out of range 0..0xffffffff`);
  }
  return n;
}

function parseInt32(value: unknown, name: string, def: number, min: number, max: number): number {
  if (value === undefined || value === null) return def;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new NetworkConfigError(`network.${name}: expected integer ${min}..${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function parseBool(value: unknown, name: string, def: boolean): boolean {
  if (value === undefined || value === null) return def;
  if (typeof value !== 'boolean') throw new NetworkConfigError(`network.${name}: expected boolean`);
  return value;
}

function parseList<T>(value: unknown, name: string, each: (v: unknown, i: number) => T): T[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new NetworkConfigError(`network.${name}: expected a list`);
  return value.map(each);
}

function cidrs(value: unknown, name: string): Cidr[] {
  return parseList(value, name, (v, i) => {
    if (typeof v !== 'string') throw new NetworkConfigError(`network.${name}[${i}]: expected CIDR string`);
    try {
      return parseCidr(v);
    } catch (err) {
      throw new NetworkConfigError(`network.${name}[${i}]: ${(err as Error).message}`);
    }
  });
}

function pattern(value: unknown, name: string, re: string): string {
  if (typeof value !== 'string' || !new RegExp(re).test(value)) {
    throw new NetworkConfigError(`network.${name}: invalid value ${JSON.stringify(value)}`);
  }
  return value;
}

function checkPort(p: unknown, name: string): number {
  if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) {
    throw new NetworkConfigError(`listen port ${name}: expected 1..65535, got ${JSON.stringify(p)}`);
  }
  return p;
}

export function validatePorts(ports: ListenPorts): ListenPorts {
  if (!ports || typeof ports !== 'object') throw new NetworkConfigError('listen ports missing');
  return { udpPort: checkPort(ports.udpPort, 'udpPort'), tcpPort: checkPort(ports.tcpPort, 'tcpPort') };
}

const KNOWN_KEYS = new Set(Object.keys(networkSchema.properties));

/** Apply defaults and validate strictly. Accepts undefined (all defaults). */
export function resolveNetworkConfig(cfg: NetworkConfig | undefined | null): ResolvedNetworkConfig {
  const c = (cfg ?? {}) as Record<string, unknown>;
  if (typeof c !== 'object' || Array.isArray(c)) throw new NetworkConfigError('network: expected a mapping');
  for (const k of Object.keys(c)) {
    if (!KNOWN_KEYS.has(k)) throw new NetworkConfigError(`network.${k}: unknown key`);
  }
  const sources = (c.sources ?? {}) as Record<string, unknown>;
  const destinations = (c.destinations ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(sources)) {
    if (k !== 'include' && k !== 'exclude') throw new NetworkConfigError(`network.sources.${k}: unknown key`);
  }
  for (const k of Object.keys(destinations)) {
    if (k !== 'exclude' && k !== 'interceptGateway') {
      throw new NetworkConfigError(`network.destinations.${k}: unknown key`);
    }
  }
  const failMode = c.failMode ?? DEFAULTS.failMode;
  if (failMode !== 'open' && failMode !== 'closed') {
    throw new NetworkConfigError(`network.failMode: expected "open" or "closed"`);
  }
  const r: ResolvedNetworkConfig = {
    table: c.table === undefined ? DEFAULTS.table : pattern(c.table, 'table', TABLE_RE),
    fwmark: parseMark(c.fwmark, 'fwmark', DEFAULTS.fwmark),
    fwmarkMask: parseMark(c.fwmarkMask, 'fwmarkMask', DEFAULTS.fwmarkMask),
    routeTable: parseInt32(c.routeTable, 'routeTable', DEFAULTS.routeTable, 1, 0xfffffffe),
    rulePriority: parseInt32(c.rulePriority, 'rulePriority', DEFAULTS.rulePriority, 1, 32765),
    interfaces: parseList(c.interfaces, 'interfaces', (v, i) => pattern(v, `interfaces[${i}]`, IFACE_RE)),
    clientRanges: cidrs(c.clientRanges, 'clientRanges'),
    sources: { include: cidrs(sources.include, 'sources.include'), exclude: cidrs(sources.exclude, 'sources.exclude') },
    destinations: {
      exclude: cidrs(destinations.exclude, 'destinations.exclude'),
      interceptGateway: parseBool(destinations.interceptGateway, 'destinations.interceptGateway', false),
    },
    ipv6: parseBool(c.ipv6, 'ipv6', DEFAULTS.ipv6),
    tcp: parseBool(c.tcp, 'tcp', DEFAULTS.tcp),
    local: parseBool(c.local, 'local', DEFAULTS.local),
    selfMark: parseMark(c.selfMark, 'selfMark', DEFAULTS.selfMark),
    localExcludeUids: parseList(c.localExcludeUids, 'localExcludeUids', (v, i) => {
      if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xfffffffe) return v;
      return pattern(v, `localExcludeUids[${i}]`, USER_RE);
    }),
    localExcludeCgroups: parseList(c.localExcludeCgroups, 'localExcludeCgroups', (v, i) => {
      const s = pattern(v, `localExcludeCgroups[${i}]`, CGROUP_RE);
      if (s.split('/').some((seg) => seg === '.' || seg === '..')) {
        throw new NetworkConfigError(`network.localExcludeCgroups[${i}]: "." and ".." not allowed`);
      }
      return s;
    }),
    failMode,
  };
  if ([253, 254, 255].includes(r.routeTable)) {
    throw new NetworkConfigError('network.routeTable: 253/254/255 are the kernel default/main/local tables');
  }
  if (r.fwmarkMask === 0) throw new NetworkConfigError('network.fwmarkMask: must not be 0');
  if ((r.fwmark & r.fwmarkMask) >>> 0 !== r.fwmark || r.fwmark === 0) {
    throw new NetworkConfigError('network.fwmark: must be non-zero and inside fwmarkMask');
  }
  if (((r.selfMark & r.fwmarkMask) >>> 0) === r.fwmark) {
    throw new NetworkConfigError('network.selfMark: must not match fwmark under fwmarkMask (it would loop)');
  }
  return r;
}
