// A minimal HTTP/2 client connection, only as much of RFC 9113 as a DoH client needs: POST requests
// with a small body, one response each. It exists because node:http2 costs ~110 µs of CPU per request
// on this path (a Duplex stream, several C++ crossings and event emissions per request), which capped
// the cache-miss rate below the target; here a request is one preformatted HEADERS+DATA pair appended to
// a write buffer, every request of a batch leaves in one TLS write, and a response is parsed straight
// from the TLS chunk.
//
// What it deliberately leaves out, and why that is safe:
// - HPACK dynamic table: our SETTINGS announce a header table size of 0, so the server may not index
//   into one; a reference past the static table is a COMPRESSION_ERROR (the connection is dropped and
//   its requests replayed on a fresh one). Our own header blocks never index either.
// - Server push is disabled in our SETTINGS; a PUSH_PROMISE is a protocol error.
// - Request bodies larger than the peer's initial stream window are refused (DNS queries are < 1 KiB;
//   HTTP/2 guarantees at least 65,535 unless the server lowers it).
// Flow control for receiving is opened wide once (1 GiB connection window, 1 MiB per stream) and
// replenished in large steps, so the server never stalls on us.
import tls from 'node:tls';
import { huffmanDecode } from './hpack-huffman.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const T_DATA = 0x0, T_HEADERS = 0x1, T_RST_STREAM = 0x3, T_SETTINGS = 0x4, T_PUSH_PROMISE = 0x5,
  T_PING = 0x6, T_GOAWAY = 0x7, T_WINDOW_UPDATE = 0x8, T_CONTINUATION = 0x9;
const F_END_STREAM = 0x1, F_ACK = 0x1, F_END_HEADERS = 0x4, F_PADDED = 0x8, F_PRIORITY = 0x20;

const S_HEADER_TABLE_SIZE = 0x1, S_ENABLE_PUSH = 0x2, S_MAX_CONCURRENT_STREAMS = 0x3,
  S_INITIAL_WINDOW_SIZE = 0x4, S_MAX_FRAME_SIZE = 0x5;

const E_PROTOCOL = 0x1, E_FLOW_CONTROL = 0x3, E_FRAME_SIZE = 0x6, E_REFUSED_STREAM = 0x7, E_CANCEL = 0x8,
  E_COMPRESSION = 0x9;

const RECV_STREAM_WINDOW = 1 << 20;
const RECV_CONN_WINDOW = 1 << 30;
const DEFAULT_WINDOW = 65535;
/** Largest frame we accept (our SETTINGS keep the protocol default). */
const MAX_FRAME = 16384;
/** A header block larger than this is not a DoH response. */
const MAX_HEADER_BLOCK = 16384;

/** Why a stream ended without an answer. `replayable` streams never reached the server's application. */
export type H2Failure = 'reset' | 'refused' | 'goaway' | 'closed' | 'too_large' | 'protocol';

export interface H2Events<T> {
  /** The response is complete; `body` is the caller's to keep. */
  onResponse(tag: T, status: number, contentType: string, body: Buffer): void;
  /** The stream failed. `replayable`: the server did not process it (GOAWAY past it, REFUSED_STREAM, or
   *  the connection died before a response started) so sending it again cannot duplicate work. */
  onFailure(tag: T, why: H2Failure, replayable: boolean): void;
  /** TLS and the HTTP/2 preface are done. */
  onConnect(): void;
  /** The connection is gone (after every open stream got onFailure). `error` is set when it failed. */
  onClose(error: string | null): void;
}

export interface H2ConnectOptions {
  host: string;
  port: number;
  servername?: string;
  secureContext: tls.SecureContext;
  lookup?: tls.ConnectionOptions['lookup'];
  /** `:authority` and `:path` of every request. */
  authority: string;
  path: string;
  maxAnswerBytes: number;
}

class H2Stream<T> {
  status = 0;
  contentType = '';
  chunks: Buffer[] = [];
  bytes = 0;
  headersDone = false;
  constructor(readonly id: number, readonly tag: T) {}
}

/** One HTTP/2 connection. */
export class H2Connection<T> {
  private socket: tls.TLSSocket | null;
  private readonly streams = new Map<number, H2Stream<T>>();
  private nextStreamId = 1;
  private out: Buffer[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  private readonly flushBound = (): void => this.flush();
  private inbuf: Buffer | null = null;
  /** Header block being collected across CONTINUATION frames. */
  private headerStream = 0;
  private headerParts: Buffer[] = [];
  private headerBytes = 0;
  private headerEndStream = false;
  private sendWindow = DEFAULT_WINDOW;
  private peerStreamWindow = DEFAULT_WINDOW;
  private peerMaxStreams = 100;
  private peerMaxFrame = 16384;
  private recvConsumed = 0;
  /** Requests over the peer's concurrency or window, sent as streams complete. */
  private readonly waiting: Array<{ body: Buffer; tag: T }> = [];
  private goawayLastId = -1;
  /** The server's first SETTINGS frame has arrived. */
  private peerSettings = false;
  private pingCallbacks: Array<() => void> = [];
  /** close() was called: finish the open streams, take no new ones. */
  private closing = false;
  private readonly headerPrefix: Buffer;
  connected = false;
  closed = false;
  /** When bytes last arrived from the server (performance.now()): a stall detector for the owner. */
  lastReceived = performance.now();
  /** Why the connection failed, once it has. */
  error: string | null = null;

  constructor(private readonly opts: H2ConnectOptions, private readonly events: H2Events<T>) {
    this.headerPrefix = requestHeaderPrefix(opts.authority, opts.path);
    const socket = tls.connect({
      host: opts.host,
      port: opts.port,
      servername: opts.servername,
      secureContext: opts.secureContext,
      ALPNProtocols: ['h2'],
      lookup: opts.lookup,
    });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('secureConnect', () => {
      if (socket.alpnProtocol !== 'h2') { this.destroy('ERR_HTTP2_ALPN'); return; }
      this.connected = true;
      this.events.onConnect();
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => this.destroy(err.code ?? 'ERR'));
    socket.on('close', () => this.destroy(this.error ?? (this.goawayLastId >= 0 || this.closing ? null : 'ECONNRESET')));
    // Preface, SETTINGS and the connection window go out first, queued ahead of any request.
    const settings = frame(T_SETTINGS, 0, 0, settingsPayload([
      [S_HEADER_TABLE_SIZE, 0], [S_ENABLE_PUSH, 0], [S_INITIAL_WINDOW_SIZE, RECV_STREAM_WINDOW]]));
    this.queue(PREFACE);
    this.queue(settings);
    this.queue(windowUpdate(0, RECV_CONN_WINDOW - DEFAULT_WINDOW));
  }

  /** Streams open or waiting on this connection. */
  get active(): number { return this.streams.size + this.waiting.length; }

  /** No new request may go here (GOAWAY received, closing, or failed). */
  get draining(): boolean { return this.closed || this.closing || this.goawayLastId >= 0 || this.nextStreamId > 0x7fffffff - 2; }

  /** Sends a POST with `body`. Returns false when the connection cannot take it (then nothing was queued). */
  request(body: Buffer, tag: T): boolean {
    if (this.draining) return false;
    // Until the server's SETTINGS arrive its stream limit is unknown: requests wait rather than risk
    // being refused by a server whose limit is below the default we would otherwise assume.
    if (!this.peerSettings || body.length > this.peerStreamWindow || this.streams.size >= this.peerMaxStreams
      || body.length > this.sendWindow || this.waiting.length) {
      if (body.length > this.peerStreamWindow && this.peerStreamWindow >= DEFAULT_WINDOW) return false;
      this.waiting.push({ body, tag });
      return true;
    }
    this.start(body, tag);
    return true;
  }

  private start(body: Buffer, tag: T): void {
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    this.streams.set(id, new H2Stream(id, tag));
    this.sendWindow -= body.length;
    // HEADERS and the DATA frames written into one buffer: one allocation per request.
    const prefix = this.headerPrefix;
    const digits = String(body.length);
    const blockLen = prefix.length + 3 + digits.length;
    const dataFrames = Math.max(1, Math.ceil(body.length / this.peerMaxFrame));
    const out = Buffer.allocUnsafe(9 + blockLen + 9 * dataFrames + body.length);
    writeFrameHeader(out, 0, blockLen, T_HEADERS, F_END_HEADERS, id);
    prefix.copy(out, 9);
    let o = 9 + prefix.length;
    // content-length: literal without indexing, static name 28 (0x0f 0x0d), raw value
    out[o++] = 0x0f; out[o++] = 0x0d; out[o++] = digits.length;
    o += out.write(digits, o, 'latin1');
    // One DATA frame for any DNS query under the peer's frame size (16 KiB at least).
    for (let off = 0, f = 0; f < dataFrames; f++) {
      const end = Math.min(body.length, off + this.peerMaxFrame);
      writeFrameHeader(out, o, end - off, T_DATA, end === body.length ? F_END_STREAM : 0, id);
      body.copy(out, o + 9, off, end);
      o += 9 + end - off;
      off = end;
    }
    this.queue(out);
  }

  /** Withdraws a request: RST_STREAM(CANCEL), no callback. */
  cancel(tag: T): void {
    for (let i = 0; i < this.waiting.length; i++) if (this.waiting[i].tag === tag) { this.waiting.splice(i, 1); return; }
    for (const [id, s] of this.streams) {
      if (s.tag !== tag) continue;
      this.streams.delete(id);
      this.queue(rstStream(id, E_CANCEL));
      this.pump();
      return;
    }
  }

  /** PING; `cb` runs when the ACK arrives. */
  ping(cb: () => void): void {
    if (this.closed) return;
    this.pingCallbacks.push(cb);
    this.queue(frame(T_PING, 0, 0, Buffer.alloc(8)));
  }

  /** Graceful: no new requests; the connection ends when the open streams have. */
  close(): void {
    if (this.closed || this.closing) return;
    this.closing = true;
    this.endIfQuiet();
  }

  /** Fails every stream and drops the socket. */
  destroy(error: string | null): void {
    if (this.closed) return;
    this.closed = true;
    this.error = error;
    const socket = this.socket;
    this.socket = null;
    socket?.destroy();
    // Streams that got no response headers never reached the application layer as far as we know;
    // the owner may replay them (only once the connection had been up, decided by the owner).
    const open = [...this.streams.values()];
    this.streams.clear();
    const waiting = this.waiting.splice(0);
    for (const s of open) this.events.onFailure(s.tag, 'closed', s.status === 0);
    for (const w of waiting) this.events.onFailure(w.tag, 'closed', true);
    this.pingCallbacks = [];
    this.events.onClose(error);
  }

  private queue(buf: Buffer): void {
    this.out.push(buf);
    this.outBytes += buf.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // Everything queued in this tick (a whole batch of queries) leaves as one TLS write.
      queueMicrotask(this.flushBound);
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.out.length === 0 || !this.socket) { this.out = []; this.outBytes = 0; return; }
    const data = this.out.length === 1 ? this.out[0] : Buffer.concat(this.out, this.outBytes);
    this.out = [];
    this.outBytes = 0;
    this.socket.write(data);
  }

  private onData(chunk: Buffer): void {
    this.lastReceived = performance.now();
    let buf = this.inbuf ? Buffer.concat([this.inbuf, chunk]) : chunk;
    this.inbuf = null;
    let off = 0;
    while (!this.closed && buf.length - off >= 9) {
      const len = (buf[off] << 16) | (buf[off + 1] << 8) | buf[off + 2];
      if (len > MAX_FRAME) { this.protocolError('ERR_HTTP2_FRAME_SIZE', E_FRAME_SIZE); return; }
      if (buf.length - off < 9 + len) break;
      const type = buf[off + 3];
      const flags = buf[off + 4];
      const id = buf.readUInt32BE(off + 5) & 0x7fffffff;
      const payload = buf.subarray(off + 9, off + 9 + len);
      off += 9 + len;
      if (this.headerStream !== 0 && type !== T_CONTINUATION) { this.protocolError('ERR_HTTP2_PROTOCOL', E_PROTOCOL); return; }
      this.onFrame(type, flags, id, payload);
    }
    if (!this.closed && off < buf.length) {
      // Keep the partial frame; copy it so the rest of the chunk can be collected.
      buf = buf.subarray(off);
      this.inbuf = Buffer.from(buf);
    }
    this.pump();
  }

  private onFrame(type: number, flags: number, id: number, payload: Buffer): void {
    switch (type) {
      case T_DATA: return this.onDataFrame(flags, id, payload);
      case T_HEADERS: return this.onHeaders(flags, id, payload);
      case T_CONTINUATION: return this.onContinuation(flags, id, payload);
      case T_RST_STREAM: return this.onRstStream(id, payload);
      case T_SETTINGS: return this.onSettings(flags, payload);
      case T_PING:
        if (payload.length !== 8) { this.protocolError('ERR_HTTP2_FRAME_SIZE', E_FRAME_SIZE); return; }
        if (flags & F_ACK) { const cb = this.pingCallbacks.shift(); cb?.(); } else this.queue(frame(T_PING, F_ACK, 0, Buffer.from(payload)));
        return;
      case T_GOAWAY: return this.onGoaway(payload);
      case T_WINDOW_UPDATE:
        if (payload.length !== 4) { this.protocolError('ERR_HTTP2_FRAME_SIZE', E_FRAME_SIZE); return; }
        if (id === 0) this.sendWindow += payload.readUInt32BE(0) & 0x7fffffff;
        return;
      case T_PUSH_PROMISE: this.protocolError('ERR_HTTP2_PUSH_DISABLED', E_PROTOCOL); return;
      default: return; // PRIORITY and unknown frame types are ignored, as RFC 9113 requires
    }
  }

  private onDataFrame(flags: number, id: number, payload: Buffer): void {
    // Flow control counts the whole payload, padding included.
    this.recvConsumed += payload.length;
    if (this.recvConsumed >= RECV_CONN_WINDOW / 2) {
      this.queue(windowUpdate(0, this.recvConsumed));
      this.recvConsumed = 0;
    }
    const s = this.streams.get(id);
    if (!s) return; // cancelled by us, or already failed
    const data = unpad(flags, payload);
    if (!data || !s.headersDone) { this.streamError(s, E_PROTOCOL, 'protocol'); return; }
    s.bytes += data.length;
    if (s.bytes > this.opts.maxAnswerBytes || s.bytes > RECV_STREAM_WINDOW) { this.streamError(s, E_CANCEL, 'too_large'); return; }
    if (data.length) s.chunks.push(data);
    if (flags & F_END_STREAM) this.complete(s);
  }

  private onHeaders(flags: number, id: number, payload: Buffer): void {
    let data = unpad(flags, payload);
    if (!data || id === 0) { this.protocolError('ERR_HTTP2_PROTOCOL', E_PROTOCOL); return; }
    if (flags & F_PRIORITY) {
      if (data.length < 5) { this.protocolError('ERR_HTTP2_FRAME_SIZE', E_FRAME_SIZE); return; }
      data = data.subarray(5);
    }
    this.headerParts = [data];
    this.headerBytes = data.length;
    this.headerEndStream = (flags & F_END_STREAM) !== 0;
    if (flags & F_END_HEADERS) this.endHeaders(id);
    else this.headerStream = id;
  }

  private onContinuation(flags: number, id: number, payload: Buffer): void {
    if (id !== this.headerStream) { this.protocolError('ERR_HTTP2_PROTOCOL', E_PROTOCOL); return; }
    this.headerParts.push(payload);
    this.headerBytes += payload.length;
    if (this.headerBytes > MAX_HEADER_BLOCK) { this.protocolError('ERR_HTTP2_HEADER_SIZE', E_PROTOCOL); return; }
    if (flags & F_END_HEADERS) { this.headerStream = 0; this.endHeaders(id); }
  }

  private endHeaders(id: number): void {
    const block = this.headerParts.length === 1 ? this.headerParts[0] : Buffer.concat(this.headerParts, this.headerBytes);
    this.headerParts = [];
    // Decoded even for a stream we no longer track: HPACK state is per connection (and a decode error
    // must end the connection either way).
    const h = decodeResponseHeaders(block);
    if (h === null) { this.protocolError('ERR_HTTP2_COMPRESSION', E_COMPRESSION); return; }
    const s = this.streams.get(id);
    if (!s) return;
    if (!s.headersDone) {
      if (h.status === 0) { this.streamError(s, E_PROTOCOL, 'protocol'); return; }
      if (h.status >= 100 && h.status < 200) return; // informational; the real response follows
      s.status = h.status;
      s.contentType = h.contentType;
      s.headersDone = true;
    } // else: trailers, ignored
    if (this.headerEndStream) this.complete(s);
  }

  private onRstStream(id: number, payload: Buffer): void {
    if (payload.length !== 4) { this.protocolError('ERR_HTTP2_FRAME_SIZE', E_FRAME_SIZE); return; }
    const s = this.streams.get(id);
    if (!s) return;
    this.streams.delete(id);
    const code = payload.readUInt32BE(0);
    // REFUSED_STREAM promises the request was not processed (RFC 9113 §8.7).
    this.events.onFailure(s.tag, code === E_REFUSED_STREAM ? 'refused' : 'reset', code === E_REFUSED_STREAM);
  }

  private onSettings(flags: number, payload: Buffer): void {
    if (flags & F_ACK) return;
    if (payload.length % 6 !== 0) { this.protocolError('ERR_HTTP2_FRAME_SIZE', E_FRAME_SIZE); return; }
    for (let i = 0; i < payload.length; i += 6) {
      const key = payload.readUInt16BE(i);
      const value = payload.readUInt32BE(i + 2);
      if (key === S_MAX_CONCURRENT_STREAMS) this.peerMaxStreams = value;
      else if (key === S_INITIAL_WINDOW_SIZE) {
        if (value > 0x7fffffff) { this.protocolError('ERR_HTTP2_FLOW_CONTROL', E_FLOW_CONTROL); return; }
        this.peerStreamWindow = value;
      } else if (key === S_MAX_FRAME_SIZE) {
        if (value < 16384 || value > 16777215) { this.protocolError('ERR_HTTP2_PROTOCOL', E_PROTOCOL); return; }
        this.peerMaxFrame = value;
      }
    }
    this.peerSettings = true;
    this.queue(frame(T_SETTINGS, F_ACK, 0, Buffer.alloc(0)));
  }

  private onGoaway(payload: Buffer): void {
    if (payload.length < 8) { this.protocolError('ERR_HTTP2_FRAME_SIZE', E_FRAME_SIZE); return; }
    const last = payload.readUInt32BE(0) & 0x7fffffff;
    this.goawayLastId = last;
    // Streams above the last id were never processed: the owner replays them elsewhere.
    for (const [id, s] of this.streams) {
      if (id <= last) continue;
      this.streams.delete(id);
      this.events.onFailure(s.tag, 'goaway', true);
    }
    for (const w of this.waiting.splice(0)) this.events.onFailure(w.tag, 'goaway', true);
    this.endIfQuiet();
  }

  private complete(s: H2Stream<T>): void {
    this.streams.delete(s.id);
    // A copy: the chunks are views of a whole TLS read, which a consumer that keeps the answer (a
    // coalesced waiter, a log queue) would otherwise pin in memory.
    const body = s.chunks.length === 1 ? Buffer.from(s.chunks[0]) : Buffer.concat(s.chunks, s.bytes);
    this.events.onResponse(s.tag, s.status, s.contentType, body);
  }

  private streamError(s: H2Stream<T>, code: number, why: H2Failure): void {
    this.streams.delete(s.id);
    this.queue(rstStream(s.id, code));
    this.events.onFailure(s.tag, why, false);
  }

  private protocolError(error: string, code: number): void {
    if (this.closed) return;
    // A client's GOAWAY names the last server-initiated stream it processed: there are none.
    this.queue(goaway(0, code));
    this.flush();
    this.destroy(error);
  }

  /** Starts waiting requests that now fit; ends a draining connection that has gone quiet. */
  private pump(): void {
    while (this.waiting.length && this.peerSettings && !this.draining && this.streams.size < this.peerMaxStreams
      && this.waiting[0].body.length <= this.sendWindow && this.waiting[0].body.length <= this.peerStreamWindow) {
      const w = this.waiting.shift()!;
      this.start(w.body, w.tag);
    }
    this.endIfQuiet();
  }

  /** A closing connection, or one the server sent GOAWAY on, ends once nothing is left in flight. */
  private endIfQuiet(): void {
    if (!(this.closing || this.goawayLastId >= 0) || this.closed || this.streams.size > 0 || this.waiting.length > 0) return;
    this.closed = true;
    this.queue(goaway(0, 0));
    this.flush();
    this.socket?.end();
    this.socket?.destroySoon?.();
    this.events.onClose(null);
  }
}

function writeFrameHeader(b: Buffer, at: number, length: number, type: number, flags: number, id: number): void {
  b[at] = length >>> 16; b[at + 1] = (length >>> 8) & 0xff; b[at + 2] = length & 0xff;
  b[at + 3] = type; b[at + 4] = flags;
  b.writeUInt32BE(id, at + 5);
}

function frame(type: number, flags: number, id: number, payload: Buffer): Buffer {
  const b = Buffer.allocUnsafe(9 + payload.length);
  writeFrameHeader(b, 0, payload.length, type, flags, id);
  payload.copy(b, 9);
  return b;
}

function settingsPayload(pairs: Array<[number, number]>): Buffer {
  const b = Buffer.allocUnsafe(6 * pairs.length);
  pairs.forEach(([k, v], i) => { b.writeUInt16BE(k, 6 * i); b.writeUInt32BE(v, 6 * i + 2); });
  return b;
}

function windowUpdate(id: number, inc: number): Buffer {
  const p = Buffer.allocUnsafe(4);
  p.writeUInt32BE(inc, 0);
  return frame(T_WINDOW_UPDATE, 0, id, p);
}

function rstStream(id: number, code: number): Buffer {
  const p = Buffer.allocUnsafe(4);
  p.writeUInt32BE(code, 0);
  return frame(T_RST_STREAM, 0, id, p);
}

function goaway(lastId: number, code: number): Buffer {
  const p = Buffer.allocUnsafe(8);
  p.writeUInt32BE(lastId, 0);
  p.writeUInt32BE(code, 4);
  return frame(T_GOAWAY, 0, 0, p);
}

function unpad(flags: number, payload: Buffer): Buffer | null {
  if (!(flags & F_PADDED)) return payload;
  if (payload.length < 1) return null;
  const pad = payload[0];
  if (pad >= payload.length) return null;
  return payload.subarray(1, payload.length - pad);
}

// --- HPACK (RFC 7541), the subset above -------------------------------------------------------------

/** Appends an HPACK integer with an N-bit prefix (the prefix's high bits in `first`). */
function hpackInt(out: number[], first: number, prefixBits: number, value: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) { out.push(first | value); return; }
  out.push(first | max);
  value -= max;
  while (value >= 128) { out.push((value & 0x7f) | 0x80); value = Math.floor(value / 128); }
  out.push(value);
}

/** Literal header field without indexing, name from the static table, raw (not Huffman) value. */
function literal(out: number[], staticNameIndex: number, value: string): void {
  hpackInt(out, 0x00, 4, staticNameIndex);
  const v = Buffer.from(value, 'latin1');
  hpackInt(out, 0x00, 7, v.length);
  for (const c of v) out.push(c);
}

/** Everything of a request's header block except content-length, which depends on the body. */
function requestHeaderPrefix(authority: string, path: string): Buffer {
  const out: number[] = [];
  out.push(0x83); // :method POST (static 3)
  out.push(0x87); // :scheme https (static 7)
  literal(out, 1, authority); // :authority
  literal(out, 4, path); // :path
  literal(out, 31, 'application/dns-message'); // content-type
  literal(out, 19, 'application/dns-message'); // accept
  return Buffer.from(out);
}

/** Static table entries (RFC 7541 Appendix A) for :status values. */
const STATIC_STATUS: Record<number, number> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };
const STATIC_STATUS_NAME = 8;
const STATIC_CONTENT_TYPE_NAME = 31;
const STATIC_TABLE_SIZE = 61;

interface ResponseHeaders { status: number; contentType: string }

/**
 * Decodes what a DoH client needs from a response header block: :status and content-type. Returns null
 * on a malformed block or a dynamic-table reference (we announced a table size of 0).
 */
export function decodeResponseHeaders(block: Buffer): ResponseHeaders | null {
  const r: ResponseHeaders = { status: 0, contentType: '' };
  let i = 0;
  const readInt = (prefixBits: number): number => {
    const max = (1 << prefixBits) - 1;
    let v = block[i++] & max;
    if (v < max) return v;
    let shift = 0;
    for (;;) {
      if (i >= block.length || shift > 28) return -1;
      const b = block[i++];
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (!(b & 0x80)) return v;
    }
  };
  const readString = (): string | null => {
    if (i >= block.length) return null;
    const huffman = (block[i] & 0x80) !== 0;
    const len = readInt(7);
    if (len < 0 || i + len > block.length) return null;
    const raw = block.subarray(i, i + len);
    i += len;
    return huffman ? huffmanDecode(raw) : raw.toString('latin1');
  };
  while (i < block.length) {
    const b = block[i];
    if (b & 0x80) { // indexed field
      const idx = readInt(7);
      if (idx <= 0 || idx > STATIC_TABLE_SIZE) return null;
      if (STATIC_STATUS[idx]) r.status = STATIC_STATUS[idx];
      continue;
    }
    if ((b & 0xe0) === 0x20) { // dynamic table size update: only 0 fits what we announced
      if (readInt(5) !== 0) return null;
      continue;
    }
    // literal: with incremental indexing (01), without (0000) or never indexed (0001)
    const nameIdx = (b & 0xc0) === 0x40 ? readInt(6) : readInt(4);
    if (nameIdx < 0 || nameIdx > STATIC_TABLE_SIZE) return null;
    let name: string | null = null;
    if (nameIdx === 0) { name = readString(); if (name === null) return null; }
    const value = readString();
    if (value === null) return null;
    if (nameIdx === STATIC_STATUS_NAME || name === ':status') r.status = /^\d{3}$/.test(value) ? Number(value) : -1;
    else if (nameIdx === STATIC_CONTENT_TYPE_NAME || name === 'content-type') r.contentType = value;
  }
  return r.status < 0 ? null : r;
}
