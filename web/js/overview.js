// Overview: subscribers by state, the traffic of each subscriber's current cycle (the
// cycles summed are listed), the top 10 by usage
// and recent enforcement events. The API has no global event feed, so the
// events shown are those of the subscribers not in the normal state and of
// the top 10, merged newest first.

import { api, isMissingFeature, pageAll, subscriberPath, withQuery } from './api.js';
import { errorBox, h, replace, stateBadge, table } from './dom.js';
import { formatBytes, formatTime } from './format.js';

const STATES = ['throttled', 'blocked'];
const EVENTS_SHOWN = 20;

async function stateCounts() {
  const all = await pageAll('/api/v1/subscribers');
  const counts = { total: all.length, normal: all.length, throttled: 0, blocked: 0 };
  const ids = {};
  try {
    for (const state of STATES) {
      const items = await pageAll('/api/v1/subscribers', { state });
      counts[state] = items.length;
      counts.normal -= items.length;
      ids[state] = items.map((i) => i.id);
    }
  } catch (e) {
    if (!isMissingFeature(e)) throw e;
    return { counts: { total: all.length }, ids: {}, statesKnown: false };
  }
  return { counts, ids, statesKnown: true };
}

async function recentEvents(ids) {
  const events = [];
  await Promise.all(ids.map(async (id) => {
    try {
      const body = await api.get(withQuery(subscriberPath(id, 'events'), { limit: 10 }));
      for (const e of body.items) events.push({ ...e, subscriber: id });
    } catch (e) {
      if (!isMissingFeature(e)) throw e;
    }
  }));
  events.sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
  return events.slice(0, EVENTS_SHOWN);
}

function countCard(label, state, value) {
  return h('div', { class: 'card count', 'data-count-state': state, 'data-count': value ?? '' },
    h('span', { class: 'count-label' }, state && state !== 'total' ? stateBadge(state) : label),
    h('span', { class: 'count-value', text: value ?? '—' }));
}

function subscriberLink(id) {
  return h('a', { href: `#/subscribers/${encodeURIComponent(id)}`, text: id });
}

export function eventRows(events, withSubscriber) {
  return events.map((e) => h('tr', {},
    h('td', {}, h('time', { datetime: e.at, text: formatTime(e.at) })),
    withSubscriber ? h('td', {}, subscriberLink(e.subscriber)) : null,
    h('td', { text: e.kind }),
    h('td', {}, e.from_state ? stateBadge(e.from_state) : '', e.to_state ? [' → ', stateBadge(e.to_state)] : ''),
    h('td', { text: e.reason })));
}

// Which cycles the totals sum: one line per plan and cycle, with its subscribers.
function cycleList(items) {
  const groups = new Map();
  for (const r of items) {
    const key = `${r.plan ?? ''}\u0000${r.cycle_start}\u0000${r.cycle_end}`;
    const g = groups.get(key) || { plan: r.plan, start: r.cycle_start, end: r.cycle_end, n: 0 };
    g.n += 1;
    groups.set(key, g);
  }
  const sorted = [...groups.values()].sort((a, b) => ((a.plan ?? '') < (b.plan ?? '') ? -1 : (a.plan ?? '') > (b.plan ?? '') ? 1 : a.start < b.start ? -1 : 1));
  return h('ul', { class: 'help', id: 'traffic-cycles' }, sorted.map((g) => h('li', {
    'data-plan': g.plan ?? '', 'data-cycle-start': g.start, 'data-cycle-end': g.end,
    text: `${g.plan ?? 'no plan'}: ${formatTime(g.start)} – ${formatTime(g.end)} (${g.n} subscriber${g.n === 1 ? '' : 's'})`,
  })));
}

export async function renderOverview({ view, isCurrent }) {
  const [states, usage] = await Promise.all([
    stateCounts(),
    pageAll('/api/v1/usage', { cycle: 'current' }, 10000).then((items) => ({ items })),
  ]);
  if (!isCurrent()) return;
  let up = 0;
  let down = 0;
  for (const row of usage.items) {
    up += row.up_bytes;
    down += row.down_bytes;
  }
  const top = [...usage.items]
    .filter((r) => r.up_bytes + r.down_bytes > 0)
    .sort((a, b) => (b.up_bytes + b.down_bytes) - (a.up_bytes + a.down_bytes) || (a.subscriber_id < b.subscriber_id ? -1 : 1))
    .slice(0, 10);
  const c = states.counts;
  const eventsBox = h('section', { 'aria-labelledby': 'events-h', id: 'recent-events' },
    h('h2', { id: 'events-h', text: 'Recent enforcement events' }),
    h('p', { class: 'help', text: 'Of subscribers throttled or blocked now and of the top 10.' }),
    h('p', { class: 'loading', text: 'Loading…' }));
  replace(view,
    h('h1', { text: 'Overview' }),
    h('section', { 'aria-labelledby': 'counts-h' },
      h('h2', { id: 'counts-h', text: 'Subscribers' }),
      h('div', { class: 'cards', id: 'state-counts' },
        countCard('Total', 'total', c.total),
        states.statesKnown ? ['normal', ...STATES].map((st) => countCard(st, st, c[st])) : null),
      states.statesKnown ? null : h('p', { class: 'help', text: 'This server does not report states yet (no state filter in its API).' })),
    h('section', { 'aria-labelledby': 'traffic-h' },
      h('h2', { id: 'traffic-h', text: 'Traffic this cycle' }),
      h('p', { class: 'help', text: 'Each subscriber\'s own current billing cycle (its plan\'s; the calendar month in UTC without a plan), summed over all subscribers:' }),
      cycleList(usage.items),
      h('div', { class: 'cards', id: 'traffic-total', 'data-total-up': up, 'data-total-down': down },
        h('div', { class: 'card count' }, h('span', { class: 'count-label', text: 'Down' }), h('span', { class: 'count-value', text: formatBytes(down) })),
        h('div', { class: 'card count' }, h('span', { class: 'count-label', text: 'Up' }), h('span', { class: 'count-value', text: formatBytes(up) })),
        h('div', { class: 'card count' }, h('span', { class: 'count-label', text: 'Total' }), h('span', { class: 'count-value', text: formatBytes(up + down) })))),
    h('section', { 'aria-labelledby': 'top-h' },
      h('h2', { id: 'top-h', text: 'Top 10 by usage' }),
      top.length
        ? table('Subscribers with the most traffic this cycle', ['Subscriber', 'Down', 'Up', 'Total'],
          top.map((r) => h('tr', { 'data-subscriber': r.subscriber_id },
            h('td', {}, subscriberLink(r.subscriber_id)),
            h('td', { text: formatBytes(r.down_bytes) }), h('td', { text: formatBytes(r.up_bytes) }),
            h('td', { text: formatBytes(r.up_bytes + r.down_bytes) }))), { id: 'top-table' })
        : h('p', { text: 'No traffic yet this cycle.' })),
    eventsBox);
  const ids = [...new Set([...(states.ids.blocked || []), ...(states.ids.throttled || []), ...top.map((r) => r.subscriber_id)])];
  try {
    const events = await recentEvents(ids);
    if (!isCurrent()) return;
    eventsBox.lastChild.replaceWith(events.length
      ? table('Newest first', ['When', 'Subscriber', 'Kind', 'State', 'Reason'], eventRows(events, true), { id: 'events-table' })
      : h('p', { text: 'No enforcement events.' }));
  } catch (e) {
    if (isCurrent()) eventsBox.lastChild.replaceWith(errorBox(e));
  }
}
