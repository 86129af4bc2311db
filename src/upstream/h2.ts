// A minimal HTTP/2 client connection, only as much of RFC 9113 as a DoH client needs: POST requests
// with a small body, one response each. It exists because node:http2 costs ~110 µs of CPU per request
// on this path (a Duplex stream, several C++ crossings and event emissions per request), which capped
// the cache-miss rate below the target; here a request is one preformatted HEADERS+DATA pair written
// into the connection's output slab, every request of a batch leaves in one TLS write, and a response
// is parsed straight from the TLS read buffer.
//
// Reads use the socket's `onread` buffer: one preallocated buffer per connection instead of a Buffer and
// a trip through the Readable stream machinery per TLS record. That matters because DoH servers tend to
// write each frame as its own TLS record (unbound does), so an answer arrives over two or more reads
// (bench/doh-client.mjs counts them). Anything kept past the callback (a partial frame, a body, a header block split
// over CONTINUATION frames) is copied out of it.
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
import { huffmanDecodeRange } from './hpack-huffman.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const T_DATA = 0x0, T_HEADERS = 0x1, T_RST_STREAM = 0x3, T_SETTINGS = 0x4, T_PUSH_PROMISE = 0x5,
  T_PING = 0x6, T_GOAWAY = 0x7, T_WINDOW_UPDATE = 0x8, T_CONTINUATION = 0x9;
const F_END_STREAM = 0x1, F_ACK = 0x1, F_END_HEADERS = 0x4, F_PADDED = 0x8, F_PRIORITY = 0x20;

const S_HEADER_TABLE_SIZE = 0x1, S_ENABLE_PUSH = 0x2, S_MAX_CONCURRENT_STREAMS = 0x3,
  S_INITIAL_WINDOW_SIZE = 0x4, S_MAX_FRAME_SIZE = 0x5;

const E_PROTOCOL = 0x1, E_FLOW_CONTROL = 0x3, E_FRAME_SIZE = 0x6, E_REFUSED_STREAM = 0x7, E_CANCEL = 0x8,
  E_COMPRESSION = 0x9, E_ENHANCE_YOUR_CALM = 0xb;

/** Largest flow-control window (RFC 9113 §6.9.1). */
const MAX_WINDOW = 0x7fffffff;

const RECV_STREAM_WINDOW = 1 << 20;
const RECV_CONN_WINDOW = 1 << 30;
const DEFAULT_WINDOW = 65535;
/** Largest frame we accept (our SETTINGS keep the protocol default). */
const MAX_FRAME = 16384;
/** A header block larger than this is not a DoH response. */
const MAX_HEADER_BLOCK = 16384;
/** Frames one header block may span (HEADERS + CONTINUATIONs): a flood of empty CONTINUATION frames
 *  costs bytes nowhere but in our bookkeeping (the CVE-2024-27316 class), so frames are capped too. */
const MAX_HEADER_FRAMES = 16;
/** Frames that carry no response progress (PING, SETTINGS, PRIORITY, unknown types, empty DATA or
 *  CONTINUATION) accepted per second; past it the peer is flooding us (ENHANCE_YOUR_CALM). */
const MAX_IDLE_FRAMES_PER_SECOND = 1000;
/** Output not yet taken by the socket beyond which we stop answering the peer's PINGs and SETTINGS:
 *  a peer that sends them but does not read our ACKs would otherwise grow our write queue forever. */
const MAX_CONTROL_BACKLOG = 256 * 1024;
/** Size of the per-connection read buffer (TLS hands over at most one 16 KiB record per read). */
const READ_BUFFER = 64 * 1024;
/** Output slab: requests and control frames of one loop turn are written into it and leave as one write. */
const SLAB = 16 * 1024;

/** Why a stream ended without an answer. `replayable` streams never reached the server's application. */
export type H2Failure = 'reset' | 'refused' | 'goaway' | 'closed' | 'too_large' | 'protocol';

/** Why the client ended a connection on a protocol violation (the `error` of onClose and H2Connection.error). */
export const H2_ERRORS = {
  frameSize: 'ERR_HTTP2_FRAME_SIZE', protocol: 'ERR_HTTP2_PROTOCOL', flowControl: 'ERR_HTTP2_FLOW_CONTROL',
  compression: 'ERR_HTTP2_COMPRESSION', headerSize: 'ERR_HTTP2_HEADER_SIZE', pushDisabled: 'ERR_HTTP2_PUSH_DISABLED',
  calm: 'ERR_HTTP2_ENHANCE_YOUR_CALM',
} as const;

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
  /** Opens the socket (default tls.connect); tests and the fuzzer pass one that is not a network. */
  connect?: (options: tls.ConnectionOptions) => tls.TLSSocket;
}

class H2Stream<T> {
  status = 0;
  contentType = '';
  /** Body pieces (copies), only for a body that came in more than one DATA frame. */
  chunks: Buffer[] | null = null;
  bytes = 0;
  headersDone = false;
  /** What we may still send on this stream; only checked for overflow (our bodies go out at once). */
  sendWindow: number;
  constructor(readonly id: number, readonly tag: T, window: number) { this.sendWindow = window; }
}

/** One HTTP/2 connection. */
export class H2Connection<T> {
  private socket: tls.TLSSocket | null;
  private readonly streams = new Map<number, H2Stream<T>>();
  private nextStreamId = 1;
  /** Filled slabs waiting for the flush, in order. */
  private out: Buffer[] = [];
  private outBytes = 0;
  private slab: Buffer | null = null;
  private slabUsed = 0;
  private flushScheduled = false;
  private readonly flushBound = (): void => this.flush();
  /** An incomplete frame left over from previous reads, collected in place: each byte is copied once
   *  however finely the peer dribbles it (allocated on first need, one frame's worth). */
  private inbuf: Buffer | null = null;
  private inLen = 0;
  /** Frames with no response progress in the current one-second window (see MAX_IDLE_FRAMES_PER_SECOND). */
  private idleFrames = 0;
  private idleWindowStart = 0;
  /** Decoded response header fields of the last header block (reused, no object per response). */
  private readonly headers: ResponseHeaders = { status: 0, contentType: '' };
  /** Header block being collected across CONTINUATION frames. */
  private headerStream = 0;
  private headerParts: Buffer[] = [];
  private headerBytes = 0;
  private headerFrames = 0;
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
  /** Read callbacks (one per TLS record) and socket writes so far: how well both sides batch. */
  reads = 0;
  writes = 0;
  /** Bytes copied into the partial-frame buffer: at most what was received, however it was split. */
  partialBytes = 0;

  constructor(private readonly opts: H2ConnectOptions, private readonly events: H2Events<T>) {
    this.headerPrefix = requestHeaderPrefix(opts.authority, opts.path);
    // `onread` works for TLS sockets too (nodejs/node#35753), but @types/node declares it only for net.
    const socket = (opts.connect ?? tls.connect)({
      host: opts.host,
      port: opts.port,
      servername: opts.servername,
      secureContext: opts.secureContext,
      ALPNProtocols: ['h2'],
      lookup: opts.lookup,
      onread: { buffer: Buffer.allocUnsafe(READ_BUFFER), callback: (n: number, buf: Uint8Array) => { this.onData(buf as Buffer, n); return true; } },
    } as tls.ConnectionOptions);
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('secureConnect', () => {
      if (socket.alpnProtocol !== 'h2') { this.destroy('ERR_HTTP2_ALPN'); return; }
      this.connected = true;
      this.events.onConnect();
    });
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
    this.streams.set(id, new H2Stream(id, tag, this.peerStreamWindow - body.length));
    this.sendWindow -= body.length;
    // HEADERS and the DATA frames go straight into the output slab: no buffer of their own.
    const prefix = this.headerPrefix;
    const n = body.length;
    const digits = n < 10 ? 1 : n < 100 ? 2 : n < 1000 ? 3 : n < 10000 ? 4 : 5;
    const blockLen = prefix.length + 3 + digits;
    const dataFrames = Math.max(1, Math.ceil(n / this.peerMaxFrame));
    let o = this.reserve(9 + blockLen + 9 * dataFrames + n);
    const out = this.slab!;
    writeFrameHeader(out, o, blockLen, T_HEADERS, F_END_HEADERS, id);
    o += 9;
    for (let i = 0; i < prefix.length; i++) out[o++] = prefix[i];
    // content-length: literal without indexing, static name 28 (0x0f 0x0d), raw value
    out[o++] = 0x0f; out[o++] = 0x0d; out[o++] = digits;
    for (let d = digits - 1, v = n; d >= 0; d--, v = Math.floor(v / 10)) out[o + d] = 0x30 + (v % 10);
    o += digits;
    // One DATA frame for any DNS query under the peer's frame size (16 KiB at least).
    for (let off = 0, f = 0; f < dataFrames; f++) {
      const end = Math.min(n, off + this.peerMaxFrame);
      writeFrameHeader(out, o, end - off, T_DATA, end === n ? F_END_STREAM : 0, id);
      o += 9;
      if (end - off <= 128) for (let i = off; i < end; i++) out[o++] = body[i];
      else { body.copy(out, o, off, end); o += end - off; }
      off = end;
    }
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

  /** Room for `n` bytes in the output slab; returns where they go. Everything reserved in one loop turn (a
   *  whole batch of queries) leaves as one TLS write. */
  private reserve(n: number): number {
    if (this.slab === null || this.slabUsed + n > this.slab.length) {
      this.spill();
      this.slab = Buffer.allocUnsafe(Math.max(SLAB, n));
    }
    const at = this.slabUsed;
    this.slabUsed += n;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // After the loop's I/O phase, not as a microtask: a server that writes each frame as its own TLS
      // record makes one read callback per record, and a pump() after each would otherwise send one
      // small write (a syscall that also runs the server's TCP receive path) per answer.
      setImmediate(this.flushBound);
    }
    return at;
  }

  /** Moves the filled part of the slab to the write list; a slab is never written to after this. */
  private spill(): void {
    if (this.slab !== null && this.slabUsed > 0) {
      this.out.push(this.slab.subarray(0, this.slabUsed));
      this.outBytes += this.slabUsed;
    }
    this.slab = null;
    this.slabUsed = 0;
  }

  private queue(buf: Buffer): void {
    const at = this.reserve(buf.length);
    buf.copy(this.slab!, at);
  }

  private flush(): void {
    this.flushScheduled = false;
    this.spill();
    if (this.out.length === 0 || !this.socket) { this.out = []; this.outBytes = 0; return; }
    const data = this.out.length === 1 ? this.out[0] : Buffer.concat(this.out, this.outBytes);
    this.out = [];
    this.outBytes = 0;
    this.writes++;
    this.socket.write(data);
  }

  /** `buf` is the socket's read buffer: valid only during this call. */
  private onData(chunk: Buffer, n: number): void {
    if (this.closed) return; // after a protocol error the socket drains our GOAWAY; nothing more is read
    this.lastReceived = performance.now();
    this.reads++;
    let off = 0;
    if (this.inLen > 0) {
      off = this.completePartial(chunk, n);
      if (off < 0) { if (!this.closed) this.pump(); return; }
    }
    while (!this.closed && n - off >= 9) {
      const len = (chunk[off] << 16) | (chunk[off + 1] << 8) | chunk[off + 2];
      if (len > MAX_FRAME) { this.protocolError(H2_ERRORS.frameSize, E_FRAME_SIZE); return; }
      if (n - off < 9 + len) break;
      this.handleFrame(chunk, off, len);
      off += 9 + len;
    }
    // Keep the partial frame (under one frame: the length was checked), copied out of the reused buffer.
    if (!this.closed && off < n) {
      this.inbuf ??= Buffer.allocUnsafe(9 + MAX_FRAME);
      chunk.copy(this.inbuf, 0, off, n);
      this.inLen = n - off;
      this.partialBytes += n - off;
    }
    this.pump();
  }

  /** Adds bytes of this read to the partial frame; handles the frame once whole. Returns the offset in
   *  `chunk` after what was used, or -1 when all of it went into a frame that is still incomplete. */
  private completePartial(chunk: Buffer, n: number): number {
    const ib = this.inbuf!;
    let used = 0;
    if (this.inLen < 9) {
      used = Math.min(9 - this.inLen, n);
      chunk.copy(ib, this.inLen, 0, used);
      this.inLen += used;
      this.partialBytes += used;
      if (this.inLen < 9) return -1;
    }
    const len = (ib[0] << 16) | (ib[1] << 8) | ib[2];
    if (len > MAX_FRAME) { this.protocolError(H2_ERRORS.frameSize, E_FRAME_SIZE); return -1; }
    const take = Math.min(9 + len - this.inLen, n - used);
    chunk.copy(ib, this.inLen, used, used + take);
    this.partialBytes += take;
    this.inLen += take;
    used += take;
    if (this.inLen < 9 + len) return -1;
    this.inLen = 0;
    this.handleFrame(ib, 0, len);
    return this.closed ? -1 : used;
  }

  /** The frame whose 9-byte header is at buf[off] and whose payload is `len` bytes long. */
  private handleFrame(buf: Buffer, off: number, len: number): void {
    const type = buf[off + 3];
    const flags = buf[off + 4];
    const id = ((buf[off + 5] & 0x7f) << 24 | buf[off + 6] << 16 | buf[off + 7] << 8 | buf[off + 8]) >>> 0;
    const start = off + 9;
    if (this.headerStream !== 0 && type !== T_CONTINUATION) { this.protocolError(H2_ERRORS.protocol, E_PROTOCOL); return; }
    this.onFrame(type, flags, id, buf, start, start + len);
    // A draining connection ends as soon as its last stream does, wherever that falls in the read:
    // what follows in the same read is not looked at, just as if it had come in the next one.
    if (!this.closed && (this.goawayLastId >= 0 || this.closing)) this.endIfQuiet();
  }

  /** Counts a frame that makes no response progress; false (and the connection ended) past the rate cap. */
  private idleFrame(): boolean {
    const now = performance.now();
    if (now - this.idleWindowStart >= 1000) { this.idleWindowStart = now; this.idleFrames = 0; }
    if (++this.idleFrames <= MAX_IDLE_FRAMES_PER_SECOND) return true;
    this.protocolError(H2_ERRORS.calm, E_ENHANCE_YOUR_CALM);
    return false;
  }

  /** Queues an ACK the peer asked for, unless our output is already backed up (the peer does not read). */
  private queueAck(buf: Buffer): void {
    const backlog = (this.socket?.writableLength ?? 0) + this.outBytes + this.slabUsed;
    if (backlog > MAX_CONTROL_BACKLOG) { this.protocolError(H2_ERRORS.calm, E_ENHANCE_YOUR_CALM); return; }
    this.queue(buf);
  }

  /** The frame's payload is buf[start, end). DATA and HEADERS, one of each per answer, are read in
   *  place; the rare frame types get a view. */
  private onFrame(type: number, flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (type === T_DATA) { this.onDataFrame(flags, id, buf, start, end); return; }
    if (type === T_HEADERS) { this.onHeaders(flags, id, buf, start, end); return; }
    const payload = buf.subarray(start, end);
    switch (type) {
      case T_CONTINUATION: return this.onContinuation(flags, id, payload);
      case T_RST_STREAM: return this.onRstStream(id, payload);
      case T_SETTINGS:
        if (id !== 0) { this.protocolError(H2_ERRORS.protocol, E_PROTOCOL); return; }
        return this.onSettings(flags, payload);
      case T_PING:
        if (id !== 0) { this.protocolError(H2_ERRORS.protocol, E_PROTOCOL); return; }
        if (payload.length !== 8) { this.protocolError(H2_ERRORS.frameSize, E_FRAME_SIZE); return; }
        if (flags & F_ACK) {
          const cb = this.pingCallbacks.shift();
          if (cb) cb(); else this.idleFrame(); // an ACK we did not ask for
        } else if (this.idleFrame()) this.queueAck(frame(T_PING, F_ACK, 0, Buffer.from(payload)));
        return;
      case T_GOAWAY:
        if (id !== 0) { this.protocolError(H2_ERRORS.protocol, E_PROTOCOL); return; }
        return this.onGoaway(payload);
      case T_WINDOW_UPDATE: return this.onWindowUpdate(id, payload);
      case T_PUSH_PROMISE: this.protocolError(H2_ERRORS.pushDisabled, E_PROTOCOL); return;
      default: this.idleFrame(); return; // PRIORITY and unknown frame types are ignored, as RFC 9113 requires
    }
  }

  /** RFC 9113 §6.9: an increment of 0 is a PROTOCOL_ERROR, a window past 2^31-1 a FLOW_CONTROL_ERROR
   *  (of the connection on stream 0, of the stream otherwise). */
  private onWindowUpdate(id: number, payload: Buffer): void {
    if (payload.length !== 4) { this.protocolError(H2_ERRORS.frameSize, E_FRAME_SIZE); return; }
    const inc = payload.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) { this.protocolError(H2_ERRORS.protocol, E_PROTOCOL); return; }
      if (this.sendWindow + inc > MAX_WINDOW) { this.protocolError(H2_ERRORS.flowControl, E_FLOW_CONTROL); return; }
      this.sendWindow += inc;
      return;
    }
    const s = this.streams.get(id);
    if (!s) return; // a stream already closed: allowed
    if (inc === 0) { this.streamError(s, E_PROTOCOL, 'protocol'); return; }
    if (s.sendWindow + inc > MAX_WINDOW) { this.streamError(s, E_FLOW_CONTROL, 'protocol'); return; }
    s.sendWindow += inc;
  }

  private onDataFrame(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (id === 0) { this.protocolError(H2_ERRORS.protocol, E_PROTOCOL); return; }
    if (start === end && !(flags & F_END_STREAM) && !this.idleFrame()) return;
    // Flow control counts the whole payload, padding included.
    this.recvConsumed += end - start;
    if (this.recvConsumed >= RECV_CONN_WINDOW / 2) {
      this.queue(windowUpdate(0, this.recvConsumed));
      this.recvConsumed = 0;
    }
    const s = this.streams.get(id);
    if (!s) return; // cancelled by us, or already failed
    const dataEnd = unpaddedEnd(flags, buf, start, end);
    if (dataEnd < 0) { this.streamError(s, E_PROTOCOL, 'protocol'); return; }
    if (flags & F_PADDED) start++;
    end = dataEnd;
    if (!s.headersDone) { this.streamError(s, E_PROTOCOL, 'protocol'); return; }
    const len = end - start;
    s.bytes += len;
    if (s.bytes > this.opts.maxAnswerBytes || s.bytes > RECV_STREAM_WINDOW) { this.streamError(s, E_CANCEL, 'too_large'); return; }
    // A copy either way: the read buffer is reused, and a consumer may keep the answer (a coalesced
    // waiter, a log queue).
    if ((flags & F_END_STREAM) && s.chunks === null) { this.complete(s, copyOut(buf, start, end)); return; }
    if (len) (s.chunks ??= []).push(copyOut(buf, start, end));
    if (flags & F_END_STREAM) this.complete(s, bodyOf(s));
  }

  private onHeaders(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    const dataEnd = unpaddedEnd(flags, buf, start, end);
    if (dataEnd < 0 || id === 0) { this.protocolError(H2_ERRORS.protocol, E_PROTOCOL); return; }
    if (flags & F_PADDED) start++;
    end = dataEnd;
    if (flags & F_PRIORITY) {
      if (end - start < 5) { this.protocolError(H2_ERRORS.frameSize, E_FRAME_SIZE); return; }
      start += 5;
    }
    this.headerEndStream = (flags & F_END_STREAM) !== 0;
    if (flags & F_END_HEADERS) { this.endHeaders(id, buf, start, end); return; }
    // The block continues in CONTINUATION frames: collect copies of its pieces.
    this.headerParts = [Buffer.from(buf.subarray(start, end))];
    this.headerBytes = end - start;
    this.headerFrames = 1;
    this.headerStream = id;
  }

  private onContinuation(flags: number, id: number, payload: Buffer): void {
    if (id === 0 || id !== this.headerStream) { this.protocolError(H2_ERRORS.protocol, E_PROTOCOL); return; }
    // Bounded in bytes and in frames: empty CONTINUATIONs add no bytes, only work and bookkeeping.
    if (++this.headerFrames > MAX_HEADER_FRAMES || this.headerBytes + payload.length > MAX_HEADER_BLOCK) {
      this.protocolError(H2_ERRORS.headerSize, E_ENHANCE_YOUR_CALM);
      return;
    }
    if (payload.length) this.headerParts.push(Buffer.from(payload));
    this.headerBytes += payload.length;
    if (flags & F_END_HEADERS) {
      this.headerStream = 0;
      const block = Buffer.concat(this.headerParts, this.headerBytes);
      this.headerParts = [];
      this.endHeaders(id, block, 0, block.length);
    }
  }

  private endHeaders(id: number, buf: Buffer, start: number, end: number): void {
    // Decoded even for a stream we no longer track: HPACK state is per connection (and a decode error
    // must end the connection either way).
    const h = this.headers;
    if (!decodeHeaderBlock(buf, start, end, h)) { this.protocolError(H2_ERRORS.compression, E_COMPRESSION); return; }
    const s = this.streams.get(id);
    if (!s) return;
    if (!s.headersDone) {
      if (h.status === 0) { this.streamError(s, E_PROTOCOL, 'protocol'); return; }
      if (h.status >= 100 && h.status < 200) {
        // Informational; the real response follows, unless the stream ends here (malformed, RFC 9113 §8.1.1).
        if (this.headerEndStream) this.streamError(s, E_PROTOCOL, 'protocol');
        return;
      }
      s.status = h.status;
      s.contentType = h.contentType;
      s.headersDone = true;
    } // else: trailers, ignored
    if (this.headerEndStream) this.complete(s, bodyOf(s)); // trailers (or no body) end the stream
  }

  private onRstStream(id: number, payload: Buffer): void {
    if (payload.length !== 4) { this.protocolError(H2_ERRORS.frameSize, E_FRAME_SIZE); return; }
    const s = this.streams.get(id);
    if (!s) return;
    this.streams.delete(id);
    const code = payload.readUInt32BE(0);
    // REFUSED_STREAM promises the request was not processed (RFC 9113 §8.7).
    this.events.onFailure(s.tag, code === E_REFUSED_STREAM ? 'refused' : 'reset', code === E_REFUSED_STREAM);
  }

  private onSettings(flags: number, payload: Buffer): void {
    if (flags & F_ACK) {
      if (payload.length !== 0) this.protocolError(H2_ERRORS.frameSize, E_FRAME_SIZE);
      return;
    }
    if (payload.length % 6 !== 0) { this.protocolError(H2_ERRORS.frameSize, E_FRAME_SIZE); return; }
    // The first SETTINGS is part of the handshake; later ones are control traffic, rate-capped.
    if (this.peerSettings && !this.idleFrame()) return;
    for (let i = 0; i < payload.length; i += 6) {
      const key = payload.readUInt16BE(i);
      const value = payload.readUInt32BE(i + 2);
      if (key === S_MAX_CONCURRENT_STREAMS) this.peerMaxStreams = value;
      else if (key === S_INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) { this.protocolError(H2_ERRORS.flowControl, E_FLOW_CONTROL); return; }
        // §6.9.2: the change applies to every open stream's window, which must not overflow.
        const delta = value - this.peerStreamWindow;
        for (const st of this.streams.values()) {
          if (st.sendWindow + delta > MAX_WINDOW) { this.protocolError(H2_ERRORS.flowControl, E_FLOW_CONTROL); return; }
          st.sendWindow += delta;
        }
        this.peerStreamWindow = value;
      } else if (key === S_MAX_FRAME_SIZE) {
        if (value < 16384 || value > 16777215) { this.protocolError(H2_ERRORS.protocol, E_PROTOCOL); return; }
        this.peerMaxFrame = value;
      }
    }
    this.peerSettings = true;
    this.queueAck(frame(T_SETTINGS, F_ACK, 0, Buffer.alloc(0)));
  }

  private onGoaway(payload: Buffer): void {
    if (payload.length < 8) { this.protocolError(H2_ERRORS.frameSize, E_FRAME_SIZE); return; }
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

  private complete(s: H2Stream<T>, body: Buffer): void {
    this.streams.delete(s.id);
    this.events.onResponse(s.tag, s.status, s.contentType, body);
  }

  private streamError(s: H2Stream<T>, code: number, why: H2Failure): void {
    this.streams.delete(s.id);
    this.queue(rstStream(s.id, code));
    this.events.onFailure(s.tag, why, false);
  }

  private protocolError(error: string, code: number): void {
    if (this.closed) return;
    // A client's GOAWAY names the last server-initiated stream it processed: there are none. The socket
    // is ended rather than destroyed so that the GOAWAY (and its error code) reaches the peer; nothing
    // more is read from it, and it is destroyed if the peer does not close within a second.
    this.spill();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      const pending = this.out.length ? Buffer.concat(this.out, this.outBytes) : null;
      socket.end(pending ? Buffer.concat([pending, goaway(0, code)]) : goaway(0, code));
      setTimeout(() => socket.destroy(), 1000).unref();
    }
    this.out = [];
    this.outBytes = 0;
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

/** Where the data of a frame payload buf[start, end) ends once PADDED's padding is removed (the data
 *  then starts one byte later, after the pad length); -1 when the padding is longer than the payload. */
function unpaddedEnd(flags: number, buf: Buffer, start: number, end: number): number {
  if (!(flags & F_PADDED)) return end;
  if (start >= end || buf[start] >= end - start) return -1;
  return end - buf[start];
}

/** The body collected from a stream's DATA frames (each piece already a copy). */
function bodyOf(s: H2Stream<unknown>): Buffer {
  const chunks = s.chunks;
  if (chunks === null) return Buffer.alloc(0);
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, s.bytes);
}

/** A copy of buf[start, end). DNS answers are mostly under a few hundred bytes, where a JS loop is
 *  cheaper than the native copy's call overhead. */
function copyOut(buf: Buffer, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe(end - start);
  if (end - start <= 256) for (let i = start, o = 0; i < end; i++, o++) out[o] = buf[i];
  else buf.copy(out, 0, start, end);
  return out;
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
  return decodeHeaderBlock(block, 0, block.length, r) ? r : null;
}

/**
 * decodeResponseHeaders() over buf[start, end), into `out`. Raw values of other fields are stepped over
 * and Huffman ones only checked; a repeated content-type hits the Huffman decoder's memo.
 */
function decodeHeaderBlock(block: Buffer, start: number, end: number, out: ResponseHeaders): boolean {
  out.status = 0;
  out.contentType = '';
  let i = start;
  const readInt = (prefixBits: number): number => {
    const max = (1 << prefixBits) - 1;
    let v = block[i++] & max;
    if (v < max) return v;
    let shift = 0;
    for (;;) {
      if (i >= end || shift > 28) return -1;
      const b = block[i++];
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (!(b & 0x80)) return v;
    }
  };
  /** Steps over a string literal, leaving its bounds in strStart/strEnd. */
  let strStart = 0, strEnd = 0, strHuffman = false;
  const skipString = (): boolean => {
    if (i >= end) return false;
    strHuffman = (block[i] & 0x80) !== 0;
    const len = readInt(7);
    if (len < 0 || i + len > end) return false;
    strStart = i;
    strEnd = i + len;
    i += len;
    return true;
  };
  const stringValue = (): string | null =>
    strHuffman ? huffmanDecodeRange(block, strStart, strEnd) : block.toString('latin1', strStart, strEnd);
  while (i < end) {
    const b = block[i];
    if (b & 0x80) { // indexed field
      const idx = readInt(7);
      if (idx <= 0 || idx > STATIC_TABLE_SIZE) return false;
      if (STATIC_STATUS[idx]) out.status = STATIC_STATUS[idx];
      continue;
    }
    if ((b & 0xe0) === 0x20) { // dynamic table size update: only 0 fits what we announced
      if (readInt(5) !== 0) return false;
      continue;
    }
    // literal: with incremental indexing (01), without (0000) or never indexed (0001)
    const nameIdx = (b & 0xc0) === 0x40 ? readInt(6) : readInt(4);
    if (nameIdx < 0 || nameIdx > STATIC_TABLE_SIZE) return false;
    let name: string | null = null;
    if (nameIdx === 0) {
      if (!skipString()) return false;
      name = stringValue();
      if (name === null) return false;
    }
    if (!skipString()) return false;
    if (nameIdx === STATIC_STATUS_NAME || name === ':status') {
      const value = stringValue();
      out.status = value !== null && /^\d{3}$/.test(value) ? Number(value) : -1;
    } else if (nameIdx === STATIC_CONTENT_TYPE_NAME || name === 'content-type') {
      const value = stringValue();
      if (value === null) return false;
      out.contentType = value;
    } else if (strHuffman && huffmanDecodeRange(block, strStart, strEnd) === null) {
      return false; // malformed Huffman is a decoding error even in a field we do not use
    }
  }
  return out.status >= 0;
}
