// Lists: the filter's block and allow lists (GET /api/v1/lists); add by URL or path, enable or
// disable, refresh now; size, last refresh and last error per list.
import { html, useState, useEffect, useApi, api, listOf, fmtAgo, fmtNum, toMs } from '../lib.js';

export function Lists() {
  const { data, error, loading, reload } = useApi('lists', [], { every: 30_000 });
  const lists = listOf(data, 'lists');
  const [msg, setMsg] = useState(null);
  // A toggled checkbox shows its new state at once (not the list's old one until the reload answers);
  // a refused change puts it back.
  const [toggled, setToggled] = useState({});
  useEffect(() => { setToggled({}); }, [data]);
  const run = async (what, fn, undo) => {
    setMsg(null);
    try { await fn(); setMsg({ text: what }); } catch (e) { undo?.(); if (e.status !== 401) setMsg({ text: `${what} failed: ${e.message}`, error: true }); }
    reload();
  };
  const toggle = (name, on) => {
    setToggled((o) => ({ ...o, [name]: on }));
    run(`${on ? 'Enabled' : 'Disabled'} ${name}`, () => api(`lists/${encodeURIComponent(name)}`, { method: 'PATCH', body: { enabled: on } }),
      () => setToggled((o) => { const n = { ...o }; delete n[name]; return n; }));
  };
  const add = (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const d = new FormData(form);
    const source = String(d.get('source') || '').trim();
    if (!source) return;
    const body = /^https?:\/\//i.test(source) ? { url: source } : { path: source };
    const name = String(d.get('name') || '').trim();
    if (name) body.name = name;
    run(`Added ${source}`, async () => { await api('lists', { method: 'POST', body }); form.reset(); });
  };
  const idOf = (l) => encodeURIComponent(l.name);
  return html`
    <h1>Lists</h1>
    <form class="filters" onSubmit=${add} aria-label="Add a list">
      <label class="grow">URL or path <input name="source" required placeholder="https://example.org/hosts.txt or /etc/dns-tproxy/block.txt" /></label>
      <label>Name <input name="name" placeholder="derived from the source" size="14" /></label>
      <button type="submit" class="primary">Add list</button>
    </form>
    ${msg ? html`<p class=${msg.error ? 'error' : 'toast'} role="status">${msg.text}</p>` : null}
    ${error ? html`<p class="error" role="alert">${error}</p>` : null}
    <div class="table-wrap" role="region" aria-label="Lists" tabindex="0">
      <table class="grid cards">
        <caption class="sr-only">Block and allow lists</caption>
        <thead><tr><th scope="col">List</th><th scope="col">Enabled</th><th scope="col">Entries</th><th scope="col">Last refresh</th>
          <th scope="col">Last error</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${lists.map((l) => {
          const name = l.name;
          const enabled = toggled[name] ?? l.enabled !== false;
          const err = l.lastError;
          return html`<tr key=${name} class=${err ? 'has-error' : ''}>
            <td class="wrap" data-label="List"><strong>${name}</strong> <span class="chip">${l.origin === 'api' ? 'added here' : 'config'}</span>
              <div class="small muted">${l.source}</div></td>
            <td data-label="Enabled"><label class="inline"><input type="checkbox" checked=${enabled}
              onChange=${(e) => toggle(name, e.currentTarget.checked)} />
              <span class="sr-only">Enabled: ${name}</span></label></td>
            <td class="num" data-label="Entries">${fmtNum(l.rules)}</td>
            <td data-label="Last refresh">${fmtAgo(toMs(l.lastRefresh))}${l.fromCache ? html` <span class="small muted">(disk copy)</span>` : null}</td>
            <td class="wrap error-text" data-label="Last error">${err ? `${err}${l.failures > 1 ? ` (${l.failures} failures)` : ''}` : '—'}</td>
            <td data-label="Actions"><button type="button" data-action="refresh" aria-label=${`Refresh ${name} now`} disabled=${!enabled}
              onClick=${() => run(`Refreshed ${name}`, () => api(`lists/${idOf(l)}/refresh`, { method: 'POST' }))}>Refresh now</button></td>
          </tr>`;
        })}
        ${!loading && !lists.length ? html`<tr><td colspan="6" class="muted">No lists configured.</td></tr>` : null}</tbody>
      </table>
    </div>`;
}
