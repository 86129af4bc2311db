// Overview: problems first (a list failing to refresh, an upstream down, bypass attempts), then
// rates over the chosen window (GET /api/v1/stats), top devices / names / blocked names, and
// upstream health (GET /api/v1/health).
import { html, useState, useEffect, useMemo, useApi, listOf, fmtNum, fmtPct, fmtMs, fmtAgo, navigate, toMs } from '../lib.js';
import { Chart } from '../chart.js';

const WINDOWS = [['1h', 3_600_000], ['6h', 21_600_000], ['24h', 86_400_000], ['7d', 604_800_000]];

/**
 * What the admin should act on: GET /api/v1/health's `problems` (lists failing to refresh, upstreams
 * down, store drops), plus bypass attempts seen in the window (records of kind "bypass").
 */
export function problemsOf(health, bypassCount) {
  const out = [];
  for (const p of Array.isArray(health?.problems) ? health.problems : []) {
    const text = String(p);
    out.push({ key: text, text, href: /^list /.test(text) ? '/lists' : undefined });
  }
  if (bypassCount > 0) out.push({ key: 'bypass', text: `${fmtNum(bypassCount)} bypass attempt(s) in the last hour: a client tried to reach a resolver around the gateway`, href: '/queries?result=bypass' });
  return out;
}

function Top({ title, entries, onPick }) {
  return html`<section class="card" aria-labelledby=${`t-${title}`}>
    <h2 id=${`t-${title}`}>${title}</h2>
    <ol class="top">${entries.map((e) => html`<li key=${e.key}><a href="#" onClick=${(ev) => { ev.preventDefault(); onPick(e); }}>${e.name ? html`${e.name} <span class="muted small">${e.key}</span>` : e.key}</a><span class="num">${fmtNum(e.count)}</span></li>`)}
      ${!entries.length ? html`<li class="muted">nothing yet</li>` : null}</ol>
  </section>`;
}

export function Overview() {
  const [win, setWin] = useState('1h');
  const span = WINDOWS.find((w) => w[0] === win)[1];
  // The window slides: every 30 s `now` moves, the URLs change and the data is fetched again.
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => { const t = setInterval(() => setNow(Date.now()), 30_000); return () => clearInterval(t); }, []);
  const to = Math.ceil(now / 60_000) * 60_000;
  const stats = useApi(`stats?from=${to - span}&to=${to}&step=${Math.max(60_000, Math.round(span / 120 / 60_000) * 60_000)}`, [win]);
  const health = useApi('health', [], { every: 15_000 });
  const s = stats.data;
  const series = useMemo(() => {
    const pts = s?.series ?? [];
    const step = (s?.step ?? 60_000) / 1000;
    const t = pts.map((p) => toMs(p.time) / 1000);
    const upstreamMs = pts.map((p) => p.upstreamLatencyMs ?? p.upstreamMs ?? p.latencyMs ?? null);
    return {
      t,
      qps: pts.map((p) => p.total / step),
      blocked: pts.map((p) => (p.total ? (100 * p.blocked) / p.total : null)),
      cache: pts.map((p) => (p.total ? (100 * p.cacheHits) / p.total : null)),
      upstreamMs, hasLatency: upstreamMs.some((v) => v != null),
    };
  }, [s]);
  // Asked after the stats, so the charts never wait behind this search in the store.
  const bypass = useApi(stats.data ? `queries?result=bypass&from=${to - 3_600_000}&limit=100` : null, []);
  const problems = problemsOf(health.data, listOf(bypass.data).length);
  const upstreams = listOf(health.data?.upstreams, 'upstreams');
  return html`
    ${problems.length ? html`<section class="problems" role="alert" aria-label="Problems">
        <h2>Needs attention</h2>
        <ul>${problems.map((p) => html`<li key=${p.key}>${p.href ? html`<a href=${p.href} onClick=${(e) => { e.preventDefault(); navigate(p.href); }}>${p.text}</a>` : p.text}</li>`)}</ul>
      </section>` : null}
    <div class="head-row">
      <h1>Overview</h1>
      <label class="inline">Window <select value=${win} onChange=${(e) => setWin(e.currentTarget.value)} name="window">
        ${WINDOWS.map(([k]) => html`<option value=${k}>last ${k}</option>`)}</select></label>
    </div>
    ${stats.error ? html`<p class="error" role="alert">${stats.error}</p>` : null}
    <dl class="kpis" aria-label="Totals over the window">
      <div><dt>Queries</dt><dd data-testid="kpi-total">${s ? fmtNum(s.total) : '…'}</dd></div>
      <div><dt>Blocked</dt><dd>${s ? fmtPct(s.blocked, s.total) : '…'}</dd></div>
      <div><dt>Cache hits</dt><dd>${s ? fmtPct(s.cacheHits, s.total) : '…'}</dd></div>
      <div><dt>Dropped</dt><dd>${s ? fmtNum(s.dropped) : '…'}</dd></div>
    </dl>
    <div class="charts">
      <${Chart} title="Queries per second" times=${series.t} values=${series.qps} unit="" />
      <${Chart} title="Blocked %" times=${series.t} values=${series.blocked} unit="%" color="#dc2626" />
      <${Chart} title="Cache hit %" times=${series.t} values=${series.cache} unit="%" color="#16a34a" />
      ${series.hasLatency ? html`<${Chart} title="Upstream latency" times=${series.t} values=${series.upstreamMs} unit=" ms" color="#9333ea" />` : null}
    </div>
    <div class="tops">
      <${Top} title="Top devices" entries=${s?.topClients ?? []} onPick=${(e) => navigate(`/queries?client=${encodeURIComponent(e.name || e.key)}`)} />
      <${Top} title="Top names" entries=${s?.topNames ?? []} onPick=${(e) => navigate(`/queries?name=${encodeURIComponent(e.key)}`)} />
      <${Top} title="Top blocked names" entries=${s?.topBlocked ?? []} onPick=${(e) => navigate(`/queries?name=${encodeURIComponent(e.key)}&result=blocked`)} />
    </div>
    <section class="card" aria-labelledby="up-title">
      <h2 id="up-title">Upstreams</h2>
      <div class="table-wrap"><table class="grid">
        <thead><tr><th scope="col">Upstream</th><th scope="col">State</th><th scope="col">Mean latency</th><th scope="col">Requests</th><th scope="col">Errors</th></tr></thead>
        <tbody>${upstreams.map((u) => {
          const errors = Object.entries(u.errors ?? {}).filter(([, n]) => n > 0);
          return html`<tr key=${u.name}><td class="wrap">${u.name}</td>
            <td><span class=${`badge ${u.healthy ? 'b-cache' : 'b-blocked'}`}>${u.healthy ? 'up' : 'down'}</span></td>
            <td class="num">${fmtMs(u.avgLatencyMs)}</td><td class="num">${fmtNum(u.requests)}</td>
            <td class="wrap">${errors.length ? errors.map(([k, n]) => `${k} ${fmtNum(n)}`).join(', ') : '—'}</td></tr>`;
        })}
        ${!upstreams.length ? html`<tr><td colspan="5" class="muted">${health.error ? `health unavailable: ${health.error}` : 'no upstream data'}</td></tr>` : null}</tbody>
      </table></div>
    </section>`;
}
