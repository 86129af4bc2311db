// DNS over TLS for LAN clients (RFC 7858): the TCP listener's framing, pipelining, deadlines and limits
// (src/listen/tcp.ts) behind a TLS handshake. The TLS server accepts the TCP connection, and each
// finished handshake is handed to the TCP listener's own connection handler, so a DoT query runs the
// very same code as a TCP one; only the transport label ('dot') differs.
//
// Limits before the handshake, which the TCP listener cannot see: the total connection cap is enforced
// by the TLS server itself (maxConnections), the per-client cap counts raw TCP connections (so a client
// cannot park handshakes), and a handshake must finish within listen.tcp.readTimeoutMs.
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { TcpListener } from './tcp.js';
import type { ContextPool, Transport } from '../pipeline/context.js';
import type { Chain } from '../pipeline/chain.js';
import type { TcpLimits } from '../config/types.js';
import { parseHostPort } from '../config/address.js';
import type { ClientAcl } from './acl.js';

export type CertLog = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

/**
 * The gateway's certificate and key, shared by the DoT and DoH listeners. Re-read on reload() (SIGHUP)
 * and when either file changes (polled: certbot and friends replace files by rename, which inotify on the
 * old inode would miss). A pair that does not load keeps the previous one in service.
 */
export class TlsCredentials {
  private current: { cert: Buffer; key: Buffer };
  private readonly listeners: Array<(c: { cert: Buffer; key: Buffer }) => void> = [];
  private watching = false;
  reloads = 0;
  reloadFailures = 0;

  constructor(readonly certPath: string, readonly keyPath: string, private readonly log: CertLog = () => {}) {
    this.current = this.read();
  }

  /** Reads and checks the pair; throws a message naming the file when it does not load. */
  private read(): { cert: Buffer; key: Buffer } {
    let cert: Buffer, key: Buffer;
    try { cert = fs.readFileSync(this.certPath); } catch (e) { throw new Error(`listen.tlsCert ${this.certPath}: ${(e as Error).message}`); }
    try { key = fs.readFileSync(this.keyPath); } catch (e) { throw new Error(`listen.tlsKey ${this.keyPath}: ${(e as Error).message}`); }
    try { tls.createSecureContext({ cert, key }); } catch (e) {
      throw new Error(`listen.tlsCert/tlsKey (${this.certPath}, ${this.keyPath}) do not load: ${(e as Error).message}`);
    }
    return { cert, key };
  }

  get options(): { cert: Buffer; key: Buffer } { return this.current; }

  onChange(fn: (c: { cert: Buffer; key: Buffer }) => void): void { this.listeners.push(fn); }

  /** Loads the files again; on failure the old pair stays in use. Returns whether a new pair was taken. */
  reload(): boolean {
    let next: { cert: Buffer; key: Buffer };
    try { next = this.read(); } catch (e) {
      this.reloadFailures++;
      this.log('error', 'TLS certificate reload failed; keeping the previous one', { error: (e as Error).message });
      return false;
    }
    if (next.cert.equals(this.current.cert) && next.key.equals(this.current.key)) return false;
    this.current = next;
    this.reloads++;
    for (const fn of this.listeners) fn(next);
    this.log('info', 'TLS certificate reloaded', { cert: this.certPath });
    return true;
  }

  watch(intervalMs = 2000): void {
    if (this.watching) return;
    this.watching = true;
    const onStat = (cur: fs.Stats, prev: fs.Stats) => { if (cur.mtimeMs !== prev.mtimeMs || cur.ino !== prev.ino) this.reload(); };
    for (const p of [this.certPath, this.keyPath]) fs.watchFile(p, { interval: intervalMs, persistent: false }, onStat);
  }

  close(): void {
    if (!this.watching) return;
    this.watching = false;
    fs.unwatchFile(this.certPath);
    fs.unwatchFile(this.keyPath);
  }
}

/** Per-client count of raw TCP connections on a TLS server (handshakes included). */
export class ClientConnectionCap {
  private readonly perClient = new Map<string, number>();
  rejected = 0;
  constructor(private readonly max: number) {}

  /** Counts `s` against its client; false (and `s` destroyed) when the client is at its cap. */
  admit(s: net.Socket): boolean {
    const ip = s.remoteAddress ?? '';
    const n = this.perClient.get(ip) ?? 0;
    if (n >= this.max) { this.rejected++; s.destroy(); return false; }
    this.perClient.set(ip, n + 1);
    s.once('close', () => {
      const m = (this.perClient.get(ip) ?? 1) - 1;
      if (m <= 0) this.perClient.delete(ip); else this.perClient.set(ip, m);
    });
    return true;
  }
}

export class DotListener extends TcpListener {
  override readonly transport: Transport = 'dot';
  readonly tlsServer: tls.Server;
  private readonly cap: ClientConnectionCap;
  /** Raw TCP connections still in the TLS handshake, by "address|port": close() ends them at once. */
  private readonly handshaking = new Map<string, net.Socket>();
  handshakeFailures = 0;

  constructor(name: string, private readonly bindAddress: string, limits: TcpLimits, chain: Chain, pool: ContextPool,
    readonly credentials: TlsCredentials, private readonly clientAcl: ClientAcl | null = null) {
    super(name, bindAddress, false, limits, chain, pool, clientAcl);
    this.cap = new ClientConnectionCap(limits.maxConnectionsPerClient);
    this.tlsServer = tls.createServer({
      ...credentials.options,
      // RFC 7858 3.2: ALPN "dot" (RFC 8310); clients that send none are served too.
      ALPNProtocols: ['dot'],
      allowHalfOpen: true,
      minVersion: 'TLSv1.2',
    }, (s) => {
      this.handshaking.delete(`${s.remoteAddress}|${s.remotePort}`);
      this.server.emit('connection', s);
    });
    this.tlsServer.maxConnections = limits.maxConnections;
    this.tlsServer.on('drop', () => { this.stats.rejectedTotal++; });
    this.tlsServer.on('connection', (s: net.Socket) => {
      const ip = s.remoteAddress ?? '';
      if (this.clientAcl && !this.clientAcl.allowsString(ip.startsWith('::ffff:') ? ip.slice(7) : ip)) { this.stats.rejectedAcl++; s.destroy(); return; }
      if (!this.cap.admit(s)) { this.stats.rejectedPerClient++; return; }
      const key = `${s.remoteAddress}|${s.remotePort}`;
      this.handshaking.set(key, s);
      // node's handshakeTimeout did not fire for a silent client (Node 20): our own deadline, then.
      const timer = setTimeout(() => {
        if (this.handshaking.get(key) !== s) return;
        this.handshakeFailures++;
        s.destroy();
      }, Math.max(1, limits.readTimeoutMs));
      timer.unref();
      s.once('close', () => { clearTimeout(timer); if (this.handshaking.get(key) === s) this.handshaking.delete(key); });
    });
    this.tlsServer.on('tlsClientError', () => { this.handshakeFailures++; });
    this.tlsServer.on('error', () => { /* surfaced by listen() */ });
    credentials.onChange((c) => this.tlsServer.setSecureContext({ ...c, ALPNProtocols: ['dot'] } as tls.SecureContextOptions));
  }

  override listen(): Promise<void> {
    const { host, port } = parseHostPort(this.bindAddress);
    return new Promise((resolve, reject) => {
      this.tlsServer.once('error', reject);
      this.tlsServer.listen({ host, port, backlog: 1024 }, () => { this.tlsServer.off('error', reject); resolve(); });
    });
  }

  /** The bound port (tests listen on port 0). */
  get port(): number { return (this.tlsServer.address() as net.AddressInfo).port; }

  override close(): Promise<void> {
    const closed = new Promise<void>((r) => this.tlsServer.close(() => r()));
    // Handshakes in progress have no answers outstanding, and the TCP listener does not know them.
    for (const s of this.handshaking.values()) s.destroy();
    return Promise.all([closed, super.close()]).then(() => undefined);
  }
}
