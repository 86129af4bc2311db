// DNS over TCP (RFC 7766): two-byte length framing, pipelined queries answered as they complete (out of
// order), idle and read deadlines against slowloris, and bounds on connections and write buffers.
// The transparent variant hands a native IP_TRANSPARENT listening fd to net.Server, after which each
// accepted socket's localAddress/localPort is the address the client meant to reach.
import net from 'node:net';
import { openTransparentTcpListener } from '../../native/lib/index.js';
import type { QueryContext, Responder, ContextPool, Transport } from '../pipeline/context.js';
import type { Chain } from '../pipeline/chain.js';
import type { TcpLimits } from '../config/types.js';
import { parseHostPort } from '../config/address.js';
import type { ClientAcl } from './acl.js';

const MAX_FRAME = 65535;

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
  open = 0;
}

class TcpConnection {
  private pending: Buffer | null = null;
  outstanding = 0;
  queries = 0;
  private timer: NodeJS.Timeout | null = null;
  private partialSince = 0;
  closed = false;
  readonly clientIp: string;

  constructor(readonly listener: TcpListener, readonly socket: net.Socket) {
    this.clientIp = normaliseIp(socket.remoteAddress ?? '');
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
    socket.on('end', () => { if (this.outstanding === 0) socket.end(); });
    this.arm();
  }

  /** One timer per connection: idle when nothing is buffered, a read deadline while a frame is partial. */
  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    const lim = this.listener.limits;
    const partial = this.pending !== null && this.pending.length > 0;
    const ms = partial ? Math.max(0, lim.readTimeoutMs - (Date.now() - this.partialSince)) : lim.idleTimeoutMs;
    this.timer = setTimeout(() => {
      if (this.outstanding > 0 && !partial) { this.arm(); return; }
      if (partial) this.listener.stats.readTimeouts++; else this.listener.stats.idleClosed++;
      this.socket.destroy();
    }, ms);
    this.timer.unref();
  }

  private onData(d: Buffer): void {
    let buf = this.pending && this.pending.length ? Buffer.concat([this.pending, d]) : d;
    let p = 0;
    while (buf.length - p >= 2) {
      const len = buf.readUInt16BE(p);
      if (buf.length - p - 2 < len) break;
      this.handle(buf, p + 2, len);
      p += 2 + len;
      if (this.closed) return;
    }
    const wasPartial = this.pending !== null && this.pending.length > 0;
    this.pending = p < buf.length ? buf.subarray(p) : null;
    if (this.pending && !wasPartial) this.partialSince = Date.now();
    if (this.pending && this.pending.length > MAX_FRAME + 2) { this.socket.destroy(); return; }
    this.arm();
  }

  private handle(buf: Buffer, off: number, len: number): void {
    const l = this.listener;
    if (++this.queries > l.limits.maxQueriesPerConnection) {
      l.stats.queryLimitClosed++;
      this.socket.end();
      this.closed = true;
      return;
    }
    const ctx = l.pool.acquire();
    if (ctx === null) { l.stats.droppedBusy++; return; }
    l.stats.queries++;
    ctx.responder = l;
    ctx.conn = this;
    ctx.load(buf, off, len);
    ctx.started = performance.now();
    ctx.wallStarted = Date.now();
    this.outstanding++;
    l.chain.run(ctx);
  }

  write(wire: Uint8Array, off: number, len: number): void {
    this.outstanding--;
    if (this.closed || this.socket.destroyed) return;
    if (this.socket.writableLength + len > this.listener.limits.maxWriteBufferBytes) {
      // A client that does not read its answers does not get to make us buffer them.
      this.listener.stats.writeBufferOverflows++;
      this.socket.destroy();
      return;
    }
    const frame = Buffer.allocUnsafe(len + 2);
    frame.writeUInt16BE(len, 0);
    frame.set(wire.subarray(off, off + len), 2);
    this.socket.write(frame);
    if (this.socket.readableEnded && this.outstanding === 0) this.socket.end();
  }

  close(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (this.closed && !this.socket.destroyed) return;
    if (!this.closed) {
      this.closed = true;
    }
    this.listener.forget(this);
  }
}

export class TcpListener implements Responder {
  readonly transport: Transport = 'tcp';
  readonly server: net.Server;
  readonly stats = new TcpStats();
  private readonly conns = new Set<TcpConnection>();
  private readonly perClient = new Map<string, number>();
  private forgotten = new WeakSet<TcpConnection>();
  private fd = -1;

  constructor(readonly name: string, private readonly address: string, readonly transparent: boolean,
    readonly limits: TcpLimits, readonly chain: Chain, readonly pool: ContextPool, private readonly acl: ClientAcl | null = null) {
    this.server = net.createServer({ noDelay: true, pauseOnConnect: false }, (s) => this.onConnection(s));
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
        this.server.listen({ fd: this.fd }, () => { this.server.off('error', reject); resolve(); });
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
    if (this.forgotten.has(c)) return;
    this.forgotten.add(c);
    this.conns.delete(c);
    this.stats.open--;
    const n = (this.perClient.get(c.clientIp) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(c.clientIp); else this.perClient.set(c.clientIp, n);
  }

  send(ctx: QueryContext, wire: Uint8Array, off: number, len: number): void {
    (ctx.conn as TcpConnection).write(wire, off, len);
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

  /** Stops accepting; open connections finish their outstanding answers, then close. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const c of this.conns) c.socket.end();
      setTimeout(() => { for (const c of this.conns) c.socket.destroy(); }, 1000).unref();
    });
  }
}

function normaliseIp(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}
