// The subscriber list: search (id or address), filters by state and plan, and
// cursor pagination. The filters live in the URL (#/subscribers?q=…), so a
// filtered list can be bookmarked; "Previous" walks back the cursors seen.
// Rows the listing does not describe fully get their plan, state and usage
// from each subscriber's own record.

import { api, isMissingFeature, subscriberPath, withQuery } from './api.js';
import { errorBox, h, replace, stateBadge, table } from './dom.js';
import { formatBytes } from './format.js';

const PAGE_SIZES = [25, 50, 100];
const trail = { key: '', cursors: [] };  // cursors of the pages before this one

export async function loadPlans() {
  try {
    const body = await api.get('/api/v1/plans');
    return (Array.isArray(body) ? body : body.items || []).map((p) => p.name);
  } catch (e) {
    if (isMissingFeature(e)) return null;
    throw e;
  }
}

function go(params) {
  location.hash = withQuery('#/subscribers', params);
}

function select(id, label, options, value) {
  return [h('label', { for: id, text: label }),
    h('select', { id, name: id }, options.map(([v, text]) => h('option', { value: v, selected: v === value, text })))];
}

async function fill(row, item) {
  let d = item;
  if (item.state === undefined || item.up_bytes === undefined) {
    d = await api.get(subscriberPath(item.id));
  }
  const state = typeof d.state === 'object' && d.state ? d.state.state : d.state;
  row.querySelector('.cell-plan').textContent = d.plan || '—';
  replace(row.querySelector('.cell-state'), stateBadge(state));
  row.querySelector('.cell-usage').textContent = d.up_bytes === undefined ? '—' : formatBytes(d.up_bytes + d.down_bytes);
}

export async function renderList({ view, query, isCurrent }) {
  const q = query.get('q') || '';
  const state = query.get('state') || '';
  const plan = query.get('plan') || '';
  const limit = PAGE_SIZES.includes(Number(query.get('limit'))) ? Number(query.get('limit')) : PAGE_SIZES[0];
  const cursor = query.get('cursor') || '';
  const key = JSON.stringify([q, state, plan, limit]);
  if (trail.key !== key || !cursor) {
    trail.key = key;
    trail.cursors = [];
  }
  const plans = await loadPlans();
  if (!isCurrent()) return;
  const form = h('form', { class: 'filters', role: 'search', id: 'filters' },
    h('label', { for: 'q', text: 'Search' }),
    h('input', { id: 'q', name: 'q', type: 'search', value: q, placeholder: 'id or address' }),
    select('state', 'State', [['', 'any'], ['normal', 'normal'], ['throttled', 'throttled'], ['blocked', 'blocked']], state),
    plans ? select('plan', 'Plan', [['', 'any'], ...plans.map((p) => [p, p])], plan) : null,
    select('limit', 'Per page', PAGE_SIZES.map((n) => [String(n), String(n)]), String(limit)),
    h('button', { type: 'submit', text: 'Apply' }));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    go({ q: f.get('q').trim(), state: f.get('state'), plan: f.get('plan') || '', limit: f.get('limit') });
  });
  const results = h('div', { id: 'results', 'aria-live': 'polite' }, h('p', { class: 'loading', text: 'Loading…' }));
  replace(view, h('h1', { text: 'Subscribers' }), form, results);

  let page;
  try {
    page = await api.get(withQuery('/api/v1/subscribers', { q, state, plan, limit, cursor }));
  } catch (e) {
    if (isCurrent()) replace(results, errorBox(e, { id: 'list-error' }));
    return;
  }
  if (!isCurrent()) return;
  const rows = page.items.map((item) => h('tr', { 'data-subscriber': item.id },
    h('td', {}, h('a', { href: `#/subscribers/${encodeURIComponent(item.id)}`, text: item.id })),
    h('td', { text: (item.addresses || []).join(', ') || '—' }),
    h('td', { class: 'cell-plan', text: '…' }),
    h('td', { class: 'cell-state', text: '…' }),
    h('td', { class: 'cell-usage', text: '…' })));
  const prev = h('button', { type: 'button', class: 'secondary', id: 'prev-page', disabled: !cursor, text: 'Previous' });
  const next = h('button', { type: 'button', class: 'secondary', id: 'next-page', disabled: !page.next_cursor, text: 'Next' });
  prev.addEventListener('click', () => go({ q, state, plan, limit, cursor: trail.cursors.pop() || '' }));
  next.addEventListener('click', () => {
    trail.cursors.push(cursor);
    go({ q, state, plan, limit, cursor: page.next_cursor });
  });
  replace(results,
    page.items.length
      ? table(`Subscribers${q ? ` matching “${q}”` : ''}`, ['Id', 'Addresses', 'Plan', 'State', 'Usage this cycle'], rows, { id: 'subscriber-table' })
      : h('p', { id: 'no-results', text: 'No subscribers match.' }),
    h('nav', { class: 'pager', 'aria-label': 'Pages' }, prev, next));
  await Promise.all(page.items.map((item, i) => fill(rows[i], item).catch(() => {
    rows[i].querySelector('.cell-state').textContent = '?';
  })));
}
