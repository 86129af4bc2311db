// Configuration types, JSON-Schema fragments and small value parsers for the
// filtering engine. The YAML keys handled here are `filter`, `groups`, `local`
// and `forward`.

export type BlockMode = 'nxdomain' | 'nodata' | 'null' | 'refused' | 'custom';
export type EdeCode = 15 | 17;

export interface ListConfig {
  /** Unique name; used in stats, decisions and in `groups[].lists`. */
  name: string;
  /** Local file (relative paths resolve against opts.baseDir). */
  path?: string;
  /** https URL fetched with conditional GET and cached under stateDir (http only with allowInsecure). */
  url?: string;
  /**
   * Allow a plain http:// `url` (default false). Even then a redirect never goes from https to http:
   * an https URL is never downgraded.
   */
  allowInsecure?: boolean;
  /** Refresh period for url lists, e.g. "24h", "30m", "90s", "1d" (default 24h). */
  refresh?: string | number;
  /** Extended DNS Error code put in answers blocked by this list (default 15). */
  ede?: EdeCode;
  /** How hosts-file entries match: 'exact' (default) or 'subdomains'. */
  hosts?: 'exact' | 'subdomains';
  /** Disabled lists are ignored. */
  enabled?: boolean;
}

export interface FilterSection {
  enabled?: boolean;
  mode?: BlockMode;
  /** TTL of the negative-caching SOA and of synthesized null/custom records (default 60). */
  blockTtl?: number;
  customAddresses?: string[];
  lists?: ListConfig[];
  block?: string[];
  allow?: string[];
  /** Check CNAME targets of upstream answers against the rules (default true). */
  cnameInspection?: boolean;
  /** Default TTL for `local` records without one (default 300). */
  localTtl?: number;
  /** Maximum accepted length of a /regex/ rule (default 512). */
  regexMaxLength?: number;
  /** Maximum bytes accepted for one downloaded list (default 64 MiB). */
  maxListBytes?: number;
}

export interface GroupConfig {
  name: string;
  /** IPv4/IPv6 addresses or CIDRs, or MAC addresses (aa:bb:cc:dd:ee:ff). */
  clients: string[];
  /** Names of filter.lists that apply to members. Omitted = all enabled lists. */
  lists?: string[];
  block?: string[];
  allow?: string[];
  /** Block mode override for members. */
  mode?: BlockMode;
  /** EDE code for the group's own `block:` rules (default 17 Filtered). */
  ede?: EdeCode;
  /** Whether filter.block / filter.allow also apply to members (default true). */
  inheritGlobal?: boolean;
  /** Encrypted-DNS bypass control for members (#19): log = count only, off = exempt. */
  bypass?: 'log' | 'off';
}

export interface ForwardConfig {
  domain: string;
  to: string;
}

export interface FilterConfig {
  filter?: FilterSection;
  groups?: GroupConfig[];
  local?: string[];
  forward?: ForwardConfig[];
}

const modeEnum = ['nxdomain', 'nodata', 'null', 'refused', 'custom'];
const stringArray = { type: 'array', items: { type: 'string' } } as const;
const duration = { anyOf: [{ type: 'string', pattern: '^\\s*\\d+(\\.\\d+)?\\s*(ms|s|m|h|d)?\\s*$' }, { type: 'number', minimum: 1 }] };

/** JSON Schema (draft-07 style, ajv compatible) fragments keyed by top-level config key. */
export const filterConfigSchema: Record<'filter' | 'groups' | 'local' | 'forward', object> = {
  filter: {
    type: 'object',
    additionalProperties: false,
    properties: {
      enabled: { type: 'boolean' },
      mode: { enum: modeEnum },
      blockTtl: { type: 'integer', minimum: 0, maximum: 604800 },
      customAddresses: stringArray,
      lists: {
        type: 'array',
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['name'],
          properties: {
            name: { type: 'string', minLength: 1, pattern: '^[A-Za-z0-9_.:-]+$' },
            path: { type: 'string', minLength: 1 },
            url: { type: 'string', pattern: '^https?://' },
            allowInsecure: { type: 'boolean' },
            refresh: duration,
            ede: { enum: [15, 17] },
            hosts: { enum: ['exact', 'subdomains'] },
            enabled: { type: 'boolean' },
          },
          oneOf: [{ required: ['path'] }, { required: ['url'] }],
          // a plain-http url needs allowInsecure: true on the same list
          if: { required: ['url'], properties: { url: { type: 'string', pattern: '^http://' } } },
          then: { required: ['allowInsecure'], properties: { allowInsecure: { type: 'boolean', const: true } } },
        },
      },
      block: stringArray,
      allow: stringArray,
      cnameInspection: { type: 'boolean' },
      localTtl: { type: 'integer', minimum: 0, maximum: 604800 },
      regexMaxLength: { type: 'integer', minimum: 1, maximum: 4096 },
      maxListBytes: { type: 'integer', minimum: 1024 },
    },
  },
  groups: {
    type: 'array',
    items: {
      type: 'object',
      additionalProperties: false,
      required: ['name', 'clients'],
      properties: {
        name: { type: 'string', minLength: 1 },
        clients: stringArray,
        lists: stringArray,
        block: stringArray,
        allow: stringArray,
        mode: { enum: modeEnum },
        ede: { enum: [15, 17] },
        inheritGlobal: { type: 'boolean' },
        /** Encrypted-DNS bypass control for members (#19): log = count only, off = exempt. */
        bypass: { enum: ['log', 'off'] },
      },
    },
  },
  local: stringArray,
  forward: {
    type: 'array',
    items: {
      type: 'object',
      additionalProperties: false,
      required: ['domain', 'to'],
      properties: { domain: { type: 'string' }, to: { type: 'string', minLength: 1 } },
    },
  },
};

/** Parse "24h", "30m", "90s", "1d", "500ms" or a number of seconds into milliseconds. */
export function parseDuration(v: string | number | undefined, defMs: number): number {
  if (v === undefined || v === null) return defMs;
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v <= 0) throw new Error(`invalid duration ${v}`);
    return v * 1000;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(v);
  if (!m) throw new Error(`invalid duration "${v}" (use e.g. 90s, 30m, 24h, 1d)`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const mul = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : unit === 'h' ? 3_600_000 : 86_400_000;
  const ms = n * mul;
  if (ms <= 0) throw new Error(`invalid duration "${v}"`);
  return ms;
}
