// Hand-written SVG: the usage charts (download above the axis, upload below,
// one pair of bars per hour or day) and the usage-vs-allowance gauge. Each
// chart carries its totals in data-total-up / data-total-down and in its
// caption, and a table of its numbers for screen readers.

import { h, s } from './dom.js';
import { formatBytes } from './format.js';

const W = 720;
const H = 220;
const PAD = { left: 56, right: 8, top: 12, bottom: 24 };

function label(start, granularity) {
  const d = new Date(start);
  if (granularity === 'hour') return `${String(d.getHours()).padStart(2, '0')}:00`;
  return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
}

export function usageChart({ id, title, series, granularity }) {
  const points = series.points || [];
  let up = 0;
  let down = 0;
  let max = 1;
  for (const p of points) {
    up += p.up_bytes;
    down += p.down_bytes;
    max = Math.max(max, p.up_bytes, p.down_bytes);
  }
  const plotW = W - PAD.left - PAD.right;
  const half = (H - PAD.top - PAD.bottom) / 2;
  const axisY = PAD.top + half;
  const step = plotW / Math.max(points.length, 1);
  const barW = Math.max(step * 0.7, 1);
  const every = Math.ceil(points.length / 8);
  const bars = points.map((p, i) => {
    const x = PAD.left + i * step + (step - barW) / 2;
    const dh = (p.down_bytes / max) * half;
    const uh = (p.up_bytes / max) * half;
    const when = label(p.start, granularity);
    return s('g', {},
      s('rect', { class: 'bar-down', x, y: axisY - dh, width: barW, height: dh },
        s('title', {}, `${when}: down ${formatBytes(p.down_bytes)}`)),
      s('rect', { class: 'bar-up', x, y: axisY, width: barW, height: uh },
        s('title', {}, `${when}: up ${formatBytes(p.up_bytes)}`)),
      i % every === 0 ? s('text', { class: 'tick', x: x + barW / 2, y: H - 6, 'text-anchor': 'middle' }, when) : null);
  });
  const summary = `${title}: ${formatBytes(down)} down, ${formatBytes(up)} up in ${points.length} ${granularity}s`;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': summary, class: 'chart' },
    s('text', { class: 'axis-label', x: PAD.left - 6, y: PAD.top + 10, 'text-anchor': 'end' }, formatBytes(max)),
    s('text', { class: 'axis-label', x: PAD.left - 6, y: axisY + 4, 'text-anchor': 'end' }, '0'),
    s('text', { class: 'axis-label', x: PAD.left - 6, y: H - PAD.bottom, 'text-anchor': 'end' }, formatBytes(max)),
    bars,
    s('line', { class: 'axis', x1: PAD.left, x2: W - PAD.right, y1: axisY, y2: axisY }));
  const rows = points.map((p) => h('tr', {},
    h('th', { scope: 'row', text: p.start }), h('td', { text: p.down_bytes }), h('td', { text: p.up_bytes })));
  return h('figure', {
    class: 'usage-chart', id,
    'data-granularity': series.granularity, 'data-from': series.from, 'data-to': series.to,
    'data-total-up': up, 'data-total-down': down, 'data-points': points.length,
  },
  h('figcaption', {},
    h('h3', { text: title }),
    h('span', { class: 'legend' },
      h('span', { class: 'key key-down' }), 'down ', h('strong', { class: 'total-down', text: formatBytes(down) }),
      ' ', h('span', { class: 'key key-up' }), 'up ', h('strong', { class: 'total-up', text: formatBytes(up) }))),
  svg,
  h('details', {}, h('summary', { text: 'Numbers (bytes)' }),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'start (UTC)' }), h('th', { scope: 'col', text: 'down' }), h('th', { scope: 'col', text: 'up' }))),
      h('tbody', {}, rows)))));
}

// counted vs allowance (null allowance: unlimited).
export function gauge({ counted, allowance }) {
  const unlimited = allowance === null || allowance === undefined;
  const ratio = unlimited ? 0 : (allowance === 0 ? 1 : counted / allowance);
  const pct = Math.round(ratio * 1000) / 10;
  const level = ratio >= 1 ? 'over' : ratio >= 0.8 ? 'high' : 'ok';
  const text = unlimited
    ? `${formatBytes(counted)} used, no quota (unlimited)`
    : `${formatBytes(counted)} of ${formatBytes(allowance)} used (${pct}%)`;
  const w = 400;
  return h('div', { class: 'gauge', id: 'gauge', 'data-counted': counted, 'data-allowance': unlimited ? '' : allowance },
    h('div', {
      role: 'meter', 'aria-label': 'Usage against allowance', 'aria-valuemin': 0,
      'aria-valuemax': unlimited ? 100 : allowance, 'aria-valuenow': unlimited ? 0 : Math.min(counted, allowance),
      'aria-valuetext': text,
    },
    s('svg', { viewBox: `0 0 ${w} 24`, preserveAspectRatio: 'none', class: 'gauge-bar', 'aria-hidden': 'true' },
      s('rect', { class: 'gauge-track', x: 0, y: 0, width: w, height: 24, rx: 4 }),
      unlimited ? null : s('rect', { class: `gauge-fill gauge-${level}`, x: 0, y: 0, width: Math.min(ratio, 1) * w, height: 24, rx: 4 }))),
    h('p', { class: 'gauge-text', text }));
}
