import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import dgram from 'node:dgram';
import { startServer, fullConfig, parseExposition } from '../metrics/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const alertsFile = path.join(root, 'deploy/prometheus/alerts.yml');
const alertsTestFile = path.join(root, 'deploy/prometheus/alerts.test.yml');
const dashboardFile = path.join(root, 'deploy/grafana/dns-tproxy.json');

// The metric list and label shapes come from a scrape of a real server (the whole DnsServer on
// loopback with a fake upstream, every metric-exporting part configured), never from a hand copy.
const traffic = await realTraffic();
const scraped = traffic.samples;
const ALLOWED = new Set([...scraped.map((s) => s.name), 'up']);

const FUNCS = new Set(`abs absent absent_over_time avg avg_over_time bottomk ceil changes clamp clamp_max clamp_min count count_over_time
count_values delta deriv exp floor group histogram_quantile holt_winters idelta increase irate label_join label_replace ln log2 log10
max max_over_time min min_over_time predict_linear quantile quantile_over_time rate resets round scalar sort sort_desc sqrt stddev
stdvar sum sum_over_time time timestamp topk vector last_over_time present_over_time
by without on ignoring group_left group_right and or unless bool offset label_values`.split(/\s+/));

/** Return the metric names referenced by a PromQL expression. Throws on identifiers it cannot classify. */
export function metricNames(expr) {
  let s = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // strings
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // range selectors
    .replace(/\$\{?\w+\}?/g, ' '); // grafana variables
  // label lists after by/without/on/ignoring/group_left/group_right
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' $1 ');
  const names = new Set();
  for (const m of s.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const id = m[0];
    if (FUNCS.has(id)) continue;
    if (/^\d/.test(id) || /^[eE]\d*$/.test(id)) continue;
    // label_values(metric, label): the second argument is a label name
    names.add(id);
  }
  return [...names];
}

function which(cmd) {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`]).toString().trim() || null;
  } catch {
    return null;
  }
}
const promtool = which('promtool');
if (!promtool) console.log('# skipping promtool tests: promtool not installed (apt-get install prometheus)');

t.test('promtool check rules', { skip: !promtool && 'promtool not installed' }, async (t) => {
  const out = execFileSync(promtool, ['check', 'rules', alertsFile]).toString();
  t.match(out, /SUCCESS: \d+ rules found/);
});

t.test('promtool test rules (alert unit tests)', { skip: !promtool && 'promtool not installed' }, async (t) => {
  const out = execFileSync(promtool, ['test', 'rules', alertsTestFile], { cwd: path.dirname(alertsTestFile) }).toString();
  t.match(out, /SUCCESS/);
});

t.test('alerts: required alerts, labels, annotations, metric names', async (t) => {
  const doc = YAML.parse(fs.readFileSync(alertsFile, 'utf8'));
  const rules = doc.groups.flatMap((g) => g.rules);
  const names = rules.map((r) => r.alert);
  for (const n of ['UpstreamsDown', 'UpstreamDegraded', 'ServfailRatioHigh', 'DropsHigh', 'ListRefreshStale', 'QueryLogDropping', 'ProcessDown']) {
    t.ok(names.includes(n), `has ${n}`);
  }
  for (const r of rules) {
    t.ok(r.for, `${r.alert} has for:`);
    t.match(r.labels?.severity, /^(critical|warning|info)$/, `${r.alert} severity`);
    t.ok(r.annotations?.summary && r.annotations?.description, `${r.alert} annotations`);
    for (const m of metricNames(r.expr)) t.ok(ALLOWED.has(m), `${r.alert}: known metric ${m}`);
  }
});

function dashboardExprs() {
  const dash = JSON.parse(fs.readFileSync(dashboardFile, 'utf8'));
  const exprs = [];
  const walk = (panels) => {
    for (const p of panels ?? []) {
      for (const tg of p.targets ?? []) exprs.push({ panel: p.title, expr: tg.expr });
      walk(p.panels);
    }
  };
  walk(dash.panels);
  return { dash, exprs };
}

t.test('dashboard: parses, datasource variable, every expr uses known metrics', async (t) => {
  const { dash, exprs } = dashboardExprs();
  t.equal(dash.uid, 'dns-tproxy');
  const vars = dash.templating.list;
  t.ok(vars.some((v) => v.type === 'datasource' && v.query === 'prometheus'), 'datasource variable');
  t.ok(exprs.length >= 20, `${exprs.length} exprs`);
  for (const { panel, expr } of exprs) {
    t.type(expr, 'string', `${panel} has an expr`);
    const ms = metricNames(expr);
    t.ok(ms.length > 0, `${panel}: references a metric`);
    for (const m of ms) t.ok(ALLOWED.has(m), `${panel}: known metric ${m}`);
  }
  for (const v of vars.filter((v) => v.type === 'query')) {
    const q = typeof v.query === 'string' ? v.query : v.query.query;
    const m = /label_values\(\s*([a-zA-Z_:][\w:]*)\s*,/.exec(q);
    t.ok(m && ALLOWED.has(m[1]), `variable ${v.name} uses a known metric`);
  }
  // every panel sits inside the 24-column grid and has a datasource (rows excepted)
  for (const p of dash.panels) {
    t.ok(p.gridPos.x + p.gridPos.w <= 24, `${p.title} fits the grid`);
    if (p.type !== 'row') t.same(p.datasource, { type: 'prometheus', uid: '${datasource}' }, `${p.title} uses the datasource variable`);
  }
  const titles = exprs.map((e) => e.expr).join('\n');
  t.match(titles, /histogram_quantile\(0\.5,/, 'p50');
  t.match(titles, /histogram_quantile\(0\.99,/, 'p99');
});

t.test('dashboard: every expr is valid PromQL (via promtool on a generated rule file)', { skip: !promtool && 'promtool not installed' }, async (t) => {
  const { exprs } = dashboardExprs();
  const rules = exprs.map(({ expr }, i) => ({
    record: `dashboard:expr_${i}`,
    expr: expr.replace(/\$__rate_interval/g, '5m').replace(/\$instance/g, '.*'),
  }));
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'dash-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  const f = path.join(d, 'dash-rules.yml');
  fs.writeFileSync(f, YAML.stringify({ groups: [{ name: 'dashboard', rules }] }));
  const out = execFileSync(promtool, ['check', 'rules', f]).toString();
  t.match(out, new RegExp(`SUCCESS: ${rules.length} rules found`));
});

t.test('metricNames extractor', async (t) => {
  t.same(metricNames('sum by (instance, upstream) (rate(dns_tproxy_upstream_errors_total{x="a{b}"}[5m]))'), ['dns_tproxy_upstream_errors_total']);
  t.same(metricNames('time() - foo_bar > 2 * 86400'), ['foo_bar']);
  t.same(metricNames('a / on (instance) group_left b'), ['a', 'b']);
  t.same(metricNames('histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))'), ['x_bucket']);
});

/**
 * Real traffic through a real server: answered queries (upstream, cache, blocked, local, SERVFAIL),
 * malformed datagrams, upstream timeouts. Returns the scrape and what the test itself sent, so the
 * expectations below come from what happened, not from the scrape they check.
 */
async function realTraffic() {
  const outer = { teardowns: [], teardown(f) { this.teardowns.push(f); } };
  const h = await startServer(outer, fullConfig());
  const sent = { answered: 0, servfail: 0, blocked: 0, malformed: 0 };
  try {
    for (let i = 0; i < 150; i++) if (await h.query(`q${i % 100}.example`)) sent.answered++; // 100 misses, 50 hits
    for (let i = 0; i < 20; i++) {
      const a = await h.query(`fail.${i}.example`);
      if (a) { sent.answered++; if (a.rcode === 'SERVFAIL') sent.servfail++; }
    }
    for (let i = 0; i < 10; i++) if (await h.query('ads.example')) { sent.answered++; sent.blocked++; }
    for (let i = 0; i < 10; i++) if (await h.query('nas.home')) sent.answered++;
    for (let i = 0; i < 2; i++) if (await h.query(`drop.${i}.example`)) sent.answered++; // SERVFAIL after the upstream timeout
    // Malformed: shorter than a DNS header. The validator drops these without an answer.
    const raw = dgram.createSocket('udp4');
    for (let i = 0; i < 3; i++) { raw.send(Buffer.from([1, 2, 3, 4, 5]), h.dnsPort, '127.0.0.1'); sent.malformed++; }
    // The drops are counted once the datagrams are read: wait for the counter (bounded), not for a time.
    let samples = [];
    for (let i = 0; i < 100; i++) {
      samples = parseExposition(await h.scrape());
      if (samples.find((x) => x.name === 'dns_tproxy_dropped_total' && x.labels.reason === 'malformed')?.value >= sent.malformed) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    raw.close();
    return { samples, sent };
  } finally {
    for (const f of outer.teardowns) await f();
  }
}

const INSTANCE = { instance: 'gw1:9153', job: 'dns-tproxy' };
/** Counters grow by (scraped value x SCALE) a minute: the real proportions, at a rate alerts can see. */
const SCALE = 10;
const MINUTES = 40;
const isCounter = (name) => /(_total|_bucket|_count|_sum)$/.test(name);
const seriesText = (name, labels) => `${name}{${Object.entries({ ...labels, ...INSTANCE }).map(([k, v]) => `${k}=${JSON.stringify(String(v))}`).join(', ')}}`;

/** promtool input series: every sample the server exported for the metrics `names`, shaped as scraped. */
function inputSeriesFor(names) {
  const series = [{ series: seriesText('up', {}), values: `1x${MINUTES}` }];
  for (const s of scraped) {
    if (!names.has(s.name)) continue;
    series.push({ series: seriesText(s.name, s.labels), values: isCounter(s.name) ? `0+${s.value * SCALE}x${MINUTES}` : `${s.value}x${MINUTES}` });
  }
  return series;
}

/** The few template forms alerts.yml uses: {{ $labels.x }}, {{ $value }}, {{ $value | humanizePercentage }}. */
/** Writes a promtool rule-test document to a temporary file and asserts `promtool test rules` passes it. */
function assertPromtoolTestPasses(t, fileName, doc) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'promtool-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  const f = path.join(d, fileName);
  fs.writeFileSync(f, YAML.stringify(doc));
  let out;
  try {
    out = execFileSync(promtool, ['test', 'rules', f], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    out = `${e.stdout}${e.stderr}`;
  }
  t.match(out, /SUCCESS/, out);
}

function render(template, labels, value) {
  return template.replace(/\{\{\s*\$labels\.(\w+)\s*\}\}/g, (_, k) => labels[k] ?? '')
    .replace(/\{\{\s*\$value\s*\|\s*humanizePercentage\s*\}\}/g, () => `${+(value * 100).toPrecision(4)}%`)
    .replace(/\{\{\s*\$value\s*\}\}/g, () => String(value));
}

t.test('alert rules evaluated on series shaped as the real server exports them', { skip: !promtool && 'promtool not installed' }, async (t) => {
  const doc = YAML.parse(fs.readFileSync(alertsFile, 'utf8'));
  const rules = Object.fromEntries(doc.groups.flatMap((g) => g.rules).map((r) => [r.alert, r]));
  const names = new Set(Object.values(rules).flatMap((r) => metricNames(r.expr)));
  const { sent } = traffic;
  t.ok(sent.answered >= 180 && sent.servfail >= 10 && sent.blocked === 10, `traffic went through: ${JSON.stringify(sent)}`);
  // What the alerts must conclude, from what this test sent (not from the scrape).
  const servfailRatio = (sent.servfail + 2) / sent.answered; // + the two upstream timeouts, answered SERVFAIL
  const dropRatio = sent.malformed / sent.answered;
  t.ok(dropRatio > 0.01 && dropRatio / 2 < 0.01, 'the drop ratio is above the 1 % threshold, and half of it is below (a doubled query count would hide it)');
  const firing = (name, labels, value) => ({
    exp_labels: { severity: rules[name].labels.severity, instance: INSTANCE.instance, ...labels },
    exp_annotations: Object.fromEntries(Object.entries(rules[name].annotations).map(([k, v]) => [k, render(v, { ...INSTANCE, ...labels }, value).replace(/\s+/g, ' ').trim()])),
  });
  const test = {
    rule_files: [alertsFile],
    evaluation_interval: '1m',
    tests: [{
      interval: '1m',
      input_series: inputSeriesFor(names),
      promql_expr_test: [
        // sum() over the query counter is the number of queries: one label set per metric.
        { expr: 'sum(increase(dns_tproxy_queries_total[10m]))', eval_time: '20m', exp_samples: [{ labels: '{}', value: sent.answered * SCALE * 10 }] },
        { expr: 'sum(increase(dns_tproxy_queries_by_type_total[10m]))', eval_time: '20m', exp_samples: [{ labels: '{}', value: sent.answered * SCALE * 10 }] },
        { expr: 'sum(increase(dns_tproxy_answer_latency_seconds_count[10m]))', eval_time: '20m', exp_samples: [{ labels: '{}', value: sent.answered * SCALE * 10 }] },
      ],
      alert_rule_test: [
        { eval_time: '20m', alertname: 'DropsHigh', exp_alerts: [firing('DropsHigh', { reason: 'malformed' })] },
        { eval_time: '20m', alertname: 'ServfailRatioHigh', exp_alerts: [firing('ServfailRatioHigh', {}, servfailRatio)] },
        ...['ProcessDown', 'UpstreamsDown', 'UpstreamDegraded', 'ListRefreshStale', 'QueryLogDropping', 'DnstapDropping']
          .map((alertname) => ({ eval_time: '20m', alertname, exp_alerts: [] })),
      ],
    }],
  };
  // The query-count test needs these series even if no alert uses them.
  for (const s of inputSeriesFor(new Set(['dns_tproxy_queries_total', 'dns_tproxy_queries_by_type_total', 'dns_tproxy_answer_latency_seconds_count']))) {
    if (!test.tests[0].input_series.some((x) => x.series === s.series)) test.tests[0].input_series.push(s);
  }
  assertPromtoolTestPasses(t, 'generated.test.yml', test);
});

t.test('dashboard: every panel query returns data on series shaped as the real server exports them', { skip: !promtool && 'promtool not installed' }, async (t) => {
  const { exprs } = dashboardExprs();
  const names = new Set(exprs.flatMap(({ expr }) => metricNames(expr)));
  const { sent } = traffic;
  const q = (e) => e.replace(/\$__rate_interval/g, '5m').replace(/\$instance/g, '.*');
  const panel = (title) => exprs.find((e) => e.panel === title).expr;
  const test = {
    evaluation_interval: '1m',
    tests: [{
      interval: '1m',
      input_series: inputSeriesFor(names),
      promql_expr_test: [
        // Non-empty: a panel that filters or groups on a label the server does not export shows nothing.
        ...exprs.map(({ expr }) => ({ expr: `clamp_max(count(${q(expr)}), 1)`, eval_time: '20m', exp_samples: [{ labels: '{}', value: 1 }] })),
        // The headline numbers equal what was sent.
        { expr: `${q(panel('Queries/s'))} * 60`, eval_time: '20m', exp_samples: [{ labels: '{}', value: sent.answered * SCALE }] },
        { expr: q(panel('Blocked %')), eval_time: '20m', exp_samples: [{ labels: '{}', value: sent.blocked / sent.answered }] },
      ],
    }],
  };
  assertPromtoolTestPasses(t, 'dashboard.test.yml', test);
});

t.test('the hand-written alert unit tests use only series shapes the server exports', async (t) => {
  const doc = YAML.parse(fs.readFileSync(alertsTestFile, 'utf8'));
  // Labels whose values are names from the config or the deployment, not a fixed vocabulary.
  const FREE = new Set(['instance', 'job', 'upstream', 'list', 'listener']);
  for (const series of doc.tests.flatMap((x) => x.input_series)) {
    const m = /^([a-zA-Z_:][\w:]*)\{(.*)\}$/.exec(series.series);
    const name = m[1];
    if (name === 'up') continue;
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    const shapes = scraped.filter((s) => s.name === name);
    t.ok(shapes.length > 0, `${name} is exported`);
    const keys = Object.keys(labels).filter((k) => k !== 'instance' && k !== 'job').sort().join(',');
    t.ok(shapes.some((s) => Object.keys(s.labels).sort().join(',') === keys), `${series.series}: the server exports ${name} with labels {${keys}}`);
    for (const [k, v] of Object.entries(labels)) {
      if (FREE.has(k)) continue;
      t.ok(shapes.some((s) => s.labels[k] === v), `${series.series}: ${k}="${v}" is a value the server exports`);
    }
  }
});

/** Label names grouped on (by/on) and matched ({k="v"}) in an expression must exist on the metrics it reads. */
function labelProblems(expr) {
  const problems = [];
  const e = expr.replace(/\$__rate_interval/g, '5m').replace(/\$instance/g, '.*');
  const metrics = metricNames(e).filter((m) => m !== 'up');
  const keysOf = (m) => new Set(scraped.filter((s) => s.name === m).flatMap((s) => Object.keys(s.labels)));
  const known = new Set(['instance', 'job', ...metrics.flatMap((m) => [...keysOf(m)])]);
  for (const g of e.matchAll(/\b(?:by|on)\s*\(([^)]*)\)/g)) {
    for (const l of g[1].split(',').map((x) => x.trim()).filter(Boolean)) if (!known.has(l)) problems.push(`groups by "${l}", which ${metrics.join(', ')} do not carry`);
  }
  for (const sel of e.matchAll(/([a-zA-Z_:][\w:]*)\{([^}]*)\}/g)) {
    if (sel[1] === 'up') continue;
    for (const mm of sel[2].matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)) {
      const [, k, op, v] = mm;
      if (k === 'instance' || k === 'job') continue;
      if (!keysOf(sel[1]).has(k)) problems.push(`${sel[1]} has no label "${k}"`);
      else if (op === '=' && !scraped.some((s) => s.name === sel[1] && s.labels[k] === v)) problems.push(`${sel[1]} never has ${k}="${v}"`);
    }
  }
  return problems;
}

t.test('alerts and dashboard group and match only on labels the server exports', async (t) => {
  const doc = YAML.parse(fs.readFileSync(alertsFile, 'utf8'));
  for (const r of doc.groups.flatMap((g) => g.rules)) t.same(labelProblems(r.expr), [], `alert ${r.alert}`);
  for (const { panel, expr } of dashboardExprs().exprs) t.same(labelProblems(expr), [], `panel ${panel}: ${expr}`);
});
