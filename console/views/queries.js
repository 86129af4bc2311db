// Query log: search (GET /api/v1/queries) and live tail (GET /api/v1/stream). At 1,000 records/s the
// stream is batched per animation frame and the table keeps only the newest MAX_ROWS rows, so the
// work per frame is bounded whatever the rate; "Pause tail" freezes the table while reading.
import { html, Component, useState, useEffect, useRef, useMemo, api, listOf, openStream, fmtTime, fmtMs, outcomeOf, isBlocked, deviceLabel, toMs } from '../lib.js';

const MAX_ROWS = 200;
const OUTCOMES = [['', 'any'], ['blocked', 'blocked'], ['cache', 'cache hit'], ['stale', 'stale'], ['upstream', 'upstream'],
  ['local', 'local'], ['forward', 'forward zone'], ['NXDOMAIN', 'NXDOMAIN'], ['SERVFAIL', 'SERVFAIL'], ['dropped', 'dropped']];

function matches(r, f) {
  if (f.client && !(r.client === f.client || (r.device?.name ?? '').toLowerCase() === f.client.toLowerCase())) return false;
  if (f.name && !r.qname.toLowerCase().includes(f.name.toLowerCase())) return false;
  if (f.type && r.qtype !== f.type.toUpperCase()) return false;
  if (f.result) {
    const o = f.result;
    if (!(r.answeredBy === o || r.rcode === o || (o === 'dropped' && r.kind === 'dropped'))) return false;
  }
  if (f.from && r.time < f.from) return false;
  if (f.to && r.time >= f.to) return false;
  return true;
}

function queryString(f, cursor) {
  const p = new URLSearchParams();
  for (const k of ['client', 'name', 'type', 'result']) if (f[k]) p.set(k, f[k]);
  if (f.from) p.set('from', String(f.from));
  if (f.to) p.set('to', String(f.to));
  p.set('limit', '100');
  if (cursor) p.set('cursor', cursor);
  return p.toString();
}

const keyOf = (r) => r.id ?? `${r.time}|${r.client}|${r.clientPort ?? ''}|${r.qname}|${r.qtype}`;

/** One record; rows already on screen are not re-rendered when new ones stream in above them. */
class Row extends Component {
  shouldComponentUpdate(next) {
    const p = this.props;
    return next.r !== p.r || next.scope !== p.scope || next.decided !== p.decided || next.groupOf !== p.groupOf;
  }
  render(props) { return renderRow(props); }
}

function renderRow({ r, scope, decided, onRule, groupOf }) {
  const o = outcomeOf(r);
  const blocked = isBlocked(r);
  const action = blocked ? 'allow' : 'block';
  const done = decided[`${action}|${r.qname}`];
  const decidedBy = [r.group && `group ${r.group}`, r.list && `list ${r.list}`, r.rule && `rule ${r.rule}`].filter(Boolean).join(', ');
  const group = scope === 'group' ? groupOf(r) : undefined;
  const label = `${blocked ? 'Allow' : 'Block'} ${r.qname} for ${group ? `group ${group}` : 'everyone'}`;
  return html`<tr data-qname=${r.qname} class=${`o-${o.key}`}>
    <td class="nowrap" data-label="Time">${fmtTime(toMs(r.time))}</td>
    <td data-label="Device" title=${r.device?.mac ? `${r.client} · ${r.device.mac}` : r.client}>${deviceLabel(r)}</td>
    <td class="qname" data-label="Name">${r.qname}</td>
    <td data-label="Type">${r.qtype}</td>
    <td data-label="Outcome"><span class=${`badge b-${o.key}`}>${o.text}</span>${decidedBy ? html`<div class="small muted">${decidedBy}</div>` : null}</td>
    <td class="answer" data-label="Answer">${(r.answers ?? []).slice(0, 2).join(', ') || '—'}</td>
    <td class="num" data-label="Latency">${fmtMs(r.latencyMs)}</td>
    <td data-label="Action">${done
      ? html`<span class="small" role="status">${action === 'block' ? 'Blocked' : 'Allowed'}</span>`
      : html`<button type="button" class=${blocked ? 'allow' : 'block'} data-action=${action} aria-label=${label}
          onClick=${() => onRule(action, r)}>${blocked ? 'Allow' : 'Block'}</button>`}</td>
  </tr>`;
}

/** The search form's fields (strings, as typed) → the filters applied to the search and the stream. */
function toFilters(d) {
  const t = (v) => (v ? new Date(v).getTime() : 0);
  return { client: d.client.trim(), name: d.name.trim(), type: d.type.trim().toUpperCase(), result: d.result, from: t(d.from), to: t(d.to) };
}

export function Queries() {
  // What is typed lives in `draft`, so the re-renders the stream causes never reset a field being edited.
  const [draft, setDraft] = useState(() => {
    const p = new URLSearchParams(location.search);
    return { client: p.get('client') ?? '', name: p.get('name') ?? '', type: p.get('type') ?? '', result: p.get('result') ?? '', from: '', to: '' };
  });
  const [filters, setFilters] = useState(() => toFilters(draft));
  const field = (k) => ({ name: k, value: draft[k], onInput: (e) => { const v = e.currentTarget.value; setDraft((d) => ({ ...d, [k]: v })); } });
  const [rows, setRows] = useState([]);
  const [cursor, setCursor] = useState(null);
  const [error, setError] = useState('');
  const [live, setLive] = useState(true);
  const [streamState, setStreamState] = useState('connecting');
  const [scope, setScope] = useState('everyone');
  // The device's group: the one the filter recorded, else the one the device is in now (GET /clients).
  const [groups, setGroups] = useState(new Map());
  useEffect(() => {
    if (scope !== 'group') return;
    api('clients').then((d) => {
      const m = new Map();
      for (const c of listOf(d, 'clients')) if (c.group) for (const a of c.addresses ?? []) m.set(a, c.group);
      setGroups(m);
    }).catch(() => {});
  }, [scope]);
  const groupOf = useMemo(() => (r) => r.group ?? groups.get(r.client), [groups]);
  const [decided, setDecided] = useState({});
  const [toast, setToast] = useState(null);
  const held = useRef([]);
  const liveRef = useRef(live);
  liveRef.current = live;
  const filtersRef = useRef(filters);
  filtersRef.current = filters;

  const search = async (f, more) => {
    setError('');
    try {
      const data = await api(`queries?${queryString(f, more ? cursor : null)}`);
      const items = listOf(data, 'queries', 'records');
      setRows((old) => (more ? [...old, ...items] : items));
      setCursor(data?.nextCursor ?? data?.cursor ?? null);
    } catch (e) { if (e.status !== 401) setError(e.message); }
  };
  useEffect(() => { search(filters, false); }, [filters]);

  useEffect(() => openStream((batch) => {
    const f = filtersRef.current;
    if (f.to) return; // a closed time range does not take new records
    const fresh = batch.filter((r) => matches(r, f)).reverse().slice(0, MAX_ROWS);
    if (!fresh.length) return;
    if (!liveRef.current) { held.current = [...fresh, ...held.current].slice(0, MAX_ROWS); setStreamState(`paused, ${held.current.length}${held.current.length >= MAX_ROWS ? '+' : ''} new`); return; }
    setRows((old) => {
      const seen = new Set(old.slice(0, 50).map(keyOf));
      return [...fresh.filter((r) => !seen.has(keyOf(r))), ...old].slice(0, MAX_ROWS);
    });
  }, setStreamState), []);

  const toggleLive = () => {
    if (!live && held.current.length) { const h = held.current; held.current = []; setRows((old) => [...h, ...old].slice(0, MAX_ROWS)); }
    setStreamState(live ? 'paused' : 'live');
    setLive(!live);
  };

  const onRule = async (action, r) => {
    const body = { action, name: r.qname };
    const group = scope === 'group' ? groupOf(r) : undefined;
    if (group) body.group = group;
    try {
      const created = await api('rules', { method: 'POST', body });
      setDecided((d) => ({ ...d, [`${action}|${r.qname}`]: true }));
      const who = body.group ? `group ${body.group}` : 'everyone';
      setToast({ text: `${action === 'block' ? 'Blocked' : 'Allowed'} ${r.qname} for ${who}.`, id: created?.id ?? created?.rule?.id, key: `${action}|${r.qname}` });
    } catch (e) { if (e.status !== 401) setToast({ text: `Could not ${action} ${r.qname}: ${e.message}`, error: true }); }
  };
  const undo = async () => {
    if (!toast?.id) return;
    try { await api(`rules/${encodeURIComponent(toast.id)}`, { method: 'DELETE' }); } catch (e) { setToast({ text: e.message, error: true }); return; }
    setDecided((d) => { const n = { ...d }; delete n[toast.key]; return n; });
    setToast({ text: 'Undone.' });
  };

  return html`
    <h1>Query log</h1>
    <form class="filters" role="search" aria-label="Search queries" onSubmit=${(e) => { e.preventDefault(); setFilters(toFilters(draft)); }}>
      <label>Device <input ...${field('client')} placeholder="address or name" /></label>
      <label>Name <input ...${field('name')} placeholder="contains" /></label>
      <label>Type <input ...${field('type')} placeholder="A, AAAA…" size="6" /></label>
      <label>Outcome <select ...${field('result')} onChange=${field('result').onInput}>${OUTCOMES.map(([v, t]) => html`<option value=${v}>${t}</option>`)}</select></label>
      <label>From <input type="datetime-local" ...${field('from')} /></label>
      <label>To <input type="datetime-local" ...${field('to')} /></label>
      <button type="submit" class="primary">Search</button>
    </form>
    <div class="toolbar">
      <button type="button" aria-pressed=${!live} onClick=${toggleLive}>${live ? 'Pause tail' : 'Resume tail'}</button>
      <span class="muted" role="status" aria-live="polite" data-testid="stream-state">Live: ${streamState}</span>
      <label class="inline">Block/Allow applies to
        <select value=${scope} onChange=${(e) => setScope(e.currentTarget.value)} name="scope">
          <option value="everyone">everyone</option><option value="group">the device's group</option>
        </select></label>
    </div>
    ${toast ? html`<p class=${toast.error ? 'error toast' : 'toast'} role="status">${toast.text}
        ${toast.id ? html` <button type="button" onClick=${undo}>Undo</button>` : null}</p>` : null}
    ${error ? html`<p class="error" role="alert">${error}</p>` : null}
    <div class="table-wrap" role="region" aria-label="Queries" tabindex="0">
      <table class="grid cards">
        <caption class="sr-only">Queries, newest first</caption>
        <thead><tr><th scope="col">Time</th><th scope="col">Device</th><th scope="col">Name</th><th scope="col">Type</th>
          <th scope="col">Outcome</th><th scope="col">Answer</th><th scope="col">Latency</th><th scope="col"><span class="sr-only">Action</span></th></tr></thead>
        <tbody>${rows.map((r) => html`<${Row} key=${keyOf(r)} r=${r} scope=${scope} decided=${decided} onRule=${onRule} groupOf=${groupOf} />`)}</tbody>
      </table>
      ${!rows.length ? html`<p class="muted">No queries match.</p>` : null}
    </div>
    ${cursor ? html`<button type="button" onClick=${() => search(filters, true)}>Older</button>` : null}`;
}
