// Doors and profiles as policyd reports them: ports, marks, tables, routes.
import { api } from '../api.js';
import { h } from '../dom.js';

const list = (v) => (Array.isArray(v) ? v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : x)).join(', ') : v ?? '');

function table(id, caption, columns, rows) {
  return h('div', { class: 'scroll' }, h('table', { id },
    h('caption', { class: 'sr' }, caption),
    h('thead', {}, h('tr', {}, columns.map(([label]) => h('th', { scope: 'col' }, label)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, columns.map(([, get]) => h('td', {}, list(get(r)))))))));
}

export function config(root) {
  const doors = h('section', { class: 'card wide', 'aria-labelledby': 'doors-title' }, h('h2', { id: 'doors-title' }, 'Doors'));
  const profiles = h('section', { class: 'card wide', 'aria-labelledby': 'profiles-title' }, h('h2', { id: 'profiles-title' }, 'Profiles'));
  root.append(profiles, doors);
  api('GET', '/profiles').then((d) => profiles.append(table('profiles', 'Profiles', [
    ['Name', (p) => p.name], ['Direction', (p) => p.direction],
    ['Exposes / allows', (p) => (p.direction === 'egress' ? p.allow : p.exposures)],
    ['Destinations', (p) => p.destinations], ['Mark', (p) => p.fwmark], ['Table', (p) => p.table],
    ['Routes', (p) => p.routes], ['Lifetime', (p) => `${p.lifetime_s}s (max ${p.max_lifetime_s}s)`],
    ['Revoke', (p) => p.revoke]], d.profiles || [])))
    .catch((e) => profiles.append(h('p', { class: 'error' }, `Profiles unavailable: ${e.message}`)));
  api('GET', '/doors').then((d) => doors.append(table('doors', 'Doors', [
    ['Name', (x) => x.name], ['Method', (x) => x.method], ['Sequence', (x) => x.sequence],
    ['Timeout', (x) => x.seq_timeout], ['TCP flags', (x) => x.tcpflags], ['Grants', (x) => x.grant],
    ['One-time', (x) => (x.one_time ? 'yes' : 'no')]], d.doors || [])))
    .catch((e) => doors.append(h('p', { class: 'error' }, `Doors unavailable: ${e.message}`)));
}
