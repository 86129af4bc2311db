// Pure rendering of the nftables ruleset. Input must be a ResolvedNetworkConfig
// (validated) so nothing here needs escaping beyond what the validators allow.
import type { Cidr } from './cidr.js';
import type { ListenPorts, ResolvedNetworkConfig } from './config.js';

/** Chain names inside our table; `networkShow` checks for them. */
export function expectedChains(cfg: ResolvedNetworkConfig): string[] {
  const chains = ['prerouting', 'intercept', 'divert'];
  if (cfg.local) chains.push('output', 'local_mark');
  return chains;
}

export const hex = (n: number): string => '0x' + (n >>> 0).toString(16);

const FULL = 0xffffffff;

/** Interface names derived from the system (not validated config) must match this to be rendered. */
export const SAFE_IFNAME = /^[A-Za-z0-9_.@+:-]{1,15}$/;

export function markMatch(cfg: ResolvedNetworkConfig): string {
  return cfg.fwmarkMask === FULL
    ? `meta mark ${hex(cfg.fwmark)}`
    : `meta mark & ${hex(cfg.fwmarkMask)} == ${hex(cfg.fwmark)}`;
}

export function markSet(cfg: ResolvedNetworkConfig): string {
  return cfg.fwmarkMask === FULL
    ? `meta mark set ${hex(cfg.fwmark)}`
    : `meta mark set meta mark & ${hex(~cfg.fwmarkMask >>> 0)} | ${hex(cfg.fwmark)}`;
}

function set(name: string, family: 4 | 6, items: Cidr[]): string {
  const type = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
  const elems = items.map((c) => c.text).join(', ');
  return `  set ${name} {\n    type ${type}; flags interval; auto-merge;\n    elements = { ${elems} }\n  }\n`;
}

/** Protocol selector used by the hook chains: which packets enter our chains at all. */
function dnsSelector(cfg: ResolvedNetworkConfig): string {
  const fam = cfg.ipv6 ? '' : 'meta nfproto ipv4 ';
  const proto = cfg.tcp ? 'meta l4proto { udp, tcp } th dport 53' : 'meta l4proto udp udp dport 53';
  return fam + proto;
}

/**
 * Render the complete `nft -f -` script. The script first creates and deletes
 * the table, then defines it: a single atomic transaction that replaces any
 * previous version (idempotent: up twice == up once), works on nft versions
 * without `destroy`.
 */
export function renderRuleset(cfg: ResolvedNetworkConfig, ports: ListenPorts, wanInterfaces: readonly string[] = []): string {
  const t = cfg.table;
  const by = (list: Cidr[], fam: 4 | 6) => list.filter((c) => c.family === fam);
  const fams: Array<4 | 6> = cfg.ipv6 ? [4, 6] : [4];
  const ipk = (fam: 4 | 6) => (fam === 4 ? 'ip' : 'ip6');

  let sets = '';
  const sourceRules: string[] = [];
  const destRules: string[] = [];
  for (const fam of fams) {
    const ex = by(cfg.sources.exclude, fam);
    if (ex.length) {
      sets += set(`src${fam}_exclude`, fam, ex);
      sourceRules.push(`${ipk(fam)} saddr @src${fam}_exclude return`);
    }
  }
  if (cfg.sources.include.length) {
    for (const fam of fams) {
      const inc = by(cfg.sources.include, fam);
      if (inc.length) {
        sets += set(`src${fam}_include`, fam, inc);
        sourceRules.push(`${ipk(fam)} saddr != @src${fam}_include return`);
      } else {
        // allowlist given but none for this family: that family is not intercepted
        sourceRules.push(`meta nfproto ipv${fam} return`);
      }
    }
  }
  for (const fam of fams) {
    const ex = by(cfg.destinations.exclude, fam);
    if (ex.length) {
      sets += set(`dst${fam}_exclude`, fam, ex);
      destRules.push(`${ipk(fam)} daddr @dst${fam}_exclude return`);
    }
  }

  const intercept: string[] = [];
  if (cfg.local) {
    // Locally generated DNS marked in `local_mark` is rerouted via routeTable onto lo
    // and shows up here; source/interface filters do not apply to it.
    intercept.push(`iif "lo" ${markMatch(cfg)} jump divert comment "local mode (rerouted from output)"`);
  }
  intercept.push('iif "lo" return');
  if (cfg.interfaces.length) {
    intercept.push(`iifname != { ${cfg.interfaces.map((i) => `"${i}"`).join(', ')} } return`);
  } else if (wanInterfaces.length) {
    for (const i of wanInterfaces) if (!SAFE_IFNAME.test(i)) throw new Error(`interface name ${JSON.stringify(i)} cannot be put in a ruleset`);
    intercept.push(`iifname { ${wanInterfaces.map((i) => `"${i}"`).join(', ')} } return comment "carries a default route: the WAN side is never intercepted"`);
  }
  if (!cfg.destinations.interceptGateway) {
    intercept.push(`fib daddr type local return comment "queries to the gateway itself go to the local resolver"`);
  }
  intercept.push(...sourceRules, ...destRules, 'jump divert');

  const divert: string[] = [];
  for (const fam of fams) {
    const nf = `meta nfproto ipv${fam}`;
    const tp = `tproxy ${ipk(fam)} to :`;
    divert.push(`${nf} meta l4proto udp counter ${tp}${ports.udpPort} ${markSet(cfg)} accept`);
    if (cfg.tcp) divert.push(`${nf} meta l4proto tcp counter ${tp}${ports.tcpPort} ${markSet(cfg)} accept`);
  }
  if (cfg.failMode === 'closed') {
    // tproxy only "breaks" (falls through) when no listener socket exists
    divert.push('counter drop comment "failMode closed: dns-tproxy listener absent"');
  }

  let out = `add table inet ${t}\ndelete table inet ${t}\ntable inet ${t} {\n`;
  out += sets;
  out += '  chain prerouting {\n    type filter hook prerouting priority mangle; policy accept;\n';
  out += `    ${dnsSelector(cfg)} jump intercept\n  }\n`;
  out += `  chain intercept {\n${intercept.map((r) => '    ' + r + '\n').join('')}  }\n`;
  out += `  chain divert {\n${divert.map((r) => '    ' + r + '\n').join('')}  }\n`;

  if (cfg.local) {
    const lm: string[] = [];
    lm.push(`meta mark ${hex(cfg.selfMark)} return comment "dns-tproxy's own upstream sockets (SO_MARK)"`);
    if (cfg.localExcludeUids.length) {
      lm.push(
        `meta skuid { ${cfg.localExcludeUids.map((u) => (typeof u === 'number' ? String(u) : `"${u}"`)).join(', ')} } return`,
      );
    }
    for (const cg of cfg.localExcludeCgroups) {
      lm.push(`socket cgroupv2 level ${cg.split('/').length} "${cg}" return`);
    }
    lm.push('fib daddr type local return');
    for (const fam of fams) {
      const ex = by(cfg.destinations.exclude, fam);
      if (ex.length) lm.push(`${ipk(fam)} daddr @dst${fam}_exclude return`);
    }
    lm.push(`counter ${markSet(cfg)}`);
    out += '  chain output {\n    type route hook output priority mangle; policy accept;\n';
    out += `    ${dnsSelector(cfg)} jump local_mark\n  }\n`;
    out += `  chain local_mark {\n${lm.map((r) => '    ' + r + '\n').join('')}  }\n`;
  }
  out += '}\n';
  return out;
}

/** Script that removes the table without failing when it is absent. */
export function renderDelete(table: string): string {
  return `add table inet ${table}\ndelete table inet ${table}\n`;
}
