/**
 * dnstap output: protobuf `dnstap.Dnstap` messages (encoded with protobufjs from an inline
 * descriptor of the public dnstap.proto schema) sent as Frame Streams data frames over a unix
 * socket or TCP connection, content type "protobuf:dnstap.Dnstap".
 *
 * - The DNS path calls clientQuery()/clientResponse()/forwarderQuery()/forwarderResponse();
 *   each encodes one frame and queues it; nothing blocks, nothing throws.
 * - Frames queue (bounded by `bufferFrames`, default 10000) while disconnected or while the
 *   socket applies back-pressure; beyond the bound new frames are dropped and counted.
 * - The connection is (re)established with exponential back-off (reconnectMinMs → reconnectMaxMs)
 *   whenever it fails or the collector goes away. Frames already handed to a socket that then
 *   dies are lost without being counted (`sent` counts frames written to the socket).
 * - Forwarder messages: the upstream is a URL. `https://` → socket_protocol DOH (4) with
 *   http_protocol unset, `tls://` → DOT (3), `tcp://` → TCP, `udp://`/`dns://`/bare host[:port]
 *   → UDP. response_address/port are set when the URL host is an IP literal (port defaults 443 /
 *   853 / 53); the upstream URL itself is put in the top-level `extra` field. Set
 *   `dohAsTcp: true` for old readers that do not know DOH/DOT (they are reported as TCP).
 */
import net from 'node:net';
import protobuf from 'protobufjs';
export { dnstapSchema } from './dnstap-schema.js';
import { encodeControl, encodeData, FrameDecoder, FSTRM_CONTROL_ACCEPT, FSTRM_CONTROL_FINISH, FSTRM_CONTROL_READY, FSTRM_CONTROL_START, FSTRM_CONTROL_STOP } from './fstrm.js';
import { parseIPv6 } from './anonymize.js';

export const DNSTAP_CONTENT_TYPE = 'protobuf:dnstap.Dnstap';

export interface DnstapConfig {
  socket?: string;
  tcp?: string;
  identity?: string;
  version?: string;
  bufferFrames?: number;
  messages?: { clientQuery?: boolean; clientResponse?: boolean; forwarderQuery?: boolean; forwarderResponse?: boolean };
  /** first reconnect delay, doubled per failure (default 250 ms) */
  reconnectMinMs?: number;
  /** reconnect delay cap (default 10000 ms) */
  reconnectMaxMs?: number;
  /** report DOH/DOT forwarder traffic as TCP for readers that predate those enum values */
  dohAsTcp?: boolean;
}

export interface DnstapStats {
  sent: number;
  dropped: number;
  reconnects: number;
  connected: boolean;
}

// Written from the dnstap.proto protocol specification (proto2): only the parts we emit.
const DNSTAP_DESCRIPTOR = {
  nested: {
    dnstap: {
      nested: {
        Dnstap: {
          fields: {
            identity: { type: 'bytes', id: 1 },
            version: { type: 'bytes', id: 2 },
            extra: { type: 'bytes', id: 3 },
            message: { type: 'Message', id: 14 },
            type: { rule: 'required', type: 'Type', id: 15 },
          },
          nested: { Type: { values: { MESSAGE: 1 } } },
        },
        SocketFamily: { values: { INET: 1, INET6: 2 } },
        SocketProtocol: { values: { UDP: 1, TCP: 2, DOT: 3, DOH: 4, DNSCryptUDP: 5, DNSCryptTCP: 6, DOQ: 7 } },
        HttpProtocol: { values: { HTTP1: 1, HTTP2: 2, HTTP3: 3 } },
        Message: {
          fields: {
            type: { rule: 'required', type: 'Type', id: 1 },
            socketFamily: { type: 'SocketFamily', id: 2 },
            socketProtocol: { type: 'SocketProtocol', id: 3 },
            queryAddress: { type: 'bytes', id: 4 },
            responseAddress: { type: 'bytes', id: 5 },
            queryPort: { type: 'uint32', id: 6 },
            responsePort: { type: 'uint32', id: 7 },
            queryTimeSec: { type: 'uint64', id: 8 },
            queryTimeNsec: { type: 'fixed32', id: 9 },
            queryMessage: { type: 'bytes', id: 10 },
            queryZone: { type: 'bytes', id: 11 },
            responseTimeSec: { type: 'uint64', id: 12 },
            responseTimeNsec: { type: 'fixed32', id: 13 },
            responseMessage: { type: 'bytes', id: 14 },
            httpProtocol: { type: 'HttpProtocol', id: 16 },
          },
          nested: {
            Type: {
              values: {
                AUTH_QUERY: 1,
                AUTH_RESPONSE: 2,
                RESOLVER_QUERY: 3,
                RESOLVER_RESPONSE: 4,
                CLIENT_QUERY: 5,
                CLIENT_RESPONSE: 6,
                FORWARDER_QUERY: 7,
                FORWARDER_RESPONSE: 8,
                STUB_QUERY: 9,
                STUB_RESPONSE: 10,
                TOOL_QUERY: 11,
                TOOL_RESPONSE: 12,
                UPDATE_QUERY: 13,
                UPDATE_RESPONSE: 14,
              },
            },
          },
        },
      },
    },
  },
};

const root = protobuf.Root.fromJSON(DNSTAP_DESCRIPTOR);
/** protobufjs type for `dnstap.Dnstap` (exported so tests and tools can decode frames). */
export const DnstapType = root.lookupType('dnstap.Dnstap');

export const MessageType = { CLIENT_QUERY: 5, CLIENT_RESPONSE: 6, FORWARDER_QUERY: 7, FORWARDER_RESPONSE: 8 } as const;
export const SocketProtocol = { UDP: 1, TCP: 2, DOT: 3, DOH: 4 } as const;
const FAMILY = { 4: 1, 6: 2 } as const;

/** Address text -> 4 (family 4) or 16 (family 6) bytes; mapped/unmapped as the family requires. */
export function addressBytes(addr: string, family: 4 | 6): Uint8Array | undefined {
  const a = addr.startsWith('[') && addr.endsWith(']') ? addr.slice(1, -1) : addr;
  if (net.isIPv4(a)) {
    const b = Uint8Array.from(a.split('.').map(Number));
    if (family === 4) return b;
    const out = new Uint8Array(16);
    out[10] = 0xff;
    out[11] = 0xff;
    out.set(b, 12);
    return out;
  }
  const g = parseIPv6(a);
  if (!g) return undefined;
  const out = new Uint8Array(16);
  g.forEach((v, i) => {
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  if (family === 4) {
    // IPv4-mapped IPv6 reported as INET
    const mapped = out.subarray(0, 10).every((x) => x === 0) && out[10] === 0xff && out[11] === 0xff;
    return mapped ? out.slice(12) : undefined;
  }
  return out;
}

function splitTime(ms: number): { sec: number; nsec: number } {
  const sec = Math.floor(ms / 1000);
  // an epoch-ms double carries ~0.2 µs of precision: round to whole microseconds
  const nsec = Math.min(999999, Math.max(0, Math.round((ms - sec * 1000) * 1e3))) * 1000;
  return { sec, nsec };
}

interface UpstreamInfo {
  protocol: number;
  family?: 4 | 6;
  addr?: Uint8Array;
  port?: number;
  url: string;
}

export function describeUpstream(upstream: string, dohAsTcp = false): UpstreamInfo {
  let scheme = '';
  let rest = upstream;
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(upstream);
  if (m) {
    scheme = m[1].toLowerCase();
    rest = m[2];
  }
  let protocol: number = SocketProtocol.UDP;
  let dport = 53;
  if (scheme === 'https' || scheme === 'h2' || scheme === 'doh') {
    protocol = SocketProtocol.DOH;
    dport = 443;
  } else if (scheme === 'tls' || scheme === 'dot') {
    protocol = SocketProtocol.DOT;
    dport = 853;
  } else if (scheme === 'tcp') protocol = SocketProtocol.TCP;
  if (dohAsTcp && (protocol === SocketProtocol.DOH || protocol === SocketProtocol.DOT)) protocol = SocketProtocol.TCP;
  const hostport = rest.split(/[/?#]/, 1)[0].replace(/^[^@]*@/, '');
  let host = hostport;
  let port = dport;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(hostport);
  if (v6) {
    host = v6[1];
    if (v6[2]) port = Number(v6[2]);
  } else if (!net.isIPv6(hostport)) {
    const i = hostport.lastIndexOf(':');
    if (i >= 0 && /^\d+$/.test(hostport.slice(i + 1))) {
      host = hostport.slice(0, i);
      port = Number(hostport.slice(i + 1));
    }
  }
  const info: UpstreamInfo = { protocol, url: upstream };
  if (net.isIPv4(host)) {
    info.family = 4;
    info.addr = addressBytes(host, 4);
    info.port = port;
  } else if (net.isIPv6(host)) {
    info.family = 6;
    info.addr = addressBytes(host, 6);
    info.port = port;
  } else {
    info.port = port;
  }
  return info;
}

type State = 'idle' | 'connecting' | 'handshake' | 'ready' | 'closing' | 'closed';

/** The fields CLIENT_QUERY and CLIENT_RESPONSE share: who asked whom, over what, and when. */
function clientSide(tQuery: number, family: 4 | 6, proto: 'udp' | 'tcp', client: string, clientPort: number, server: string, serverPort: number) {
  const q = splitTime(tQuery);
  return {
    socketFamily: FAMILY[family],
    socketProtocol: proto === 'tcp' ? SocketProtocol.TCP : SocketProtocol.UDP,
    queryAddress: addressBytes(client, family),
    queryPort: clientPort,
    responseAddress: addressBytes(server, family),
    responsePort: serverPort,
    queryTimeSec: q.sec,
    queryTimeNsec: q.nsec,
  };
}

/** The fields FORWARDER_QUERY and FORWARDER_RESPONSE share: which upstream, over what, and when. */
function upstreamSide(tQuery: number, u: UpstreamInfo) {
  const q = splitTime(tQuery);
  return {
    socketFamily: u.family ? FAMILY[u.family] : undefined,
    socketProtocol: u.protocol,
    responseAddress: u.addr,
    responsePort: u.port,
    queryTimeSec: q.sec,
    queryTimeNsec: q.nsec,
  };
}

export class DnstapWriter {
  private readonly cfg: DnstapConfig;
  private readonly bound: number;
  private readonly identity?: Uint8Array;
  private readonly version?: Uint8Array;
  private readonly want: Required<NonNullable<DnstapConfig['messages']>>;
  private readonly minDelay: number;
  private readonly maxDelay: number;
  private queue: Buffer[] = [];
  private queueHead = 0;
  private sock: net.Socket | null = null;
  private state: State = 'idle';
  private delay: number;
  private timer: NodeJS.Timeout | null = null;
  private hsTimer: NodeJS.Timeout | null = null;
  private writable = true;
  private pumpScheduled = false;
  private everConnected = false;
  private finishWaiter: (() => void) | null = null;
  private readonly s = { sent: 0, dropped: 0, reconnects: 0 };
  private readonly enabled: boolean;

  constructor(cfg: DnstapConfig) {
    this.cfg = cfg ?? {};
    this.bound = Math.max(1, Math.trunc(this.cfg.bufferFrames ?? 10000) || 10000);
    if (this.cfg.identity) this.identity = Buffer.from(this.cfg.identity, 'utf8');
    if (this.cfg.version) this.version = Buffer.from(this.cfg.version, 'utf8');
    const m = this.cfg.messages ?? {};
    this.want = {
      clientQuery: m.clientQuery ?? true,
      clientResponse: m.clientResponse ?? true,
      forwarderQuery: m.forwarderQuery ?? true,
      forwarderResponse: m.forwarderResponse ?? true,
    };
    this.minDelay = Math.max(10, this.cfg.reconnectMinMs ?? 250);
    this.maxDelay = Math.max(this.minDelay, this.cfg.reconnectMaxMs ?? 10000);
    this.delay = this.minDelay;
    this.enabled = Boolean(this.cfg.socket || this.cfg.tcp);
    if (this.enabled) this.connect();
    else this.state = 'closed';
  }

  get stats(): DnstapStats {
    return { ...this.s, connected: this.state === 'ready' };
  }

  /** frames waiting to be written */
  get queued(): number {
    return this.queue.length - this.queueHead;
  }

  // ---------------------------------------------------------------- messages

  clientQuery(t: number, family: 4 | 6, proto: 'udp' | 'tcp', client: string, clientPort: number, server: string, serverPort: number, wire: Uint8Array): void {
    if (!this.want.clientQuery || !this.accepting()) return;
    try {
      this.enqueue({ type: MessageType.CLIENT_QUERY, ...clientSide(t, family, proto, client, clientPort, server, serverPort), queryMessage: wire });
    } catch {
      this.s.dropped++;
    }
  }

  clientResponse(tQuery: number, tResp: number, family: 4 | 6, proto: 'udp' | 'tcp', client: string, clientPort: number, server: string, serverPort: number, queryWire: Uint8Array | null, responseWire: Uint8Array): void {
    if (!this.want.clientResponse || !this.accepting()) return;
    try {
      const r = splitTime(tResp);
      this.enqueue({
        type: MessageType.CLIENT_RESPONSE,
        ...clientSide(tQuery, family, proto, client, clientPort, server, serverPort),
        queryMessage: queryWire ?? undefined,
        responseTimeSec: r.sec,
        responseTimeNsec: r.nsec,
        responseMessage: responseWire,
      });
    } catch {
      this.s.dropped++;
    }
  }

  forwarderQuery(t: number, upstream: string, wire: Uint8Array): void {
    if (!this.want.forwarderQuery || !this.accepting()) return;
    try {
      const u = describeUpstream(upstream, this.cfg.dohAsTcp);
      this.enqueue({ type: MessageType.FORWARDER_QUERY, ...upstreamSide(t, u), queryMessage: wire }, u.url);
    } catch {
      this.s.dropped++;
    }
  }

  forwarderResponse(tQuery: number, tResp: number, upstream: string, queryWire: Uint8Array | null, responseWire: Uint8Array): void {
    if (!this.want.forwarderResponse || !this.accepting()) return;
    try {
      const r = splitTime(tResp);
      const u = describeUpstream(upstream, this.cfg.dohAsTcp);
      this.enqueue(
        {
          type: MessageType.FORWARDER_RESPONSE,
          ...upstreamSide(tQuery, u),
          queryMessage: queryWire ?? undefined,
          responseTimeSec: r.sec,
          responseTimeNsec: r.nsec,
          responseMessage: responseWire,
        },
        u.url,
      );
    } catch {
      this.s.dropped++;
    }
  }

  /** Encode a message payload (without framing); exported for tests/tools. */
  encode(message: Record<string, unknown>, extra?: string): Uint8Array {
    const clean: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(message)) if (v !== undefined) clean[k] = v;
    const top: Record<string, unknown> = { type: 1, message: clean };
    if (this.identity) top.identity = this.identity;
    if (this.version) top.version = this.version;
    if (extra) top.extra = Buffer.from(extra, 'utf8');
    return DnstapType.encode(DnstapType.fromObject(top)).finish();
  }

  private accepting(): boolean {
    if (this.state === 'closing' || this.state === 'closed') return false;
    if (this.queue.length - this.queueHead >= this.bound) {
      this.s.dropped++;
      return false;
    }
    return true;
  }

  private enqueue(message: Record<string, unknown>, extra?: string): void {
    this.queue.push(encodeData(this.encode(message, extra)));
    if (this.state === 'ready' && this.writable && !this.pumpScheduled) {
      this.pumpScheduled = true;
      setImmediate(() => {
        this.pumpScheduled = false;
        this.pump();
      });
    }
  }

  // ---------------------------------------------------------------- connection

  private connect(): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.state = 'connecting';
    let sock: net.Socket;
    try {
      if (this.cfg.socket) sock = net.createConnection({ path: this.cfg.socket });
      else {
        const { host, port } = parseHostPort(this.cfg.tcp!);
        sock = net.createConnection({ host, port });
      }
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.sock = sock;
    this.writable = true;
    const decoder = new FrameDecoder();
    sock.on('connect', () => {
      if (this.sock !== sock) return;
      this.state = 'handshake';
      sock.write(encodeControl(FSTRM_CONTROL_READY, [DNSTAP_CONTENT_TYPE]));
      this.hsTimer = setTimeout(() => sock.destroy(new Error('fstrm handshake timeout')), 5000);
      this.hsTimer.unref();
    });
    sock.on('data', (chunk: Buffer) => {
      if (this.sock !== sock) return;
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch {
        sock.destroy();
        return;
      }
      for (const f of frames) {
        if (!('control' in f)) continue; // readers never send data frames
        if (f.control.type === FSTRM_CONTROL_ACCEPT && this.state === 'handshake') {
          if (f.control.contentTypes.length && !f.control.contentTypes.includes(DNSTAP_CONTENT_TYPE)) {
            sock.destroy();
            return;
          }
          if (this.hsTimer) clearTimeout(this.hsTimer);
          this.hsTimer = null;
          sock.write(encodeControl(FSTRM_CONTROL_START, [DNSTAP_CONTENT_TYPE]));
          this.state = 'ready';
          this.delay = this.minDelay;
          if (this.everConnected) this.s.reconnects++;
          this.everConnected = true;
          this.pump();
        } else if (f.control.type === FSTRM_CONTROL_FINISH) {
          this.finishWaiter?.();
        }
      }
    });
    sock.on('drain', () => {
      if (this.sock !== sock) return;
      this.writable = true;
      this.pump();
    });
    sock.on('error', () => {
      /* handled in close */
    });
    sock.on('close', () => {
      if (this.sock !== sock) return;
      if (this.hsTimer) clearTimeout(this.hsTimer);
      this.hsTimer = null;
      this.sock = null;
      this.finishWaiter?.();
      if (this.state === 'closing' || this.state === 'closed') return;
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    this.state = 'idle';
    if (this.timer) return;
    const d = this.delay;
    this.delay = Math.min(this.maxDelay, this.delay * 2);
    // jitter ±20 %
    const wait = Math.round(d * (0.8 + Math.random() * 0.4));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, wait);
    this.timer.unref();
  }

  private pump(): void {
    const sock = this.sock;
    if (!sock || (this.state !== 'ready' && this.state !== 'closing') || !this.writable) return;
    while (this.queue.length - this.queueHead > 0 && this.writable) {
      const parts: Buffer[] = [];
      let bytes = 0;
      while (this.queueHead < this.queue.length && bytes < 65536) {
        const f = this.queue[this.queueHead++];
        parts.push(f);
        bytes += f.length;
      }
      if (this.queueHead === this.queue.length) {
        this.queue = [];
        this.queueHead = 0;
      }
      this.s.sent += parts.length;
      this.writable = sock.write(parts.length === 1 ? parts[0] : Buffer.concat(parts, bytes));
    }
  }

  /** Flush queued frames (if connected), send STOP, wait briefly for FINISH, close. */
  async close(): Promise<void> {
    if (this.state === 'closed' || this.state === 'closing') return;
    const wasReady = this.state === 'ready';
    this.state = 'closing';
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const sock = this.sock;
    if (sock && wasReady) {
      // write everything still queued, ignoring back-pressure (bounded by bufferFrames)
      this.writable = true;
      while (this.queue.length - this.queueHead > 0) {
        const f = this.queue[this.queueHead++];
        this.s.sent++;
        sock.write(f);
      }
      this.queue = [];
      this.queueHead = 0;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 2000);
        t.unref();
        this.finishWaiter = () => {
          clearTimeout(t);
          resolve();
        };
        sock.write(encodeControl(FSTRM_CONTROL_STOP));
      });
      this.finishWaiter = null;
      await new Promise<void>((resolve) => {
        if (sock.destroyed) return resolve();
        sock.once('close', () => resolve());
        sock.end();
        setTimeout(() => sock.destroy(), 1000).unref();
      });
    } else {
      sock?.destroy();
    }
    this.s.dropped += this.queue.length - this.queueHead;
    this.queue = [];
    this.queueHead = 0;
    this.sock = null;
    this.state = 'closed';
  }
}

export function parseHostPort(s: string): { host: string; port: number } {
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(s);
  if (v6) return { host: v6[1], port: Number(v6[2]) };
  const i = s.lastIndexOf(':');
  if (i <= 0) throw new Error(`dnstap tcp: expected host:port, got ${s}`);
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
}
