// Static checks of the container packaging (docker itself is not available in CI).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

t.test('compose.yaml', async (t) => {
  const doc = YAML.parse(readFileSync(join(ROOT, 'deploy/compose.yaml'), 'utf8'));
  const svc = doc.services['dns-tproxy'];
  t.equal(svc.network_mode, 'host');
  t.same(svc.cap_drop, ['ALL']);
  for (const cap of ['NET_ADMIN', 'NET_RAW']) t.ok(svc.cap_add.includes(cap), cap);
  t.ok(svc.restart);
  t.ok(svc.volumes.some((v) => v.endsWith(':/etc/dns-tproxy:ro')), 'config volume');
  t.equal(svc.build.dockerfile, 'deploy/Dockerfile');
});

t.test('Dockerfile', async (t) => {
  const text = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8');
  const from = [...text.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
  t.same(from, ['node:20-bookworm', 'node:20-bookworm-slim']);
  t.match(text, /npm ci/);
  t.match(text, /npm prune --omit=dev/);
  t.match(text, /apt-get install -y --no-install-recommends nftables iproute2/);
  for (const p of ['dist/', 'node_modules/', 'native/lib/', 'native/build/Release/\\*\\.node', 'package\\.json']) {
    t.match(text, new RegExp(`^COPY --from=build \\S*${p}`, 'm'), p);
  }
  const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n');
  for (const p of ['node_modules', 'dist', '.git']) t.ok(ignore.includes(p), `.dockerignore ${p}`);
});
