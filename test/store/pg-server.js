// A real PostgreSQL for tests and benchmarks: initdb into a temporary directory as user postgres,
// started on a free loopback port with its socket in the same directory. No mock databases.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** Why a PostgreSQL cannot be started here, or null. */
export function pgUnavailable() {
  if (process.getuid?.() !== 0) return 'starting PostgreSQL needs root (to run initdb as user postgres)';
  if (!fs.existsSync(path.join(PG_BIN, 'initdb'))) return `no PostgreSQL binaries in ${PG_BIN} (apt-get install postgresql)`;
  try { execFileSync('id', ['postgres'], { stdio: 'ignore' }); } catch { return 'no "postgres" system user'; }
  return null;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

/** Starts a throwaway server; returns { url, stop() }. */
export async function startPostgres({ log = () => {} } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dtpg-'));
  fs.chmodSync(dir, 0o755);
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  execFileSync('chown', ['-R', 'postgres:postgres', dir]);
  const asPg = (cmd, args, opts = {}) => execFileSync('runuser', ['-u', 'postgres', '--', path.join(PG_BIN, cmd), ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000, ...opts });
  asPg('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const port = await freePort();
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  // Spawned as postgres directly (not through runuser) so that our signals reach the postmaster.
  const proc = spawn(path.join(PG_BIN, 'postgres'), ['-D', data, '-k', dir, '-p', String(port), '-h', '127.0.0.1',
    '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'], { stdio: ['ignore', 'pipe', 'pipe'], uid, gid, cwd: dir });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; log(String(d)); });
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  // Ready when it accepts a connection (bounded wait).
  const until = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`postgres exited: ${stderr}`);
    const ok = await new Promise((r) => { const s = net.connect(port, '127.0.0.1', () => { s.end(); r(true); }); s.on('error', () => r(false)); });
    if (ok) {
      try { asPg('pg_isready', ['-h', '127.0.0.1', '-p', String(port)]); break; } catch { /* starting */ }
    }
    if (Date.now() > until) { proc.kill('SIGKILL'); throw new Error(`postgres did not start: ${stderr}`); }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url, port, dir,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGINT'); // fast shutdown
        await new Promise((r) => { const t = setTimeout(() => { proc.kill('SIGKILL'); r(); }, 10_000); proc.once('exit', () => { clearTimeout(t); r(); }); });
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
