// Resolving upstream hostnames (https://dns.example/dns-query, tls://dns.example) without the system
// resolver: on a gateway the system resolver may well be dns-tproxy itself, which cannot answer before
// it has an upstream. Names are resolved with plain DNS over UDP against the configured `bootstrap:`
// servers, or taken from a fixed `ip:` on the upstream. Only the TCP connection goes to that address;
// TLS SNI and the certificate check stay on the hostname (the lookup hook below is all node:net sees).
//
// Why our own traffic is not intercepted by our own TPROXY rules: the prerouting hook only sees packets
// that arrive on an interface (forwarded client traffic), never locally generated ones. Locally
// generated packets only pass the output hook, which the network module uses only in `local` mode, and
// there it matches only destination port 53 and skips packets carrying `selfMark` (0x1d54) as well as
// the configured `localExcludeUids`/cgroups. DoH (443) and DoT (853) upstream traffic therefore never
// matches. Node cannot set SO_MARK without the native addon, so plain-DNS traffic that dns-tproxy
// itself sends to port 53 (udp:// / tcp:// upstreams and these bootstrap queries) would be intercepted
// in `local` mode unless dns-tproxy runs under an excluded uid or cgroup (localExcludeUids).
import dgram from 'node:dgram';
import net from 'node:net';
import crypto from 'node:crypto';
import type { LookupFunction } from 'node:net';
import { skipName, readU16, readU32 } from '../dns/wire.js';

export interface BootstrapAddress { address: string; family: 4 | 6 }

interface CacheEntry { addrs: BootstrapAddress[]; expires: number; pending: Promise<BootstrapAddress[]> | null }

const MIN_TTL_S = 30;
const MAX_TTL_S = 3600;

/** "192.0.2.53", "192.0.2.53:5353", "2001:db8::53", "[2001:db8::53]:5353" → host and port. */
export function parseServer(s: string): { host: string; port: number } {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (v6) return checked(v6[1], v6[2] ? Number(v6[2]) : 53, s);
  if (net.isIPv6(s)) return checked(s, 53, s);
  const v4 = /^([^:]+)(?::(\d+))?$/.exec(s);
  if (v4) return checked(v4[1], v4[2] ? Number(v4[2]) : 53, s);
  throw new Error(`bootstrap server "${s}" is not an IP address (optionally with :port)`);
}

function checked(host: string, port: number, orig: string): { host: string; port: number } {
  if (net.isIP(host) === 0) throw new Error(`bootstrap server "${orig}" is not an IP address`);
  if (!(port > 0 && port < 65536)) throw new Error(`bootstrap server "${orig}": bad port`);
  return { host, port };
}

export class BootstrapResolver {
  private readonly servers: { host: string; port: number }[];
  private readonly cache = new Map<string, CacheEntry>();
  queries = 0;
  failures = 0;

  constructor(servers: readonly string[], private readonly timeoutMs = 1500) {
    this.servers = servers.map(parseServer);
  }

  get configured(): boolean { return this.servers.length > 0; }

  /** A and AAAA (IPv4 first); cached for the answer's TTL (30 s … 1 h). */
  resolve(host: string): Promise<BootstrapAddress[]> {
    const now = Date.now();
    const e = this.cache.get(host);
    if (e?.pending) return e.pending;
    if (e && e.expires > now && e.addrs.length) return Promise.resolve(e.addrs);
    const entry: CacheEntry = e ?? { addrs: [], expires: 0, pending: null };
    entry.pending = this.lookupAll(host).then(({ addrs, ttl }) => {
      entry.addrs = addrs; entry.expires = Date.now() + ttl * 1000; entry.pending = null;
      return addrs;
    }, (err) => { entry.pending = null; this.failures++; throw err; });
    this.cache.set(host, entry);
    return entry.pending;
  }

  /** The address failed to connect: ask again next time. */
  invalidate(host: string): void {
    const e = this.cache.get(host);
    if (e && !e.pending) e.expires = 0;
  }

  private async lookupAll(host: string): Promise<{ addrs: BootstrapAddress[]; ttl: number }> {
    if (!this.servers.length) throw Object.assign(new Error(`no bootstrap servers to resolve ${host}`), { code: 'ENOTFOUND' });
    let lastErr: Error = new Error('no answer');
    for (const server of this.servers) {
      try {
        const [a, aaaa] = await Promise.all([this.ask(server, host, 1), this.ask(server, host, 28).catch(() => ({ addrs: [], ttl: MAX_TTL_S }))]);
        const addrs = [...a.addrs, ...aaaa.addrs];
        if (addrs.length) return { addrs, ttl: Math.max(MIN_TTL_S, Math.min(MAX_TTL_S, a.addrs.length ? a.ttl : aaaa.ttl)) };
        lastErr = new Error(`${host}: no address records`);
      } catch (e) { lastErr = e as Error; }
    }
    throw Object.assign(new Error(`bootstrap lookup of ${host} failed: ${lastErr.message}`), { code: 'ENOTFOUND' });
  }

  private ask(server: { host: string; port: number }, host: string, qtype: 1 | 28): Promise<{ addrs: BootstrapAddress[]; ttl: number }> {
    this.queries++;
    const id = crypto.randomInt(0, 65536);
    const q = encodeQuery(id, host, qtype);
    return new Promise((resolve, reject) => {
      const sock = dgram.createSocket(net.isIPv6(server.host) ? 'udp6' : 'udp4');
      const timer = setTimeout(() => { sock.close(); reject(new Error('timeout')); }, this.timeoutMs);
      sock.on('error', (e) => { clearTimeout(timer); sock.close(); reject(e); });
      sock.on('message', (msg, rinfo) => {
        if (rinfo.port !== server.port || msg.length < 12 || readU16(msg, 0) !== id) return;
        // Our question must come back: anything else is a stray or spoofed packet.
        if (!msg.subarray(12, q.length).equals(q.subarray(12)) || (msg[2] & 0x80) === 0) return;
        clearTimeout(timer);
        sock.close();
        const rcode = msg[3] & 0x0f;
        if (rcode !== 0 && rcode !== 3) { reject(new Error(`rcode ${rcode}`)); return; }
        resolve(parseAddresses(msg, qtype));
      });
      sock.send(q, server.port, server.host);
    });
  }

  /** A node:net `lookup` hook resolving through this resolver (or the fixed `ip`). */
  lookup(fixedIp?: string): LookupFunction {
    const hook = (hostname: string, options: { family?: number | string; all?: boolean }, cb: (...a: unknown[]) => void): void => {
      const p: Promise<BootstrapAddress[]> = fixedIp ? Promise.resolve([{ address: fixedIp, family: net.isIPv6(fixedIp) ? 6 : 4 }]) : this.resolve(hostname);
      p.then((addrs) => {
        const fam = options.family === 6 || options.family === 'IPv6' ? 6 : options.family === 4 || options.family === 'IPv4' ? 4 : 0;
        const list = fam ? addrs.filter((a) => a.family === fam) : addrs;
        if (!list.length) { cb(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' })); return; }
        if (options.all) cb(null, list);
        else cb(null, list[0].address, list[0].family);
      }, (err) => cb(err));
    };
    return hook as unknown as LookupFunction;
  }
}

export function encodeQuery(id: number, host: string, qtype: number): Buffer {
  const labels = host.replace(/\.$/, '').split('.');
  const out = Buffer.alloc(12 + labels.reduce((n, l) => n + l.length + 1, 0) + 1 + 4);
  out.writeUInt16BE(id, 0);
  out[2] = 0x01; // RD
  out.writeUInt16BE(1, 4);
  let p = 12;
  for (const l of labels) { out[p++] = l.length; p += out.write(l, p, 'ascii'); }
  out[p++] = 0;
  out.writeUInt16BE(qtype, p); out.writeUInt16BE(1, p + 2);
  return out;
}

function parseAddresses(msg: Buffer, qtype: 1 | 28): { addrs: BootstrapAddress[]; ttl: number } {
  const an = readU16(msg, 6);
  let p = skipName(msg, 0, msg.length, 12);
  if (p < 0) throw new Error('malformed answer');
  p += 4;
  const addrs: BootstrapAddress[] = [];
  let ttl = MAX_TTL_S;
  for (let k = 0; k < an; k++) {
    p = skipName(msg, 0, msg.length, p);
    if (p < 0 || p + 10 > msg.length) throw new Error('malformed answer');
    const type = readU16(msg, p), rdlen = readU16(msg, p + 8);
    const rrTtl = readU32(msg, p + 4);
    p += 10;
    if (p + rdlen > msg.length) throw new Error('malformed answer');
    if (type === qtype && type === 1 && rdlen === 4) {
      addrs.push({ address: `${msg[p]}.${msg[p + 1]}.${msg[p + 2]}.${msg[p + 3]}`, family: 4 });
      ttl = Math.min(ttl, rrTtl);
    } else if (type === qtype && type === 28 && rdlen === 16) {
      const parts: string[] = [];
      for (let j = 0; j < 16; j += 2) parts.push(readU16(msg, p + j).toString(16));
      addrs.push({ address: net.isIPv6(parts.join(':')) ? parts.join(':') : '::', family: 6 });
      ttl = Math.min(ttl, rrTtl);
    }
    p += rdlen;
  }
  return { addrs, ttl };
}
