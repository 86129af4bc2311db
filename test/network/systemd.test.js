// `systemd-analyze verify` on the shipped unit. verify fails when the ExecStart
// binary is missing, so a temporary copy is verified with /usr/bin/node replaced
// by this test's own node binary when /usr/bin/node does not exist.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const UNIT = join(ROOT, 'deploy/systemd/dns-tproxy.service');
const have = spawnSync('systemd-analyze', ['--version']).status === 0;
if (!have) console.log('# skipping: systemd-analyze not installed');

t.test('systemd-analyze verify', { skip: have ? false : 'systemd-analyze not installed' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dtp-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let text = readFileSync(UNIT, 'utf8');
  if (!existsSync('/usr/bin/node')) text = text.replaceAll('/usr/bin/node', process.execPath);
  const copy = join(dir, 'dns-tproxy.service');
  writeFileSync(copy, text);
  const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const mine = r.stderr.split('\n').filter((l) => l.includes(copy));
  t.same(mine, [], 'no warnings about the unit (unknown keys etc.)');
});

t.test('unit keeps the required settings', async (t) => {
  const text = readFileSync(UNIT, 'utf8');
  for (const line of [
    'Type=exec',
    'ExecStart=/usr/bin/node /opt/dns-tproxy/dist/cli.js run --config /etc/dns-tproxy/config.yaml --manage-network',
    'ExecReload=/bin/kill -HUP $MAINPID',
    'AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE',
    'CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE',
    'NoNewPrivileges=yes',
    'ProtectSystem=strict',
    'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK',
    'MemoryDenyWriteExecute=no',
    'Restart=on-failure',
  ]) {
    t.ok(text.split('\n').includes(line), line);
  }
});
