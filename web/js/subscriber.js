// One subscriber: state (with reason and since when), usage against the
// allowance, hourly and daily charts, addresses, plan, top-ups and the audit
// trail (enforcement events, newest first). Admin actions are in actions.js;
// a billing token never sees them.

import { api, isMissingFeature, subscriberPath, withQuery } from './api.js';
import { adminActions } from './actions.js';
import { gauge, usageChart } from './charts.js';
import { errorBox, h, replace, stateBadge, table } from './dom.js';
import { formatBytes, formatRate, formatTime } from './format.js';
import { eventRows } from './overview.js';

const HOURS = 48;

function stateOf(d) {
  const st = d.state && typeof d.state === 'object' ? d.state : { state: d.state || 'normal' };
  return { state: st.state || 'normal', ...st };
}

function facts(d) {
  const st = stateOf(d);
  const rate = st.state === 'throttled' ? ` (${formatRate(st.down_bps)} down, ${formatRate(st.up_bps)} up)` : '';
  const row = (label, value, id) => [h('dt', { text: label }), h('dd', { id }, value)];
  return h('dl', { class: 'facts' },
    row('State', [stateBadge(st.state), rate], 'fact-state'),
    row('Reason', st.reason || '—', 'state-reason'),
    row('Since', st.since ? h('time', { datetime: st.since, text: formatTime(st.since) }) : '—', 'state-since'),
    row('Plan', d.plan || (d.plan === null ? 'none (unlimited)' : '—'), 'fact-plan'),
    row('Cycle', `${formatTime(d.cycle_start)} – ${formatTime(d.cycle_end)}`),
    row('Down / up this cycle', `${formatBytes(d.down_bytes)} / ${formatBytes(d.up_bytes)}`, 'fact-usage'),
    row('Remaining', d.remaining_bytes === undefined || d.remaining_bytes === null ? '—' : formatBytes(d.remaining_bytes)),
    row('Subscriber since', formatTime(d.created_at)));
}

async function charts(id, d) {
  const now = new Date();
  const hourFrom = new Date(now.getTime() - (HOURS - 1) * 3600e3);
  const [hourly, daily] = await Promise.all([
    api.get(withQuery(subscriberPath(id, 'usage'), { granularity: 'hour', from: hourFrom.toISOString(), to: now.toISOString() })),
    api.get(withQuery(subscriberPath(id, 'usage'), { granularity: 'day', from: d.cycle_start, to: d.cycle_end })),
  ]);
  return [
    usageChart({ id: 'chart-hourly', title: `Hourly, last ${HOURS} hours`, series: hourly, granularity: 'hour' }),
    usageChart({ id: 'chart-daily', title: 'Daily, this cycle', series: daily, granularity: 'day' }),
  ];
}

async function optional(load, fallback) {
  try {
    return await load();
  } catch (e) {
    if (isMissingFeature(e)) return fallback;
    throw e;
  }
}

function topupTable(items) {
  if (items === null) return h('p', { class: 'help', text: 'This server has no top-ups yet.' });
  if (!items.length) return h('p', { text: 'No top-ups.' });
  return table('Newest first', ['Bytes', 'Added', 'Expires'], items.map((t) => h('tr', {},
    h('td', { text: formatBytes(t.bytes) }), h('td', { text: formatTime(t.created_at) }), h('td', { text: formatTime(t.expires_at) }))), { id: 'topup-table' });
}

function auditTrail(id, first) {
  const section = h('section', { 'aria-labelledby': 'audit-h', id: 'audit' }, h('h2', { id: 'audit-h', text: 'Audit trail' }));
  if (first === null) {
    section.append(h('p', { class: 'help', text: 'This server records no enforcement events yet.' }));
    return section;
  }
  if (!first.items.length) {
    section.append(h('p', { text: 'No events.' }));
    return section;
  }
  const body = table('Enforcement events, newest first', ['When', 'Kind', 'State', 'Reason'], eventRows(first.items, false), { id: 'audit-table' });
  section.append(body);
  let cursor = first.next_cursor;
  if (cursor) {
    const more = h('button', { type: 'button', class: 'secondary', text: 'Older events' });
    more.addEventListener('click', async () => {
      try {
        const page = await api.get(withQuery(subscriberPath(id, 'events'), { limit: 50, cursor }));
        body.querySelector('tbody').append(...eventRows(page.items, false));
        cursor = page.next_cursor;
        more.hidden = !cursor;
      } catch (e) {
        more.replaceWith(errorBox(e));
      }
    });
    section.append(more);
  }
  return section;
}

// partial: only the parts that change by themselves (state, usage, charts,
// top-ups, events); the action forms, and what is typed into them, stay.
export async function renderSubscriber(ctx, { partial = false } = {}) {
  const { view, id, isCurrent, admin } = ctx;
  const d = await api.get(subscriberPath(id));
  const [chartEls, topups, events] = await Promise.all([
    charts(id, d),
    optional(() => api.get(subscriberPath(id, 'topups')).then((b) => b.items), null),
    optional(() => api.get(withQuery(subscriberPath(id, 'events'), { limit: 50 })), null),
  ]);
  if (!isCurrent()) return;
  const st = stateOf(d);
  const counted = d.counted_bytes ?? (d.up_bytes + d.down_bytes);
  const allowance = d.quota_bytes === undefined ? null : d.quota_bytes;
  const addresses = h('ul', { id: 'address-list', class: 'plain' },
    d.addresses.length ? d.addresses.map((a) => h('li', { 'data-address': a }, h('code', { text: a }))) : h('li', { text: 'none' }));
  const live = [
    h('span', { id: 'state-badge' }, stateBadge(st.state)),
    h('div', { class: 'columns', id: 'subscriber-summary' },
      h('section', { 'aria-labelledby': 'summary-h' }, h('h2', { id: 'summary-h', text: 'Summary' }), facts(d)),
      h('section', { 'aria-labelledby': 'usage-h' }, h('h2', { id: 'usage-h', text: 'Usage against the allowance' }),
        gauge({ counted, allowance }),
        h('h3', { text: 'Addresses' }), addresses,
        h('h3', { text: 'Top-ups' }), topupTable(topups))),
    h('section', { 'aria-labelledby': 'charts-h', id: 'charts' }, h('h2', { id: 'charts-h', text: 'Usage' }), h('div', { class: 'charts' }, chartEls)),
    auditTrail(id, events),
  ];
  if (partial && view.querySelector('#subscriber-summary')) {
    for (const node of live) view.querySelector(`#${node.id}`)?.replaceWith(node);
    return;
  }
  const [badge, summary, chartSection, audit] = live;
  replace(view,
    h('p', {}, h('a', { href: '#/subscribers', text: '← Subscribers' })),
    h('h1', {}, h('span', { id: 'subscriber-id', text: d.id }), ' ', badge),
    h('div', { id: 'action-status', 'aria-live': 'polite', tabindex: -1 }),
    summary, chartSection,
    admin ? await adminActions({ ...ctx, detail: d, refresh: (opts) => renderSubscriber(ctx, opts) }) : null,
    audit);
}
