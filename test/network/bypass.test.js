// Bypass control, network half: list parsing, the nft ruleset loaded into a real kernel (a throw-away
// network namespace), set updates in place, attempt counters read back, and the runtime controller with
// a fake resolver. Needs root and nft (CI has both).
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dt-bypass-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const NS = `dtbyp${process.pid % 100000}`;
const root = process.getuid?.() === 0;
let nsMade = false;
if (root) {
  execFileSync('ip', ['netns', 'add', NS]);
  nsMade = true;
  t.teardown(() => { try { execFileSync('ip', ['netns', 'del', NS]); } catch { /* gone */ } });
  // Every nft call of the module under test runs inside the namespace.
  const wrapper = path.join(dir, 'nft');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${NS} nft "$@"\n`, { mode: 0o755 });
  process.env.DNS_TPROXY_NFT = wrapper;
}
const B = await import('../../dist/network/bypass.js');
const nft = (...a) => execFileSync('ip', ['netns', 'exec', NS, 'nft', ...a], { encoding: 'utf8' });
const nftLoad = (script) => execFileSync('ip', ['netns', 'exec', NS, 'nft', '-f', '-'], { encoding: 'utf8', input: script });
const noEx = { off4: [], off6: [], offMac: [], log4: [], log6: [], logMac: [] };

t.test('list parsing: IPs, CIDRs, hostnames, hosts-file lines, comments; bad lines with their numbers', async (t) => {
  const p = B.parseBypassList([
    '# public resolvers', '192.0.2.1', '198.51.100.0/24   # a whole range', '2001:db8::53', 'DNS.Example-DoH.test.',
    '0.0.0.0 doh.blocked.test', '', 'not a host name!', '300.1.2.3', 'two words here', '192.0.2.0/33',
  ].join('\n'));
  t.same(p.v4.map((c) => c.text), ['192.0.2.1/32', '198.51.100.0/24']);
  t.same(p.v6.map((c) => c.text), ['2001:db8::53/128']);
  t.same(p.hosts, ['dns.example-doh.test', 'doh.blocked.test']);
  t.same(p.bad.map((b) => b.line), [8, 9, 10, 11]);
});

t.test('group exemptions: CIDRs and MACs of groups with bypass off/log', async (t) => {
  const ex = B.groupExemptions([
    { name: 'work', clients: ['10.0.0.5', 'AA-BB-CC-DD-EE-FF', 'fd00::/64'], bypass: 'off' },
    { name: 'kids', clients: ['10.0.1.0/24'] },
    { name: 'lab', clients: ['10.0.2.0/24'], bypass: 'log' },
  ]);
  t.same(ex.off4.map((c) => c.text), ['10.0.0.5/32']);
  t.same(ex.offMac, ['aa:bb:cc:dd:ee:ff']);
  t.same(ex.off6.map((c) => c.text), ['fd00::/64']);
  t.same(ex.log4.map((c) => c.text), ['10.0.2.0/24']);
});

t.test('rulesets load into the kernel: block rejects, log only counts, the LAN side is selected', { skip: !root && 'needs root for a network namespace' }, async (t) => {
  const ex = B.groupExemptions([{ name: 'w', clients: ['10.0.0.5', 'aa:bb:cc:dd:ee:ff'], bypass: 'off' }]);
  const table = 'dt_test_bypass';
  const block = B.renderBypassRuleset({ table, mode: 'block', interfaces: [], excludeInterfaces: ['wan0'], ipv6: true, exemptions: ex,
    dst4: B.parseBypassList('192.0.2.1\n198.51.100.0/24').v4, dst6: [] });
  nftLoad(block);
  const text = nft('list', 'table', 'inet', table);
  t.match(text, /iifname != "wan0" meta l4proto \{ tcp, udp \} th dport 853 jump attempt/);
  t.match(text, /ip daddr @dst4 meta l4proto \{ tcp, udp \} th dport 443 jump attempt/);
  t.match(text, /reject with tcp reset/);
  t.match(text, /reject with icmpx admin-prohibited/);
  t.match(text, /ip saddr @off_src4 return/);
  t.match(text, /198\.51\.100\.0\/24/);
  // Loading again replaces (idempotent), and log mode has no reject at all.
  nftLoad(B.renderBypassRuleset({ table, mode: 'log', interfaces: ['br-lan'], ipv6: false, exemptions: noEx }));
  const logText = nft('list', 'table', 'inet', table);
  t.notMatch(logText, /reject/);
  t.match(logText, /iifname "br-lan"/);
  t.notMatch(logText, /ip6 daddr @dst6/, 'ipv6 off: no v6 rule');
  nft('delete', 'table', 'inet', table);
});

t.test('set updates in place and counters read back as per-client increments', { skip: !root && 'needs root for a network namespace' }, async (t) => {
  const table = 'dt_test_ctl_bypass';
  nftLoad(B.renderBypassRuleset({ table, mode: 'block', interfaces: [], ipv6: true, exemptions: noEx }));
  t.teardown(() => { try { nft('delete', 'table', 'inet', table); } catch { /* gone */ } });
  const listFile = path.join(dir, 'doh.txt');
  fs.writeFileSync(listFile, '192.0.2.10\n2001:db8::10\ndoh.one.test\n');
  const answers = { 'doh.one.test': ['203.0.113.1'], 'doh.two.test': ['203.0.113.2'] };
  const asked = [];
  const names = [];
  const records = [];
  const ctl = new B.BypassController({
    table, mode: 'block', lists: [{ name: 'l', path: listFile }], baseDir: dir, stateDir: dir, log: () => {},
    resolve: async (name, qtype) => { asked.push(`${name}/${qtype}`); return { addrs: qtype === 1 ? answers[name] ?? [] : [], ttl: 300 }; },
    onNames: (n) => names.push(n), onAttempts: (r) => records.push(r), pollMs: 3_600_000,
  });
  t.teardown(() => ctl.close());
  await ctl.start();
  await ctl.settle();
  t.same(names.at(-1), ['doh.one.test']);
  t.ok(asked.includes('doh.one.test/1') && asked.includes('doh.one.test/28'), 'A and AAAA asked through the resolver');
  const elems = (set) => JSON.parse(nft('-j', 'list', 'set', 'inet', table, set)).nftables[1].set.elem ?? [];
  t.same(elems('dst4').map(String).sort(), ['192.0.2.10', '203.0.113.1']);
  t.same(elems('dst6').map(String), ['2001:db8::10']);
  t.equal(ctl.dst4Size, 2);
  // The list changes: the old hostname's address leaves the set, the new one's arrives.
  fs.writeFileSync(listFile, '192.0.2.10\ndoh.two.test\n');
  await ctl.refresh();
  t.same(elems('dst4').map(String).sort(), ['192.0.2.10', '203.0.113.2']);
  t.same(elems('dst6'), []);
  // A bad list keeps what was loaded.
  fs.rmSync(listFile);
  await ctl.refresh();
  t.same(elems('dst4').map(String).sort(), ['192.0.2.10', '203.0.113.2'], 'unreadable list: previous contents stay');
  // Attempt counters: what the kernel's dynamic set holds, turned into increments.
  nft('add', 'element', 'inet', table, 'attempts4', '{ 10.0.0.2 . tcp . 853 counter packets 3 bytes 180 }');
  nft('add', 'element', 'inet', table, 'attempts6', '{ fd00::2 . udp . 443 counter packets 2 bytes 2400 }');
  await ctl.poll();
  t.same(ctl.attempts, { dot: 3, doq: 0, doh: 0, doh3: 2, canary: 0, name: 0 });
  t.same(records.map((r) => [r.client, r.proto, r.count]).sort(), [['10.0.0.2', 'dot', 3], ['fd00::2', 'doh3', 2]]);
  await ctl.poll();
  t.equal(ctl.attempts.dot, 3, 'an unchanged counter adds nothing');
  const show = await B.bypassShow(table, 'block');
  t.match(show.text, /sets .*dst4=2/);
  t.match(show.text, /attempts dot=3 doh3=2/);
  t.match(show.text, /10\.0\.0\.2 dot 3/);
});

t.test('parseAttemptSet ignores what it does not understand', async (t) => {
  t.same(B.parseAttemptSet('not json'), []);
  t.same(B.parseAttemptSet(JSON.stringify({ nftables: [{ set: { elem: [{ elem: { val: { concat: ['10.0.0.1', 'tcp', 22] }, counter: { packets: 1 } } }] } }] })), []);
});

t.test('DDR endpoints and certificate name', async (t) => {
  const e = B.encryptedEndpoints({ dot: ['10.0.0.1:853', '[::]:853'], doh: ['[fd00::1]:443'] });
  t.same(e, [{ alpn: 'dot', port: 853, v4: ['10.0.0.1'], v6: [] }, { alpn: 'dot', port: 853, v4: [], v6: [] }, { alpn: 'h2', port: 443, v4: [], v6: ['fd00::1'] }]);
  t.equal(B.certificateName('/nonexistent'), '.');
});

if (!nsMade) t.comment('namespace tests skipped: not root');
