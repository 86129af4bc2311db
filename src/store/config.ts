// `store:` config. The keys are fixed by issue 17 (tests and deployments write them):
//   store: false                      no history
//   store: { path, retentionDays, maxBytes }   SQLite (default path <stateDir>/queries.db)
//   store: { url: postgres://... }    PostgreSQL, for several gateways writing to one database
import path from 'node:path';
import os from 'node:os';

export interface StoreConfig {
  path?: string;
  url?: string;
  retentionDays?: number;
  maxBytes?: number;
  /** PostgreSQL: which gateway wrote a record (default: the host name). */
  gatewayId?: string;
  /** SQLite page cache cap, MiB. */
  cacheMiB?: number;
  /** Records held in memory while the disk is busy; the oldest are dropped past it. */
  queueMax?: number;
}

export const DEFAULT_RETENTION_DAYS = 30;
export const DEFAULT_MAX_BYTES = 2 * 1024 ** 3;

export const storeSchema = {
  oneOf: [
    { const: false },
    {
      type: 'object', additionalProperties: false,
      properties: {
        path: { type: 'string', minLength: 1 },
        url: { type: 'string', pattern: '^postgres(ql)?://' },
        retentionDays: { type: 'integer', minimum: 0, maximum: 36500 },
        maxBytes: { type: 'integer', minimum: 0 },
        gatewayId: { type: 'string', minLength: 1, maxLength: 128 },
        cacheMiB: { type: 'integer', minimum: 1, maximum: 4096 },
        queueMax: { type: 'integer', minimum: 1000, maximum: 10_000_000 },
      },
    },
  ],
} as const;

export type ResolvedStore =
  | { kind: 'off' }
  | { kind: 'sqlite'; path: string; retentionDays: number; maxBytes: number; cacheKiB: number; queueMax?: number; explicit: boolean }
  | { kind: 'postgres'; url: string; retentionDays: number; gatewayId: string; queueMax?: number };

export function resolveStoreConfig(raw: unknown, stateDir: string, baseDir: string): ResolvedStore {
  if (raw === false) return { kind: 'off' };
  const c = (raw ?? {}) as StoreConfig;
  const retentionDays = c.retentionDays ?? DEFAULT_RETENTION_DAYS;
  if (c.url) return { kind: 'postgres', url: c.url, retentionDays, gatewayId: c.gatewayId ?? os.hostname(), queueMax: c.queueMax };
  return {
    kind: 'sqlite',
    path: c.path ? path.resolve(baseDir, c.path) : path.join(stateDir, 'queries.db'),
    retentionDays,
    maxBytes: c.maxBytes ?? DEFAULT_MAX_BYTES,
    cacheKiB: (c.cacheMiB ?? 16) * 1024,
    queueMax: c.queueMax,
    explicit: raw !== undefined,
  };
}
