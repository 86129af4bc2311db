import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import dnsPacket from 'dns-packet';
import Ajv from 'ajv';
import { DnstapWriter, DnstapType, dnstapSchema, addressBytes, describeUpstream, parseHostPort, DNSTAP_CONTENT_TYPE } from '../../dist/log/dnstap.js';
import { encodeControl, encodeData, FrameDecoder, FSTRM_CONTROL_ACCEPT, FSTRM_CONTROL_FINISH, FSTRM_CONTROL_READY, FSTRM_CONTROL_START, FSTRM_CONTROL_STOP } from '../../dist/log/fstrm.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, ms = 5000, what = 'condition') {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timeout waiting for ${what}`);
    await sleep(10);
  }
}
function tmpdir(t) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'dnstap-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}
function which(cmd) {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`]).toString().trim() || null;
  } catch {
    return null;
  }
}

const query = (name, id = 7) => dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
const response = (name, id = 7) =>
  dnsPacket.encode({
    type: 'response',
    id,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ type: 'A', name }],
    answers: [{ type: 'A', name, ttl: 300, data: '192.0.2.1' }],
  });

/** Minimal bidirectional Frame Streams reader written for the tests. */
function jsCollector(sockPath) {
  const frames = [];
  const conns = new Set();
  const events = [];
  const server = net.createServer((c) => {
    conns.add(c);
    c.on('close', () => conns.delete(c));
    c.on('error', () => {});
    const dec = new FrameDecoder();
    c.on('data', (chunk) => {
      for (const f of dec.push(chunk)) {
        if ('data' in f) frames.push(DnstapType.toObject(DnstapType.decode(f.data), { enums: String, longs: Number, bytes: Buffer }));
        else {
          events.push(f.control.type);
          if (f.control.type === FSTRM_CONTROL_READY) {
            c.write(encodeControl(FSTRM_CONTROL_ACCEPT, f.control.contentTypes.filter((x) => x === DNSTAP_CONTENT_TYPE)));
          } else if (f.control.type === FSTRM_CONTROL_START) {
            events.push(`start:${f.control.contentTypes.join(',')}`);
          } else if (f.control.type === FSTRM_CONTROL_STOP) {
            c.end(encodeControl(FSTRM_CONTROL_FINISH));
          }
        }
      }
    });
  });
  return {
    frames,
    events,
    listen: () => new Promise((r) => server.listen(sockPath, r)),
    kill: () =>
      new Promise((r) => {
        for (const c of conns) c.destroy();
        server.close(() => r());
      }),
  };
}

t.test('fstrm framing round trip', async (t) => {
  const dec = new FrameDecoder();
  const bytes = Buffer.concat([encodeControl(FSTRM_CONTROL_READY, [DNSTAP_CONTENT_TYPE]), encodeData(Buffer.from('hello')), encodeControl(FSTRM_CONTROL_STOP)]);
  // feed byte by byte to exercise partial frames
  const out = [];
  for (const b of bytes) out.push(...dec.push(Buffer.from([b])));
  t.equal(out.length, 3);
  t.same(out[0].control, { type: FSTRM_CONTROL_READY, contentTypes: [DNSTAP_CONTENT_TYPE] });
  t.equal(out[1].data.toString(), 'hello');
  t.same(out[2].control, { type: FSTRM_CONTROL_STOP, contentTypes: [] });
  // the exact READY bytes: escape, length 34, type 4, field 1 len 22
  t.equal(encodeControl(FSTRM_CONTROL_READY, [DNSTAP_CONTENT_TYPE]).subarray(0, 20).toString('hex'), '00000000' + '00000022' + '00000004' + '00000001' + '00000016');
});

t.test('address and upstream helpers', async (t) => {
  t.same([...addressBytes('192.0.2.1', 4)], [192, 0, 2, 1]);
  t.same([...addressBytes('::ffff:192.0.2.1', 4)], [192, 0, 2, 1]);
  t.same([...addressBytes('192.0.2.1', 6)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 192, 0, 2, 1]);
  t.equal(addressBytes('2001:db8::1', 6).length, 16);
  t.equal(addressBytes('2001:db8::1', 4), undefined);
  t.equal(addressBytes('garbage', 4), undefined);
  let u = describeUpstream('https://[2001:db8::1]/dns-query');
  t.equal(u.protocol, 4);
  t.equal(u.family, 6);
  t.equal(u.port, 443);
  u = describeUpstream('https://1.1.1.1:8443/dns-query');
  t.same([u.protocol, u.family, u.port, [...u.addr]], [4, 4, 8443, [1, 1, 1, 1]]);
  u = describeUpstream('https://dns.example/dns-query');
  t.same([u.protocol, u.family, u.addr, u.port], [4, undefined, undefined, 443]);
  t.equal(describeUpstream('https://dns.example/dns-query', true).protocol, 2, 'dohAsTcp');
  t.same(describeUpstream('tls://9.9.9.9').port, 853);
  t.equal(describeUpstream('tcp://9.9.9.9:5353').protocol, 2);
  u = describeUpstream('192.0.2.53:5300');
  t.same([u.protocol, u.port, [...u.addr]], [1, 5300, [192, 0, 2, 53]]);
  t.same(parseHostPort('[::1]:6000'), { host: '::1', port: 6000 });
  t.same(parseHostPort('127.0.0.1:6000'), { host: '127.0.0.1', port: 6000 });
});

t.test('schema', async (t) => {
  const ajv = new Ajv.default({ useDefaults: true, strict: true });
  const v = ajv.compile(dnstapSchema);
  const cfg = { socket: '/run/dnstap.sock' };
  t.ok(v(cfg), JSON.stringify(v.errors));
  t.equal(cfg.bufferFrames, 10000);
  t.ok(v({ tcp: '127.0.0.1:6000', identity: 'gw1', messages: { forwarderQuery: false } }));
  t.ok(v({ tcp: '[::1]:6000' }));
  t.notOk(v({}), 'needs socket or tcp');
  t.notOk(v({ socket: '/a', tcp: '127.0.0.1:1' }), 'not both');
  t.notOk(v({ tcp: 'nohostport' }));
  t.notOk(v({ socket: '/a', messages: { authQuery: true } }));
});

t.test('JS collector: handshake, message fields, STOP/FINISH', async (t) => {
  const d = tmpdir(t);
  const sock = path.join(d, 'c.sock');
  const col = jsCollector(sock);
  await col.listen();
  const w = new DnstapWriter({ socket: sock, identity: 'gw1', version: 'dns-tproxy 0.1' });
  await until(() => w.stats.connected, 3000, 'connected');
  const tq = 1700000000123.456;
  const q = query('a.example');
  const r = response('a.example');
  w.clientQuery(tq, 4, 'udp', '10.0.0.5', 40000, '8.8.8.8', 53, q);
  w.clientResponse(tq, tq + 10, 6, 'tcp', '2001:db8::5', 40001, '2001:db8::53', 53, q, r);
  w.forwarderQuery(tq + 1, 'https://1.1.1.1/dns-query', q);
  w.forwarderResponse(tq + 1, tq + 9, 'https://dns.example/dns-query', null, r);
  await w.close();
  await until(() => col.frames.length === 4, 3000, '4 frames');
  t.same(col.events.slice(0, 3), [FSTRM_CONTROL_READY, FSTRM_CONTROL_START, `start:${DNSTAP_CONTENT_TYPE}`]);
  t.equal(col.events[col.events.length - 1], FSTRM_CONTROL_STOP);
  const [cq, cr, fq, fr] = col.frames;
  t.equal(cq.type, 'MESSAGE');
  t.equal(cq.identity.toString(), 'gw1');
  t.equal(cq.version.toString(), 'dns-tproxy 0.1');
  t.match(cq.message, { type: 'CLIENT_QUERY', socketFamily: 'INET', socketProtocol: 'UDP', queryPort: 40000, responsePort: 53, queryTimeSec: 1700000000 });
  t.same([...cq.message.queryAddress], [10, 0, 0, 5]);
  t.same([...cq.message.responseAddress], [8, 8, 8, 8]);
  t.equal(cq.message.queryTimeNsec, 123456000);
  t.same(Buffer.from(cq.message.queryMessage), Buffer.from(q));
  t.match(cr.message, { type: 'CLIENT_RESPONSE', socketFamily: 'INET6', socketProtocol: 'TCP', responseTimeSec: 1700000000 });
  t.equal(cr.message.queryAddress.length, 16);
  t.equal(dnsPacket.decode(cr.message.responseMessage).answers[0].data, '192.0.2.1');
  t.match(fq.message, { type: 'FORWARDER_QUERY', socketProtocol: 'DOH', socketFamily: 'INET', responsePort: 443 });
  t.equal(fq.extra.toString(), 'https://1.1.1.1/dns-query');
  t.match(fr.message, { type: 'FORWARDER_RESPONSE', socketProtocol: 'DOH' });
  t.notOk(fr.message.queryMessage, 'null query wire omitted');
  t.same(w.stats, { sent: 4, dropped: 0, reconnects: 0, connected: false });
  await col.kill();
});

t.test('buffers while collector is absent, bound drops, message filter', async (t) => {
  const d = tmpdir(t);
  const sock = path.join(d, 'c.sock');
  const w = new DnstapWriter({ socket: sock, bufferFrames: 5, reconnectMinMs: 20, reconnectMaxMs: 50, messages: { forwarderQuery: false } });
  const q = query('buffered.example');
  for (let i = 0; i < 8; i++) w.clientQuery(Date.now(), 4, 'udp', '127.0.0.1', 1000 + i, '127.0.0.53', 53, q);
  w.forwarderQuery(Date.now(), 'udp://127.0.0.1:53', q); // filtered out, not counted
  t.equal(w.queued, 5);
  t.equal(w.stats.dropped, 3);
  t.equal(w.stats.connected, false);
  await sleep(100); // a few failed connection attempts
  const col = jsCollector(sock);
  await col.listen();
  await until(() => col.frames.length === 5, 3000, 'buffered frames delivered');
  t.same(
    col.frames.map((f) => f.message.queryPort),
    [1000, 1001, 1002, 1003, 1004],
  );
  t.equal(w.stats.reconnects, 0, 'first successful connect is not a reconnect');
  await w.close();
  await col.kill();
});

t.test('JS collector killed and restarted: reconnects with back-off', async (t) => {
  const d = tmpdir(t);
  const sock = path.join(d, 'c.sock');
  let col = jsCollector(sock);
  await col.listen();
  const w = new DnstapWriter({ socket: sock, reconnectMinMs: 20, reconnectMaxMs: 100 });
  await until(() => w.stats.connected, 3000, 'connected');
  w.clientQuery(Date.now(), 4, 'udp', '127.0.0.1', 1, '127.0.0.53', 53, query('before.example'));
  await until(() => col.frames.length === 1, 3000, 'first frame');
  await col.kill();
  fs.rmSync(sock, { force: true });
  await until(() => !w.stats.connected, 3000, 'disconnect noticed');
  w.clientQuery(Date.now(), 4, 'udp', '127.0.0.1', 2, '127.0.0.53', 53, query('during.example'));
  await sleep(150);
  col = jsCollector(sock);
  await col.listen();
  await until(() => w.stats.connected, 3000, 'reconnected');
  w.clientQuery(Date.now(), 4, 'udp', '127.0.0.1', 3, '127.0.0.53', 53, query('after.example'));
  await until(() => col.frames.length === 2, 3000, 'frames after reconnect');
  t.same(
    col.frames.map((f) => dnsPacket.decode(f.message.queryMessage).questions[0].name),
    ['during.example', 'after.example'],
  );
  t.equal(w.stats.reconnects, 1);
  await w.close();
  await col.kill();
});

t.test('slow collector (stops reading): bounded queue, drops counted, resumes', async (t) => {
  const d = tmpdir(t);
  const sock = path.join(d, 'slow.sock');
  let conn;
  let received = 0;
  const server = net.createServer((c) => {
    conn = c;
    c.on('error', () => {});
    const dec = new FrameDecoder();
    c.on('data', (chunk) => {
      for (const f of dec.push(chunk)) {
        if ('data' in f) received++;
        else if (f.control.type === FSTRM_CONTROL_READY) c.write(encodeControl(FSTRM_CONTROL_ACCEPT, [DNSTAP_CONTENT_TYPE]));
        else if (f.control.type === FSTRM_CONTROL_START) c.pause(); // stop reading
        else if (f.control.type === FSTRM_CONTROL_STOP) c.end(encodeControl(FSTRM_CONTROL_FINISH));
      }
    });
  });
  await new Promise((r) => server.listen(sock, r));
  const w = new DnstapWriter({ socket: sock, bufferFrames: 100 });
  await until(() => w.stats.connected && conn, 3000, 'connected');
  const q = query('x'.repeat(60) + '.slow.example');
  let produced = 0;
  const receivedBefore = received;
  for (let round = 0; round < 200 && w.stats.dropped === 0; round++) {
    for (let i = 0; i < 500; i++) {
      w.clientQuery(Date.now(), 4, 'udp', '127.0.0.1', 1, '127.0.0.53', 53, q);
      produced++;
    }
    await sleep(1);
  }
  // Every call returned while the collector read nothing: the producer does not wait for it.
  t.equal(received, receivedBefore, 'the collector read nothing while the producer ran');
  t.ok(conn.isPaused(), 'the collector was paused throughout');
  t.ok(w.stats.dropped > 0, `dropped ${w.stats.dropped} of ${produced}`);
  t.ok(w.queued <= 100, `queue bounded (${w.queued})`);
  conn.resume();
  await until(() => w.queued === 0, 5000, 'queue drained after resume');
  await w.close();
  await until(() => received === w.stats.sent, 5000, 'all sent frames received');
  t.equal(w.stats.sent + w.stats.dropped, produced, 'every frame sent or counted as dropped');
  await new Promise((r) => server.close(r));
});

t.test('TCP transport', async (t) => {
  const got = [];
  const server = net.createServer((c) => {
    const dec = new FrameDecoder();
    c.on('error', () => {});
    c.on('data', (chunk) => {
      for (const f of dec.push(chunk)) {
        if ('data' in f) got.push(DnstapType.decode(f.data));
        else if (f.control.type === FSTRM_CONTROL_READY) c.write(encodeControl(FSTRM_CONTROL_ACCEPT, [DNSTAP_CONTENT_TYPE]));
        else if (f.control.type === FSTRM_CONTROL_STOP) c.end(encodeControl(FSTRM_CONTROL_FINISH));
      }
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const w = new DnstapWriter({ tcp: `127.0.0.1:${server.address().port}` });
  w.clientQuery(Date.now(), 4, 'tcp', '127.0.0.1', 5, '127.0.0.1', 53, query('tcp.example'));
  await until(() => got.length === 1, 3000, 'frame over tcp');
  await w.close();
  await new Promise((r) => server.close(r));
  t.equal(got.length, 1);
});

t.test('no destination configured: inert', async (t) => {
  const w = new DnstapWriter({});
  t.doesNotThrow(() => w.clientQuery(Date.now(), 4, 'udp', 'x', 1, 'y', 2, new Uint8Array(12)));
  await w.close();
  t.equal(w.stats.connected, false);
});

t.test('never throws on bad input', async (t) => {
  const d = tmpdir(t);
  const w = new DnstapWriter({ socket: path.join(d, 'nope.sock'), reconnectMinMs: 20 });
  t.doesNotThrow(() => w.clientQuery(NaN, 4, 'udp', 'not-an-ip', -1, '', 99999, null));
  t.doesNotThrow(() => w.forwarderResponse(Date.now(), Date.now(), '::::', null, new Uint8Array(0)));
  await w.close();
});

// ------------------------------------------------------------------ real reader tools

const capture = which('fstrm_capture');
const ldns = which('dnstap-ldns');
const realSkip = !ldns ? 'dnstap-ldns not installed (apt-get install dnstap-ldns)' : !capture ? 'fstrm_capture not installed (apt-get install fstrm-bin)' : false;
if (realSkip) console.log(`# skipping real-collector tests: ${realSkip}`);

function startCapture(t, sock, out) {
  const p = spawn(capture, ['-t', DNSTAP_CONTENT_TYPE, '-u', sock, '-w', out], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (b) => (err += b));
  const exited = new Promise((r) => p.on('exit', r));
  t.teardown(() => {
    if (p.exitCode === null) p.kill('SIGKILL');
  });
  return {
    proc: p,
    ready: () => until(() => /opened output file/.test(err), 5000, 'fstrm_capture ready'),
    stop: async (sig = 'SIGTERM') => {
      p.kill(sig);
      await exited;
      return err;
    },
  };
}
const ldnsRead = (file, flag) => execFileSync(ldns, ['-r', file, flag]).toString();

t.test('real collector: fstrm_capture + dnstap-ldns', { skip: realSkip }, async (t) => {
  const d = tmpdir(t);
  const sock = path.join(d, 'tap.sock');
  const out1 = path.join(d, 'one.fstrm');
  const out2 = path.join(d, 'two.fstrm');
  let cap = startCapture(t, sock, out1);
  await cap.ready();
  const w = new DnstapWriter({ socket: sock, identity: 'dns-tproxy-test', version: '0.1.0', reconnectMinMs: 20, reconnectMaxMs: 200 });
  await until(() => w.stats.connected, 5000, 'connected to fstrm_capture');
  const now = Date.now();
  w.clientQuery(now, 4, 'udp', '192.0.2.10', 33333, '198.51.100.53', 53, query('www.tap-one.example'));
  w.clientResponse(now, now + 3, 4, 'udp', '192.0.2.10', 33333, '198.51.100.53', 53, query('www.tap-one.example'), response('www.tap-one.example'));
  await until(() => w.stats.sent === 2, 3000, 'sent');
  await sleep(100);
  // stop the collector; the writer must notice and keep retrying
  const log1 = await cap.stop('SIGTERM');
  t.match(log1, /wrote \d+ frames/);
  await until(() => !w.stats.connected, 3000, 'disconnect noticed');
  // frames produced while the collector is down are buffered
  w.clientQuery(Date.now(), 6, 'tcp', '2001:db8::10', 44444, '2001:db8::53', 53, query('www.tap-down.example'));
  await sleep(100);
  cap = startCapture(t, sock, out2);
  await cap.ready();
  await until(() => w.stats.connected, 5000, 'reconnected to restarted fstrm_capture');
  t.equal(w.stats.reconnects, 1);
  w.clientQuery(Date.now(), 4, 'udp', '192.0.2.11', 33334, '198.51.100.53', 53, query('www.tap-two.example'));
  w.forwarderQuery(Date.now(), 'https://9.9.9.9/dns-query', query('www.tap-fwd.example'));
  await w.close(); // STOP, waits for FINISH
  t.equal(w.stats.dropped, 0);
  await cap.stop('SIGTERM');

  const y1 = ldnsRead(out1, '-y');
  t.match(y1, /type: CLIENT_QUERY/);
  t.match(y1, /type: CLIENT_RESPONSE/);
  t.match(y1, /www\.tap-one\.example\./);
  t.match(y1, /identity: "dns-tproxy-test"/);
  t.match(y1, /query_address: "192\.0\.2\.10"/);
  t.match(y1, /response_address: "198\.51\.100\.53"/);
  t.match(y1, /query_port: 33333/);
  t.match(y1, /socket_protocol: UDP/);
  t.match(y1, /192\.0\.2\.1/, 'answer decoded in response_message');

  // second file: the buffered frame, the post-reconnect one, and a DoH forwarder query.
  // dnstap-ldns 0.2.x predates SocketProtocol DOH, so use its quiet mode here.
  const q2 = ldnsRead(out2, '-q');
  t.match(q2, /CQ 2001:db8::10 TCP .*"www\.tap-down\.example\."/);
  t.match(q2, /CQ 192\.0\.2\.11 UDP .*"www\.tap-two\.example\."/);
  t.match(q2, /FQ 9\.9\.9\.9 .*"www\.tap-fwd\.example\."/);
  t.notMatch(q2, /tap-one/);
});

t.test('real collector: SIGKILL collector, dohAsTcp readable by old dnstap-ldns -y', { skip: realSkip }, async (t) => {
  const d = tmpdir(t);
  const sock = path.join(d, 'tap.sock');
  let cap = startCapture(t, sock, path.join(d, 'a.fstrm'));
  await cap.ready();
  const w = new DnstapWriter({ socket: sock, dohAsTcp: true, reconnectMinMs: 20, reconnectMaxMs: 200 });
  await until(() => w.stats.connected, 5000, 'connected');
  await cap.stop('SIGKILL');
  await until(() => !w.stats.connected, 3000, 'disconnect noticed');
  const out = path.join(d, 'b.fstrm');
  cap = startCapture(t, sock, out);
  await cap.ready();
  await until(() => w.stats.connected, 5000, 'reconnected');
  const q = query('fwd.example');
  w.forwarderQuery(Date.now(), 'https://[2001:db8::99]:443/dns-query', q);
  w.forwarderResponse(Date.now(), Date.now() + 4, 'https://[2001:db8::99]:443/dns-query', q, response('fwd.example'));
  await w.close();
  await cap.stop('SIGTERM');
  const y = ldnsRead(out, '-y');
  t.match(y, /type: FORWARDER_QUERY/);
  t.match(y, /type: FORWARDER_RESPONSE/);
  t.match(y, /socket_protocol: TCP/);
  t.match(y, /response_address: "2001:db8::99"/);
  t.match(y, /response_port: 443/);
  t.match(y, /fwd\.example\./);
});

t.test('dnstap-ldns decodes frames captured by the JS collector (no fstrm_capture needed)', { skip: !ldns && 'dnstap-ldns not installed' }, async (t) => {
  const d = tmpdir(t);
  const sock = path.join(d, 'js.sock');
  const raw = [];
  const server = net.createServer((c) => {
    c.on('error', () => {});
    const dec = new FrameDecoder();
    c.on('data', (chunk) => {
      for (const f of dec.push(chunk)) {
        if ('data' in f) raw.push(Buffer.from(f.data));
        else if (f.control.type === FSTRM_CONTROL_READY) c.write(encodeControl(FSTRM_CONTROL_ACCEPT, [DNSTAP_CONTENT_TYPE]));
        else if (f.control.type === FSTRM_CONTROL_STOP) c.end(encodeControl(FSTRM_CONTROL_FINISH));
      }
    });
  });
  await new Promise((r) => server.listen(sock, r));
  const w = new DnstapWriter({ socket: sock, identity: 'js-capture' });
  const now = Date.now();
  w.clientQuery(now, 6, 'udp', '2001:db8::7', 5000, '2001:db8::35', 53, query('js.capture.example'));
  w.clientResponse(now, now + 2, 6, 'udp', '2001:db8::7', 5000, '2001:db8::35', 53, null, response('js.capture.example'));
  await until(() => raw.length === 2, 5000, 'frames');
  await w.close();
  await new Promise((r) => server.close(r));
  // unidirectional Frame Streams file: START(content type), data frames, STOP
  const file = path.join(d, 'js.fstrm');
  fs.writeFileSync(file, Buffer.concat([encodeControl(FSTRM_CONTROL_START, [DNSTAP_CONTENT_TYPE]), ...raw.map((b) => encodeData(b)), encodeControl(FSTRM_CONTROL_STOP)]));
  const y = ldnsRead(file, '-y');
  t.match(y, /identity: "js-capture"/);
  t.match(y, /type: CLIENT_QUERY/);
  t.match(y, /type: CLIENT_RESPONSE/);
  t.match(y, /socket_family: INET6/);
  t.match(y, /query_address: "2001:db8::7"/);
  t.match(y, /js\.capture\.example\./);
});
