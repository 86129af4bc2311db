// The `console:` config section (issue 17): schema fragment and defaults. Relative TLS paths resolve
// against the config file's directory.
import path from 'node:path';
import type { User } from './auth.js';

export interface ConsoleConfig {
  listen: string;
  users: User[];
  /** Host names (as typed in the browser) the console may be reached by. */
  names: string[];
  /** Idle session lifetime. */
  sessionTtlSeconds: number;
  /** Absolute session lifetime, whatever the activity. */
  sessionMaxSeconds: number;
  tlsCert?: string;
  tlsKey?: string;
}

export const CONSOLE_DEFAULTS = { listen: '127.0.0.1:8080', sessionTtlSeconds: 3600, sessionMaxSeconds: 12 * 3600 };

const hostPort = { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]|[0-9.]+|localhost):[0-9]{1,5}$' };

export const consoleSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    listen: hostPort,
    users: {
      type: 'array',
      items: {
        type: 'object', additionalProperties: false, required: ['name', 'password'],
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 128 },
          /** From `dns-tproxy passwd`: never the password itself. */
          password: { type: 'string', pattern: '^scrypt\\$[0-9]+\\$[0-9]+\\$[0-9]+\\$[A-Za-z0-9+/=]+\\$[A-Za-z0-9+/=]+$' },
        },
      },
    },
    names: { type: 'array', items: { type: 'string', pattern: '^[A-Za-z0-9.-]+$' } },
    sessionTtlSeconds: { type: 'integer', minimum: 1, maximum: 30 * 86400 },
    sessionMaxSeconds: { type: 'integer', minimum: 1, maximum: 365 * 86400 },
    tlsCert: { type: 'string', minLength: 1 },
    tlsKey: { type: 'string', minLength: 1 },
  },
};

/** A schema-checked `console:` section with defaults applied, or null when the console is off. */
export function consoleConfigOf(raw: unknown, baseDir: string): ConsoleConfig | null {
  if (raw === undefined || raw === null || raw === false) return null;
  const c = (raw === true ? {} : raw) as Partial<ConsoleConfig>;
  const ttl = c.sessionTtlSeconds ?? CONSOLE_DEFAULTS.sessionTtlSeconds;
  return {
    listen: c.listen ?? CONSOLE_DEFAULTS.listen,
    users: c.users ?? [],
    names: (c.names ?? []).map((n) => n.toLowerCase().replace(/\.$/, '')),
    sessionTtlSeconds: ttl,
    sessionMaxSeconds: c.sessionMaxSeconds ?? Math.max(CONSOLE_DEFAULTS.sessionMaxSeconds, ttl),
    tlsCert: c.tlsCert === undefined ? undefined : path.resolve(baseDir, c.tlsCert),
    tlsKey: c.tlsKey === undefined ? undefined : path.resolve(baseDir, c.tlsKey),
  };
}
