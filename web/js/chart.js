// A small SVG line chart of knocks and rejections per minute (no library: two polylines,
// axes, a legend). Redrawn whole on each update; 60 points is nothing.
import { h } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

export function renderChart(container, buckets) {
  const W = 600, H = 180, L = 36, R = 8, T = 10, B = 24;
  const max = Math.max(1, ...buckets.map((b) => Math.max(b.knocks, b.rejects)));
  const x = (i) => L + (i * (W - L - R)) / Math.max(1, buckets.length - 1);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img',
    'aria-label': `Knocks and rejections per minute, last hour; peak ${max}` });
  for (const frac of [0, 0.5, 1]) {
    const v = Math.round(max * frac);
    svg.append(s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(s('text', { x: L - 4, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, v));
  }
  if (buckets.length) {
    const first = new Date(buckets[0].t * 1000), last = new Date(buckets[buckets.length - 1].t * 1000);
    const hm = (d) => d.toISOString().slice(11, 16);
    svg.append(s('text', { x: L, y: H - 6, class: 'axis' }, `${hm(first)}Z`));
    svg.append(s('text', { x: W - R, y: H - 6, 'text-anchor': 'end', class: 'axis' }, `${hm(last)}Z`));
  }
  for (const [key, cls] of [['knocks', 'line-knocks'], ['rejects', 'line-rejects']]) {
    const pts = buckets.map((b, i) => `${x(i).toFixed(1)},${y(b[key]).toFixed(1)}`).join(' ');
    svg.append(s('polyline', { points: pts, class: cls, fill: 'none' }));
  }
  const total = (k) => buckets.reduce((a, b) => a + b[k], 0);
  container.replaceChildren(
    svg,
    h('p', { class: 'legend' },
      h('span', { class: 'key knocks' }, `knocks (${total('knocks')})`), ' ',
      h('span', { class: 'key rejects' }, `rejections (${total('rejects')})`)),
  );
}

// Adds one live event to the newest bucket (or a new one) without refetching.
export function bump(buckets, timeNs, key) {
  const t = Math.floor(Number(timeNs) / 1e9 / 60) * 60;
  let last = buckets[buckets.length - 1];
  if (!last || last.t < t) {
    last = { t, knocks: 0, rejects: 0 };
    buckets.push(last);
    while (buckets.length > 60) buckets.shift();
  }
  if (last.t === t) last[key] += 1;
}
