// The JSON API (/api/v1) and the live stream. The session cookie travels by itself; the
// CSRF token is kept in memory only and sent with every state-changing request.
let csrfToken = '';
const unauthorizedHandlers = [];

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function onUnauthorized(fn) { unauthorizedHandlers.push(fn); }
export function setCsrf(token) { csrfToken = token || ''; }

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`/api/v1${path}`, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = {};
  try { data = await res.json(); } catch { /* empty body */ }
  if (res.status === 401 && path !== '/login') unauthorizedHandlers.forEach((fn) => fn());
  if (!res.ok) throw new ApiError(res.status, data.error || `${res.status} ${res.statusText}`);
  return data;
}

// One EventSource for the page; views subscribe to event names.
const listeners = new Map();
const recentFeed = [];  // views opened later still show what already arrived
let source = null;
export function stream(event, fn) {
  if (!listeners.has(event)) listeners.set(event, new Set());
  listeners.get(event).add(fn);
  if (event === 'feed') recentFeed.forEach((d) => fn(d));
  return () => listeners.get(event).delete(fn);
}
export function openStream(onState) {
  if (source) return;
  source = new EventSource('/api/v1/stream');
  source.onopen = () => onState(true);
  source.onerror = () => onState(false);
  for (const name of ['grant', 'feed', 'snapshot']) {
    source.addEventListener(name, (e) => {
      let data;
      try { data = JSON.parse(e.data); } catch { return; }
      if (name === 'feed') {
        recentFeed.push(data);
        if (recentFeed.length > 100) recentFeed.shift();
      }
      for (const fn of listeners.get(name) || []) fn(data);
    });
  }
}
export function closeStream() {
  if (source) source.close();
  source = null;
  recentFeed.length = 0;
}
