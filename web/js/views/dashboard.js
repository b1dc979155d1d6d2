// Active grants (time left ticking, extend, revoke), the live feed, the chart.
import { api, stream } from '../api.js';
import { bump, renderChart } from '../chart.js';
import { clear, formatLeft, formatTime, h, toast } from '../dom.js';

export function dashboard(root) {
  const grants = new Map();
  const tbody = h('tbody');
  const empty = h('p', { class: 'muted', id: 'grants-empty' }, 'No active grants.');
  const feedList = h('ol', { class: 'feed', id: 'feed', 'aria-live': 'polite' });
  const chartBox = h('div', { id: 'chart' });
  let buckets = [];

  root.append(
    h('div', { class: 'grid2' },
      h('section', { class: 'card wide', 'aria-labelledby': 'grants-title' },
        h('h2', { id: 'grants-title' }, 'Active grants'),
        h('div', { class: 'scroll' },
          h('table', { id: 'grants' },
            h('thead', {}, h('tr', {},
              h('th', { scope: 'col' }, 'Source'), h('th', { scope: 'col' }, 'Profile'),
              h('th', { scope: 'col' }, 'Via'), h('th', { scope: 'col' }, 'Time left'),
              h('th', { scope: 'col' }, h('span', { class: 'sr' }, 'Actions')))),
            tbody)),
        empty),
      h('section', { class: 'card', 'aria-labelledby': 'chart-title' },
        h('h2', { id: 'chart-title' }, 'Knocks and rejections'), chartBox),
      h('section', { class: 'card', 'aria-labelledby': 'feed-title' },
        h('h2', { id: 'feed-title' }, 'Live feed'), feedList)));

  function row(g) {
    const left = h('td', { class: 'left', dataset: { expires: g.expires_ns } }, '');
    const revoke = h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke grant ${g.id} for ${g.source}`,
      onclick: async () => {
        revoke.disabled = true;
        try {
          await api('DELETE', `/grants/${g.id}`);
          toast(`Revoked ${g.source} (${g.profile})`);
        } catch (e) { toast(`Revoke failed: ${e.message}`); revoke.disabled = false; }
      } }, 'Revoke');
    const extend = h('button', { type: 'button', class: 'secondary', 'aria-label': `Extend grant ${g.id}`,
      onclick: async () => {
        try { await api('POST', `/grants/${g.id}/extend`, {}); toast(`Extended ${g.source}`); }
        catch (e) { toast(`Extend failed: ${e.message}`); }
      } }, 'Extend');
    return h('tr', { dataset: { id: g.id, source: g.source } },
      h('td', { class: 'mono' }, g.source), h('td', {}, g.profile),
      h('td', {}, `${g.method}${g.origin ? ` · ${g.origin}` : ''}`), left,
      h('td', { class: 'actions' }, extend, ' ', revoke));
  }
  function redraw() {
    clear(tbody);
    const list = [...grants.values()].sort((a, b) => Number(a.expires_ns) - Number(b.expires_ns));
    for (const g of list) tbody.append(row(g));
    empty.hidden = list.length > 0;
    tick();
  }
  function tick() {
    const now = Date.now();
    for (const td of tbody.querySelectorAll('td.left')) {
      const ms = Number(td.dataset.expires) / 1e6 - now;
      td.textContent = formatLeft(ms);
      td.classList.toggle('soon', ms < 60000);
    }
  }
  async function load() {
    try {
      const data = await api('GET', '/grants');
      grants.clear();
      for (const g of data.grants || []) grants.set(g.id, g);
      redraw();
    } catch (e) {
      empty.hidden = false;
      empty.textContent = `Grants unavailable: ${e.message}`;
    }
  }
  function feedItem(ev) {
    const d = ev.detail || {};
    const what = [d.door, d.profile, d.reason].filter(Boolean).join(' · ');
    const li = h('li', { class: ev.rejection ? 'reject' : ev.kind },
      h('time', { datetime: ev.time }, formatTime(ev.time_ns).slice(11)), ' ',
      h('span', { class: 'kind' }, ev.kind), ' ',
      h('span', { class: 'mono' }, ev.source || ''), what ? ` ${what}` : '');
    feedList.prepend(li);
    while (feedList.children.length > 100) feedList.lastChild.remove();
  }

  const offs = [
    stream('grant', (d) => {
      if (d.op === 'remove') grants.delete(d.grant.id);
      else grants.set(d.grant.id, { ...grants.get(d.grant.id), ...d.grant });
      redraw();
    }),
    stream('snapshot', load),
    stream('feed', (ev) => {
      feedItem(ev);
      if (ev.kind === 'knock' || ev.kind === 'spa') bump(buckets, ev.time_ns, 'knocks');
      else if (ev.rejection) bump(buckets, ev.time_ns, 'rejects');
      else return;
      renderChart(chartBox, buckets);
    }),
  ];
  api('GET', '/counters').then((c) => { buckets = c.buckets; renderChart(chartBox, buckets); })
    .catch(() => renderChart(chartBox, []));
  load();
  const timer = setInterval(tick, 1000);
  return () => { clearInterval(timer); offs.forEach((off) => off()); };
}
