import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { networkRuleset } from '../../dist/network/index.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const INIT = join(ROOT, 'deploy/openwrt/dns-tproxy.init');
const SNIPPET = join(ROOT, 'deploy/openwrt/dns-tproxy.nft');

t.test('procd init script parses', async (t) => {
  const r = spawnSync('sh', ['-n', INIT], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const text = readFileSync(INIT, 'utf8');
  t.match(text, /^#!\/bin\/sh \/etc\/rc\.common/);
  t.match(text, /USE_PROCD=1/);
  t.match(text, /procd_set_param respawn/);
  t.match(text, /procd_send_signal dns-tproxy '\*' HUP/);
});

t.test('fw4 snippet divert rules match the module defaults', async (t) => {
  const snippet = readFileSync(SNIPPET, 'utf8');
  t.notMatch(snippet, /^\s*table\b/m, 'no table wrapper (fw4 includes inside table inet fw4)');
  const tproxyLines = (s) => s.split('\n').map((l) => l.trim()).filter((l) => / tproxy ip6? to :/.test(l));
  t.same(tproxyLines(snippet), tproxyLines(networkRuleset({}, { udpPort: 15353, tcpPort: 15353 })));
});

const canNft = process.getuid?.() === 0 && spawnSync('nft', ['--version']).status === 0;
t.test('fw4 snippet loads inside table inet fw4 (nft -c)', { skip: canNft ? false : 'needs root and nft' }, async (t) => {
  const ns = `dtp-ow-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  t.teardown(() => spawnSync('ip', ['netns', 'del', ns]));
  const input = `table inet fw4 {\n${readFileSync(SNIPPET, 'utf8')}\n}\n`;
  const r = spawnSync('ip', ['netns', 'exec', ns, 'nft', '-c', '-f', '-'], { input, encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
});
