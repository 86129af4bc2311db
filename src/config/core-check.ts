// Semantic checks of the core keys (listen, upstreams, bootstrap, metrics, cache): what the schema
// cannot express. Also refuses a query loop: an upstream that is one of our own listeners.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import type { Config } from './types.js';
import type { ConfigReport, KeyPath } from './part.js';
import { parseHostPort } from './address.js';

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || /^::ffff:127\./i.test(host);
}

/** A listener we open: what protocol reaches it, on which address. */
export interface OwnListener { proto: 'udp' | 'tcp' | 'tls' | 'https'; host: string; port: number; path: KeyPath }

export function checkCore(cfg: Config, report: ConfigReport): void {
  const own = ownListeners(cfg, report);
  if (cfg.metrics.listen !== undefined) {
    try {
      const { host } = parseHostPort(cfg.metrics.listen);
      if (!isLoopback(host) && !cfg.metrics.allowNonLoopback) {
        report(['metrics', 'listen'], `${host} is not loopback; set metrics.allowNonLoopback: true to expose metrics and admin endpoints`);
      } else if (!isLoopback(host) && cfg.metrics.adminToken === undefined) {
        report(['metrics', 'listen'], `${host} is not loopback: set metrics.adminToken (16+ characters) so that admin actions need it`);
      }
    } catch (e) {
      report(['metrics', 'listen'], (e as Error).message);
    }
  }

  cfg.upstreams.forEach((u, i) => {
    const path = ['upstreams', i];
    let url: URL;
    try { url = new URL(u.url); } catch { report([...path, 'url'], `"${u.url}" is not a valid URL`); return; }
    const proto = url.protocol.slice(0, -1) as OwnListener['proto'];
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (u.ip !== undefined && net.isIP(u.ip) === 0) report([...path, 'ip'], `"${u.ip}" is not an IP address`);
    if (net.isIP(host) === 0 && !u.ip && !(cfg.bootstrap.length > 0 && (proto === 'https' || proto === 'tls'))) {
      report([...path, 'url'], `hostname "${host}" needs "ip:" on the upstream or a top-level "bootstrap:" list of DNS server IPs`
        + (proto === 'udp' || proto === 'tcp' ? ' (plain DNS upstreams take "ip:" only)' : ''));
    }
    if (u.ca !== undefined && !fs.existsSync(u.ca)) report([...path, 'ca'], `file not found: ${u.ca}`);
    const target = u.ip ?? host;
    if (net.isIP(target)) {
      const loop = loopsTo(own, proto, target, Number(url.port || DEFAULT_PORTS[proto]));
      if (loop) report([...path, 'url'], `${u.url} is our own listener ${loop.path.join('.')} (a query loop)`);
    }
  });
  cfg.bootstrap.forEach((b, i) => {
    const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(b) ?? /^([^:]+)(?::(\d+))?$/.exec(b) ?? [b, b, undefined];
    const host = net.isIP(b) === 6 ? b : m[1];
    const port = net.isIP(b) === 6 ? 53 : Number(m[2] ?? 53);
    if (net.isIP(host) === 0) report(['bootstrap', i], `"${b}" is not an IP address (optionally with :port)`);
    else if (!(port > 0 && port < 65536)) report(['bootstrap', i], `"${b}": bad port`);
    else {
      const loop = loopsTo(own, 'udp', host, port);
      if (loop) report(['bootstrap', i], `${b} is our own listener ${loop.path.join('.')} (a query loop)`);
    }
  });
  if (cfg.cache.minTtl > cfg.cache.maxTtl) report(['cache', 'minTtl'], `is larger than cache.maxTtl (${cfg.cache.maxTtl})`);
}

export const DEFAULT_PORTS: Record<string, number> = { udp: 53, tcp: 53, tls: 853, https: 443 };

/**
 * The listener a query sent to proto://host:port would reach, if it is one of ours. A wildcard listener
 * (0.0.0.0, ::) receives what is sent to any local address. Plain UDP and TCP count as one service: an
 * upstream udp://x sends TCP on truncation.
 */
export function loopsTo(own: readonly OwnListener[], proto: string, host: string, port: number): OwnListener | null {
  const plain = (p: string) => (p === 'udp' || p === 'tcp' ? 'plain' : p);
  for (const l of own) {
    if (l.port !== port || plain(l.proto) !== plain(proto)) continue;
    if (sameAddress(l.host, host)) return l;
    if ((l.host === '0.0.0.0' || l.host === '::') && isLocalAddress(host)) return l;
  }
  return null;
}

/** Our own listeners (for loop checks here and in other parts); bad addresses go to `report`. */
export function ownListeners(cfg: Config, report: ConfigReport = () => undefined): OwnListener[] {
  const own: OwnListener[] = [];
  const add = (value: unknown, path: KeyPath, proto: OwnListener['proto']) => {
    if (value === undefined) return;
    if (typeof value !== 'string') return; // the schema reports the type
    try {
      const { host, port } = parseHostPort(value);
      own.push({ proto, host, port, path });
    } catch (e) {
      report(path, (e as Error).message);
    }
  };
  const l = cfg.listen;
  add(l.tproxy.udp, ['listen', 'tproxy', 'udp'], 'udp');
  add(l.tproxy.tcp, ['listen', 'tproxy', 'tcp'], 'tcp');
  l.plain.forEach((p, i) => add(p, ['listen', 'plain', i], 'udp'));
  l.plainTcp.forEach((p, i) => add(p, ['listen', 'plainTcp', i], 'tcp'));
  // Encrypted listeners (listen.dot / listen.doh): a string or a list of strings.
  for (const [key, proto] of [['dot', 'tls'], ['doh', 'https']] as const) {
    const v = (l as Record<string, unknown>)[key];
    if (Array.isArray(v)) v.forEach((x, i) => add(x, ['listen', key, i], proto));
    else add(v, ['listen', key], proto);
  }
  return own;
}

function sameAddress(a: string, b: string): boolean {
  const strip = (s: string) => s.replace(/^::ffff:(?=\d+\.)/i, '').toLowerCase();
  if (strip(a) === strip(b)) return true;
  return net.isIP(a) === 6 && net.isIP(b) === 6 && new net.SocketAddress({ address: a, family: 'ipv6' }).address
    === new net.SocketAddress({ address: b, family: 'ipv6' }).address;
}

function isLocalAddress(host: string): boolean {
  if (isLoopback(host) || host === '0.0.0.0' || host === '::') return true;
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (sameAddress(a.address, host)) return true;
  }
  return false;
}
