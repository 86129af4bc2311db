// Console authentication: scrypt password hashes (`dns-tproxy passwd`), sessions with idle and
// absolute expiry, and login rate limits per client address and overall.
import { randomBytes, scrypt as scryptCb, timingSafeEqual, createHash } from 'node:crypto';

/** scrypt cost parameters for new hashes: N=2^15, r=8, p=1 (~32 MiB, tens of ms). */
const NEW_N = 32768;
const NEW_R = 8;
const NEW_P = 1;
const KEY_LEN = 32;
/** Hashes naming a larger cost are refused: a config must not be able to make each login cost seconds or GiBs. */
const MAX_N = 1 << 20;

function scrypt(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCb(password, salt, KEY_LEN, { N: n, r, p, maxmem: 256 * n * r + 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** `scrypt$N$r$p$salt$hash` (salt and hash in base64): self-describing, so costs can rise later. */
export async function hashPassword(password: string, cost: { n: number; r: number; p: number } = { n: NEW_N, r: NEW_R, p: NEW_P }): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, cost.n, cost.r, cost.p);
  return `scrypt$${cost.n}$${cost.r}$${cost.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export interface ParsedHash { n: number; r: number; p: number; salt: Buffer; key: Buffer }

/** The parts of a hash, or the reason it is not one we accept (config validation uses it). */
export function parseHash(hash: string): ParsedHash | string {
  const f = hash.split('$');
  if (f.length !== 6 || f[0] !== 'scrypt') return 'not a scrypt$N$r$p$salt$hash string (make one with `dns-tproxy passwd`)';
  const [n, r, p] = [Number(f[1]), Number(f[2]), Number(f[3])];
  if (!Number.isInteger(n) || n < 2 || (n & (n - 1)) !== 0 || n > MAX_N) return `scrypt N must be a power of two up to ${MAX_N}`;
  if (!Number.isInteger(r) || r < 1 || r > 32 || !Number.isInteger(p) || p < 1 || p > 16) return 'scrypt r must be 1..32 and p 1..16';
  const salt = Buffer.from(f[4]!, 'base64');
  const key = Buffer.from(f[5]!, 'base64');
  if (salt.length < 8 || key.length < 16) return 'salt or hash too short';
  return { n, r, p, salt, key };
}

/** Constant-time comparison of the derived key; a malformed stored hash never matches. */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const h = parseHash(hash);
  if (typeof h === 'string') return false;
  const key = await scrypt(password, h.salt, h.n, h.r, h.p);
  return key.length === h.key.length && timingSafeEqual(key, h.key);
}

export interface User { name: string; password: string }

export class Users {
  private readonly byName = new Map<string, string>();
  /** Verified against when the user does not exist, so a wrong name costs as long as a wrong password. */
  private dummy: string | null = null;
  private readonly dummyCost: { n: number; r: number; p: number };
  constructor(users: User[]) {
    for (const u of users) this.byName.set(u.name, u.password);
    const first = users.length ? parseHash(users[0]!.password) : null;
    this.dummyCost = first && typeof first !== 'string' ? first : { n: NEW_N, r: NEW_R, p: NEW_P };
  }

  async check(name: string, password: string): Promise<boolean> {
    const hash = this.byName.get(name);
    if (hash === undefined) {
      this.dummy ??= await hashPassword(randomBytes(16).toString('hex'), this.dummyCost);
      await verifyPassword(password, this.dummy);
      return false;
    }
    return verifyPassword(password, hash);
  }

  get size(): number { return this.byName.size; }
}

export interface Session { id: string; user: string; created: number; lastSeen: number }

/**
 * In-memory sessions (a restart logs everyone out, which is fine for a console). Keyed by the SHA-256 of
 * the cookie value, so a heap dump does not hand out live cookies.
 */
export class Sessions {
  private readonly map = new Map<string, Session>();
  constructor(readonly idleMs: number, readonly absoluteMs: number, private readonly now: () => number, private readonly cap = 1000) {}

  create(user: string): { token: string; session: Session } {
    const token = randomBytes(32).toString('base64url');
    const t = this.now();
    const session: Session = { id: digest(token), user, created: t, lastSeen: t };
    if (this.map.size >= this.cap) {
      this.sweep();
      // Still full: drop the oldest (Map keeps insertion order).
      if (this.map.size >= this.cap) this.map.delete(this.map.keys().next().value!);
    }
    this.map.set(session.id, session);
    return { token, session };
  }

  /** The live session for a cookie value (touching it), or null when unknown or expired. */
  get(token: string | undefined): Session | null {
    if (!token || token.length > 100) return null;
    const id = digest(token);
    const s = this.map.get(id);
    if (!s) return null;
    const t = this.now();
    if (t - s.lastSeen >= this.idleMs || t - s.created >= this.absoluteMs) { this.map.delete(id); return null; }
    s.lastSeen = t;
    return s;
  }

  expiresAt(s: Session): number { return Math.min(s.lastSeen + this.idleMs, s.created + this.absoluteMs); }

  delete(token: string | undefined): void { if (token) this.map.delete(digest(token)); }

  sweep(): void {
    const t = this.now();
    for (const [id, s] of this.map) if (t - s.lastSeen >= this.idleMs || t - s.created >= this.absoluteMs) this.map.delete(id);
  }

  get size(): number { return this.map.size; }
}

function digest(token: string): string { return createHash('sha256').update(token).digest('base64url'); }

/**
 * Login attempts: a token bucket per client address (burst 5, then one every 12 s) and one overall
 * (burst 30, then one every 2 s), so neither one address nor many can guess quickly. Every attempt
 * costs a token, successful or not.
 */
export class LoginLimiter {
  private readonly perClient = new Map<string, { tokens: number; at: number }>();
  private global: { tokens: number; at: number };
  constructor(private readonly now: () => number, readonly clientBurst = 5, readonly clientEveryMs = 12_000,
    readonly globalBurst = 30, readonly globalEveryMs = 2_000, private readonly cap = 10_000) {
    this.global = { tokens: globalBurst, at: now() };
  }

  /** 0 when the attempt may go ahead (and is counted), else the seconds to wait. */
  take(client: string): number {
    const t = this.now();
    const g = refill(this.global, t, this.globalBurst, this.globalEveryMs);
    let c = this.perClient.get(client);
    if (!c) {
      if (this.perClient.size >= this.cap) this.prune(t);
      c = { tokens: this.clientBurst, at: t };
      this.perClient.set(client, c);
    }
    refill(c, t, this.clientBurst, this.clientEveryMs);
    if (c.tokens < 1) return Math.ceil((this.clientEveryMs - (t - c.at)) / 1000) || 1;
    if (g.tokens < 1) return Math.ceil((this.globalEveryMs - (t - g.at)) / 1000) || 1;
    c.tokens--;
    g.tokens--;
    return 0;
  }

  private prune(t: number): void {
    for (const [k, c] of this.perClient) {
      refill(c, t, this.clientBurst, this.clientEveryMs);
      if (c.tokens >= this.clientBurst) this.perClient.delete(k);
    }
    // Every entry still limited: forget the oldest rather than grow without bound.
    while (this.perClient.size >= this.cap) this.perClient.delete(this.perClient.keys().next().value!);
  }
}

function refill(b: { tokens: number; at: number }, t: number, burst: number, everyMs: number): { tokens: number; at: number } {
  if (b.tokens >= burst) { b.at = t; return b; }
  const add = Math.floor((t - b.at) / everyMs);
  if (add > 0) { b.tokens = Math.min(burst, b.tokens + add); b.at += add * everyMs; }
  if (b.tokens >= burst) b.at = t;
  return b;
}
