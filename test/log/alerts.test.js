import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const alertsFile = path.join(root, 'deploy/prometheus/alerts.yml');
const alertsTestFile = path.join(root, 'deploy/prometheus/alerts.test.yml');
const dashboardFile = path.join(root, 'deploy/grafana/dns-tproxy.json');

/** Metric names the application exports (all prefixed dns_tproxy_), plus Prometheus' `up`. */
const APP = [
  'queries_total', 'answers_total', 'cache_hits_total', 'cache_misses_total', 'cache_stale_total', 'cache_evictions_total',
  'cache_entries', 'cache_bytes', 'blocked_total', 'upstream_requests_total', 'upstream_errors_total',
  'upstream_latency_seconds_bucket', 'upstream_healthy', 'inflight_queries', 'dropped_total', 'list_rules',
  'list_last_refresh_timestamp_seconds', 'list_refresh_failures_total', 'querylog_dropped_total', 'dnstap_dropped_total',
  // prom-client default process metrics
  'process_cpu_seconds_total', 'process_cpu_user_seconds_total', 'process_cpu_system_seconds_total', 'process_resident_memory_bytes',
  'process_virtual_memory_bytes', 'process_heap_bytes', 'process_open_fds', 'process_max_fds', 'process_start_time_seconds',
];
const ALLOWED = new Set([...APP.map((n) => `dns_tproxy_${n}`), 'up']);

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
