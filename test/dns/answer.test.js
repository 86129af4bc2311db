import t from 'tap';
import { AnswerInfo, analyzeAnswer, rewriteOpt, cacheableTtl } from '../../dist/dns/answer.js';
import { query, answer, parsed, dnsPacket } from '../helpers.js';

const policy = { minTtl: 0, maxTtl: 86400, negativeTtl: 3600, servfailTtl: 5 };

t.test('validates the question and records TTL offsets', async (t) => {
  const qb = query('a.example'); const { q } = parsed(qb);
  const ans = answer('A.EXAMPLE', 'A', [{ type: 'A', name: 'a.example', ttl: 300, data: '192.0.2.1' }, { type: 'A', name: 'a.example', ttl: 60, data: '192.0.2.2' }]);
  const info = new AnswerInfo();
  t.equal(analyzeAnswer(ans, ans.length, qb, 0, q, info), 0, '0x20 case change is fine');
  t.equal(info.ttlCount, 2);
  t.equal(info.minAnswerTtl, 60);
  t.ok(info.optStart > 0);
  const other = answer('b.example', 'A', []);
  t.equal(analyzeAnswer(other, other.length, qb, 0, q, info), 3, 'question mismatch');
  const notResp = Buffer.from(qb);
  t.equal(analyzeAnswer(notResp, notResp.length, qb, 0, q, info), 2, 'not a response');
  const cut = ans.subarray(0, ans.length - 5);
  t.equal(analyzeAnswer(cut, cut.length, qb, 0, q, info), 4, 'truncated RR');
});

t.test('negative answers use the SOA minimum (RFC 2308)', async (t) => {
  const qb = query('nx.example'); const { q } = parsed(qb);
  const soa = { type: 'SOA', name: 'example', ttl: 900, data: { mname: 'ns.example', rname: 'h.example', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 120 } };
  const ans = answer('nx.example', 'A', [], { rcode: 'NXDOMAIN', authorities: [soa] });
  const info = new AnswerInfo();
  t.equal(analyzeAnswer(ans, ans.length, qb, 0, q, info), 0);
  t.equal(info.negativeTtl, 120);
  t.equal(cacheableTtl(info, policy), 120);
  t.equal(cacheableTtl(info, { ...policy, negativeTtl: 30 }), 30, 'capped by negativeTtl');
});

t.test('TTL policy: min/max clamp, SERVFAIL briefly, TC never', async (t) => {
  const info = new AnswerInfo();
  Object.assign(info, { rcode: 0, ancount: 1, minAnswerTtl: 5, truncated: false });
  t.equal(cacheableTtl(info, { ...policy, minTtl: 60 }), 60);
  Object.assign(info, { minAnswerTtl: 999999 });
  t.equal(cacheableTtl(info, policy), 86400);
  Object.assign(info, { rcode: 2 });
  t.equal(cacheableTtl(info, policy), 5);
  Object.assign(info, { rcode: 0, truncated: true });
  t.equal(cacheableTtl(info, policy), 0);
  Object.assign(info, { rcode: 5, truncated: false });
  t.equal(cacheableTtl(info, policy), 0, 'REFUSED is not cached');
});

t.test('rewriteOpt drops the upstream OPT and adds the client one', async (t) => {
  const ans = answer('a.example', 'A', [{ type: 'A', name: 'a.example', ttl: 300, data: '192.0.2.1' }]);
  for (const edns of [false, true]) {
    const qb = query('a.example', 'A', { edns, do: edns }); const { q } = parsed(qb);
    const info = new AnswerInfo();
    analyzeAnswer(ans, ans.length, qb, 0, q, info);
    const out = Buffer.alloc(600);
    const n = rewriteOpt(ans, ans.length, info, q, out, 0);
    const p = dnsPacket.decode(out.subarray(0, n));
    t.equal(p.additionals.filter((a) => a.type === 'OPT').length, edns ? 1 : 0, `OPT only when the client sent one (edns=${edns})`);
    t.equal(p.answers[0].data, '192.0.2.1');
    if (edns) t.ok(p.additionals[0].flags & dnsPacket.DNSSEC_OK, 'DO echoed');
  }
});

t.test('an OPT that is not the last record is refused: cutting it out would break later compression pointers', async (t) => {
  const qb = query('a.example'); const { q } = parsed(qb);
  const encode = (additionals) => dnsPacket.encode({
    type: 'response', id: 0, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ type: 'A', name: 'a.example', class: 'IN' }],
    answers: [{ type: 'A', name: 'a.example', ttl: 60, data: '192.0.2.1' }], additionals,
  });
  const opt = { type: 'OPT', name: '.', udpPayloadSize: 1232 };
  const glue = { type: 'A', name: 'ns.a.example', ttl: 60, data: '192.0.2.53' };
  const info = new AnswerInfo();
  const last = encode([glue, opt]);
  t.equal(analyzeAnswer(last, last.length, qb, 0, q, info), 0, 'OPT last: accepted');
  const middle = encode([opt, glue]);
  t.equal(analyzeAnswer(middle, middle.length, qb, 0, q, info), 4, 'OPT before another additional record: MALFORMED');
});
