// The audit log: filters, newest first, "older" pages by next_before.
import { api } from '../api.js';
import { clear, formatTime, h } from '../dom.js';

export function audit(root) {
  const source = h('input', { id: 'audit-source', name: 'source', inputmode: 'decimal', placeholder: '203.0.113.10' });
  const kind = h('input', { id: 'audit-kind', name: 'kind', placeholder: 'knock, grant, revoke…' });
  const since = h('input', { id: 'audit-since', name: 'since', type: 'datetime-local' });
  const tbody = h('tbody');
  const status = h('p', { class: 'muted', role: 'status' });
  const older = h('button', { type: 'button', class: 'secondary', id: 'audit-older', hidden: true }, 'Older entries');
  let before = null;

  async function load(reset) {
    if (reset) { before = null; clear(tbody); }
    const q = new URLSearchParams({ limit: '50' });
    if (source.value.trim()) q.set('source', source.value.trim());
    if (kind.value.trim()) q.set('kind', kind.value.trim());
    if (since.value) q.set('since', new Date(since.value).toISOString().replace(/\.\d+Z$/, 'Z'));
    if (before) q.set('before', String(before));
    status.textContent = 'Loading…';
    try {
      const d = await api('GET', `/audit?${q}`);
      for (const e of d.entries || []) {
        const detail = typeof e.detail === 'object' ? JSON.stringify(e.detail) : (e.detail ?? '');
        tbody.append(h('tr', {},
          h('td', { class: 'mono' }, e.time ? e.time.replace('T', ' ') : formatTime(e.time_ns)),
          h('td', {}, e.kind), h('td', {}, e.door || ''), h('td', { class: 'mono' }, e.source || ''),
          h('td', { class: 'detail' }, detail)));
      }
      before = d.next_before;
      older.hidden = !before;
      status.textContent = tbody.children.length ? `${tbody.children.length} entries` : 'No entries.';
    } catch (e) {
      status.textContent = `Audit log unavailable: ${e.message}`;
    }
  }
  const form = h('form', { class: 'filters', role: 'search', onsubmit: (e) => { e.preventDefault(); load(true); } },
    h('div', {}, h('label', { for: 'audit-source' }, 'Source'), source),
    h('div', {}, h('label', { for: 'audit-kind' }, 'Kind'), kind),
    h('div', {}, h('label', { for: 'audit-since' }, 'Since'), since),
    h('div', {}, h('button', { type: 'submit' }, 'Search')));
  older.addEventListener('click', () => load(false));
  root.append(h('section', { class: 'card wide', 'aria-labelledby': 'audit-title' },
    h('h2', { id: 'audit-title' }, 'Audit log'), form, status,
    h('div', { class: 'scroll' }, h('table', { id: 'audit' },
      h('thead', {}, h('tr', {}, ['Time', 'Kind', 'Door', 'Source', 'Detail'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody)),
    older));
  load(true);
}
