// Devices: every client the store has seen, with its name, addresses, MAC, group and activity;
// the group is changed with PUT /api/v1/clients/{id}.
import { html, useState, useApi, api, listOf, fmtAgo, fmtNum, navigate } from '../lib.js';

function GroupCell({ c, groups, onSaved }) {
  const [value, setValue] = useState(c.group ?? '');
  const [state, setState] = useState('');
  const id = `group-${c.id}`;
  const save = async (e) => {
    e.preventDefault();
    setState('saving');
    try { await api(`clients/${encodeURIComponent(c.id)}`, { method: 'PUT', body: { group: value || null } }); setState('saved'); onSaved(); } catch (err) { setState(err.message); }
  };
  return html`<form class="inline-form" onSubmit=${save}>
    <label class="sr-only" for=${id}>Group of ${c.name || c.id}</label>
    <input id=${id} name="group" list="known-groups" value=${value} size="10" placeholder="default"
      onInput=${(e) => { setValue(e.currentTarget.value.trim()); setState(''); }} />
    <button type="submit" disabled=${value === (c.group ?? '')}>Set</button>
    ${state ? html`<span class="small" role="status">${state}</span>` : null}
  </form>`;
}

export function Devices() {
  const { data, error, loading, reload } = useApi('clients', [], { every: 30_000 });
  const clients = listOf(data, 'clients', 'devices');
  const groups = [...new Set(clients.map((c) => c.group).filter(Boolean))].sort();
  const show = (c) => (e) => { e.preventDefault(); navigate(`/queries?client=${encodeURIComponent(c.name || c.addresses?.[0] || '')}`); };
  return html`
    <h1>Devices</h1>
    ${error ? html`<p class="error" role="alert">${error}</p>` : null}
    <datalist id="known-groups">${groups.map((g) => html`<option value=${g} />`)}</datalist>
    <div class="table-wrap" role="region" aria-label="Devices" tabindex="0">
      <table class="grid cards">
        <caption class="sr-only">Devices seen by dns-tproxy</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Addresses</th><th scope="col">MAC</th><th scope="col">Group</th>
          <th scope="col">Last seen</th><th scope="col">Queries (24 h)</th></tr></thead>
        <tbody>${clients.map((c) => html`<tr key=${c.id} data-client=${c.id}>
          <td data-label="Name"><a href=${`/queries?client=${encodeURIComponent(c.name || c.addresses?.[0] || '')}`} onClick=${show(c)}>${c.name || c.addresses?.[0] || c.id}</a></td>
          <td class="wrap" data-label="Addresses">${(c.addresses ?? []).join(', ')}</td>
          <td data-label="MAC">${c.mac ?? '—'}</td>
          <td data-label="Group"><${GroupCell} c=${c} groups=${groups} onSaved=${reload} /></td>
          <td data-label="Last seen">${fmtAgo(c.lastSeen)}</td>
          <td class="num" data-label="Queries (24 h)">${fmtNum(c.queries24h)}</td></tr>`)}
        ${!loading && !clients.length ? html`<tr><td colspan="6" class="muted">No devices seen yet.</td></tr>` : null}</tbody>
      </table>
    </div>`;
}
