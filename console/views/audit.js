// Audit: who changed which rule, list or setting, and when (GET /api/v1/audit, newest first).
import { html, useApi, listOf, fmtTime, toMs } from '../lib.js';

/** "block ads.example (group kids)" out of {target, detail}; empty and null details left out. */
function describe(e) {
  const d = Object.entries(e.detail ?? {}).filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${k} ${typeof v === 'object' ? JSON.stringify(v) : v}`);
  return `${e.target ?? ''}${d.length ? ` (${d.join(', ')})` : ''}`;
}

export function Audit() {
  const { data, error, loading } = useApi('audit?limit=200', [], { every: 30_000 });
  const entries = listOf(data, 'entries', 'events');
  return html`
    <h1>Audit</h1>
    <p class="muted">Every change made through the console or the API: rules, lists, devices, pauses, logins.</p>
    ${error ? html`<p class="error" role="alert">${error}</p>` : null}
    <div class="table-wrap" tabindex="0" role="region" aria-label="Audit log">
      <table class="grid">
        <caption class="sr-only">Changes, newest first</caption>
        <thead><tr><th scope="col">Time</th><th scope="col">Who</th><th scope="col">Action</th><th scope="col">What</th></tr></thead>
        <tbody>
          ${entries.map((e, i) => html`<tr key=${e.id ?? i}>
            <td class="nowrap">${fmtTime(toMs(e.time), true)}</td>
            <td>${e.user}${e.from ? html` <span class="small muted">${e.from}</span>` : null}</td>
            <td>${e.action}</td>
            <td class="wrap">${describe(e)}</td></tr>`)}
          ${!loading && !entries.length ? html`<tr><td colspan="4" class="muted">No changes recorded yet.</td></tr>` : null}
        </tbody>
      </table>
    </div>`;
}
