// The console's shell: navigation, the pause banner shown on every view, and the router that maps
// each view URL (served as index.html by src/console/static.ts) to its view.
import { html, render, useState, useEffect, navigate, onNavigate, api, listOf, toMs } from './lib.js';
import { Overview } from './views/overview.js';
import { Queries } from './views/queries.js';
import { Devices } from './views/devices.js';
import { Lists } from './views/lists.js';
import { Audit } from './views/audit.js';
import { Login } from './views/login.js';

const VIEWS = [
  { path: '/', title: 'Overview', view: Overview },
  { path: '/queries', title: 'Query log', view: Queries },
  { path: '/devices', title: 'Devices', view: Devices },
  { path: '/lists', title: 'Lists', view: Lists },
  { path: '/audit', title: 'Audit', view: Audit },
];

/** Pauses in force from GET /api/v1/pause: {entries: [{group|null, until|null}]} (null group = everyone). */
export function pausesOf(data) {
  return listOf(data, 'entries').filter((p) => p && (p.until === null || toMs(p.until) > Date.now()));
}

function PauseControl({ pauses, reload }) {
  const [group, setGroup] = useState('');
  const [error, setError] = useState('');
  const act = async (seconds) => {
    setError('');
    try {
      // DELETE without ?group= ends every pause; POST without seconds pauses until resumed.
      if (seconds === null) await api(group ? `pause?group=${encodeURIComponent(group)}` : 'pause', { method: 'DELETE' });
      else {
        const body = seconds ? { seconds } : {};
        if (group) body.group = group;
        await api('pause', { method: 'POST', body });
      }
    } catch (e) { setError(e.message); }
    reload();
  };
  const active = pauses.length > 0;
  return html`
    <section class=${`pause ${active ? 'pause-on' : ''}`} aria-label="Pause blocking" role="region">
      ${active ? html`<p class="pause-state" role="status" data-testid="pause-banner">
          <strong>Blocking is paused</strong>
          ${pauses.map((p) => html` <span class="chip">${p.group ? `group ${p.group}` : 'everyone'}${p.until ? ` until ${new Date(toMs(p.until)).toLocaleTimeString()}` : ' until resumed'}</span>`)}
        </p>` : html`<span class="pause-label">Blocking active</span>`}
      <label class="inline">Pause for
        <input name="pause-group" placeholder="everyone" value=${group} size="10"
          onInput=${(e) => setGroup(e.currentTarget.value.trim())} aria-label="Group to pause (empty: everyone)" />
      </label>
      <span class="btns">
        <button type="button" data-action="pause-300" onClick=${() => act(300)}>5 min</button>
        <button type="button" data-action="pause-3600" onClick=${() => act(3600)}>1 h</button>
        <button type="button" data-action="pause-forever" onClick=${() => act(0)}>Until resumed</button>
        ${active ? html`<button type="button" class="primary" data-action="resume" onClick=${() => act(null)}>Resume</button>` : null}
      </span>
      ${error ? html`<span class="error" role="alert">${error}</span>` : null}
    </section>`;
}

function usePauses() {
  const [pauses, setPauses] = useState([]);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    api('pause').then((d) => { if (live) setPauses(pausesOf(d)); }).catch(() => {});
    const t = setTimeout(() => setTick((x) => x + 1), 15_000);
    return () => { live = false; clearTimeout(t); };
  }, [tick]);
  return [pauses, () => setTick((x) => x + 1)];
}

function Shell({ path, View }) {
  const [pauses, reloadPauses] = usePauses();
  const [menu, setMenu] = useState(false);
  const logout = async () => { try { await api('logout', { method: 'POST', on401: null }); } catch { /* gone anyway */ } navigate('/login'); };
  const link = (v) => html`<a href=${v.path} aria-current=${v.path === path ? 'page' : undefined}
      onClick=${(e) => { if (e.button === 0 && !e.ctrlKey && !e.metaKey && !e.shiftKey) { e.preventDefault(); setMenu(false); navigate(v.path); } }}>${v.title}</a>`;
  return html`
    <a class="skip" href="#main">Skip to content</a>
    <header class="topbar">
      <span class="brand">dns-tproxy</span>
      <button type="button" class="menu" aria-expanded=${menu} aria-controls="nav" onClick=${() => setMenu(!menu)}>Menu</button>
      <nav id="nav" class=${menu ? 'open' : ''} aria-label="Views">${VIEWS.map(link)}</nav>
      <button type="button" class="logout" onClick=${logout}>Log out</button>
    </header>
    <${PauseControl} pauses=${pauses} reload=${reloadPauses} />
    <main id="main" tabindex="-1"><${View} pauses=${pauses} /></main>`;
}

function App() {
  const [, setLoc] = useState(0);
  useEffect(() => onNavigate(() => {
    setLoc((x) => x + 1);
    document.getElementById('main')?.focus({ preventScroll: true });
  }), []);
  const path = location.pathname.replace(/\/$/, '') || '/';
  if (path === '/login') { document.title = 'Log in · dns-tproxy'; return html`<${Login} />`; }
  const v = VIEWS.find((x) => x.path === path) ?? VIEWS[0];
  document.title = `${v.title} · dns-tproxy`;
  return html`<${Shell} key=${v.path} path=${v.path} View=${v.view} />`;
}

const root = document.getElementById('app');
root.textContent = ''; // the boot message
render(html`<${App} />`, root);
