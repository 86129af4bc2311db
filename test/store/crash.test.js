// SIGKILL during ingest: the file opens, passes integrity_check, holds a gap-free prefix of what was
// appended including everything the store had reported as written, and a restart continues it.
import t from 'tap';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../dist/store/sqlite.js';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/ingest-child.js');

t.test('SIGKILL mid-ingest loses at most the unacknowledged tail and never corrupts the file', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'queries.db');
  const p = spawn(process.execPath, [child, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  let lastReported = 0;
  let buf = '';
  const target = 30_000;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child reported only ${lastReported} written records`)), 120_000);
    p.stdout.on('data', (d) => {
      buf += d;
      const lines = buf.split('\n');
      buf = lines.pop();
      for (const l of lines) {
        const m = /^written (\d+)$/.exec(l);
        if (m) lastReported = Number(m[1]);
      }
      if (lastReported >= target) { clearTimeout(timer); resolve(); }
    });
    p.on('exit', (code) => { clearTimeout(timer); reject(new Error(`child exited early (${code})`)); });
  });
  p.removeAllListeners('exit');
  const exited = new Promise((r) => p.once('exit', (code, sig) => r(sig)));
  p.kill('SIGKILL');
  t.equal(await exited, 'SIGKILL', 'the writer was killed');

  const db = new Database(file);
  t.equal(db.pragma('integrity_check', { simple: true }), 'ok', 'integrity_check passes');
  const rows = db.prepare('SELECT n.v AS qname FROM q JOIN name n ON n.id = q.name ORDER BY q.id').all();
  const seqs = rows.map((r) => Number(/^seq-(\d+)\./.exec(r.qname)[1]));
  t.ok(seqs.length >= lastReported, `everything reported written survived (${seqs.length} >= ${lastReported})`);
  t.ok(seqs.every((v, i) => v === i), 'what survived is a gap-free prefix of what was appended');
  const agg = db.prepare('SELECT sum(total) AS n FROM agg_min').get().n;
  t.equal(agg, seqs.length, 'rollups committed in the same transactions as the rows');
  db.close();

  const s = await SqliteStore.open({ path: file, maintainEveryMs: 0 });
  t.equal(await s.count(), seqs.length, 'the store reopens with the history');
  s.append({ time: Date.now(), client: '192.0.2.7', server: '198.51.100.53', serverPort: 53, transport: 'udp', qname: 'after-restart.example', qtype: 'A', kind: 'query', rcode: 'NOERROR', answeredBy: 'upstream' });
  await s.drain();
  t.equal((await s.search({ name: 'after-restart' })).items.length, 1, 'and keeps writing');
  await s.close();
});
