import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { networkRuleset } from '../../dist/network/index.js';

const ports = { udpPort: 15353, tcpPort: 15354 };

t.test('default ruleset', async (t) => {
  const s = networkRuleset({}, ports);
  t.match(s, /^add table inet dns_tproxy\ndelete table inet dns_tproxy\ntable inet dns_tproxy \{/);
  t.match(s, /type filter hook prerouting priority mangle; policy accept;/);
  t.match(s, /meta l4proto \{ udp, tcp \} th dport 53 jump intercept/);
  t.match(s, /meta nfproto ipv4 meta l4proto udp counter tproxy ip to :15353 meta mark set 0x1d53 accept/);
  t.match(s, /meta nfproto ipv4 meta l4proto tcp counter tproxy ip to :15354 meta mark set 0x1d53 accept/);
  t.match(s, /meta nfproto ipv6 meta l4proto udp counter tproxy ip6 to :15353/);
  t.match(s, /fib daddr type local return/);
  t.match(s, /iif "lo" return/);
  t.notMatch(s, /drop/, 'failMode open has no drop rule');
  t.notMatch(s, /hook output/, 'no output chain unless local');
});

t.test('options', async (t) => {
  const v4 = networkRuleset({ ipv6: false, sources: { exclude: ['2001:db8::/32', '10.0.0.0/8'] } }, ports);
  t.notMatch(v4, /ip6|ipv6/, 'ipv6 false: nothing IPv6 in the table');
  t.match(v4, /meta nfproto ipv4 meta l4proto \{ udp, tcp \} th dport 53 jump intercept/);
  t.match(v4, /ip saddr @src4_exclude return/);

  const udpOnly = networkRuleset({ tcp: false }, ports);
  t.notMatch(udpOnly, /l4proto tcp|tcp dport|, tcp/);
  t.match(udpOnly, /meta l4proto udp udp dport 53 jump intercept/);

  const closed = networkRuleset({ failMode: 'closed' }, ports);
  t.match(closed, /counter drop comment "failMode closed/);

  const gw = networkRuleset({ destinations: { interceptGateway: true, exclude: ['9.9.9.9', '2620:fe::fe'] } }, ports);
  t.notMatch(gw, /fib daddr type local/);
  t.match(gw, /ip daddr @dst4_exclude return/);
  t.match(gw, /ip6 daddr @dst6_exclude return/);
  t.match(gw, /elements = \{ 2620:fe::fe\/128 \}/);

  const ifs = networkRuleset({ interfaces: ['br-lan', 'wg*'] }, ports);
  t.match(ifs, /iifname != \{ "br-lan", "wg\*" \} return/);

  const inc = networkRuleset({ sources: { include: ['192.168.0.0/16'] } }, ports);
  t.match(inc, /ip saddr != @src4_include return/);
  t.match(inc, /meta nfproto ipv6 return/, 'v4-only allowlist: v6 not intercepted');

  const masked = networkRuleset({ fwmark: 0x100, fwmarkMask: 0xff00, selfMark: 0x200, local: true }, ports);
  t.match(masked, /meta mark set meta mark & 0xffff00ff \| 0x100/);
  t.match(masked, /iif "lo" meta mark & 0xff00 == 0x100 jump divert/);
});

t.test('local mode', async (t) => {
  const s = networkRuleset({ local: true, localExcludeUids: [0, 'nobody'], localExcludeCgroups: ['system.slice/x.service'] }, ports);
  t.match(s, /type route hook output priority mangle; policy accept;/);
  t.match(s, /meta mark 0x1d54 return/);
  t.match(s, /meta skuid \{ 0, "nobody" \} return/);
  t.match(s, /socket cgroupv2 level 2 "system\.slice\/x\.service" return/);
  t.match(s, /iif "lo" meta mark 0x1d53 jump divert/);
  // selfMark exclusion must come before the marking rule
  t.ok(s.indexOf('meta mark 0x1d54 return') < s.indexOf('counter meta mark set 0x1d53'));
});

// Let the kernel judge the syntax: `nft -c` inside a throwaway namespace.
const canNft = process.getuid?.() === 0 && spawnSync('nft', ['--version']).status === 0;
t.test('nft -c accepts every variant', { skip: canNft ? false : 'needs root and nft' }, async (t) => {
  const ns = `dtp-rs-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  t.teardown(() => spawnSync('ip', ['netns', 'del', ns]));
  const variants = [
    {}, { ipv6: false }, { tcp: false }, { failMode: 'closed' }, { local: true, localExcludeUids: [0, 'nobody'] },
    { fwmark: 0x100, fwmarkMask: 0xff00, selfMark: 0x200, local: true },
    { interfaces: ['br-lan', 'wg*'], sources: { include: ['192.168.0.0/16', 'fd00::/8'], exclude: ['192.168.1.1', '192.168.0.0/24'] },
      destinations: { exclude: ['9.9.9.9', '2620:fe::fe'], interceptGateway: true } },
  ];
  for (const v of variants) {
    const r = spawnSync('ip', ['netns', 'exec', ns, 'nft', '-c', '-f', '-'], { input: networkRuleset(v, ports), encoding: 'utf8' });
    t.equal(r.status, 0, `${JSON.stringify(v)} ${r.stderr}`);
  }
});
