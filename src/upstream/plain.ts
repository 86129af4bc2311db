// Plain DNS upstreams (udp://host:port, tcp://host:port) for internal resolvers and conditional
// forwarding. Answers are handed back with ID 0, like DoH's, so the forward stage treats every
// transport alike; a truncated UDP answer is retried over TCP.
//
// Spoofing (RFC 5452): an off-path attacker must guess everything we check before the real answer
// arrives. Like unbound's outgoing range, each UDP query leaves from a socket of its own, bound to a
// fresh kernel-chosen random port and closed once the query ends (at most `maxSockets` open at once;
// past that, queries share the open ones). An answer is taken only when it comes from the upstream's
// address and port, to the socket that sent the query, with the query's random ID and exactly the
// question we sent, including the 0x20 case pattern (random upper/lower case of each letter, which
// resolvers echo). Anything else is dropped without ending the query and counted in
// stats.mismatches (stats.caseMismatches for a right question in the wrong case: a guess). Measured
// cost of a socket per query: ~30 µs of CPU (bench in the commit note), paid only on plain upstreams.
//
// Loops: the IDs and ports of queries in flight are known process-wide (sentByUs), so a query of ours
// that comes back to one of our listeners (an upstream pointing at ourselves) is recognised.
import dgram from 'node:dgram';
import net from 'node:net';
import crypto from 'node:crypto';
import type { QueryContext } from '../pipeline/context.js';
import { Upstream, UpstreamHandler, UpstreamStats, UpstreamErrorReason, UpstreamCall } from './types.js';
import { DeadlineSweeper, type DeadlineOptions } from './deadlines.js';

export interface PlainOptions extends DeadlineOptions {
  /** Fixed address standing in for a hostname in the URL (plain DNS never resolves names itself). */
  ip?: string;
  /** 0x20 case randomisation of the question, checked on the answer (default on). */
  use0x20?: boolean;
  /** Sockets (source ports) open at once; more queries share them (default 256). */
  maxSockets?: number;
}

/** Largest DNS message over TCP, with its 2-byte length. */
const MAX_TCP_MESSAGE = 2 + 65535;

/** Queries in flight per ID, over every plain upstream: the cheap first test of sentByUs(). */
const ownIds = new Uint16Array(65536);
/** Our open query sockets by local port. */
const ownPorts = new Map<number, OutSocket>();

/**
 * Whether a query with this ID, arriving from `port` on one of our own addresses, is one we sent and
 * have not had answered (a forwarding loop). The first test is one array read, so a caller can put
 * `mayBeOwnQuery(id)` in front of the costlier lookup.
 */
export function mayBeOwnQuery(id: number): boolean { return ownIds[id] !== 0; }

export function sentByUs(id: number, port: number, msg: Uint8Array, len: number): boolean {
  if (ownIds[id] === 0) return false;
  const p = ownPorts.get(port)?.pending.get(id);
  if (!p || len < 12 + p.question.length) return false;
  // The question, case-insensitively (the looped copy may have had its case changed again).
  for (let i = 0; i < p.question.length; i++) {
    let a = msg[12 + i], b = p.question[i];
    if (a >= 0x41 && a <= 0x5a) a |= 0x20;
    if (b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (a !== b) return false;
  }
  return true;
}

class PlainQuery implements UpstreamCall {
  id = -1;
  done = false;
  tcp: net.Socket | null = null;
  sock: OutSocket | null = null;
  due: number;
  /** The question section as sent (after 0x20), which the answer must repeat exactly. */
  question: Buffer = EMPTY;
  /** The question as the client sent it, restored into the answer; null when 0x20 changed nothing. */
  original: Buffer | null = null;
  constructor(readonly owner: PlainDnsUpstream, readonly ctx: QueryContext, readonly handler: UpstreamHandler, readonly query: Buffer,
    readonly started: number, readonly deadline: number) { this.due = deadline; }
  cancel(): void { this.owner.cancel(this); }
}

const EMPTY = Buffer.alloc(0);

class OutSocket {
  port = 0;
  bound = false;
  readonly pending = new Map<number, PlainQuery>();
  /** Queries sent from it; a socket of its own per query unless the pool is full. */
  used = 0;
  constructor(readonly sock: dgram.Socket) {}
}

export class PlainDnsUpstream implements Upstream {
  readonly name: string;
  readonly stats = new UpstreamStats();
  healthy = true;
  private readonly host: string;
  private readonly port: number;
  private readonly tcpOnly: boolean;
  private readonly use0x20: boolean;
  private readonly maxSockets: number;
  private readonly sockets = new Set<OutSocket>();
  private readonly deadlines: DeadlineSweeper<PlainQuery>;
  private readonly random = new Uint8Array(4096);
  private randomIdx = 4096;
  private closed = false;

  constructor(url: string, opts: PlainOptions = {}) {
    const u = new URL(url);
    this.name = url;
    this.host = opts.ip ?? u.hostname.replace(/^\[|\]$/g, '');
    if (net.isIP(this.host) === 0) throw new TypeError(`plain DNS upstream needs an IP address (or ip:): ${url}`);
    this.port = Number(u.port || 53);
    this.tcpOnly = u.protocol === 'tcp:';
    this.use0x20 = opts.use0x20 ?? true;
    this.maxSockets = opts.maxSockets ?? 256;
    this.deadlines = new DeadlineSweeper<PlainQuery>((p) => this.finish(p, null, 'timeout'), { resolutionMs: 25, ...opts });
  }

  /** Open query sockets (tests: they close when their queries end). */
  get openSockets(): number { return this.sockets.size; }

  private randomByte(): number {
    if (this.randomIdx >= this.random.length) { crypto.randomFillSync(this.random); this.randomIdx = 0; }
    return this.random[this.randomIdx++];
  }

  private randomId(): number { return (this.randomByte() << 8) | this.randomByte(); }

  send(query: Buffer, ctx: QueryContext, handler: UpstreamHandler, deadline: number): UpstreamCall {
    this.stats.requests++;
    this.stats.inflight++;
    const p = new PlainQuery(this, ctx, handler, query, performance.now(), deadline);
    if (this.closed) { this.finish(p, null, 'closed'); return p; }
    const qEnd = questionEnd(query);
    if (qEnd < 0) { this.finish(p, null, 'invalid_answer'); return p; }
    if (this.use0x20) this.randomiseCase(p, qEnd);
    p.question = Buffer.from(query.subarray(12, qEnd));
    this.deadlines.add(p);
    if (this.tcpOnly) { this.sendTcp(p); return p; }
    const s = this.pickSocket();
    let id = this.randomId();
    for (let tries = 0; s.pending.has(id) && tries < 16; tries++) id = this.randomId();
    if (s.pending.has(id)) { this.finish(p, null, 'over_capacity'); this.retireIfIdle(s); return p; }
    p.id = id;
    p.sock = s;
    query[0] = id >> 8; query[1] = id & 0xff;
    s.pending.set(id, p);
    ownIds[id]++;
    s.used++;
    if (s.bound) this.transmit(s, p);
    else s.sock.once('listening', () => this.transmit(s, p));
    return p;
  }

  private transmit(s: OutSocket, p: PlainQuery): void {
    if (p.done) return;
    s.sock.send(p.query, this.port, this.host, (err) => { if (err) this.finish(p, null, 'connect'); });
  }

  /** A fresh socket (random source port) while under the cap, else a random open one. */
  private pickSocket(): OutSocket {
    if (this.sockets.size >= this.maxSockets) {
      let k = this.randomByte() % this.sockets.size;
      for (const s of this.sockets) if (k-- === 0) return s;
    }
    const sock = dgram.createSocket(net.isIPv6(this.host) ? 'udp6' : 'udp4');
    const s = new OutSocket(sock);
    this.sockets.add(s);
    sock.on('message', (msg, rinfo) => this.onMessage(s, msg, rinfo));
    sock.on('error', () => this.retire(s, 'connect'));
    sock.bind(0, () => {
      s.bound = true;
      s.port = sock.address().port;
      ownPorts.set(s.port, s);
    });
    sock.unref();
    return s;
  }

  /** Flips the case of each letter of the query name at random (DNS names compare case-insensitively). */
  private randomiseCase(p: PlainQuery, qEnd: number): void {
    const q = p.query;
    let original: Buffer | null = null;
    let bits = 0, left = 0;
    for (let i = 12; i < qEnd - 4; i++) {
      const c = q[i];
      const lower = c | 0x20;
      if (lower < 0x61 || lower > 0x7a) continue;
      if (left === 0) { bits = this.randomByte(); left = 8; }
      const flip = (bits & 1) !== 0;
      bits >>= 1; left--;
      if (!flip) continue;
      original ??= Buffer.from(q.subarray(12, qEnd));
      q[i] = c ^ 0x20;
    }
    p.original = original;
  }

  /** Withdrawn by the forward stage: forget it without calling back. */
  cancel(p: PlainQuery): void {
    if (p.done) return;
    p.done = true;
    this.release(p);
    this.stats.inflight--;
  }

  /** Whether `msg` answers `p` exactly: the ID on the wire and the question as sent. */
  private matches(p: PlainQuery, msg: Buffer): boolean {
    const q = p.question;
    if (msg.length < 12 + q.length || msg.readUInt16BE(0) !== p.id || msg[4] !== 0 || msg[5] !== 1) return false;
    if (msg.compare(q, 0, q.length, 12, 12 + q.length) === 0) return true;
    let same = true;
    for (let i = 0; i < q.length && same; i++) {
      let a = msg[12 + i], b = q[i];
      if (a >= 0x41 && a <= 0x5a) a |= 0x20;
      if (b >= 0x41 && b <= 0x5a) b |= 0x20;
      same = a === b;
    }
    // With 0x20 on, the right question in another case is someone guessing without having seen the query.
    if (same && this.use0x20) { this.stats.caseMismatches++; return false; }
    return same;
  }

  private onMessage(s: OutSocket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const p = msg.length >= 12 ? s.pending.get(msg.readUInt16BE(0)) : undefined;
    // From anywhere but the upstream, for an ID we did not ask on this socket, or not our question:
    // dropped, and the query goes on waiting for the real answer.
    if (!p || rinfo.port !== this.port || normalise(rinfo.address) !== normalise(this.host) || !this.matches(p, msg)) {
      this.stats.mismatches++;
      return;
    }
    if (msg[2] & 0x02) { this.detach(p); this.sendTcp(p); return; }
    this.deliver(p, msg);
  }

  /** Hands an accepted answer back: ID 0, the client's own case in the question. */
  private deliver(p: PlainQuery, msg: Buffer): void {
    msg[0] = 0; msg[1] = 0;
    if (p.original) p.original.copy(msg, 12);
    this.finish(p, msg, null);
  }

  private sendTcp(p: PlainQuery): void {
    const q = p.query;
    const id = this.randomId();
    p.id = id;
    q[0] = id >> 8; q[1] = id & 0xff;
    const s = net.connect({ host: this.host, port: this.port });
    p.tcp = s;
    // Collected up to one message; never more than 64 KiB whatever the server sends.
    const buf = Buffer.allocUnsafe(MAX_TCP_MESSAGE);
    let have = 0;
    const done = (body: Buffer | null, err: UpstreamErrorReason | null) => { s.destroy(); this.finish(p, body, err); };
    s.setNoDelay(true);
    s.on('connect', () => { const len = Buffer.allocUnsafe(2); len.writeUInt16BE(q.length); s.end(Buffer.concat([len, q])); });
    s.on('data', (d: Buffer) => {
      const n = Math.min(d.length, MAX_TCP_MESSAGE - have);
      d.copy(buf, have, 0, n);
      have += n;
      if (have < 2 || have < 2 + buf.readUInt16BE(0)) return;
      const msg = Buffer.from(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      if (!this.matches(p, msg)) { this.stats.mismatches++; done(null, 'invalid_answer'); return; }
      s.destroy();
      this.deliver(p, msg);
    });
    s.on('error', () => done(null, 'connect'));
    s.on('close', () => done(null, 'closed'));
  }

  private release(p: PlainQuery): void {
    this.deadlines.delete(p);
    p.tcp?.destroy();
    this.detach(p);
  }

  /** Takes `p` off its UDP socket (and the socket out of the pool when it has served its query). */
  private detach(p: PlainQuery): void {
    const s = p.sock;
    if (s && p.id >= 0 && s.pending.get(p.id) === p) {
      s.pending.delete(p.id);
      ownIds[p.id]--;
      this.retireIfIdle(s);
    }
    p.sock = null;
  }

  private retireIfIdle(s: OutSocket): void {
    if (s.pending.size === 0) this.retire(s, null);
  }

  /** Closes a query socket; its queries (only on an error) fail with `reason`. */
  private retire(s: OutSocket, reason: UpstreamErrorReason | null): void {
    if (!this.sockets.delete(s)) return;
    if (ownPorts.get(s.port) === s) ownPorts.delete(s.port);
    for (const p of [...s.pending.values()]) this.finish(p, null, reason ?? 'closed');
    try { s.sock.close(); } catch { /* already closed */ }
  }

  private finish(p: PlainQuery, body: Buffer | null, err: UpstreamErrorReason | null): void {
    if (p.done) return;
    p.done = true;
    this.release(p);
    this.stats.inflight--;
    const ms = performance.now() - p.started;
    if (err) this.stats.error(err); else { this.stats.answers++; this.stats.observe(ms); }
    p.handler.onUpstreamResult(p.ctx, this, body, err, ms);
  }

  /** Whether a deadline timer is armed (tests: none while nothing is in flight). */
  get timerArmed(): boolean { return this.deadlines.armed; }

  /** Runs the deadline check now (fake-clock tests). */
  sweep(): void { this.deadlines.run(); }

  close(): void {
    this.closed = true;
    for (const p of this.deadlines.values()) this.finish(p, null, 'closed');
    this.deadlines.clear();
    for (const s of [...this.sockets]) this.retire(s, 'closed');
  }
}

/** End of the question section of a one-question query, or -1 when it does not parse. */
function questionEnd(q: Buffer): number {
  if (q.length < 12 || q[4] !== 0 || q[5] !== 1) return -1;
  let p = 12;
  for (let labels = 0; labels < 128; labels++) {
    if (p >= q.length) return -1;
    const l = q[p];
    if (l === 0) return p + 5 <= q.length ? p + 5 : -1;
    if (l > 63) return -1;
    p += 1 + l;
  }
  return -1;
}

function normalise(ip: string): string { return ip.startsWith('::ffff:') ? ip.slice(7) : ip; }
