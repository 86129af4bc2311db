import t from 'tap';
import { chainsIn, divertCounters, nftCheck } from '../../dist/network/show.js';
import { resolveNetworkConfig } from '../../dist/network/index.js';

const listing = `table inet dns_tproxy {
\tchain prerouting {
\t\ttype filter hook prerouting priority mangle; policy accept;
\t\tmeta l4proto { tcp, udp } th dport 53 jump intercept
\t}

\tchain intercept {
\t\tiif "lo" return
\t\tjump divert
\t}

\tchain divert {
\t\tmeta nfproto ipv4 meta l4proto udp counter packets 3 bytes 120 tproxy ip to :15353 meta mark set 0x00001d53 accept
\t\tmeta nfproto ipv4 meta l4proto tcp counter packets 0 bytes 0 tproxy ip to :15353 meta mark set 0x00001d53 accept
\t}
}
`;

t.test('parses nft listing', async (t) => {
  t.same(chainsIn(listing), ['prerouting', 'intercept', 'divert']);
  t.same(divertCounters(listing), { 'ipv4/udp': 3, 'ipv4/tcp': 0 });
  const ports = { udpPort: 15353, tcpPort: 15353 };
  t.equal(nftCheck(resolveNetworkConfig({ ipv6: false }), ports, listing).ok, true);
  const v6 = nftCheck(resolveNetworkConfig({}), ports, listing);
  t.equal(v6.ok, false);
  t.match(v6.detail, /no ipv6\/udp tproxy rule/);
  t.match(nftCheck(resolveNetworkConfig({ ipv6: false }), { udpPort: 1, tcpPort: 15353 }, listing).detail, /ipv4\/udp tproxy rule to :1\b/);
  t.match(nftCheck(resolveNetworkConfig({ ipv6: false, local: true }), ports, listing).detail, /missing chains: output, local_mark/);
  t.equal(nftCheck(resolveNetworkConfig({}), ports, undefined).ok, false);
});
