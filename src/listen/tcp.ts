// DNS over TCP (RFC 7766): two-byte length framing, pipelined queries answered as they complete (out of
// order), idle and read deadlines against slowloris, and bounds on connections and write buffers.
// The transparent variant hands a native IP_TRANSPARENT listening fd to net.Server, after which each
// accepted socket's localAddress/localPort is the address the client meant to reach.
//
// EDNS on this hop: answers carry our own OPT (the upstream's is rebuilt in rewriteOpt), so options the
// client or the upstream sent that we do not know are not echoed; the only transport option we add is
// RFC 7828 edns-tcp-keepalive, here, and only when the client's query carried it (never over UDP).
import net from 'node:net';
import { openTransparentTcpListener } from '../../native/lib/index.js';
import type { QueryContext, Responder, ContextPool, Transport } from '../pipeline/context.js';
import type { Chain } from '../pipeline/chain.js';
import type { TcpLimits } from '../config/types.js';
import { parseHostPort } from '../config/address.js';
import { ParsedQuery, readQuery, ReadStatus, writeHeaderOnlyReply, Rcode } from '../dns/wire.js';
import { addKeepalive, keepaliveUnits } from '../dns/edns.js';
import type { ClientAcl } from './acl.js';

const MAX_FRAME = 65535;
const enum Deadline { NONE = 0, IDLE = 1, READ = 2 }

export class TcpStats {
  accepted = 0;
  queries = 0;
  rejectedTotal = 0;
  rejectedPerClient = 0;
  rejectedAcl = 0;
  idleClosed = 0;
  readTimeouts = 0;
  queryLimitClosed = 0;
  writeBufferOverflows = 0;
  droppedBusy = 0;
  /** Frames no answer can be made for (shorter than a header, or a response): skipped, connection kept. */
  malformed = 0;
  /** Answers sent with an edns-tcp-keepalive option. */
  keepalives = 0;
  open = 0;
}

class TcpConnection {
  /** An incomplete frame (length prefix included) and how many of its bytes have arrived. */
  private pending: Buffer | null = null;
  private pendingLen = 0;
  outstanding = 0;
  queries = 0;
  private timer: NodeJS.Timeout | null = null;
  private deadline = Deadline.NONE;
  private partialSince = 0;
  /** No more queries are read (query limit reached, client half-closed, or server closing). */
  draining = false;
  /** The socket is gone: nothing more is written. */
  gone = false;
  private corked = false;
  readonly clientIp: string;

  constructor(readonly listener: TcpListener, readonly socket: net.Socket) {
    this.clientIp = normaliseIp(socket.remoteAddress ?? '');
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => { /* 'close' follows */ });
    socket.on('close', () => this.onClose());
    // The server is half-open capable: a client may send its queries, shut down its side and still
    // expect every answer (RFC 7766 6.2.4); the socket ends once they are all written.
    socket.on('end', () => {
      this.pending = null;
      this.draining = true;
      this.finishIfDone();
    });
    this.arm();
  }

  /**
   * One timer per connection: the read deadline while a frame is partial (measured from its first
   * byte, so a client dribbling bytes cannot extend it), else the idle timeout (restarted by data and
   * by the last outstanding answer; it does not fire while answers are pending).
   */
  private arm(): void {
    if (this.gone) return;
    const lim = this.listener.limits;
    if (this.pending !== null) {
      if (this.deadline === Deadline.READ) return; // already counting from the frame's first byte
      this.setTimer(Deadline.READ, Math.max(0, lim.readTimeoutMs - (Date.now() - this.partialSince)));
    } else if (this.deadline === Deadline.IDLE && this.timer) {
      this.timer.refresh();
    } else {
      this.setTimer(Deadline.IDLE, lim.idleTimeoutMs);
    }
  }

  private setTimer(kind: Deadline, ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.deadline = kind;
    this.timer = setTimeout(this.onTimer, ms);
    this.timer.unref();
  }

  private readonly onTimer = (): void => {
    if (this.gone) return;
    const st = this.listener.stats;
    if (this.deadline === Deadline.READ) {
      st.readTimeouts++;
    } else {
      if (this.outstanding > 0) { this.timer!.refresh(); return; }
      st.idleClosed++;
    }
    this.socket.destroy();
  };

  private onData(d: Buffer): void {
    if (this.draining || this.gone) return;
    let p = 0;
    if (this.pending !== null) {
      p = this.fill(d, 0);
      const f = this.pending;
      if (this.pendingLen >= 2 && this.pendingLen === f.length) {
        this.pending = null;
        this.handle(f, 2, f.length - 2);
        if (this.draining || this.gone) { this.finishIfDone(); return; }
      }
    }
    while (d.length - p >= 2) {
      const len = d.readUInt16BE(p);
      if (d.length - p - 2 < len) break;
      this.handle(d, p + 2, len);
      p += 2 + len;
      if (this.draining || this.gone) { this.pending = null; this.finishIfDone(); return; }
    }
    if (p < d.length) {
      // A new partial frame starts now: the read deadline counts from its first byte.
      this.pending = Buffer.allocUnsafe(2);
      this.pendingLen = 0;
      this.fill(d, p);
      this.partialSince = Date.now();
      if (this.deadline === Deadline.READ) this.deadline = Deadline.NONE;
    } else if (this.pending === null && this.deadline === Deadline.READ) {
      this.deadline = Deadline.NONE;
    }
    this.arm();
  }

  /**
   * Copies bytes of `d` from `from` into the partial frame; returns the offset after them. The buffer is
   * sized once the length prefix is known, so a client dribbling a 64 KiB frame byte by byte costs one
   * copy per byte, not a concatenation.
   */
  private fill(d: Buffer, from: number): number {
    let f = this.pending!;
    let i = from;
    while (this.pendingLen < 2 && i < d.length) f[this.pendingLen++] = d[i++];
    if (this.pendingLen < 2) return i;
    if (f.length === 2) {
      const need = 2 + f.readUInt16BE(0);
      if (need > 2) { const g = Buffer.allocUnsafe(need); g[0] = f[0]; g[1] = f[1]; f = this.pending = g; }
    }
    const n = Math.min(f.length - this.pendingLen, d.length - i);
    d.copy(f, this.pendingLen, i, i + n);
    this.pendingLen += n;
    return i + n;
  }

  private handle(buf: Buffer, off: number, len: number): void {
    const l = this.listener;
    this.queries++;
    // Mirrors readQuery's DROP cases: nothing to answer, and nothing may stay counted as outstanding.
    if (len < 12 || (buf[off + 2] & 0x80) !== 0) { l.stats.malformed++; this.checkLimit(); return; }
    const ctx = l.pool.acquire();
    if (ctx === null) {
      // Out of contexts: a TCP client waits for every ID it sent, so say SERVFAIL rather than nothing.
      l.stats.droppedBusy++;
      const q = l.scratchQuery;
      if (readQuery(buf, off, len, q) !== ReadStatus.DROP) {
        const n = writeHeaderOnlyReply(buf, off, q, Rcode.SERVFAIL, l.scratch, 0);
        this.emit(l.scratch, 0, n);
      }
      this.checkLimit();
      return;
    }
    l.stats.queries++;
    ctx.responder = l;
    ctx.conn = this;
    ctx.load(buf, off, len);
    ctx.started = performance.now();
    ctx.wallStarted = Date.now();
    this.outstanding++;
    // Decided before running the chain: a cache hit answers synchronously.
    this.checkLimit();
    l.chain.run(ctx);
  }

  /** After the last allowed query, stop reading; the socket ends once its answers are written. */
  private checkLimit(): void {
    if (this.queries >= this.listener.limits.maxQueriesPerConnection && !this.draining) {
      this.listener.stats.queryLimitClosed++;
      this.draining = true;
      this.socket.pause();
    }
  }

  /** An answer for one of this connection's queries. */
  answer(ctx: QueryContext, wire: Uint8Array, off: number, len: number): void {
    this.outstanding--;
    if (!this.gone) {
      if (ctx.q.hasKeepalive) this.emitWithKeepalive(wire, off, len);
      else this.emit(wire, off, len);
    }
    if (this.outstanding === 0) {
      if (this.deadline === Deadline.IDLE && this.timer) this.timer.refresh();
      this.finishIfDone();
    }
  }

  private emitWithKeepalive(wire: Uint8Array, off: number, len: number): void {
    const l = this.listener;
    const frame = Buffer.allocUnsafe(len + 2 + 6);
    const n = addKeepalive(wire, off, len, keepaliveUnits(l.limits.idleTimeoutMs), frame, 2);
    if (n < 0 || n > MAX_FRAME) { this.emit(wire, off, len); return; }
    l.stats.keepalives++;
    frame.writeUInt16BE(n, 0);
    this.push(frame.subarray(0, n + 2));
  }

  private emit(wire: Uint8Array, off: number, len: number): void {
    const frame = Buffer.allocUnsafe(len + 2);
    frame.writeUInt16BE(len, 0);
    frame.set(wire.subarray(off, off + len), 2);
    this.push(frame);
  }

  private push(frame: Buffer): void {
    if (this.gone || this.socket.destroyed) return;
    const s = this.socket;
    if (s.writableLength + frame.length > this.listener.limits.maxWriteBufferBytes) {
      // A client that does not read its answers does not get to make us buffer them.
      this.listener.stats.writeBufferOverflows++;
      s.destroy();
      return;
    }
    // Answers produced in one tick (pipelined cache hits) leave in one writev.
    if (!this.corked) {
      this.corked = true;
      s.cork();
      process.nextTick(this.uncork);
    }
    s.write(frame);
  }

  private readonly uncork = (): void => {
    this.corked = false;
    if (!this.socket.destroyed) this.socket.uncork();
  };

  /** Ends the socket once nothing more will be read and every answer is out. */
  finishIfDone(): void {
    if (this.draining && this.outstanding === 0 && !this.gone && !this.socket.writableEnded) this.socket.end();
  }

  private onClose(): void {
    if (this.gone) return;
    this.gone = true;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    this.pending = null;
    this.listener.forget(this);
  }
}

export class TcpListener implements Responder {
  readonly transport: Transport = 'tcp';
  readonly server: net.Server;
  readonly stats = new TcpStats();
  private readonly conns = new Set<TcpConnection>();
  private readonly perClient = new Map<string, number>();
  /** Scratch for answers written outside the chain (SERVFAIL when out of contexts). */
  readonly scratch = Buffer.allocUnsafe(512 + 64);
  readonly scratchQuery = new ParsedQuery();
  private fd = -1;

  constructor(readonly name: string, private readonly address: string, readonly transparent: boolean,
    readonly limits: TcpLimits, readonly chain: Chain, readonly pool: ContextPool, private readonly acl: ClientAcl | null = null) {
    this.server = net.createServer({ noDelay: true, pauseOnConnect: false, allowHalfOpen: true }, (s) => this.onConnection(s));
    // Past maxConnections Node closes new sockets at once and emits 'drop'.
    this.server.maxConnections = limits.maxConnections;
    this.server.on('drop', () => { this.stats.rejectedTotal++; });
    this.server.on('error', () => { /* surfaced by listen() */ });
  }

  listen(): Promise<void> {
    const { host, port } = parseHostPort(this.address);
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      if (this.transparent) {
        this.fd = openTransparentTcpListener({ address: host, port, backlog: 1024 });
        this.server.listen({ fd: this.fd, exclusive: true }, () => { this.server.off('error', reject); resolve(); });
      } else {
        this.server.listen({ host, port, backlog: 1024 }, () => { this.server.off('error', reject); resolve(); });
      }
    });
  }

  private onConnection(s: net.Socket): void {
    const ip = normaliseIp(s.remoteAddress ?? '');
    if (this.acl && !this.acl.allowsString(ip)) { this.stats.rejectedAcl++; s.destroy(); return; }
    const n = this.perClient.get(ip) ?? 0;
    if (n >= this.limits.maxConnectionsPerClient) { this.stats.rejectedPerClient++; s.destroy(); return; }
    this.perClient.set(ip, n + 1);
    this.stats.accepted++;
    this.stats.open++;
    this.conns.add(new TcpConnection(this, s));
  }

  forget(c: TcpConnection): void {
    if (!this.conns.delete(c)) return;
    this.stats.open--;
    const n = (this.perClient.get(c.clientIp) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(c.clientIp); else this.perClient.set(c.clientIp, n);
  }

  send(ctx: QueryContext, wire: Uint8Array, off: number, len: number): void {
    (ctx.conn as TcpConnection).answer(ctx, wire, off, len);
  }

  describe(ctx: QueryContext) {
    const s = (ctx.conn as TcpConnection).socket;
    const client = normaliseIp(s.remoteAddress ?? '');
    return {
      client, clientPort: s.remotePort ?? 0,
      server: normaliseIp(s.localAddress ?? ''), serverPort: s.localPort ?? 0,
      family: (client.includes(':') ? 6 : 4) as 4 | 6,
    };
  }

  /** Stops accepting; open connections finish their outstanding answers, then close (1 s at most). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const c of this.conns) { c.draining = true; c.finishIfDone(); }
      setTimeout(() => { for (const c of this.conns) c.socket.destroy(); }, 1000).unref();
    });
  }
}

function normaliseIp(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}
