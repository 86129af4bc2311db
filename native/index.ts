// Typed wrapper over the dns_tproxy_native addon. See native/README.md for
// the shared-memory contract; the short version:
//
//   onBatch(count): rx slots [0, count) hold packets. For slot i the payload
//   is rxData[i*slotBytes, i*slotBytes + rxMeta[i*META_STRIDE + M_LEN]).
//   Write replies into tx slots [0, n) and call flush(n) once.
//
// Nothing on the onBatch/flush path allocates; the helpers marked "logging
// only" do.

import { createRequire } from 'node:module';
import { isIPv4, isIPv6 } from 'node:net';

const require = createRequire(import.meta.url);

interface NativeLayout {
  META_STRIDE: number;
  M_LEN: number;
  M_FAMILY: number;
  M_SRC_PORT: number;
  M_DST_PORT: number;
  M_IFINDEX: number;
  M_SRC_ADDR: number;
  M_DST_ADDR: number;
  COUNTER_COUNT: number;
}

interface NativeBuffers {
  rxData: ArrayBuffer;
  rxMeta: ArrayBuffer;
  txData: ArrayBuffer;
  txMeta: ArrayBuffer;
  counters: ArrayBuffer;
}

interface NativeUdpSocket {
  buffers(): NativeBuffers;
  flush(count: number): number;
  close(): void;
  ref(): void;
  unref(): void;
  localInfo(): { address: string; port?: number; family?: 4 | 6 };
}

interface NativeAddon {
  TransparentUdpSocketNative: new (
    options: object,
    onBatch: (count: number) => void,
    onError?: (error: unknown) => void,
  ) => NativeUdpSocket;
  openTransparentTcpListener(options: object): number;
  layout: NativeLayout;
  releaseFreedHeap(): Promise<boolean>;
}

const addon = require('../build/Release/dns_tproxy_native.node') as NativeAddon;

/** Int32 entries per slot in rxMeta / txMeta. */
export const META_STRIDE = 16;
/** Bytes per slot in rxMetaBytes / txMetaBytes. */
export const META_STRIDE_BYTES = META_STRIDE * 4;
/** Payload length in bytes. */
export const M_LEN = 0;
/** 4 or 6. IPv4 on a dual-stack socket is reported as 4. */
export const M_FAMILY = 1;
/** rx: client port. tx: port to send to. */
export const M_SRC_PORT = 2;
/** rx: original destination port. tx: port to send from. */
export const M_DST_PORT = 3;
/** rx: arrival interface index. tx: used only for IPv6 link-local peers. */
export const M_IFINDEX = 4;
/** Int32 index of the 16 raw source-address bytes (IPv4 in the first 4). */
export const M_SRC_ADDR = 8;
/** Int32 index of the 16 raw destination-address bytes (IPv4 in the first 4). */
export const M_DST_ADDR = 12;
/** Byte offsets of the addresses inside a slot of rxMetaBytes / txMetaBytes. */
export const M_SRC_ADDR_BYTES = M_SRC_ADDR * 4;
export const M_DST_ADDR_BYTES = M_DST_ADDR * 4;

/** Indexes into `counters`. */
export const C_RECEIVED = 0;
export const C_SENT = 1;
export const C_RX_BATCHES = 2;
export const C_TX_BATCHES = 3;
export const C_DROPPED_EAGAIN = 4;
export const C_DROPPED_TRUNCATED = 5;
export const C_DROPPED_NO_ORIG_DST = 6;
export const C_RECV_ERRORS = 7;
export const C_SEND_ERRORS = 8;
export const C_REPLY_SOCKETS_OPEN = 9;
export const C_REPLY_SOCKETS_OPENED = 10;
export const C_REPLY_SOCKETS_EVICTED = 11;
export const C_REPLY_SOCKETS_EXPIRED = 12;
export const C_REPLY_SOCKET_ERRORS = 13;
export const C_DROPPED_LOCAL_ORIG_DST = 14;
export const C_DROPPED_INVALID_TX = 15;
export const C_CALLBACK_ERRORS = 16;

/** Counter names in index order (the keys of `stats`). */
export const COUNTER_NAMES = [
  'received',
  'sent',
  'rxBatches',
  'txBatches',
  'droppedEagain',
  'droppedTruncated',
  'droppedNoOrigDst',
  'recvErrors',
  'sendErrors',
  'replySocketsOpen',
  'replySocketsOpened',
  'replySocketsEvicted',
  'replySocketsExpired',
  'replySocketErrors',
  'droppedLocalOrigDst',
  'droppedInvalidTx',
  'callbackErrors',
] as const;

// Int32 meta fields are in host byte order (what Int32Array uses); DataView
// needs to be told which that is.
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export type CounterName = (typeof COUNTER_NAMES)[number];
export type TransparentUdpSocketStats = Record<CounterName, number>;

// The contract is duplicated on purpose (constants must be plain literals
// for the hot path); a drifted build fails at import, not on the wire.
{
  const expected: NativeLayout = {
    META_STRIDE,
    M_LEN,
    M_FAMILY,
    M_SRC_PORT,
    M_DST_PORT,
    M_IFINDEX,
    M_SRC_ADDR,
    M_DST_ADDR,
    COUNTER_COUNT: COUNTER_NAMES.length,
  };
  for (const key of Object.keys(expected) as (keyof NativeLayout)[]) {
    if (addon.layout[key] !== expected[key]) {
      throw new Error(
        `dns_tproxy_native layout mismatch for ${key}: addon ${addon.layout[key]}, wrapper ${expected[key]}; rebuild native/`,
      );
    }
  }
}

export interface TransparentUdpSocketOptions {
  /** Local address to bind: "0.0.0.0", "::" (dual stack unless ipv6Only), or a specific address. */
  address: string;
  /** Local port; 0 picks an ephemeral one (read it back from `port`). */
  port: number;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT (needs CAP_NET_ADMIN). Default true. */
  transparent?: boolean;
  /**
   * SO_REUSEADDR. Default true (reply sockets and restarts need it). Note
   * that for UDP it also lets a second process bind the same address:port,
   * and the kernel then delivers to the newest socket.
   */
  reuseAddr?: boolean;
  /** SO_REUSEPORT, for one socket per worker. Default false. */
  reusePort?: boolean;
  /** SO_RCVBUF(FORCE) in bytes; 0 keeps the kernel default. Default 4 MiB, so bursts are not dropped. */
  recvBufferBytes?: number;
  /** SO_SNDBUF(FORCE) in bytes; 0 keeps the kernel default. Default 4 MiB. */
  sendBufferBytes?: number;
  /** For "::": receive IPv6 only. Default false (dual stack). */
  ipv6Only?: boolean;
  /** rx slots = max packets per onBatch call. Default 64, min 32, max 1024. */
  slots?: number;
  /** Bytes per slot; larger datagrams are dropped and counted. Default 4096, 512..65536. */
  slotBytes?: number;
  /** tx slots = max packets per flush. Default slots * 2 (one full rx batch of replies plus late answers). 1..4096. */
  txSlots?: number;
  /** Max cached reply sockets (different-port mode). Default 256. */
  replySocketCap?: number;
  /** Idle time after which a reply socket is closed. Default 30000 ms, min 100. */
  replySocketIdleMs?: number;
  /**
   * Called once per received batch with the number of packets in rx slots
   * [0, count). `this` is an internal object: use a closure. The slots are valid until the
   * handler returns.
   */
  onBatch: (count: number) => void;
  /**
   * Receives anything onBatch throws. The error is always counted in
   * `callbackErrors` and never crashes the process. Default: one
   * process.emitWarning for the first error of this socket, then silence.
   */
  onError?: (error: unknown) => void;
}

export interface TransparentTcpListenerOptions {
  address: string;
  port: number;
  /** Default 511, like net.Server. */
  backlog?: number;
  /** Default true. */
  transparent?: boolean;
  /** SO_REUSEADDR. Default true. */
  reuseAddr?: boolean;
  reusePort?: boolean;
  /** For "::": IPv6 only. Default false (dual stack). */
  ipv6Only?: boolean;
}

/**
 * A UDP listener that receives in batches through shared memory and replies
 * from the original destination. Errors from the constructor look like
 * Node's: `err.code` ('EADDRINUSE'), `err.errno` (negative), `err.syscall`.
 */
export class TransparentUdpSocket {
  /** Payload arena: rx slot i starts at i * slotBytes. */
  readonly rxData: Uint8Array;
  readonly rxMeta: Int32Array;
  /** Same memory as rxMeta, for the raw address bytes. */
  readonly rxMetaBytes: Uint8Array;
  readonly txData: Uint8Array;
  /** tx slot meta: SRC = peer to send to, DST = address/port to send from. */
  readonly txMeta: Int32Array;
  readonly txMetaBytes: Uint8Array;
  /** Live counters, updated by the addon; index with the C_* constants. */
  readonly counters: Float64Array;
  readonly slots: number;
  readonly txSlots: number;
  readonly slotBytes: number;
  /** The address as given in the options. */
  readonly address: string;
  /** The bound port (resolved when 0 was asked for). */
  readonly port: number;
  /** Socket family: 6 for an IPv6 (possibly dual-stack) socket. */
  readonly family: 4 | 6;

  #native: NativeUdpSocket;
  #closed = false;

  constructor(options: TransparentUdpSocketOptions) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError('TransparentUdpSocket: options must be an object');
    }
    const { onBatch } = options;
    if (typeof onBatch !== 'function') {
      throw new TypeError('TransparentUdpSocket: options.onBatch must be a function');
    }
    const slots = options.slots ?? 64;
    const slotBytes = options.slotBytes ?? 4096;
    const txSlots = options.txSlots ?? slots * 2;
    let warned = false;
    const onError =
      options.onError ??
      ((error: unknown) => {
        if (warned) return;
        warned = true;
        process.emitWarning(
          `TransparentUdpSocket onBatch handler threw (further errors are only counted): ${
            error instanceof Error ? (error.stack ?? error.message) : String(error)
          }`,
          'TransparentUdpSocketWarning',
        );
      });
    const nativeOptions = {
      address: options.address,
      port: options.port,
      transparent: options.transparent ?? true,
      reuseAddr: options.reuseAddr ?? true,
      reusePort: options.reusePort ?? false,
      recvBufferBytes: options.recvBufferBytes ?? 4 << 20,
      sendBufferBytes: options.sendBufferBytes ?? 4 << 20,
      ipv6Only: options.ipv6Only ?? false,
      slots,
      slotBytes,
      txSlots,
      replySocketCap: options.replySocketCap ?? 256,
      replySocketIdleMs: options.replySocketIdleMs ?? 30000,
    };
    // The handler goes to the addon as is: no wrapper frame on the hot path.
    this.#native = new addon.TransparentUdpSocketNative(nativeOptions, onBatch, onError);
    const buffers = this.#native.buffers();
    this.rxData = new Uint8Array(buffers.rxData);
    this.rxMeta = new Int32Array(buffers.rxMeta);
    this.rxMetaBytes = new Uint8Array(buffers.rxMeta);
    this.txData = new Uint8Array(buffers.txData);
    this.txMeta = new Int32Array(buffers.txMeta);
    this.txMetaBytes = new Uint8Array(buffers.txMeta);
    this.counters = new Float64Array(buffers.counters);
    this.slots = slots;
    this.txSlots = txSlots;
    this.slotBytes = slotBytes;
    const info = this.#native.localInfo();
    this.address = info.address;
    this.port = info.port ?? options.port;
    this.family = info.family ?? 4;
  }

  /**
   * Sends tx slots [0, count) with one sendmmsg (plus one sendto per packet
   * whose source port differs from the listener's). Returns how many were
   * handed to the kernel; the rest are counted (droppedEagain, sendErrors,
   * droppedInvalidTx, droppedLocalOrigDst). Never queues. count is clamped
   * to txSlots. Returns 0 after close().
   */
  flush(count: number): number {
    return this.#native.flush(count);
  }

  /**
   * Copies rx meta slot `rxSlot` into tx meta slot `txSlot` and sets the
   * length: the reply goes back to the client, from the address and port
   * the client asked. Allocation-free.
   */
  replyMeta(rxSlot: number, txSlot: number, length: number): void {
    const rxMeta = this.rxMeta;
    const txMeta = this.txMeta;
    const from = rxSlot * META_STRIDE;
    const to = txSlot * META_STRIDE;
    for (let k = 0; k < META_STRIDE; k++) txMeta[to + k] = rxMeta[from + k];
    txMeta[to + M_LEN] = length;
  }

  /** Stops receiving, closes the fd and all reply sockets. Idempotent. The data views become empty; counters stay readable. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#native.close();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Let the socket keep the event loop alive (the default). */
  ref(): this {
    this.#native.ref();
    return this;
  }

  /** Let the process exit even while the socket is open. */
  unref(): this {
    this.#native.unref();
    return this;
  }

  /** A snapshot of the counters as a plain object (allocates; for metrics and logs). */
  get stats(): TransparentUdpSocketStats {
    const counters = this.counters;
    const result = {} as TransparentUdpSocketStats;
    for (let i = 0; i < COUNTER_NAMES.length; i++) result[COUNTER_NAMES[i]] = counters[i];
    return result;
  }
}

/**
 * Formats the source or destination address of a meta slot
 * ("192.0.2.1", "2001:db8::1"). Allocates: logging only.
 */
export function formatAddress(metaBytes: Uint8Array, slotIndex: number, which: 'src' | 'dst'): string {
  const base = slotIndex * META_STRIDE_BYTES;
  const view = new DataView(metaBytes.buffer, metaBytes.byteOffset, metaBytes.byteLength);
  const family = view.getInt32(base + M_FAMILY * 4, HOST_LITTLE_ENDIAN);
  const offset = base + (which === 'src' ? M_SRC_ADDR_BYTES : M_DST_ADDR_BYTES);
  if (family === 4) {
    return `${view.getUint8(offset)}.${view.getUint8(offset + 1)}.${view.getUint8(offset + 2)}.${view.getUint8(offset + 3)}`;
  }
  if (family !== 6) return `<family ${family}>`;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(view.getUint16(offset + i * 2, false));
  return formatIpv6(groups);
}

/** "192.0.2.1:53" / "[2001:db8::1]:53" for a meta slot. Logging only. */
export function formatEndpoint(metaBytes: Uint8Array, slotIndex: number, which: 'src' | 'dst'): string {
  const address = formatAddress(metaBytes, slotIndex, which);
  const ints = new Int32Array(metaBytes.buffer, metaBytes.byteOffset + slotIndex * META_STRIDE_BYTES, META_STRIDE);
  const port = ints[which === 'src' ? M_SRC_PORT : M_DST_PORT];
  return ints[M_FAMILY] === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * Writes an address ("192.0.2.1" or "2001:db8::1") into a meta slot and sets
 * the slot's family. Allocates: for tests and slow paths, not per packet.
 */
export function writeAddress(metaBytes: Uint8Array, slotIndex: number, which: 'src' | 'dst', address: string): void {
  const base = slotIndex * META_STRIDE_BYTES;
  const offset = base + (which === 'src' ? M_SRC_ADDR_BYTES : M_DST_ADDR_BYTES);
  const bytes = parseIpAddress(address);
  if (bytes === null) {
    const error = new TypeError(`Invalid IP address: "${address}"`) as TypeError & { code: string };
    error.code = 'ERR_INVALID_IP_ADDRESS';
    throw error;
  }
  metaBytes.fill(0, offset, offset + 16);
  metaBytes.set(bytes, offset);
  const ints = new Int32Array(metaBytes.buffer, metaBytes.byteOffset + base, META_STRIDE);
  ints[M_FAMILY] = bytes.length === 4 ? 4 : 6;
}

function formatIpv6(groups: number[]): string {
  // RFC 5952: compress the longest run (>= 2) of zero groups, first one wins.
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === 0 && bestLength === 6 && groups[5] === 0xffff) {
    return `::ffff:${groups[6] >> 8}.${groups[6] & 0xff}.${groups[7] >> 8}.${groups[7] & 0xff}`;
  }
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

function parseIpAddress(address: string): Uint8Array | null {
  if (isIPv4(address)) return Uint8Array.from(address.split('.').map(Number));
  const text = address.split('%')[0];
  if (!isIPv6(text)) return null;
  let normalized = text;
  const lastColon = normalized.lastIndexOf(':');
  const tail = normalized.slice(lastColon + 1);
  if (tail.includes('.')) {
    // Embedded IPv4 ("::ffff:192.0.2.1"): rewrite as two hex groups.
    const p = tail.split('.').map(Number);
    normalized = `${normalized.slice(0, lastColon + 1)}${((p[0] << 8) | p[1]).toString(16)}:${((p[2] << 8) | p[3]).toString(16)}`;
  }
  const halves = normalized.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const zeros = halves.length > 1 ? 8 - head.length - rest.length : 0;
  const groups = [...head, ...new Array<string>(zeros).fill('0'), ...rest];
  if (groups.length !== 8) return null;
  const bytes = new Uint8Array(16);
  groups.forEach((group, i) => {
    const value = parseInt(group, 16);
    bytes[i * 2] = value >> 8;
    bytes[i * 2 + 1] = value & 0xff;
  });
  return bytes;
}

/**
 * Opens a listening, non-blocking TCP socket with IP_TRANSPARENT /
 * IPV6_TRANSPARENT and SO_REUSEADDR ("::" is dual stack unless ipv6Only)
 * and returns its fd for `net.Server.listen({ fd })`. If listen({ fd }) is
 * never called, close the fd yourself with fs.closeSync(fd).
 */
export function openTransparentTcpListener(options: TransparentTcpListenerOptions): number {
  if (options === null || typeof options !== 'object') {
    throw new TypeError('openTransparentTcpListener: options must be an object');
  }
  return addon.openTransparentTcpListener({
    address: options.address,
    port: options.port,
    backlog: options.backlog ?? 511,
    transparent: options.transparent ?? true,
    reuseAddr: options.reuseAddr ?? true,
    reusePort: options.reusePort ?? false,
    ipv6Only: options.ipv6Only ?? false,
  });
}

/**
 * Returns malloc's freed-but-resident pages to the kernel (glibc `malloc_trim(0)`), on the libuv thread
 * pool: a trim walks every free chunk (milliseconds with ~100 MiB freed), which must not stall the event
 * loop. Resolves false when nothing was released or the libc has no such call.
 */
export function releaseFreedHeap(): Promise<boolean> {
  return addon.releaseFreedHeap();
}
