// Fuzz targets. Each exec(input) throws on a broken invariant (an exception from the code under test is
// a finding too). Inputs are Buffers; everything about an execution is derived from its input bytes,
// so a saved crasher replays exactly.
//
// Invariants checked:
//   query   readQuery never throws; offsets it reports lie inside the message; the same bytes at another
//           start offset parse identically; the reply written by writeHeaderOnlyReply (as validation and
//           the rate limiter write it) stays inside [off, off+len) of the output, is no longer than
//           header + echoed question + OPT, and decodes with dns-packet when the query parsed.
//   answer  for (query, upstream answer) pairs — including wrong questions, wrong IDs, pointer loops,
//           huge answers: analyzeAnswer never throws and its offsets lie inside the answer; when it
//           accepts, rewriteOpt writes only inside the buffer forward.ts gives it (len + 64), and the
//           result decodes with dns-packet whenever the upstream bytes did, with the same records and
//           the OPT accounted for. The same accepted answers go through PacketCache.store/writeAnswer
//           (fresh and stale): in-bounds writes, the client's ID and question bytes, decodable output.
//   tcp     random chunkings of a framed stream fed to a real TcpListener connection (fake socket):
//           exactly the complete, answerable frames, in order, byte for byte, reach the chain (up to
//           maxQueriesPerConnection), each echoed answer is framed correctly, the connection is
//           forgotten on close, nothing throws.
//   h2      a DoH upstream's byte stream (frames, valid or not) fed to H2Connection through its read
//           callback in random chunks, the read buffer overwritten after every callback as Node's is:
//           nothing throws; every request ends exactly once (answer or failure, counting the destroy at
//           the end); an answer's body never changes after delivery (no view into the read buffer is
//           kept); and the same stream delivered in one piece gives the same outcomes in the same order;
//           each received byte is copied into the partial-frame buffer at most once, and the bytes
//           written stay within our requests plus one per byte received (ACK floods cannot amplify).
//   rules   parseRule and ListParser never throw on any text; a line the fast path turns into exactly
//           one domain gets the same class, scope and domain from parseRule; accepted regexes answer on
//           adversarial names.
//   regex   the /regex/ rule compile + match path: see regex-target.mjs.
import { EventEmitter } from 'node:events';
import dnsPacket from 'dns-packet';
import { ParsedQuery, readQuery, writeHeaderOnlyReply, cacheKey, qnameString } from '../../dist/dns/wire.js';
import { AnswerInfo, analyzeAnswer, rewriteOpt } from '../../dist/dns/answer.js';
import { PacketCache } from '../../dist/cache/packet-cache.js';
import { TcpListener } from '../../dist/listen/tcp.js';
import { H2Connection } from '../../dist/upstream/h2.js';
import { ContextPool } from '../../dist/pipeline/context.js';
import { parseRule, ListParser, S_SUBTREE, S_EXACT } from '../../dist/filter/parse.js';
import { Rng, nameEnd } from './mutate.mjs';
import { execRegex } from './regex-target.mjs';

const ST_OK = 0, ST_DROP = 1, ST_FORMERR = 2;

class Violation extends Error {}
function fail(msg) { throw new Violation(msg); }

function guard(size) {
  const buf = Buffer.alloc(size + 128, 0xa5);
  return {
    buf, off: 64,
    check(n, what) {
      if (!Number.isInteger(n) || n < 0 || n > size) fail(`${what}: returned length ${n} outside [0, ${size}]`);
      for (let i = 0; i < 64; i++) if (buf[i] !== 0xa5) fail(`${what}: wrote before the output offset (byte ${i - 64})`);
      for (let i = 64 + n; i < buf.length; i++) if (buf[i] !== 0xa5) fail(`${what}: wrote past its returned length (at +${i - 64}, len ${n})`);
      return buf.subarray(64, 64 + n);
    },
  };
}

function tryDecode(b) { try { return dnsPacket.decode(b); } catch { return null; } }

/**
 * dns-packet decodes rdata by type and ignores RDLENGTH for many types (an AAAA with RDLENGTH 6, a PTR
 * whose name ends early), after which it reads the next record from the wrong place. Such an upstream
 * answer is not a fair oracle; this returns the decoded packet only when dns-packet consumed exactly
 * RDLENGTH for every record.
 */
function cleanDecode(b) {
  const p = tryDecode(b);
  if (!p || b.length < 12) return null;
  const total = b.readUInt16BE(6) + b.readUInt16BE(8) + b.readUInt16BE(10);
  let o = nameEnd(b, 12);
  if (o < 0) return null;
  o += 4;
  for (let i = 0; i < total; i++) {
    const e = nameEnd(b, o);
    if (e < 0 || e + 10 > b.length) return null;
    const end = e + 10 + b.readUInt16BE(e + 8);
    // Decoded from a view that ends with this record, so rdata names cannot run into the next one.
    try { dnsPacket.answer.decode(b.subarray(0, end), o); } catch { return null; }
    if (dnsPacket.answer.decode.bytes !== end - o) return null;
    o = end;
  }
  return p;
}

// ---- query -----------------------------------------------------------------------------------------
const q = new ParsedQuery();
const q2 = new ParsedQuery();
const FIELDS = ['id', 'flags', 'qnameEnd', 'questionEnd', 'qtype', 'qclass', 'hasQuestion', 'hasOpt', 'udpSize', 'ednsVersion',
  'doBit', 'cdBit', 'optStart', 'optLen', 'hasEcs', 'hasKeepalive'];

function execQuery(input) {
  const len = input.length;
  const st = readQuery(input, 0, len, q);
  if (st === ST_OK) {
    if (!(q.qnameEnd > 12 && q.qnameEnd + 4 === q.questionEnd && q.questionEnd <= len)) fail(`query: bad question offsets ${q.qnameEnd}/${q.questionEnd}/${len}`);
    if (q.hasOpt && !(q.optStart >= q.questionEnd && q.optStart + q.optLen <= len)) fail('query: OPT outside the message');
    if (q.questionEnd - 12 > 255 + 4) fail('query: name longer than 255');
    const k = cacheKey(input, 0, q, 3);
    if (k.length !== 2 + q.questionEnd - 12) fail('query: cache key length');
    qnameString(input, 0, q.qnameEnd);
  }
  // The same message at another offset must parse the same (listeners pass start 0, TCP slices).
  const shifted = Buffer.alloc(len + 7);
  input.copy(shifted, 7);
  const st2 = readQuery(shifted, 7, len, q2);
  if (st2 !== st) fail(`query: status ${st} at offset 0 but ${st2} at offset 7`);
  if (st === ST_OK) for (const f of FIELDS) if (q[f] !== q2[f]) fail(`query: field ${f} differs at offset 7`);
  if (st === ST_DROP) return;
  // As validation answers it (FORMERR without OPT), and as the rate limiter answers parsed queries.
  if (st === ST_FORMERR) q.hasOpt = false;
  const rcode = st === ST_OK ? 5 : 1;
  const ede = len & 1 ? -1 : 15 + (len & 7);
  const max = 12 + (q.hasQuestion ? q.questionEnd - 12 : 0) + (q.hasOpt ? 11 + (ede >= 0 ? 6 + 4 : 0) : 0);
  const g = guard(600);
  const n = writeHeaderOnlyReply(input, 0, q, rcode, g.buf, g.off, (len & 2) !== 0, ede, ede >= 0 ? 'rate' : undefined);
  const out = g.check(n, 'writeHeaderOnlyReply');
  if (n > max) fail(`writeHeaderOnlyReply: ${n} bytes, more than ${max}`);
  if (st === ST_OK) {
    const p = tryDecode(out);
    if (!p) fail('writeHeaderOnlyReply: reply does not decode');
    if (p.id !== q.id || p.type !== 'response' || p.questions.length !== 1) fail('writeHeaderOnlyReply: wrong id/type/question');
    if ((out[3] & 15) !== rcode) fail('writeHeaderOnlyReply: rcode');
  }
}

// ---- answer + cache ---------------------------------------------------------------------------------
const aq = new ParsedQuery();
const info = new AnswerInfo();
const cache = new PacketCache({ maxEntries: 2000, maxBytes: 4 << 20, minTtl: 0, maxTtl: 86400 }, () => 1_000_000);
let corpusQueries = [];
export function setCorpusQueries(list) { corpusQueries = list; }

/** The query an answer is checked against: its own question (so analysis goes deep) or a corpus query. */
export function queryForAnswer(sel, ans) {
  if (sel < 200 && ans.length >= 12) {
    const end = nameEnd(ans, 12);
    if (end > 0 && end + 4 <= ans.length) {
      const head = Buffer.from([ans[0], ans[1], 0x01, sel & 4 ? 0x10 : 0, 0, 1, 0, 0, 0, 0, 0, sel & 1 ? 1 : 0]);
      const opt = sel & 1 ? Buffer.from([0, 0, 41, 4, 0xd0, 0, 0, sel & 2 ? 0x80 : 0, 0, 0, 0]) : Buffer.alloc(0);
      return Buffer.concat([head, ans.subarray(12, end + 4), opt]);
    }
  }
  return corpusQueries.length ? corpusQueries[sel % corpusQueries.length] : Buffer.alloc(0);
}

function sameRecords(a, b, what) {
  if (a.answers.length !== b.answers.length || a.authorities.length !== b.authorities.length) fail(`${what}: record counts changed`);
  for (let i = 0; i < a.answers.length; i++) if (a.answers[i].type !== b.answers[i].type) fail(`${what}: answer ${i} type changed`);
}

function execAnswer(input) {
  if (input.length < 1) return;
  const ans = input.subarray(1);
  const query = queryForAnswer(input[0], ans);
  if (readQuery(query, 0, query.length, aq) !== ST_OK) return;
  const len = ans.length;
  const err = analyzeAnswer(ans, len, query, 0, aq, info);
  if (err !== 0) return;
  for (let i = 0; i < info.ttlCount; i++) if (info.ttlOffsets[i] + 4 > len) fail('analyzeAnswer: TTL offset outside the answer');
  if (info.optStart >= 0 && info.optStart + info.optLen > len) fail('analyzeAnswer: OPT outside the answer');
  const inDec = cleanDecode(ans);
  // forward.ts: out = allocUnsafe(answer.length + 64); rewriteOpt(answer, len, info, q, out, 0)
  const g = guard(len + 64);
  const n = rewriteOpt(ans, len, info, aq, g.buf, g.off);
  const out = g.check(n, 'rewriteOpt');
  const expect = len - (info.optStart >= 0 ? info.optLen : 0) + (aq.hasOpt ? 11 : 0);
  if (n !== expect) fail(`rewriteOpt: ${n} bytes, expected ${expect}`);
  if (inDec) {
    const o = tryDecode(out);
    if (!o) fail('rewriteOpt: the upstream answer decodes but the rewritten one does not');
    sameRecords(inDec, o, 'rewriteOpt');
    const optsIn = inDec.additionals.filter((r) => r.type === 'OPT').length;
    const optsOut = o.additionals.filter((r) => r.type === 'OPT').length;
    if (optsOut !== (aq.hasOpt ? 1 : 0)) fail(`rewriteOpt: ${optsOut} OPT records for a client ${aq.hasOpt ? 'with' : 'without'} EDNS`);
    if (o.additionals.length - optsOut !== inDec.additionals.length - optsIn) fail('rewriteOpt: additional records changed');
  }
  const key = cacheKey(query, 0, aq, 0);
  const e = cache.store(key, ans, len, info);
  if (e < 0) return;
  const wireLen = cache.wireLength(e);
  for (const stale of [false, true]) {
    const cg = guard(wireLen + 64);
    const m = cache.writeAnswer(e, query, 0, aq, cg.buf, cg.off, stale, 1_000_000 + (input[0] * 997));
    const w = cg.check(m, 'PacketCache.writeAnswer');
    const want = wireLen + (aq.hasOpt ? (stale ? 17 : 11) : 0);
    if (m !== want) fail(`PacketCache.writeAnswer: ${m} bytes, expected ${want}`);
    if (w[0] !== query[0] || w[1] !== query[1]) fail('PacketCache.writeAnswer: not the client ID');
    if (!w.subarray(12, aq.questionEnd).equals(query.subarray(12, aq.questionEnd))) fail('PacketCache.writeAnswer: not the client question bytes');
    if (inDec) {
      const o = tryDecode(w);
      if (!o) fail(`PacketCache.writeAnswer (stale=${stale}): the upstream answer decodes but the cached one does not`);
      sameRecords(inDec, o, 'PacketCache.writeAnswer');
    }
  }
}

// ---- tcp framing ------------------------------------------------------------------------------------
class FakeSocket extends EventEmitter {
  remoteAddress = '127.0.0.1';
  remotePort = 40000;
  writableLength = 0;
  destroyed = false;
  readableEnded = false;
  writableEnded = false;
  out = [];
  setNoDelay() { return this; }
  cork() {}
  uncork() {}
  pause() { this.paused = true; return this; }
  resume() { this.paused = false; return this; }
  write(b) { if (this.writableEnded) throw new Error('write after end'); this.out.push(Buffer.from(b)); return true; }
  end() { this.writableEnded = true; return this; }
  destroy() { this.destroyed = true; return this; }
}

const TCP_MAX_QUERIES = 100;
const pool = new ContextPool(64);
let seen = [];
const chain = {
  run(ctx) {
    seen.push(Buffer.from(ctx.buf.subarray(0, ctx.len)));
    tcp.send(ctx, ctx.buf, 0, ctx.len);
    pool.release(ctx);
  },
};
const tcp = new TcpListener('fuzz', '127.0.0.1:0', false, {
  idleTimeoutMs: 10_000, readTimeoutMs: 5_000, maxConnections: 10, maxConnectionsPerClient: 4,
  maxQueriesPerConnection: TCP_MAX_QUERIES, maxWriteBufferBytes: 1 << 20,
}, chain, pool);

function execTcp(input) {
  if (input.length < 4) return;
  const r = new Rng(input.readUInt32LE(0));
  const stream = input.subarray(4);
  // Reference framing.
  const frames = [];
  for (let p = 0; p + 2 <= stream.length;) {
    const l = stream.readUInt16BE(p);
    if (p + 2 + l > stream.length) break;
    frames.push(stream.subarray(p + 2, p + 2 + l));
    p += 2 + l;
  }
  // Every frame counts towards maxQueriesPerConnection; frames no answer can be made for (shorter than
  // a header, or a response) are skipped without reaching the chain.
  const expected = frames.slice(0, TCP_MAX_QUERIES).filter((f) => f.length >= 12 && !(f[2] & 0x80));
  seen = [];
  const s = new FakeSocket();
  tcp.server.emit('connection', s);
  if (tcp.stats.open !== 1) fail(`tcp: ${tcp.stats.open} connections open (leak from an earlier input?)`);
  const maxChunk = 1 + r.int(r.chance(0.3) ? 4 : stream.length + 1);
  for (let p = 0; p < stream.length && !s.destroyed && !s.paused;) {
    const n = Math.min(stream.length - p, 1 + r.int(maxChunk));
    // Copy: the connection may keep a reference to a partial chunk.
    s.emit('data', Buffer.from(stream.subarray(p, p + n)));
    p += n;
  }
  s.emit('close');
  if (tcp.stats.open !== 0) fail('tcp: connection not forgotten after close');
  if (s.destroyed) fail('tcp: connection destroyed on a well-formed (if partial) stream');
  if (seen.length !== expected.length) fail(`tcp: ${seen.length} frames reached the chain, expected ${expected.length}`);
  for (let i = 0; i < expected.length; i++) if (!seen[i].equals(expected[i])) fail(`tcp: frame ${i} differs`);
  const echoed = Buffer.concat(s.out);
  let p = 0, k = 0;
  while (p < echoed.length) {
    const l = echoed.readUInt16BE(p);
    if (!echoed.subarray(p + 2, p + 2 + l).equals(expected[k])) fail(`tcp: answer frame ${k} malformed`);
    p += 2 + l; k++;
  }
  if (k !== expected.length) fail(`tcp: ${k} answer frames for ${expected.length} queries`);
}

// ---- HTTP/2 from a DoH upstream ----------------------------------------------------------------------
/** Stands in for a TLS socket: captures the `onread` callback H2Connection registers. */
class FakeTls extends EventEmitter {
  alpnProtocol = 'h2';
  onread = null;
  destroyed = false;
  written = 0;
  writableLength = 0;
  setNoDelay() { return this; }
  write(b) { this.written += b.length; return true; }
  end(b) { if (b) this.written += b.length; return this; }
  destroySoon() {}
  destroy() { this.destroyed = true; return this; }
}

const H2_READ = 64 * 1024;
const h2ReadBuffer = Buffer.alloc(H2_READ);

/** Runs one connection over `stream` cut into chunks by `nextChunk`; returns what the owner saw. */
function h2Session(stream, requests, nextChunk) {
  const sock = new FakeTls();
  const outcomes = [];
  const kept = [];
  const settled = new Map();
  const settle = (tag, o) => { settled.set(tag, (settled.get(tag) ?? 0) + 1); outcomes.push(o); };
  const conn = new H2Connection({
    host: 'upstream.test', port: 443, secureContext: null, authority: 'upstream.test', path: '/dns-query', maxAnswerBytes: 4096,
    connect: (o) => { sock.onread = o.onread; return sock; },
  }, {
    onResponse(tag, status, contentType, body) {
      kept.push({ body, copy: Buffer.from(body) });
      settle(tag, `${tag} answer ${status} ${contentType} ${body.toString('hex')}`);
    },
    onFailure(tag, why, replayable) { settle(tag, `${tag} failure ${why} ${replayable}`); },
    onConnect() {},
    onClose(error) { outcomes.push(`close ${error}`); },
  });
  sock.emit('secureConnect');
  const deliver = (bytes) => {
    for (let p = 0; p < bytes.length && !conn.closed;) {
      const n = Math.min(bytes.length - p, H2_READ, nextChunk());
      bytes.copy(h2ReadBuffer, 0, p, p + n);
      sock.onread.callback(n, h2ReadBuffer);
      h2ReadBuffer.fill(0xa5, 0, n); // Node reuses the buffer for the next record
      p += n;
    }
  };
  deliver(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])); // the server's SETTINGS: requests may start
  for (let i = 0; i < requests; i++) conn.request(Buffer.from([i, 1, 2, 3]), i);
  deliver(stream);
  const beforeDestroy = outcomes.length;
  conn.destroy(null);
  for (let i = 0; i < requests; i++) {
    const n = settled.get(i) ?? 0;
    if (n !== 1) fail(`h2: request ${i} ended ${n} times`);
  }
  for (const k of kept) if (!k.body.equals(k.copy)) fail('h2: a delivered body changed afterwards (a view into the read buffer)');
  // Bounded work and memory whatever the peer sends (issue #15 §4): every byte is copied into the
  // partial-frame buffer at most once, and what we write is our requests plus at most one byte per byte
  // received (PING and SETTINGS ACKs, RST_STREAM, GOAWAY), never more.
  if (!(conn.partialBytes <= stream.length + 9)) fail(`h2: ${conn.partialBytes} bytes copied into the partial-frame buffer for ${stream.length} received`);
  const allowed = 128 + 160 * requests + stream.length;
  if (sock.written > allowed) fail(`h2: wrote ${sock.written} bytes for ${requests} requests and ${stream.length} bytes received (bound ${allowed})`);
  return outcomes.slice(0, beforeDestroy);
}

function execH2(input) {
  if (input.length < 5) return;
  const r = new Rng(input.readUInt32LE(0));
  const requests = 1 + (input[4] % 8);
  const stream = input.subarray(5);
  const maxChunk = 1 + r.int(r.chance(0.3) ? 8 : stream.length + 1);
  const chunked = h2Session(stream, requests, () => 1 + r.int(maxChunk));
  const whole = h2Session(stream, requests, () => H2_READ);
  if (chunked.join('\n') !== whole.join('\n')) {
    fail(`h2: outcomes depend on how the stream was split: ${JSON.stringify(chunked).slice(0, 300)} vs ${JSON.stringify(whole).slice(0, 300)}`);
  }
}

// ---- rule lists -------------------------------------------------------------------------------------
const ADVERSARIAL = ['a'.repeat(253), `${'a.'.repeat(126)}a`, `${'ab-'.repeat(80)}!`, `${'0'.repeat(200)}x`, `${'-.'.repeat(120)}`, `ad${'1'.repeat(240)}.x`];

function execRules(input) {
  const opts = { hostsScope: input.length & 1 ? S_SUBTREE : S_EXACT, regexMaxLength: 512 };
  const text = input.toString('utf8');
  const lines = text.split('\n');
  for (const line of lines) {
    const r = parseRule(line, opts);
    parseRule(line, { ...opts, allowSection: true });
    // Accepted regexes answer on adversarial names (re2js: linear time; a hang trips the watchdog).
    if (r.t === 'regex') for (const s of ADVERSARIAL) if (typeof r.re.test(s) !== 'boolean') fail(`rules: /${r.pattern}/ did not answer a boolean`);
  }
  const sink = { domains: [], other: 0,
    addDomain(cls, scope, b, s, e) { this.domains.push({ cls, scope, d: Buffer.from(b.subarray(s, e)).toString('latin1') }); },
    addParsed() { this.other++; }, bad() { this.other++; }, unsupported() { this.other++; } };
  const lp = new ListParser(Buffer.from(input), sink, opts);
  const step = 1 + (input.length % 7);
  let guardSteps = 0;
  while (!lp.step(step)) if (++guardSteps > input.length + 10) fail('rules: ListParser.step makes no progress');
  // Differential, one line at a time: the byte fast path against the string parser.
  for (const line of lines) {
    const one = { domains: [], other: 0, addDomain: sink.addDomain, addParsed: sink.addParsed, bad: sink.bad, unsupported: sink.unsupported };
    new ListParser(Buffer.from(line), one, opts).step(10);
    if (one.domains.length !== 1 || one.other !== 0) continue;
    const { cls, scope, d } = one.domains[0];
    const r = parseRule(line, opts);
    if (r.t !== 'domain') fail(`rules: fast path blocks "${d}" for ${JSON.stringify(line)} but parseRule says ${r.t}${r.reason ? ` (${r.reason})` : ''}`);
    if (r.cls !== cls || r.scope !== scope || !r.domains.includes(d)) {
      fail(`rules: fast path and parseRule disagree on ${JSON.stringify(line)}: ${JSON.stringify({ cls, scope, d })} vs ${JSON.stringify({ cls: r.cls, scope: r.scope, domains: r.domains })}`);
    }
  }
}

export const targets = {
  query: { kind: 'dns', exec: execQuery },
  answer: { kind: 'answer', exec: execAnswer },
  tcp: { kind: 'tcp', exec: execTcp },
  rules: { kind: 'rules', exec: execRules },
  h2: { kind: 'h2', exec: execH2 },
  regex: { kind: 'regex', exec: execRegex },
};
export const targetNames = Object.keys(targets);
export { Violation, dnsPacket, qnameString };
