// The bypass stage alone, with a fake `next` and a recording `respond`: canaries, listed hostnames,
// DDR (RFC 9462), log/off modes and per-group overrides.
import t from 'tap';
import { BypassStage, CANARIES, DDR_NAME, svcbRdata } from '../../dist/pipeline/bypass-stage.js';
import { ctxFor, decodeAnswer, query } from '../helpers.js';

function harness(opts = {}) {
  const answered = [], passed = [], attempts = [];
  const stage = new BypassStage((ctx) => answered.push(decodeAnswer(ctx)), {
    mode: 'block', endpoints: [], onAttempt: (ctx, kind, name, blocked) => attempts.push({ kind, name, blocked }), ...opts,
  });
  const run = (name, type = 'A', edns = true) => {
    const ctx = ctxFor(query(name, type, { edns }));
    stage.query(ctx, (c) => passed.push(c));
    return ctx;
  };
  return { stage, answered, passed, attempts, run };
}

/** A query with a raw qtype (dns-packet has no SVCB). */
function rawTypeQuery(name, qtype) {
  const q = query(name, 'A', { edns: true });
  const off = 12 + name.split('.').reduce((a, l) => a + l.length + 1, 0) + 1;
  q.writeUInt16BE(qtype, off);
  return q;
}

/** SvcParams of an SVCB rdata as { key: Buffer }, plus priority and target. */
function parseSvcb(rd) {
  const priority = rd.readUInt16BE(0);
  let p = 2;
  const labels = [];
  while (rd[p] !== 0) { labels.push(rd.subarray(p + 1, p + 1 + rd[p]).toString('latin1')); p += rd[p] + 1; }
  p++;
  const params = {};
  let last = -1;
  while (p < rd.length) {
    const k = rd.readUInt16BE(p), l = rd.readUInt16BE(p + 2);
    if (k <= last) throw new Error('SvcParams out of order');
    last = k;
    params[k] = rd.subarray(p + 4, p + 4 + l);
    p += 4 + l;
  }
  return { priority, target: labels.join('.') || '.', params };
}

t.test('canaries get NXDOMAIN with EDE 15, counted and reported', async (t) => {
  const h = harness();
  for (const c of CANARIES) h.run(c);
  t.equal(h.answered.length, 3);
  for (const a of h.answered) {
    t.equal(a.rcode, 'NXDOMAIN');
    t.equal(a.authorities[0].type, 'SOA');
    const ede = a.additionals.find((x) => x.type === 'OPT').options.find((o) => o.code === 15);
    t.equal(ede.data.readUInt16BE(0), 15, 'EDE 15 Blocked');
  }
  t.equal(h.stage.canaryAnswers, 3);
  t.same(h.attempts.map((x) => x.kind), ['canary', 'canary', 'canary']);
  t.equal(h.passed.length, 0);
  // Neighbours of the canaries are ordinary names; case (0x20) does not hide a canary.
  h.run('www.use-application-dns.net');
  h.run('icloud.com');
  t.equal(h.passed.length, 2);
  h.run('USE-Application-DNS.net');
  t.equal(h.answered.length, 4);
});

t.test('listed hostnames and their subdomains are blocked; others pass; case does not matter', async (t) => {
  const h = harness();
  h.stage.setNames(['dns.example-doh.test', 'doh.public.test.']);
  h.run('dns.example-doh.test');
  h.run('DNS.Example-DOH.test', 'AAAA');
  h.run('a.b.doh.public.test', 'HTTPS');
  h.run('example-doh.test');
  h.run('other.test');
  t.same(h.answered.map((a) => a.rcode), ['NXDOMAIN', 'NXDOMAIN', 'NXDOMAIN']);
  t.equal(h.passed.length, 2);
  t.equal(h.stage.nameBlocks, 3);
  t.same(h.attempts.map((x) => x.name), ['dns.example-doh.test', 'dns.example-doh.test', 'a.b.doh.public.test']);
  t.equal(h.passed[0].decision, null, 'passed queries carry no decision');
  t.equal(h.stage.nameCount, 2);
});

t.test('log mode counts and reports but answers nothing itself', async (t) => {
  const h = harness({ mode: 'log' });
  h.stage.setNames(['dns.example-doh.test']);
  h.run('use-application-dns.net');
  h.run('dns.example-doh.test');
  t.equal(h.answered.length, 0);
  t.equal(h.passed.length, 2);
  t.equal(h.stage.logged, 2);
  t.same(h.attempts.map((x) => x.blocked), [false, false]);
});

t.test('a group override wins over the global mode', async (t) => {
  const modes = { '10.0.0.5': 'off', '10.0.0.6': 'log' };
  let client = '';
  const h = harness({ groupMode: () => modes[client] ?? null });
  client = '10.0.0.5'; h.run('mask.icloud.com');
  client = '10.0.0.6'; h.run('mask.icloud.com');
  client = '10.0.0.7'; h.run('mask.icloud.com');
  t.equal(h.passed.length, 2);
  t.equal(h.answered.length, 1);
  t.same(h.attempts.map((x) => x.blocked), [false, true], 'off is not even reported; log is');
});

t.test('DDR: SVCB records for our DoT and DoH listeners', async (t) => {
  const h = harness({
    ddrTarget: 'gw.lan.test',
    endpoints: [{ alpn: 'dot', port: 853, v4: ['192.0.2.1'], v6: ['2001:db8::1'] }, { alpn: 'h2', port: 8443, v4: ['192.0.2.1'], v6: [] }],
  });
  const ctx = ctxFor(rawTypeQuery(DDR_NAME, 64));
  h.stage.query(ctx, () => t.fail('DDR must not be forwarded'));
  const a = h.answered[0];
  t.equal(a.rcode, 'NOERROR');
  t.equal(a.flag_aa, true);
  t.equal(a.answers.length, 2);
  const dot = parseSvcb(a.answers[0].data), doh = parseSvcb(a.answers[1].data);
  t.equal(dot.priority, 1);
  t.equal(dot.target, 'gw.lan.test');
  t.same([...dot.params[1]], [3, ...Buffer.from('dot')], 'alpn dot');
  t.equal(dot.params[3].readUInt16BE(0), 853);
  t.same([...dot.params[4]], [192, 0, 2, 1]);
  t.equal(dot.params[6].toString('hex'), '20010db8000000000000000000000001');
  t.equal(doh.params[3].readUInt16BE(0), 8443);
  t.match(doh.params[1].toString('latin1'), /h2/);
  t.equal(doh.params[7].toString(), '/dns-query{?dns}');
  t.notOk(doh.params[6], 'no ipv6hint without v6 addresses');
  // Other types at the DDR name: NODATA.
  h.run(DDR_NAME, 'A');
  t.equal(h.answered[1].rcode, 'NOERROR');
  t.equal(h.answered[1].answers.length, 0);
  t.equal(h.answered[1].authorities[0].type, 'SOA');
});

t.test('DDR without encrypted listeners: NODATA', async (t) => {
  const h = harness();
  h.stage.query(ctxFor(rawTypeQuery(DDR_NAME, 64)), () => t.fail('not forwarded'));
  t.equal(h.answered[0].rcode, 'NOERROR');
  t.equal(h.answered[0].answers.length, 0);
});

t.test('answers without EDNS carry no OPT', async (t) => {
  const h = harness();
  h.run('mask-h2.icloud.com', 'A', false);
  t.equal(h.answered[0].additionals.length, 0);
  t.equal(h.answered[0].rcode, 'NXDOMAIN');
});

t.test('svcbRdata: target "." is the root label', async (t) => {
  const r = Buffer.from(svcbRdata(1, '.', { alpn: 'dot', port: 853, v4: [], v6: [] }));
  t.equal(r[2], 0);
});
