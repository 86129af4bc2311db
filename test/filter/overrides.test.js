// The runtime rules layer (src/filter/overrides.ts) through the real FilterStage and a real
// FilterManager: precedence against the lists, subdomains, groups, pause with a fake clock,
// persistence across a new instance, and the one-field check when nothing is set.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { FilterManager } from '../../dist/filter/index.js';
import { FilterStage } from '../../dist/pipeline/filter-stage.js';
import { RuntimeOverrides, invalidRuleName, normalizeRuleName } from '../../dist/filter/overrides.js';
import { query, ctxFor, dnsPacket } from '../helpers.js';

function fakeClock(start = 1_000_000) {
  const timers = [];
  return {
    t: start,
    timers,
    now() { return this.t; },
    setTimeout(fn, ms) { const h = { fn, at: this.t + ms }; timers.push(h); return h; },
    clearTimeout(h) { const i = timers.indexOf(h); if (i >= 0) timers.splice(i, 1); },
    advance(ms) {
      this.t += ms;
      for (const h of timers.filter((x) => x.at <= this.t)) { timers.splice(timers.indexOf(h), 1); h.fn(); }
    },
  };
}

async function setup(t, overrides) {
  const dir = t.testdir({ 'list.txt': '||ads.example^\n||tracker.example^\n' });
  const cfg = {
    filter: { lists: [{ name: 'main', path: 'list.txt' }], allow: ['allowed.example'] },
    groups: [{ name: 'kids', clients: ['10.9.0.0/16'] }],
    local: ['printer.lan A 192.0.2.9'],
  };
  const mgr = await FilterManager.create(cfg, { stateDir: path.join(dir, 'state'), baseDir: dir });
  t.teardown(() => mgr.close());
  const stage = new FilterStage((ctx) => { ctx.answered = true; }, () => { throw new Error('no forward zones here'); });
  stage.manager = mgr;
  stage.overrides = overrides;
  return { stage, dir };
}

/** 'pass', or the rcode of the synthesized answer plus where it came from. */
function ask(stage, name, client = [192, 168, 1, 2]) {
  const ctx = ctxFor(query(name, 'A', { edns: true }));
  ctx.meta[1] = 4;
  ctx.metaBytes.set(client, 32);
  let passed = false;
  stage.query(ctx, () => { passed = true; });
  if (passed) return 'pass';
  const a = dnsPacket.decode(Buffer.from(ctx.ansBuf.subarray(ctx.ansOff, ctx.ansOff + ctx.ansLen)));
  return `${a.rcode} ${ctx.decision.kind} ${ctx.decision.list ?? ''}`.trim();
}

t.test('no overrides: hot is 0 and the lists decide', async (t) => {
  const ov = new RuntimeOverrides();
  const { stage } = await setup(t, ov);
  t.equal(ov.hot, 0);
  t.equal(ask(stage, 'ads.example'), 'NXDOMAIN block main');
  t.equal(ask(stage, 'sub.ads.example'), 'NXDOMAIN block main');
  t.equal(ask(stage, 'news.example'), 'pass');
});

t.test('block and allow rules: precedence, subdomains, groups', async (t) => {
  const ov = new RuntimeOverrides();
  const { stage } = await setup(t, ov);
  const b = ov.add('block', 'news.example', undefined, 'alice');
  t.equal(b.created, true);
  t.not(ov.hot, 0, 'a rule turns the slow path on');
  t.equal(ask(stage, 'news.example'), 'NXDOMAIN block runtime', 'blocked by the rule');
  t.equal(ask(stage, 'www.news.example'), 'NXDOMAIN block runtime', 'a rule covers subdomains');
  t.equal(ask(stage, 'othernews.example'), 'pass', 'only at label boundaries');
  t.equal(ov.blockedByRule, 2);

  // a block rule beats the lists' allow and local records
  ov.add('block', 'allowed.example', undefined, 'alice');
  t.equal(ask(stage, 'allowed.example'), 'NXDOMAIN block runtime');
  ov.add('block', 'printer.lan', undefined, 'alice');
  t.equal(ask(stage, 'printer.lan'), 'NXDOMAIN block runtime');

  // an allow rule beats the lists' block, and a block rule for the same name
  ov.add('allow', 'ads.example', undefined, 'bob');
  t.equal(ask(stage, 'ads.example'), 'pass');
  t.equal(ask(stage, 'cdn.ads.example'), 'pass', 'allow covers subdomains too');
  t.equal(ask(stage, 'tracker.example'), 'NXDOMAIN block main', 'other list entries still block');
  ov.add('allow', 'news.example', undefined, 'bob');
  t.equal(ask(stage, 'news.example'), 'pass', 'allow beats a block rule');
  t.equal(ov.allowedByRule, 2);

  // group rules apply to members only
  ov.add('block', 'games.example', 'kids', 'carol');
  t.equal(ask(stage, 'games.example', [10, 9, 1, 1]), 'NXDOMAIN block runtime');
  t.equal(ask(stage, 'games.example', [192, 168, 1, 2]), 'pass');

  // the same rule twice is one rule
  const again = ov.add('block', 'games.example', 'kids', 'dave');
  t.equal(again.created, false);
  t.equal(ov.list().filter((r) => r.name === 'games.example').length, 1);

  // removing rules restores the lists' verdicts
  for (const r of ov.list()) t.ok(ov.remove(r.id));
  t.equal(ov.remove('999'), null);
  t.equal(ov.hot, 0);
  t.equal(ask(stage, 'ads.example'), 'NXDOMAIN block main');
  t.equal(ask(stage, 'news.example'), 'pass');
});

t.test('pause: every block off for everyone or one group, resumes by itself', async (t) => {
  const clock = fakeClock();
  const ov = new RuntimeOverrides({ clock });
  const { stage } = await setup(t, ov);
  ov.add('block', 'news.example', undefined, 'alice');
  ov.pause(null, 60);
  t.equal(ask(stage, 'ads.example'), 'pass', 'list block paused');
  t.equal(ask(stage, 'news.example'), 'pass', 'rule block paused');
  t.equal(ask(stage, 'printer.lan'), 'NOERROR local', 'local records still answer');
  t.equal(ov.pauses().length, 1);
  clock.advance(59_000);
  t.equal(ask(stage, 'ads.example'), 'pass', 'still paused before the end');
  clock.advance(1_000);
  t.equal(ask(stage, 'ads.example'), 'NXDOMAIN block main', 'resumed at the end, even before the timer');
  clock.advance(1_000);
  t.same(ov.pauses(), [], 'the timer dropped the pause');
  t.equal(ask(stage, 'news.example'), 'NXDOMAIN block runtime');
  ov.remove(ov.list()[0].id);
  t.equal(ov.hot, 0, 'nothing left: back to the one-field check');

  ov.pause('kids', null);
  t.equal(ask(stage, 'ads.example', [10, 9, 0, 1]), 'pass', 'group paused until resumed');
  t.equal(ask(stage, 'ads.example', [192, 168, 1, 2]), 'NXDOMAIN block main', 'others still blocked');
  clock.advance(86_400_000);
  t.equal(ask(stage, 'ads.example', [10, 9, 0, 1]), 'pass', 'an open-ended pause does not end by itself');
  t.equal(ov.resume('kids'), true);
  t.equal(ask(stage, 'ads.example', [10, 9, 0, 1]), 'NXDOMAIN block main');
  t.equal(ov.resume(null), false, 'nothing to resume');
});

t.test('device assignment moves a client into a group', async (t) => {
  const ov = new RuntimeOverrides({ addressesOf: (id) => (id === 'mac:aa:bb:cc:dd:ee:ff' ? ['192.168.1.50'] : []) });
  const { stage } = await setup(t, ov);
  ov.add('block', 'games.example', 'kids', 'carol');
  t.equal(ask(stage, 'games.example', [192, 168, 1, 50]), 'pass');
  ov.assign('mac:aa:bb:cc:dd:ee:ff', 'kids');
  t.equal(ask(stage, 'games.example', [192, 168, 1, 50]), 'NXDOMAIN block runtime');
  ov.assign('ip:192.168.1.51', 'kids');
  t.equal(ask(stage, 'games.example', [192, 168, 1, 51]), 'NXDOMAIN block runtime');
  t.equal(ask(stage, 'games.example', [192, 168, 1, 52]), 'pass');
  ov.assign('mac:aa:bb:cc:dd:ee:ff', null);
  t.equal(ask(stage, 'games.example', [192, 168, 1, 50]), 'pass');
  ov.close();
});

t.test('state survives a new instance; files are written whole; corrupt files are named', async (t) => {
  const dir = t.testdir();
  const clock = fakeClock();
  const a = new RuntimeOverrides({ stateDir: dir, clock });
  a.load();
  const r1 = a.add('block', 'news.example', undefined, 'alice').rule;
  a.add('allow', 'ads.example', 'kids', 'bob');
  a.remove(r1.id);
  a.add('block', 'video.example', undefined, 'alice');
  a.pause(null, 300);
  a.assign('ip:192.168.1.51', 'kids');
  t.same(fs.readdirSync(dir).sort(), ['client-groups.json', 'pause.json', 'rules.json'], 'no temporary files left');

  const b = new RuntimeOverrides({ stateDir: dir, clock });
  b.load();
  t.same(b.list().map((r) => [r.id, r.action, r.name, r.group, r.createdBy]), [['2', 'allow', 'ads.example', 'kids', 'bob'], ['3', 'block', 'video.example', undefined, 'alice']]);
  t.equal(b.add('block', 'x.example', undefined, 'z').rule.id, '4', 'ids are never reused');
  t.same(b.pauses(), [{ group: null, until: clock.t + 300_000 }]);
  t.same(b.assignmentsList(), { 'ip:192.168.1.51': 'kids' });
  clock.t += 301_000;
  const c = new RuntimeOverrides({ stateDir: dir, clock });
  c.load();
  t.same(c.pauses(), [], 'a pause that ended while stopped is gone');
  a.close(); b.close(); c.close();

  fs.writeFileSync(path.join(dir, 'rules.json'), '{"rules": [');
  t.throws(() => new RuntimeOverrides({ stateDir: dir }).load(), /rules\.json is not valid JSON/);
});

t.test('rule names', async (t) => {
  t.equal(normalizeRuleName(' Ads.Example. '), 'ads.example');
  t.equal(invalidRuleName('ads.example'), null);
  t.match(invalidRuleName('*.ads.example'), /no wildcards/);
  t.match(invalidRuleName('a..b'), /empty label/);
  t.match(invalidRuleName(''), /empty/);
  t.match(invalidRuleName('x'.repeat(64) + '.example'), /63/);
});
