// Shared by every view: the UI libraries, the API client (one place that knows the HTTP contract of
// /api/v1, see issue 17) and small formatting helpers.
import { h, render, Component } from '/vendor/preact.mjs';
import { useState, useEffect, useRef, useCallback, useMemo } from '/vendor/hooks.mjs';
import htm from '/vendor/htm.mjs';

export const html = htm.bind(h);
export { h, render, Component, useState, useEffect, useRef, useCallback, useMemo };

const listeners = new Set();
/** The router: the app re-renders on every change of location. */
export function navigate(to, { replace = false } = {}) {
  if (to === location.pathname + location.search) return;
  history[replace ? 'replaceState' : 'pushState'](null, '', to);
  for (const l of listeners) l();
}
export function onNavigate(fn) { listeners.add(fn); return () => listeners.delete(fn); }
addEventListener('popstate', () => { for (const l of listeners) l(); });

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** Any 401 (an expired or missing session) sends the user to the login page, then back. */
export function toLogin() {
  if (location.pathname === '/login') return;
  navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
}

/**
 * JSON over /api/v1. State-changing requests are same-origin fetches, so the browser adds the Origin
 * header the API checks; the session cookie is HttpOnly and travels by itself.
 */
export async function api(path, { method = 'GET', body, signal, on401 = toLogin } = {}) {
  const init = { method, signal, credentials: 'same-origin', headers: { accept: 'application/json' } };
  if (body !== undefined) { init.headers['content-type'] = 'application/json'; init.body = JSON.stringify(body); }
  const res = await fetch(`/api/v1/${path}`, init);
  if (res.status === 401 && on401) { on401(); throw new ApiError(401, 'session expired'); }
  const text = await res.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch { data = text; } }
  if (!res.ok) throw new ApiError(res.status, (data && (data.error || data.message)) || `${res.status} ${res.statusText}`);
  return data;
}

/** A list out of a response that is either an array or an object holding one. */
export function listOf(data, ...keys) {
  if (Array.isArray(data)) return data;
  for (const k of [...keys, 'items']) if (data && Array.isArray(data[k])) return data[k];
  return [];
}

/** Loads `path` when the deps change; `reload()` fetches again. */
export function useApi(path, deps = [], { every } = {}) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!path) return undefined;
    const ctl = new AbortController();
    api(path, { signal: ctl.signal })
      .then((data) => setState({ data, error: null, loading: false }))
      .catch((e) => { if (e.name !== 'AbortError' && e.status !== 401) setState((s) => ({ ...s, error: e.message, loading: false })); });
    const timer = every ? setTimeout(() => setTick((t) => t + 1), every) : null;
    return () => { ctl.abort(); if (timer) clearTimeout(timer); };
  }, [path, tick, ...deps]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

/** Minimum time between two renders of streamed records: a quiet stream shows up within 200 ms; a busy
 *  one (more than BUSY_BATCH records since the last render) is redrawn once a second, since the table
 *  shows only the newest rows anyway and redrawing all of them five times a second would compete with
 *  typing and clicking. */
export const STREAM_RENDER_MS = 200;
export const STREAM_BUSY_RENDER_MS = 1000;
const BUSY_BATCH = 50;
/** Records held between renders (a hidden tab gets no animation frames): the newest are kept. */
const PENDING_MAX = 1000;

/** Server-sent events from /api/v1/stream, batched: `onBatch` gets arrays on an animation frame, at
 *  most once per STREAM_RENDER_MS (STREAM_BUSY_RENDER_MS when busy). */
export function openStream(onBatch, onState) {
  let pending = [];
  let scheduled = false;
  let last = 0;
  let interval = STREAM_RENDER_MS;
  const flush = () => {
    scheduled = false;
    last = performance.now();
    const b = pending;
    pending = [];
    interval = b.length > BUSY_BATCH ? STREAM_BUSY_RENDER_MS : STREAM_RENDER_MS;
    if (b.length) onBatch(b);
  };
  const es = new EventSource('/api/v1/stream');
  const onRecord = (ev) => {
    try { pending.push(JSON.parse(ev.data)); } catch { return; }
    if (pending.length > 2 * PENDING_MAX) pending = pending.slice(-PENDING_MAX);
    if (!scheduled) {
      scheduled = true;
      setTimeout(() => requestAnimationFrame(flush), Math.max(0, interval - (performance.now() - last)));
    }
  };
  es.addEventListener('message', onRecord);
  es.addEventListener('query', onRecord);
  let skipped = 0;
  es.addEventListener('open', () => onState?.('live'));
  // The server drops the oldest records for a client that cannot keep up, and says how many.
  es.addEventListener('dropped', (ev) => {
    try { skipped += JSON.parse(ev.data).dropped; } catch { return; }
    onState?.(`live, ${skipped} records skipped by the server`);
  });
  es.addEventListener('error', () => {
    onState?.('reconnecting');
    // EventSource hides the status code; ask the API whether the session is still valid.
    api('session').catch(() => {});
  });
  return () => es.close();
}

const pad = (n) => String(n).padStart(2, '0');
export function fmtTime(ms, withDate = false) {
  if (!ms) return '—';
  const d = new Date(ms);
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withDate || Date.now() - ms > 86_400_000 ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}` : t;
}
export function fmtAgo(ms) {
  if (!ms) return 'never';
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 60) return `${Math.max(s, 0)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return fmtTime(ms, true);
}
export const fmtNum = (n) => (n ?? 0).toLocaleString('en');
export const fmtPct = (part, total) => (total ? `${((100 * part) / total).toFixed(1)} %` : '—');
export const fmtMs = (ms) => (ms == null ? '—' : ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`);
/** Accepts ms numbers and ISO strings alike. */
export const toMs = (t) => (typeof t === 'number' ? t : t ? Date.parse(t) : 0);

/** The outcome shown in the query log: what answered, or the rcode / drop reason. */
export function outcomeOf(r) {
  if (r.kind === 'dropped') return { key: 'dropped', text: `dropped${r.dropReason ? ` (${r.dropReason})` : ''}` };
  if (r.kind === 'bypass') return { key: 'bypass', text: 'bypass attempt' };
  if (r.answeredBy === 'blocked') return { key: 'blocked', text: 'blocked' };
  const by = r.answeredBy ?? '';
  const rc = r.rcode && r.rcode !== 'NOERROR' ? r.rcode : '';
  return { key: by || 'other', text: [by, rc].filter(Boolean).join(' · ') || (r.rcode ?? '—') };
}
export function isBlocked(r) { return r.answeredBy === 'blocked'; }
export function deviceLabel(r) { return r.device?.name || r.client; }
