// The composition root of configuration: every part of the program that owns top-level config keys,
// with its schema fragment and its semantic check. `check`, `run` and SIGHUP load through this one
// list (src/config/load.ts), so they accept and refuse the same configs. The checks call the same
// parsers the running server uses (LocalZone.add, parseCidr, normalizeUpstream, ClientAcl,
// resolveNetworkConfig), so a verdict here is the verdict at start.
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from './config/types.js';
import { reportThrown, type ConfigPart, type ConfigReport } from './config/part.js';
import { queryLogSchema } from './log/query-log.js';
import { dnstapSchema } from './log/dnstap-schema.js';
import { networkSchema } from './network/index.js';
import { filterConfigSchema } from './filter/config.js';
import { limitsSchema } from './pipeline/ratelimit.js';
import { storeSchema } from './store/config.js';
import { devicesSchema } from './devices/table.js';
import { bypassSchema } from './network/bypass.js';
import { consoleSchema } from './api/config.js';
import { didYouMean } from './config/suggest.js';
import { loopsTo, ownListeners, DEFAULT_PORTS } from './config/core-check.js';
import { ClientAcl } from './listen/acl.js';
import type { FilterConfig } from './filter/config.js';
import { LocalZone } from './filter/local.js';
import { normalizeMac, parseCidr, parseIPv4, parseIPv6 } from './filter/net.js';
import { normalizeDomain } from './filter/parse.js';
import { normalizeUpstream } from './filter/engine.js';
import { resolveNetworkConfig } from './network/index.js';

let parts: ConfigPart[] | null = null;
export function configParts(): ConfigPart[] {
  // The core keys (listen, upstreams, upstream, cache, metrics, ...) are src/config/schema.ts and
  // core-check.ts; everything else is owned by the part named here.
  parts ??= [
    { name: 'listen', check: checkListen },
    { name: 'filter', schema: filterConfigSchema, check: checkFilter },
    { name: 'log', schema: { log: queryLogSchema } },
    { name: 'dnstap', schema: { dnstap: dnstapSchema } },
    { name: 'network', schema: { network: networkSchema }, check: checkNetwork },
    { name: 'limits', schema: { limits: limitsSchema } },
    /** Query history (issue 17): SQLite under stateDir by default, PostgreSQL with `url`, `false` for none. */
    { name: 'store', schema: { store: storeSchema } },
    /** Device names for client addresses: DHCP leases, neighbour table, reverse lookups, config names. */
    { name: 'devices', schema: { devices: devicesSchema } },
    { name: 'bypass', schema: { bypass: bypassSchema } },
    { name: 'console', schema: { console: consoleSchema } },
    { name: 'stats', schema: { stats: statsSchema } },
  ];
  return parts;
}

const statsSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    /** Keys kept by each top-k table (/stats/top); 0 turns them off. */
    topK: { type: 'integer', minimum: 0, maximum: 100000 },
    /** Count one query in N into the top-k tables, to keep the cost off the hot path. */
    sampleEvery: { type: 'integer', minimum: 1 },
  },
};

function checkListen(cfg: Config, report: ConfigReport): void {
  cfg.listen.plainAllow.forEach((p, i) => reportThrown(report, ['listen', 'plainAllow', i], () => new ClientAcl([p])));
}

function checkFilter(cfg: Config, report: ConfigReport): void {
  const fc = cfg as unknown as FilterConfig;
  const f = fc.filter ?? {};
  const lists = f.lists ?? [];
  const listNames = new Set<string>();
  lists.forEach((l, i) => {
    const at = ['filter', 'lists', i];
    if (listNames.has(l.name)) report([...at, 'name'], `duplicate list name "${l.name}"`);
    listNames.add(l.name);
    if (l.path !== undefined && l.enabled !== false) {
      const file = path.resolve(cfg.baseDir, l.path);
      try {
        fs.accessSync(file, fs.constants.R_OK);
        if (!fs.statSync(file).isFile()) report([...at, 'path'], `${file} is not a file`);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        report([...at, 'path'], `cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code}`);
      }
    }
  });
  (f.customAddresses ?? []).forEach((a, i) => {
    if (parseIPv4(a) === null && parseIPv6(a) === null) report(['filter', 'customAddresses', i], `"${a}" is not an IP address`);
  });
  const modes = [f.mode ?? 'nxdomain', ...(fc.groups ?? []).map((g) => g.mode ?? f.mode ?? 'nxdomain')];
  if (modes.includes('custom') && !(f.customAddresses ?? []).length) report(['filter', 'mode'], 'block mode "custom" needs filter.customAddresses');
  const groupNames = new Set<string>();
  (fc.groups ?? []).forEach((g, gi) => {
    const at = ['groups', gi];
    if (groupNames.has(g.name)) report([...at, 'name'], `duplicate group name "${g.name}"`);
    groupNames.add(g.name);
    g.clients.forEach((c, ci) => {
      if (normalizeMac(c) === null && parseCidr(c) === null) {
        report([...at, 'clients', ci], `"${c}" is not an IP address, CIDR prefix or MAC address (e.g. 192.168.1.0/24, fd00::/64, aa:bb:cc:dd:ee:ff)`);
      }
    });
    (g.lists ?? []).forEach((ln, li) => {
      if (!listNames.has(ln)) report([...at, 'lists', li], `no list named "${ln}" in filter.lists${didYouMean(ln, listNames)}`);
    });
  });
  if (fc.local?.length) {
    const zone = new LocalZone(f.localTtl ?? 300);
    fc.local.forEach((e, i) => reportThrown(report, ['local', i], () => zone.add(e)));
  }
  const own = ownListeners(cfg);
  const domains = new Set<string>();
  (fc.forward ?? []).forEach((fw, i) => {
    const d = normalizeDomain(fw.domain);
    if (d === null) report(['forward', i, 'domain'], `"${fw.domain}" is not a domain name`);
    else if (domains.has(d)) report(['forward', i, 'domain'], `duplicate domain "${fw.domain}"`);
    else domains.add(d);
    let target: string;
    try { target = normalizeUpstream(fw.to); } catch (e) { report(['forward', i, 'to'], (e as Error).message); return; }
    let url: URL;
    try { url = new URL(target); } catch { report(['forward', i, 'to'], `"${fw.to}" is not a valid target`); return; }
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const proto = url.protocol.slice(0, -1);
    // A conditional-forwarding target is dialled without bootstrap: a hostname would go to the
    // system resolver, which on a gateway may be us.
    if (parseIPv4(host) === null && parseIPv6(host) === null) {
      if (proto === 'udp' || proto === 'tcp') report(['forward', i, 'to'], `"${fw.to}": plain DNS targets must be an IP address (optionally :port)`);
      return;
    }
    const loop = loopsTo(own, proto, host, Number(url.port || DEFAULT_PORTS[proto]));
    if (loop) report(['forward', i, 'to'], `${fw.to} is our own listener ${loop.path.join('.')} (a query loop)`);
  });
}

function checkNetwork(cfg: Config, report: ConfigReport): void {
  if (cfg.network === undefined) return;
  try {
    resolveNetworkConfig(cfg.network as never);
  } catch (e) {
    // Messages are "network.key[i]: reason"; the key path gives the line.
    const msg = (e as Error).message;
    const m = /^(network(?:\.[A-Za-z]+)*)(?:\[(\d+)\])?: (.*)$/s.exec(msg);
    if (m) report([...m[1].split('.'), ...(m[2] !== undefined ? [Number(m[2])] : [])], m[3]);
    else report(['network'], msg);
  }
}
