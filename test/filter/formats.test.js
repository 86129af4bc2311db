import t from 'tap';
import { parseRule, checkRegex } from '../../dist/filter/index.js';
import { engineFrom, verdict } from './fixtures/helpers.js';

t.test('hosts files: blocking IPs, localhost skipped, exact match, inline comments', async (t) => {
  const eng = await engineFrom({
    hosts: [
      '# hosts style',
      '127.0.0.1 localhost',
      '::1 localhost ip6-localhost ip6-loopback',
      '255.255.255.255 broadcasthost',
      '0.0.0.0 ads.example.com',
      '127.0.0.1 Tracker.Example.NET  # comment',
      ':: v6.example.org',
      '::1 v6b.example.org other.example.org',
      '0.0.0.0 one.example two.example\tthree.example',
      '192.0.2.5 real.example.com',
    ].join('\r\n'),
  });
  t.equal(verdict(eng, 'ads.example.com'), 'block');
  t.equal(verdict(eng, 'tracker.example.net'), 'block', 'lower-cased');
  t.equal(verdict(eng, 'v6.example.org'), 'block');
  t.equal(verdict(eng, 'v6b.example.org'), 'block');
  t.equal(verdict(eng, 'other.example.org'), 'block');
  t.equal(verdict(eng, 'three.example'), 'block');
  t.equal(verdict(eng, 'sub.ads.example.com'), 'pass', 'hosts entries are exact by default');
  t.equal(verdict(eng, 'localhost'), 'pass');
  t.equal(verdict(eng, 'real.example.com'), 'pass');
  const s = eng.sources[0];
  t.equal(s.rules, 8);
  t.equal(s.badLines, 0);
  t.equal(s.unsupported, 1, 'non-blocking address counted as unsupported');
  t.match(s.samples[0], { source: 'hosts', line: 10, kind: 'unsupported' });
});

t.test('a hosts line whose comment looks like a cosmetic rule still blocks (fuzz crasher rules-0225cc4bc11a)', async (t) => {
  t.match(parseRule('127.0.0.1 0.0.1 #@#.ad'), { t: 'domain', domains: ['0.0.1'] }, 'the string parser reads it as the fast path does');
  t.match(parseRule('127.0.0.1 ads.example ##banner'), { t: 'domain', domains: ['ads.example'] });
  t.match(parseRule('example.com#@#.ad'), { t: 'unsupported', reason: 'cosmetic rule' }, 'a real cosmetic exception is still unsupported');
  t.match(parseRule('example.com##.banner'), { t: 'unsupported', reason: 'cosmetic rule' });
  const eng = await engineFrom({ hosts: '127.0.0.1 ads.example #@# note\n' });
  t.equal(verdict(eng, 'ads.example'), 'block');
});

t.test('hosts entries can be configured to cover subdomains', async (t) => {
  const eng = await engineFrom({ h: '0.0.0.0 ads.example.com\n' }, { listOpts: { h: { hosts: 'subdomains' } } });
  t.equal(verdict(eng, 'x.ads.example.com'), 'block');
});

t.test('plain domain lists block the domain and its subdomains', async (t) => {
  const eng = await engineFrom({ d: '\uFEFFexample.com\nTrailing.Example.ORG.\n\n  spaced.example  \nbücher.example\n' });
  for (const n of ['example.com', 'a.example.com', 'a.b.example.com', 'trailing.example.org', 'spaced.example', 'xn--bcher-kva.example', 'x.xn--bcher-kva.example']) {
    t.equal(verdict(eng, n), 'block', n);
  }
  for (const n of ['notexample.com', 'com', 'example.co', '']) t.equal(verdict(eng, n), 'pass', n || '(root)');
});

t.test('wildcard *.domain blocks subdomains only', async (t) => {
  const eng = await engineFrom({ w: '*.wild.example\n||*.wild2.example^\n' });
  t.equal(verdict(eng, 'wild.example'), 'pass');
  t.equal(verdict(eng, 'a.wild.example'), 'block');
  t.equal(verdict(eng, 'a.b.wild.example'), 'block');
  t.equal(verdict(eng, 'wild2.example'), 'pass');
  t.equal(verdict(eng, 'a.wild2.example'), 'block');
});

t.test('adblock syntax', async (t) => {
  const eng = await engineFrom({
    a: [
      '[Adblock Plus 2.0]',
      '! comment',
      '# also comment',
      '||ads.example.com^',
      '|exact.example.com^',
      '||noanchor.example',
      '@@||good.ads.example.com^',
      '||aaaa-only.example^$dnstype=AAAA',
      '||not-mx.example^$dnstype=~MX',
      '||ad*.glob.example^',
      'example.org##.banner',
      '||url.example/path',
      '||cosmetic.example^$third-party',
      '||bad-type.example^$dnstype=BOGUS',
    ].join('\n'),
  });
  t.equal(verdict(eng, 'ads.example.com'), 'block');
  t.equal(verdict(eng, 'x.ads.example.com'), 'block');
  t.equal(verdict(eng, 'good.ads.example.com'), 'pass');
  t.equal(verdict(eng, 'x.good.ads.example.com'), 'pass');
  t.equal(verdict(eng, 'exact.example.com'), 'block');
  t.equal(verdict(eng, 'x.exact.example.com'), 'pass');
  t.equal(verdict(eng, 'a.noanchor.example'), 'block');
  t.equal(verdict(eng, 'aaaa-only.example', 1), 'pass');
  t.equal(verdict(eng, 'aaaa-only.example', 28), 'block');
  t.equal(verdict(eng, 'not-mx.example', 15), 'pass');
  t.equal(verdict(eng, 'not-mx.example', 1), 'block');
  t.equal(verdict(eng, 'ads1.glob.example'), 'block');
  t.equal(verdict(eng, 'x.adserver.glob.example'), 'block');
  t.equal(verdict(eng, 'glob.example'), 'pass');
  const s = eng.sources[0];
  t.equal(s.unsupported, 3, 'cosmetic, URL and unknown-modifier rules are unsupported');
  t.equal(s.badLines, 1);
  t.match(s.samples.find((x) => x.kind === 'bad'), { line: 14, reason: /unknown DNS type/ });
  const d = eng.decide('x.ads.example.com', 1, 0);
  t.equal(d.rule, '||ads.example.com^');
  t.equal(d.list, 'a');
  t.equal(eng.decide('aaaa-only.example', 28, 0).rule, '||aaaa-only.example^$dnstype=AAAA');
});

t.test('$badfilter disables a rule from any list', async (t) => {
  const eng = await engineFrom({ a: '||ads.example.com^\n||keep.example^\n/^rx[0-9]\\./\n', b: '||ads.example.com^$badfilter\n/^rx[0-9]\\./$badfilter\n' });
  t.equal(verdict(eng, 'ads.example.com'), 'pass');
  t.equal(verdict(eng, 'keep.example'), 'block');
  t.equal(verdict(eng, 'rx1.example'), 'pass');
});

t.test('$client modifier: CIDR and group name', async (t) => {
  const eng = await engineFrom(
    { a: "||kids.example^$client=192.168.5.0/24|'Kids'\n||notme.example^$client=~10.0.0.1\n" },
    { groups: [{ name: 'kids', clients: ['10.9.0.0/16'] }] },
  );
  t.equal(eng.needsClientIp, true);
  t.equal(verdict(eng, 'kids.example', 1, 0, '192.168.5.7'), 'block');
  t.equal(verdict(eng, 'kids.example', 1, 0, '192.168.6.7'), 'pass');
  t.equal(verdict(eng, 'kids.example', 1, 1, '10.9.1.1'), 'block', 'matches by group name');
  t.equal(verdict(eng, 'notme.example', 1, 0, '10.0.0.1'), 'pass');
  t.equal(verdict(eng, 'notme.example', 1, 0, '10.0.0.2'), 'block');
  const plain = await engineFrom({ a: '||x.example^\n' });
  t.equal(plain.needsClientIp, false);
});

t.test('regex rules: RE2 semantics, unsupported syntax refused with a reason', async (t) => {
  const eng = await engineFrom({
    r: [
      '/^ad[0-9]+\\./',
      '/(a+)+b/',
      '/(a|a)*c/',
      '/(\\w+\\.)+evil/',
      '/(x)\\1/',
      '/^(?=ad)/',
      '/(?<!x)ad/',
      `/${'a'.repeat(600)}/`,
      '/[unterminated/',
      '/^(.+\\.)?track[0-9]*\\.example$/$important',
      '@@/^ad9\\./',
      '/^ads##x$/',
      '/^(a+){01,}$/',
      '/[a-z]{200}[0-9]{200}/',
    ].join('\n'),
  });
  t.equal(verdict(eng, 'ad12.example.com'), 'block');
  t.equal(verdict(eng, 'ad9.example.com'), 'pass', 'regex exception');
  t.equal(verdict(eng, 'x.track7.example'), 'block');
  // Nested quantifiers are safe with a linear-time engine, so they are accepted and match as written.
  t.equal(verdict(eng, 'aaab.example'), 'block', '(a+)+b');
  t.equal(verdict(eng, 'ac.example'), 'block', '(a|a)*c');
  t.equal(verdict(eng, 'www.evil.example'), 'block', '(\\w+\\.)+evil');
  // A long name of the shape that makes a backtracking engine explode is answered (and not blocked).
  t.equal(verdict(eng, 'a'.repeat(250)), 'pass');
  t.equal(verdict(eng, 'ads##x'), 'block', 'a /regex/ line holding ## is a regex rule, not a cosmetic one');
  const s = eng.sources[0];
  t.equal(s.badLines, 7);
  const reasons = s.samples.map((x) => `${x.line}:${x.reason}`);
  t.match(reasons[0], /^5:.*back-references are not supported/);
  t.match(reasons[1], /^6:.*lookaround is not supported/);
  t.match(reasons[2], /^7:.*lookaround is not supported/);
  t.match(reasons[3], /^8:.*longer than 512/);
  t.match(reasons[4], /^9:.*not supported by the RE2 syntax/);
  t.match(reasons[5], /^13:.*leading zero/);
  t.match(reasons[6], /^14:.*program too large/);
});

t.test('checkRegex unit cases', async (t) => {
  for (const ok of ['^ads?\\.', '^(www\\.)?example\\.com$', '^[a-z0-9-]+\\.tracker\\.', '(foo|bar)\\.example', 'a{2,4}b', '(ab)+c', '(a+)+', '(a|aa)+', 'a{0,9}', '[{01}]', '\\{01\\}']) {
    const r = checkRegex(ok);
    t.ok(r.ok, `${ok} accepted${r.reason ? `: ${r.reason}` : ''}`);
    t.type(r.size, 'number');
  }
  const refused = {
    '': /empty/,
    '(a)\\1': /back-references/,
    '\\k<n>': /back-references|not supported/,
    '(?=a)': /lookaround/,
    '(?!a)': /lookaround/,
    '(?<=a)b': /lookaround/,
    '(?<!a)b': /lookaround/,
    'a{1,1001}': /repeat count above 256/,
    '(a{100}){100}': /not supported by the RE2 syntax.*repeat count/,
    'a{001}': /leading zero/,
    'a{1,02}': /leading zero/,
    '^(a+){00000000000000001,}$': /leading zero/,
    '[a-z]{300}': /repeat count above 256/,
    '[a-z]{250}[0-9]{10}': /program too large/,
    '.{0,100}.{0,100}.{0,100}': /program too large/,
  };
  for (const [src, reason] of Object.entries(refused)) {
    const r = checkRegex(src);
    t.equal(r.ok, false, `${src} refused`);
    t.match(r.reason, reason, src);
  }
});

t.test('malformed lines are counted with file and line, load continues', async (t) => {
  const lines = ['good1.example', 'bad domain with spaces', 'good2.example', '-'.repeat(70) + '.example', 'a..b.example', '||ok.example^', '@@||bad_^%.example^', 'good3.example'];
  for (let i = 0; i < 200; i++) lines.push('bad%name.example');
  for (let i = 0; i < 200; i++) lines.push('in valid');
  lines.push('last.example');
  const eng = await engineFrom({ 'my-list': lines.join('\n') });
  const s = eng.sources[0];
  t.equal(s.rules, 5);
  t.equal(s.badLines, 403);
  t.equal(s.unsupported, 1);
  t.equal(s.samples.length, 100, 'samples are capped');
  t.same(s.samples.slice(0, 4).map((x) => [x.source, x.line]), [['my-list', 2], ['my-list', 4], ['my-list', 5], ['my-list', 7]]);
  t.equal(verdict(eng, 'last.example'), 'block');
  t.equal(verdict(eng, 'good3.example'), 'block');
});

t.test('parseRule for inline config rules', async (t) => {
  t.match(parseRule('example.com'), { t: 'domain', cls: 0, scope: 1, domains: ['example.com'] });
  t.match(parseRule('example.com', { allowSection: true }), { t: 'domain', cls: 1 });
  t.match(parseRule('@@||x.example^$important'), { t: 'domain', cls: 3 });
  t.match(parseRule('! c'), { t: 'skip' });
  t.match(parseRule('x.example$ctag=tv'), { t: 'unsupported' });
});
