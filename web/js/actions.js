// Admin actions on one subscriber: change the plan, set or remove this
// cycle's quota override, add a top-up, bind or release an address. Each asks
// for confirmation, then shows the API's answer: on failure the problem's
// detail and field errors, unchanged. The policy engine applies changes a
// moment later, so the page reloads the subscriber right away and twice more.

import { api, newKey, subscriberPath } from './api.js';
import { confirmAction } from './confirm.js';
import { errorBox, h, replace } from './dom.js';
import { formatBytes, parseBytes } from './format.js';
import { loadPlans } from './subscribers.js';

const flash = { id: null, text: null };
const RELOADS_MS = [1500, 4000];

function showFlash(id) {
  const box = document.getElementById('action-status');
  if (box && flash.id === id && flash.text) {
    replace(box, h('p', { class: 'ok', role: 'status', id: 'action-ok', text: flash.text }));
    box.focus({ preventScroll: true });
  }
}

function field(id, label, input, help) {
  return h('div', { class: 'field' }, h('label', { for: id, text: label }), input,
    help ? h('p', { class: 'help', id: `${id}-help`, text: help }) : null);
}

function bytesInput(id, placeholder) {
  return h('input', { id, name: id, type: 'text', inputmode: 'decimal', placeholder, 'aria-describedby': `${id}-help`, autocomplete: 'off' });
}

export async function adminActions(ctx) {
  const { id, detail, isCurrent, refresh } = ctx;
  const plans = await loadPlans();

  // One action: confirm, call, report, reload. `run` throws ApiError on failure.
  const act = (title, text, okLabel, run, done) => async (ev) => {
    ev.preventDefault();
    const box = document.getElementById('action-status');
    replace(box);  // the last action's note is not this one's
    let summary;
    try {
      summary = typeof text === 'function' ? text() : text;
    } catch (e) {
      replace(box, errorBox(e, { id: 'action-error' }));
      return;
    }
    if (!(await confirmAction(title, summary, okLabel))) return;
    replace(box, h('p', { text: 'Working…' }));
    try {
      await run();
    } catch (e) {
      replace(box, errorBox(e, { id: 'action-error' }));
      box.focus({ preventScroll: true });
      return;
    }
    flash.id = id;
    flash.text = done;
    await refresh();
    showFlash(id);
    for (const ms of RELOADS_MS) {
      setTimeout(async () => {
        if (isCurrent() && document.getElementById('subscriber-id')?.textContent === id) {
          await refresh({ partial: true }).catch(() => {});
        }
      }, ms);
    }
  };

  const needBytes = (input, what) => {
    const bytes = parseBytes(input.value);
    if (bytes === null || bytes <= 0) {
      throw Object.assign(new Error(`${what}: write a size like “10 GB”, “500 MB” or a number of bytes`), { title: 'Not a size' });
    }
    return bytes;
  };

  // Plan: a PUT with only "plan" leaves the addresses alone.
  const planSelect = h('select', { id: 'plan-select', name: 'plan' },
    h('option', { value: '', text: 'no plan (unlimited)', selected: !detail.plan }),
    (plans || []).map((p) => h('option', { value: p, text: p, selected: p === detail.plan })));
  const planForm = h('form', { id: 'plan-form', class: 'action' },
    h('h3', { text: 'Plan' }), field('plan-select', 'Plan', planSelect),
    h('button', { type: 'submit', text: 'Change plan' }));
  planForm.addEventListener('submit', act('Change plan',
    () => `Put ${id} on ${planSelect.value || 'no plan (unlimited)'}?`, 'Change plan',
    () => api.put(subscriberPath(id), { plan: planSelect.value || null }), 'Plan changed.'));

  const quotaInput = bytesInput('quota-bytes', 'e.g. 50 GB');
  const quotaForm = h('form', { id: 'quota-form', class: 'action' },
    h('h3', { text: 'Quota override (this cycle)' }),
    field('quota-bytes', 'Quota', quotaInput, 'Replaces the plan’s quota until the cycle ends.'),
    h('button', { type: 'submit', text: 'Set override' }));
  quotaForm.addEventListener('submit', act('Set quota override',
    () => `Set ${id}'s quota for this cycle to ${formatBytes(needBytes(quotaInput, 'Quota'))}?`, 'Set override',
    () => api.put(subscriberPath(id, 'quota'), { quota_bytes: needBytes(quotaInput, 'Quota') }), 'Quota override set.'));
  const clearQuota = h('button', { type: 'button', class: 'secondary', id: 'quota-remove', text: 'Remove override' });
  clearQuota.addEventListener('click', act('Remove quota override', `Remove ${id}'s quota override for this cycle (back to the plan's quota)?`,
    'Remove override', () => api.del(subscriberPath(id, 'quota')), 'Quota override removed.'));
  quotaForm.append(' ', clearQuota);

  const topupInput = bytesInput('topup-bytes', 'e.g. 10 GB');
  const daysInput = h('input', { id: 'topup-days', name: 'days', type: 'number', min: 1, max: 3650, value: 30, 'aria-describedby': 'topup-days-help' });
  const topupForm = h('form', { id: 'topup-form', class: 'action' },
    h('h3', { text: 'Top-up' }),
    field('topup-bytes', 'Amount', topupInput, 'Added to the allowance until it expires.'),
    field('topup-days', 'Valid for (days)', daysInput, 'From now.'),
    h('button', { type: 'submit', text: 'Add top-up' }));
  const expiry = () => new Date(Date.now() + Number(daysInput.value || 0) * 86400e3).toISOString().replace(/\.\d+Z$/, 'Z');
  topupForm.addEventListener('submit', act('Add top-up',
    () => `Add ${formatBytes(needBytes(topupInput, 'Amount'))} to ${id}, valid for ${daysInput.value} days?`, 'Add top-up',
    () => api.post(subscriberPath(id, 'topups'), { bytes: needBytes(topupInput, 'Amount'), expires_at: expiry() },
      { headers: { 'Idempotency-Key': newKey() } }), 'Top-up added.'));

  const bindInput = h('input', { id: 'bind-address', name: 'address', type: 'text', placeholder: '100.64.0.9 or 2001:db8::/64', autocomplete: 'off', 'aria-describedby': 'bind-address-help' });
  const bindForm = h('form', { id: 'bind-form' },
    h('h3', { text: 'Addresses' }),
    field('bind-address', 'Bind an address', bindInput, 'An IPv4/IPv6 address or prefix, from now on.'),
    h('button', { type: 'submit', text: 'Bind' }));
  bindForm.addEventListener('submit', act('Bind address', () => `Bind ${bindInput.value.trim()} to ${id}?`, 'Bind',
    () => api.post(subscriberPath(id, 'addresses'), { address: bindInput.value.trim() }), 'Address bound.'));
  const unbindSelect = h('select', { id: 'unbind-address', name: 'unbind' }, detail.addresses.map((a) => h('option', { value: a, text: a })));
  const unbindForm = h('form', { id: 'unbind-form', class: 'subform' },
    field('unbind-address', 'Release an address', unbindSelect),
    h('button', { type: 'submit', disabled: !detail.addresses.length, text: 'Release' }));
  unbindForm.addEventListener('submit', act('Release address', () => `Release ${unbindSelect.value} from ${id}? Its binding ends now.`, 'Release',
    () => api.del(subscriberPath(id, 'addresses', encodeURIComponent(unbindSelect.value))), 'Address released.'));

  if (!isCurrent()) return null;
  return h('section', { 'aria-labelledby': 'actions-h', id: 'admin-actions' },
    h('h2', { id: 'actions-h', text: 'Actions' }),
    h('div', { class: 'actions' }, planForm, quotaForm, topupForm, h('div', { class: 'action' }, bindForm, unbindForm)));
}

