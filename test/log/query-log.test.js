import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import Ajv from 'ajv';
import { QueryLog, queryLogSchema, parseInterval, summarizeAnswers } from '../../dist/log/query-log.js';
import { Anonymizer, truncateIPv6, parseIPv6, formatIPv6 } from '../../dist/log/anonymize.js';

function tmpdir(t) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'qlog-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

let seq = 0;
function entry(over = {}) {
  return {
    time: 1700000000000 + seq,
    client: '192.0.2.77',
    clientPort: 40000 + (seq++ % 1000),
    server: '8.8.8.8',
    serverPort: 53,
    transport: 'udp',
    qname: 'www.example.com',
    qtype: 'A',
    rcode: 'NOERROR',
    answers: ['A 192.0.2.1'],
    cache: 'miss',
    upstream: 'https://doh.example/dns-query',
    latencyMs: 12.5,
    ...over,
  };
}

const readLines = (f) =>
  fs
    .readFileSync(f, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

t.test('writes JSON lines with all fields', async (t) => {
  const d = tmpdir(t);
  const f = path.join(d, 'q.log');
  const log = new QueryLog({ mode: 'all', output: f });
  log.write(entry({ filter: { action: 'block', list: 'ads', rule: '||ads.example^', group: 'kids' }, cache: 'hit' }));
  log.write(entry({ qname: 'x.example', rcode: 'NXDOMAIN', answers: undefined, upstream: undefined }));
  await log.close();
  const lines = readLines(f);
  t.equal(lines.length, 2);
  t.same(lines[0].filter, { action: 'block', list: 'ads', rule: '||ads.example^', group: 'kids' });
  t.equal(lines[0].server, '8.8.8.8');
  t.equal(lines[0].serverPort, 53);
  t.equal(lines[0].cache, 'hit');
  t.equal(lines[0].latencyMs, 12.5);
  t.notOk('answers' in lines[1]);
  t.notOk('upstream' in lines[1]);
  t.same(log.stats, { written: 2, dropped: 0, errors: 0, rotations: 0, queued: 0 });
});

t.test('mode errors logs only non NOERROR/NXDOMAIN; off logs nothing', async (t) => {
  const d = tmpdir(t);
  const f = path.join(d, 'q.log');
  const log = new QueryLog({ mode: 'errors', output: f });
  for (const rcode of ['NOERROR', 'NXDOMAIN', 'SERVFAIL', 'REFUSED', 'FORMERR']) log.write(entry({ rcode }));
  await log.close();
  t.same(
    readLines(f).map((l) => l.rcode),
    ['SERVFAIL', 'REFUSED', 'FORMERR'],
  );
  const off = new QueryLog({ mode: 'off', output: path.join(d, 'off.log') });
  off.write(entry({ rcode: 'SERVFAIL' }));
  await off.close();
  t.notOk(fs.existsSync(path.join(d, 'off.log')));
  t.equal(off.stats.written, 0);
});

t.test('size rotation honours keep', async (t) => {
  const d = tmpdir(t);
  const f = path.join(d, 'q.log');
  const log = new QueryLog({ mode: 'all', output: f, rotate: { maxBytes: 1000, keep: 3 } });
  for (let i = 0; i < 60; i++) {
    log.write(entry({ qname: `n${i}.example` }));
    await log.flush(); // one entry per batch so each rotation decision is per line
  }
  await log.close();
  const files = fs.readdirSync(d).sort();
  t.same(files, ['q.log', 'q.log.1', 'q.log.2', 'q.log.3']);
  for (const x of files) t.ok(fs.statSync(path.join(d, x)).size <= 1000, `${x} <= maxBytes`);
  t.ok(log.stats.rotations >= 5, `rotations ${log.stats.rotations}`);
  // newest entries are in q.log, q.log.1 holds the ones just before
  const cur = readLines(f);
  const prev = readLines(`${f}.1`);
  t.equal(cur[cur.length - 1].qname, 'n59.example');
  const lastPrev = Number(prev[prev.length - 1].qname.match(/\d+/)[0]);
  const firstCur = Number(cur[0].qname.match(/\d+/)[0]);
  t.equal(lastPrev + 1, firstCur, 'contiguous across rotation');
  t.equal(log.stats.written, 60);
});

t.test('time rotation with injected clock', async (t) => {
  const d = tmpdir(t);
  const f = path.join(d, 'q.log');
  let now = Date.UTC(2024, 0, 1, 10, 0, 0);
  const log = new QueryLog({ mode: 'all', output: f, rotate: { interval: '1h', keep: 2 } }, { now: () => now });
  log.write(entry({ qname: 'h10a.example' }));
  await log.flush();
  now += 30 * 60000; // 10:30 same period
  log.write(entry({ qname: 'h10b.example' }));
  await log.flush();
  t.equal(log.stats.rotations, 0);
  now += 31 * 60000; // 11:01
  log.write(entry({ qname: 'h11.example' }));
  await log.flush();
  t.equal(log.stats.rotations, 1);
  now += 3600000; // 12:01
  log.write(entry({ qname: 'h12.example' }));
  await log.flush();
  now += 3600000; // 13:01
  log.write(entry({ qname: 'h13.example' }));
  await log.close();
  t.equal(log.stats.rotations, 3);
  t.same(fs.readdirSync(d).sort(), ['q.log', 'q.log.1', 'q.log.2'], 'keep=2');
  t.same(readLines(f).map((l) => l.qname), ['h13.example']);
  t.same(readLines(`${f}.1`).map((l) => l.qname), ['h12.example']);
  t.same(readLines(`${f}.2`).map((l) => l.qname), ['h11.example']);
});

t.test('time rotation: existing file from an earlier period is rotated on first write', async (t) => {
  const d = tmpdir(t);
  const f = path.join(d, 'q.log');
  fs.writeFileSync(f, JSON.stringify(entry({ qname: 'old.example' })) + '\n');
  const old = new Date(Date.UTC(2024, 0, 1, 0, 30));
  fs.utimesSync(f, old, old);
  const log = new QueryLog({ mode: 'all', output: f, rotate: { interval: '1d' } }, { now: () => Date.UTC(2024, 0, 2, 8, 0) });
  log.write(entry({ qname: 'new.example' }));
  await log.close();
  t.equal(log.stats.rotations, 1);
  t.same(readLines(`${f}.1`).map((l) => l.qname), ['old.example']);
  t.same(readLines(f).map((l) => l.qname), ['new.example']);
});

t.test('keep 0 discards rotated file', async (t) => {
  const d = tmpdir(t);
  const f = path.join(d, 'q.log');
  const log = new QueryLog({ mode: 'all', output: f, rotate: { maxBytes: 300, keep: 0 } });
  for (let i = 0; i < 10; i++) {
    log.write(entry());
    await log.flush();
  }
  await log.close();
  t.same(fs.readdirSync(d), ['q.log']);
  t.ok(log.stats.rotations > 0);
});

t.test('anonymisation', async (t) => {
  t.test('truncate v4/v6 defaults', async (t) => {
    const a = new Anonymizer({ mode: 'truncate' });
    t.equal(a.apply('192.0.2.77'), '192.0.2.0');
    t.equal(a.apply('2001:db8:1234:5678:9abc::1'), '2001:db8:1234:5600::');
    t.equal(a.apply('::ffff:198.51.100.9'), '::ffff:198.51.100.0');
    t.equal(a.apply('fe80::1%eth0'), 'fe80::');
    t.equal(a.apply('not-an-ip'), 'not-an-ip');
  });
  t.test('truncate custom prefixes', async (t) => {
    const a = new Anonymizer({ mode: 'truncate', v4Prefix: 16, v6Prefix: 48 });
    t.equal(a.apply('192.0.2.77'), '192.0.0.0');
    t.equal(a.apply('2001:db8:1234:5678::1'), '2001:db8:1234::');
    const b = new Anonymizer({ mode: 'truncate', v4Prefix: 20, v6Prefix: 60 });
    t.equal(b.apply('10.1.255.1'), '10.1.240.0');
    t.equal(b.apply('2001:db8:1234:56ff::1'), '2001:db8:1234:56f0::');
  });
  t.test('ipv6 parse/format', async (t) => {
    t.same(parseIPv6('::1'), [0, 0, 0, 0, 0, 0, 0, 1]);
    t.same(parseIPv6('1::'), [1, 0, 0, 0, 0, 0, 0, 0]);
    t.same(parseIPv6('::ffff:1.2.3.4'), [0, 0, 0, 0, 0, 0xffff, 0x102, 0x304]);
    t.equal(parseIPv6('1.2.3.4'), null);
    t.equal(formatIPv6([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1]), '2001:db8::1:0:0:1');
    t.equal(formatIPv6([1, 0, 2, 0, 3, 0, 4, 0]), '1:0:2:0:3:0:4:0');
    t.equal(truncateIPv6('2001:db8::1', 128), '2001:db8::1');
    t.equal(truncateIPv6('2001:db8::1', 0), '::');
  });
  t.test('hash stable with salt, different without', async (t) => {
    const a1 = new Anonymizer({ mode: 'hash', salt: 's3cret' });
    const a2 = new Anonymizer({ mode: 'hash', salt: 's3cret' });
    const b = new Anonymizer({ mode: 'hash', salt: 'other' });
    const n1 = new Anonymizer({ mode: 'hash' });
    const n2 = new Anonymizer({ mode: 'hash' });
    const h = a1.apply('192.0.2.77');
    t.match(h, /^[0-9a-f]{16}$/);
    t.equal(a2.apply('192.0.2.77'), h, 'same salt, same hash');
    t.not(a1.apply('192.0.2.78'), h, 'different address, different hash');
    t.not(b.apply('192.0.2.77'), h, 'different salt, different hash');
    t.not(n1.apply('192.0.2.77'), n2.apply('192.0.2.77'), 'no salt: random per instance');
    t.equal(n1.apply('2001:db8::1'), n1.apply('2001:db8::1'), 'stable within instance');
  });
  t.test('applied to client only in the log', async (t) => {
    const d = tmpdir(t);
    const f = path.join(d, 'q.log');
    const log = new QueryLog({ mode: 'all', output: f, anonymize: { mode: 'truncate' } });
    log.write(entry({ client: '203.0.113.99', server: '203.0.113.53' }));
    log.write(entry({ client: '2001:db8:aaaa:bbbb:cccc::9', server: '2001:db8::53' }));
    await log.close();
    const [l1, l2] = readLines(f);
    t.equal(l1.client, '203.0.113.0');
    t.equal(l1.server, '203.0.113.53');
    t.equal(l2.client, '2001:db8:aaaa:bb00::');
    t.equal(l2.server, '2001:db8::53');
    const hlog = new QueryLog({ mode: 'all', output: path.join(d, 'h.log'), anonymize: { mode: 'hash', salt: 'x' } });
    hlog.write(entry({ client: '203.0.113.99' }));
    await hlog.close();
    t.equal(readLines(path.join(d, 'h.log'))[0].client, new Anonymizer({ mode: 'hash', salt: 'x' }).apply('203.0.113.99'));
  });
  t.end();
});

t.test('burst beyond bufferEntries is dropped and counted, write() never throws', async (t) => {
  const d = tmpdir(t);
  const log = new QueryLog({ mode: 'all', output: path.join(d, 'q.log'), bufferEntries: 10 });
  for (let i = 0; i < 100; i++) log.write(entry());
  t.equal(log.stats.queued, 10);
  t.equal(log.stats.dropped, 90);
  t.doesNotThrow(() => log.write(/** @type any */ (null)));
  t.doesNotThrow(() => log.write(entry({ answers: { toJSON() { throw new Error('boom'); } } })));
  await log.close();
  t.equal(log.stats.written, 10);
});

t.test('stalled writer (FIFO with a stopped reader): bounded queue, drops counted, recovers', { skip: !hasMkfifo() && 'mkfifo not available' }, async (t) => {
  const d = tmpdir(t);
  const fifo = path.join(d, 'q.fifo');
  execFileSync('mkfifo', [fifo]);
  const out = path.join(d, 'sink.txt');
  const outFd = fs.openSync(out, 'w');
  const reader = spawn('cat', [fifo], { stdio: ['ignore', outFd, 'ignore'] });
  fs.closeSync(outFd);
  t.teardown(() => {
    try {
      reader.kill('SIGKILL');
    } catch {}
  });
  const log = new QueryLog({ mode: 'all', output: fifo, bufferEntries: 10 });
  // let the reader open the FIFO and the writer open its end
  log.write(entry({ qname: 'first.example' }));
  await log.flush();
  t.equal(log.stats.written, 1);
  // stop the reader: the pipe fills up and the writer's fs write blocks
  const catPid = reader.pid;
  t.ok(catPid > 0, 'reader pid');
  process.kill(catPid, 'SIGSTOP');
  // fill the pipe buffer (64 KiB) and then some; nothing here may block
  const big = 'x'.repeat(2000);
  let total = 1;
  let rounds = 0;
  for (let round = 0; round < 60; round++) {
    for (let i = 0; i < 10; i++) {
      log.write(entry({ qname: `${big}.example` }));
      total++;
    }
    // The event loop turns between rounds: a blocking write would stop it for good (the reader is
    // stopped), so reaching the end at all is the property, whatever the machine's speed.
    await new Promise((r) => setTimeout(r, 5));
    rounds++;
  }
  t.equal(rounds, 60, 'all 600 writes returned and the event loop kept turning');
  t.match(fs.readFileSync(`/proc/${catPid}/stat`, 'utf8'), /^\d+ \([^)]*\) T /, 'while the reader was still stopped');
  t.ok(log.stats.dropped > 0, `dropped ${log.stats.dropped}`);
  t.ok(log.stats.queued <= 10, `queue bounded (${log.stats.queued})`);
  process.kill(catPid, 'SIGCONT');
  await log.close();
  t.equal(log.stats.errors, 0);
  t.equal(log.stats.written + log.stats.dropped, total, 'every entry is either written or counted as dropped');
  // close() closed the write end: the reader sees EOF and exits by itself
  await new Promise((r) => (reader.exitCode !== null ? r() : reader.on('exit', r)));
  const got = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean).length;
  t.equal(got, log.stats.written, 'reader received exactly the written entries');
});

t.test('write errors are counted, never thrown: /dev/full (ENOSPC)', { skip: !fs.existsSync('/dev/full') && '/dev/full missing' }, async (t) => {
  const errs = [];
  const log = new QueryLog({ mode: 'all', output: '/dev/full' }, { onError: (e) => errs.push(e.code) });
  log.write(entry());
  log.write(entry());
  await log.flush();
  t.equal(log.stats.errors, 1);
  t.equal(log.stats.dropped, 2);
  t.equal(log.stats.written, 0);
  t.same(errs, ['ENOSPC']);
  // while failing (back-off), further entries are dropped immediately
  log.write(entry());
  t.equal(log.stats.dropped, 3);
  t.equal(log.stats.queued, 0);
  // after the back-off it tries again (and fails again)
  log.resetBackoff();
  log.write(entry());
  await log.flush();
  t.equal(log.stats.errors, 2);
  await log.close();
});

t.test('write errors: directory removed, then recreated -> recovers', async (t) => {
  const d = tmpdir(t);
  const sub = path.join(d, 'sub');
  fs.mkdirSync(sub);
  const f = path.join(sub, 'q.log');
  let now = 1e12;
  const log = new QueryLog({ mode: 'all', output: f, rotate: { maxBytes: 200 } }, { now: () => now });
  log.write(entry());
  await log.flush();
  t.equal(log.stats.written, 1);
  fs.rmSync(sub, { recursive: true });
  // next batch triggers a size rotation, which fails because the directory is gone
  log.write(entry());
  await log.flush();
  t.equal(log.stats.errors, 1);
  t.equal(log.stats.dropped, 1);
  now += 60000; // past the back-off
  fs.mkdirSync(sub);
  log.write(entry({ qname: 'after.example' }));
  await log.close();
  t.equal(log.stats.written, 2);
  t.same(readLines(f).map((l) => l.qname), ['after.example']);
});

t.test('stdout output', async (t) => {
  const script = `
    import { QueryLog } from ${JSON.stringify(new URL('../../dist/log/query-log.js', import.meta.url).href)};
    const log = new QueryLog({ mode: 'all', output: 'stdout', anonymize: { mode: 'truncate' } });
    for (let i = 0; i < 3; i++) log.write({ time: i, client: '10.9.8.7', clientPort: 1, server: '1.1.1.1', serverPort: 53, transport: 'tcp', qname: 'q' + i, qtype: 'AAAA', rcode: 'NOERROR', cache: 'none', latencyMs: 1 });
    await log.close();
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script]).toString();
  const lines = out.trim().split('\n').map((l) => JSON.parse(l));
  t.same(lines.map((l) => l.qname), ['q0', 'q1', 'q2']);
  t.equal(lines[0].client, '10.9.8.0');
});

t.test('schema', async (t) => {
  const ajv = new Ajv.default({ useDefaults: true, strict: true });
  const validate = ajv.compile(queryLogSchema);
  const cfg = { output: '/var/log/dns-tproxy/query.log', rotate: { maxBytes: 1e8, interval: '1d' }, anonymize: { mode: 'truncate' } };
  t.ok(validate(cfg), JSON.stringify(validate.errors));
  t.equal(cfg.mode, 'all');
  t.equal(cfg.bufferEntries, 10000);
  t.equal(cfg.rotate.keep, 5);
  t.equal(cfg.anonymize.v4Prefix, 24);
  t.equal(cfg.anonymize.v6Prefix, 56);
  t.notOk(validate({ mode: 'verbose' }));
  t.notOk(validate({ rotate: { interval: 'daily' } }));
  t.notOk(validate({ anonymize: { mode: 'truncate', v4Prefix: 33 } }));
  t.notOk(validate({ bogus: 1 }));
  t.equal(parseInterval('1h'), 3600000);
  t.equal(parseInterval('1d'), 86400000);
  t.equal(parseInterval('30'), 30000);
  t.equal(parseInterval('x'), null);
});

t.test('summarizeAnswers', async (t) => {
  t.same(
    summarizeAnswers([
      { type: 'CNAME', data: 'x.example' },
      { type: 'A', data: '192.0.2.1' },
      { type: 'MX', data: { preference: 10, exchange: 'mx.example' } },
      { type: 'TXT', data: [Buffer.from('hello'), Buffer.from('world')] },
      { type: 'OPT', data: [] },
    ]),
    ['CNAME x.example', 'A 192.0.2.1', 'MX 10 mx.example', 'TXT hello world'],
  );
  t.same(summarizeAnswers(undefined), []);
});

function hasMkfifo() {
  try {
    execFileSync('sh', ['-c', 'command -v mkfifo && command -v cat']);
    return true;
  } catch {
    return false;
  }
}
