// UDP ingress on the native socket: one JS call per received batch, replies gathered into tx slots and
// sent with one sendmmsg per batch (or per loop turn, for answers that arrive later from upstream).
import {
  TransparentUdpSocket, META_STRIDE, M_LEN, M_FAMILY, M_SRC_PORT, M_DST_PORT, M_SRC_ADDR, formatAddress,
} from '../../native/lib/index.js';
import type { QueryContext, Responder, ContextPool, Transport } from '../pipeline/context.js';
import type { Chain } from '../pipeline/chain.js';
import { parseHostPort } from '../config/address.js';
import type { ClientAcl } from './acl.js';

export interface UdpListenerOptions {
  address: string;
  transparent: boolean;
  reusePort?: boolean;
  /** Queries from sources outside this ACL are dropped without a reply (counted in droppedAcl). */
  acl?: ClientAcl | null;
}

/**
 * Buffer#copy and TypedArray#set with offsets each create a temporary view per call (Node 20's
 * _copyActual); for the short messages of the hot path a plain loop is cheaper and allocates nothing.
 */
function copyBytes(src: Uint8Array, from: number, dst: Uint8Array, to: number, len: number): void {
  if (len > 512) { dst.set(src.subarray(from, from + len), to); return; }
  for (let i = 0; i < len; i++) dst[to + i] = src[from + i];
}

export class UdpListener implements Responder {
  readonly transport: Transport;
  readonly socket: TransparentUdpSocket;
  private readonly rx: Buffer;
  private readonly rxMeta: Int32Array;
  private readonly rxMetaBytes: Uint8Array;
  private readonly tx: Buffer;
  private readonly txMeta: Int32Array;
  private readonly slotBytes: number;
  private readonly txSlots: number;
  private txCount = 0;
  private inBatch = false;
  private flushScheduled = false;
  private readonly flushLater = () => { this.flushScheduled = false; this.flush(); };
  /** Datagrams refused because every context was busy (the in-flight bound). */
  droppedBusy = 0;
  /** Datagrams from sources outside the ACL: dropped without a reply (dropped_total{reason="acl"}). */
  droppedAcl = 0;
  /** Datagrams that arrived after SIGTERM, while in-flight queries were being answered. */
  droppedDraining = 0;
  private draining = false;
  closed = false;

  constructor(readonly name: string, opts: UdpListenerOptions, private readonly chain: Chain, private readonly pool: ContextPool) {
    this.transport = opts.transparent ? 'udp' : 'plain';
    const { host, port } = parseHostPort(opts.address);
    this.socket = new TransparentUdpSocket({
      address: host, port, transparent: opts.transparent, reusePort: opts.reusePort, onBatch: (count: number) => this.onBatch(count),
    });
    const s = this.socket;
    this.slotBytes = s.slotBytes;
    this.txSlots = s.txSlots;
    // Buffer views (made once) let us copy with Buffer#copy, which allocates no subarray per packet.
    this.rx = Buffer.from(s.rxData.buffer, s.rxData.byteOffset, s.rxData.byteLength);
    this.tx = Buffer.from(s.txData.buffer, s.txData.byteOffset, s.txData.byteLength);
    this.rxMeta = s.rxMeta;
    this.rxMetaBytes = s.rxMetaBytes;
    this.txMeta = s.txMeta;
    this.acl = opts.acl ?? null;
  }
  readonly acl: ClientAcl | null;

  /** SIGTERM: answer what is in flight, take nothing new (the socket stays open to send those answers). */
  stopAccepting(): void { this.draining = true; }

  private onBatch(count: number): void {
    if (this.draining) { this.droppedDraining += count; return; }
    this.inBatch = true;
    const now = performance.now();
    const wall = Date.now();
    const meta = this.rxMeta;
    for (let i = 0; i < count; i++) {
      const m = i * META_STRIDE;
      if (this.acl !== null && !this.acl.allowsWords(meta[m + M_FAMILY], meta, m + M_SRC_ADDR)) { this.droppedAcl++; continue; }
      const ctx = this.pool.acquire();
      if (ctx === null) { this.droppedBusy++; continue; }
      ctx.responder = this;
      const cm = ctx.meta;
      for (let k = 0; k < META_STRIDE; k++) cm[k] = meta[m + k];
      const len = meta[m + M_LEN];
      if (len > ctx.buf.length) ctx.buf = Buffer.allocUnsafe(len);
      copyBytes(this.rx, i * this.slotBytes, ctx.buf, 0, len);
      ctx.len = len;
      ctx.started = now;
      ctx.wallStarted = wall;
      this.chain.run(ctx);
    }
    this.inBatch = false;
    if (this.txCount > 0) this.flush();
  }

  send(ctx: QueryContext, wire: Uint8Array, off: number, len: number): void {
    if (this.closed) return;
    if (this.txCount === this.txSlots) this.flush();
    const slot = this.txCount++;
    const tm = this.txMeta;
    const cm = ctx.meta;
    const m = slot * META_STRIDE;
    // The rx metadata, unchanged, means "send to SRC from DST" on the tx side (native/README.md).
    for (let k = 0; k < META_STRIDE; k++) tm[m + k] = cm[k];
    tm[m + M_LEN] = len;
    copyBytes(wire, off, this.tx, slot * this.slotBytes, len);
    if (!this.inBatch && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushLater);
    }
  }

  private flush(): void {
    const n = this.txCount;
    this.txCount = 0;
    if (n > 0 && !this.closed) this.socket.flush(n);
  }

  describe(ctx: QueryContext) {
    const mb = new Uint8Array(ctx.meta.buffer);
    const fam = ctx.meta[M_FAMILY] === 6 ? 6 : 4;
    return {
      client: formatAddress(mb, 0, 'src'), clientPort: ctx.meta[M_SRC_PORT],
      server: formatAddress(mb, 0, 'dst'), serverPort: ctx.meta[M_DST_PORT], family: fam as 4 | 6,
    };
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.socket.close();
  }
}
