// The web page in a real browser: Debian's /usr/bin/chromium, headless,
// driven by playwright-core. Started by web_world.py inside the gateway
// namespace, where ctquotad serves the API and the page on 127.0.0.1 and
// real traffic has been accounted. Each test compares what the page shows
// with what the API answers.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ADMIN, ARTIFACTS, BASE, BILLING, OWN_CYCLES, TRAFFIC, apiCall, apiCounts, apiGet, env, pageAll, rawGet } from './web_api.mjs';

const { chromium } = createRequire(path.join(env('CTQWEB_NODE_MODULES'), 'package.json'))('playwright-core');

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let context;
let profile;
const foreign = [];  // requests that left the daemon's origin (must stay empty)
const consoleErrors = [];

// ---------------------------------------------------------------- helpers

async function openPage(viewport = DESKTOP) {
  const page = await context.newPage();
  await page.setViewportSize(viewport);
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  return page;
}

// Signs in with the keyboard only: Tab to the token field, type, Enter.
async function signIn(page, token, hash = '#/') {
  await page.goto(`${BASE}/${hash}`);
  await page.locator('#signin').waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'token', 'the token field has the focus');
  await page.keyboard.type(token);
  await page.keyboard.press('Enter');
  await page.locator('#nav').waitFor({ state: 'visible' });
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

async function overviewCounts(page) {
  await page.locator('#state-counts').waitFor();
  return page.$$eval('[data-count-state]', (els) => Object.fromEntries(els.map((e) => [e.dataset.countState, Number(e.dataset.count)])));
}

// Waits until the list shows exactly `ids` (the view is redrawn on each hash change).
async function waitForRows(page, ids) {
  await page.waitForFunction((want) => JSON.stringify([...document.querySelectorAll('#subscriber-table tbody tr')]
    .map((r) => r.dataset.subscriber)) === JSON.stringify(want), ids);
}

async function badge(page) {
  return page.locator('#state-badge .badge').getAttribute('data-state');
}

// ---------------------------------------------------------------- setup

before(async () => {
  profile = mkdtempSync(path.join(tmpdir(), 'ctqweb-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium', headless: true, args: FLAGS, viewport: DESKTOP,
  });
  context.on('request', (req) => {
    if (!req.url().startsWith(`${BASE}/`)) foreign.push(req.url());
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

// ---------------------------------------------------------------- tests

test('ctquotad serves the page: types, caching, no traversal, no other files', async () => {
  const index = await rawGet('/');
  assert.equal(index.status, 200);
  assert.match(index.headers['content-type'], /^text\/html; charset=utf-8/);
  assert.equal(index.headers['cache-control'], 'no-cache');
  assert.match(index.headers['content-security-policy'], /default-src 'self'/);
  assert.match(index.body, /<script type="module" src="\/js\/main.js">/);
  assert.doesNotMatch(index.body, /https?:\/\//, 'no absolute URLs (no CDN) in index.html');
  for (const [p, type] of [['/index.html', 'text/html'], ['/js/main.js', 'text/javascript'],
    ['/css/app.css', 'text/css'], ['/favicon.svg', 'image/svg+xml']]) {
    const r = await rawGet(p);
    assert.equal(r.status, 200, p);
    assert.ok(r.headers['content-type'].startsWith(type), `${p}: ${r.headers['content-type']}`);
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    const again = await rawGet(p, 'GET', { 'If-None-Match': r.headers.etag });
    assert.equal(again.status, 304, `${p} revalidates`);
  }
  for (const p of ['/../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/js/../../etc/passwd', '/js/..%2f..%2fetc/passwd',
    '/..%2f..%2fetc%2fpasswd', '/js', '/js/', '/.git/config', '/nosuch.html', '//etc/passwd']) {
    const r = await rawGet(p);
    assert.ok(r.status === 404 || r.status === 400, `${p}: ${r.status}`);
    assert.match(r.headers['content-type'], /^application\/problem\+json/, p);
    assert.doesNotMatch(r.body, /root:/, p);
  }
  assert.equal((await rawGet('/', 'POST')).status, 405);
  assert.equal((await rawGet('/api/v1/nosuch')).status, 404);
});

test('sign in with the keyboard; the overview counts match the API', async () => {
  const page = await openPage();
  await signIn(page, ADMIN);
  assert.equal(await page.locator('#role').textContent(), 'admin');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('ctquota.token')), ADMIN);
  let shown;
  let want;
  for (let attempt = 0; attempt < 3; attempt += 1) {  // a state may change between the two reads
    shown = await overviewCounts(page);
    want = await apiCounts();
    if (JSON.stringify(shown) === JSON.stringify(want)) break;
    await page.reload();
  }
  assert.deepEqual(shown, want);
  const usage = await pageAll('/api/v1/usage', '&cycle=current', 10000);
  const totals = await page.locator('#traffic-total');
  assert.equal(Number(await totals.getAttribute('data-total-up')), usage.reduce((a, r) => a + r.up_bytes, 0));
  assert.equal(Number(await totals.getAttribute('data-total-down')), usage.reduce((a, r) => a + r.down_bytes, 0));
  const top = usage.filter((r) => r.up_bytes + r.down_bytes > 0)
    .sort((a, b) => (b.up_bytes + b.down_bytes) - (a.up_bytes + a.down_bytes) || (a.subscriber_id < b.subscriber_id ? -1 : 1))
    .slice(0, 10).map((r) => r.subscriber_id);
  assert.deepEqual(await page.$$eval('#top-table tbody tr', (rows) => rows.map((r) => r.dataset.subscriber)), top);
  // Each subscriber is summed over its own plan's cycle (home-100g: the month in Berlin;
  // prepaid-10g: 30 days from activation), and the page lists the cycles it sums,
  // one line per plan and cycle, as the export's rows give them.
  for (const [id, want] of Object.entries(OWN_CYCLES)) {
    const row = usage.find((r) => r.subscriber_id === id);
    assert.deepEqual({ plan: row.plan, start: row.cycle_start, end: row.cycle_end, up: row.up_bytes, down: row.down_bytes },
      want, id);
  }
  const cycles = new Map();
  for (const r of usage) {
    const key = JSON.stringify([r.plan ?? '', r.cycle_start, r.cycle_end]);
    cycles.set(key, (cycles.get(key) ?? 0) + 1);
  }
  const listed = await page.$$eval('#traffic-cycles li', (items) => items.map((li) => ({
    key: JSON.stringify([li.dataset.plan, li.dataset.cycleStart, li.dataset.cycleEnd]), text: li.textContent,
  })));
  assert.deepEqual(new Map(listed.map(({ key, text }) => [key, Number(/\((\d+) subscribers?\)$/.exec(text)?.[1])])), cycles);
  for (const { key, text } of listed) assert.ok(text.startsWith(`${JSON.parse(key)[0] || 'no plan'}: `), text);
  const starts = new Set(listed.map(({ key }) => JSON.parse(key)[1]));
  assert.ok(Object.values(OWN_CYCLES).every((c) => starts.has(c.start)) && starts.size >= 3, [...starts].join(' '));
  await page.locator('#recent-events .loading').waitFor({ state: 'detached' });
  await shot(page, 'overview-1280x800');
  await page.setViewportSize(PHONE);
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), 'no sideways scrolling on a phone');
  await shot(page, 'overview-phone');
  await page.close();
});

test('subscriber list: search, state filter, pagination, badges', async () => {
  const page = await openPage();
  await signIn(page, ADMIN, '#/subscribers');
  await page.locator('#subscriber-table').waitFor();
  const firstPage = await page.$$eval('#subscriber-table tbody tr', (rows) => rows.map((r) => r.dataset.subscriber));
  const apiFirst = (await apiGet('/api/v1/subscribers?limit=25')).items.map((i) => i.id);
  assert.deepEqual(firstPage, apiFirst);
  await page.locator('#next-page').click();
  const first = await apiGet('/api/v1/subscribers?limit=25');
  const secondPage = (await apiGet(`/api/v1/subscribers?limit=25&cursor=${encodeURIComponent(first.next_cursor)}`)).items.map((i) => i.id);
  await waitForRows(page, secondPage);
  assert.ok(secondPage.length > 0 && secondPage.every((id) => !firstPage.includes(id)), 'no repeats across pages');
  await page.locator('#prev-page').click();
  await waitForRows(page, firstPage);

  await page.getByLabel('Search').fill('web-sub-1');
  await page.getByLabel('Search').press('Enter');
  const found = (await apiGet('/api/v1/subscribers?q=web-sub-1&limit=25')).items.map((i) => i.id);
  assert.ok(found.length >= 10);
  await waitForRows(page, found);
  await page.locator('#subscriber-table .cell-state .badge').first().waitFor();

  const byPlan = await apiCall('GET', '/api/v1/subscribers?plan=web-tiny&limit=25');
  if (byPlan.status === 200) {
    await page.goto(`${BASE}/#/subscribers`);
    await page.waitForFunction(() => document.querySelector('#q')?.value === '' && document.querySelector('#plan'));
    await page.getByLabel('Plan').selectOption('web-tiny');
    await page.getByRole('button', { name: 'Apply' }).click();
    const want = byPlan.body.items.map((i) => i.id);
    await waitForRows(page, want);
    await page.waitForFunction(() => [...document.querySelectorAll('#subscriber-table .cell-plan')].every((c) => c.textContent === 'web-tiny'));
  }

  const filtered = await apiCall('GET', '/api/v1/subscribers?state=throttled&limit=25');
  await page.goto(`${BASE}/#/subscribers?state=throttled`);
  if (filtered.status !== 200) {  // the API has no state filter yet: the page says what the API said
    await page.locator('#list-error').waitFor();
    assert.ok((await page.locator('#list-error').textContent()).includes(filtered.body.detail));
    return;
  }
  const ids = filtered.body.items.map((i) => i.id);
  if (ids.length) {
    await waitForRows(page, ids);
    await page.locator('#subscriber-table .cell-state .badge').nth(ids.length - 1).waitFor();
    assert.deepEqual([...new Set(await page.$$eval('#subscriber-table .cell-state .badge', (b) => b.map((x) => x.dataset.state)))], ['throttled']);
  }
  await page.close();
});

test('subscriber with netns traffic: the charts\' totals match the API', async () => {
  const page = await openPage();
  await signIn(page, ADMIN, '#/subscribers/web-traffic');
  const daily = page.locator('#chart-daily');
  await daily.waitFor();
  const detail = await apiGet('/api/v1/subscribers/web-traffic');
  assert.deepEqual({ up: detail.up_bytes, down: detail.down_bytes }, TRAFFIC['web-traffic'], 'the API has the generated traffic');
  assert.ok(detail.down_bytes > 0 && detail.up_bytes > 0);
  for (const id of ['#chart-hourly', '#chart-daily']) {
    const chart = page.locator(id);
    const q = await chart.evaluate((e) => new URLSearchParams({ granularity: e.dataset.granularity, from: e.dataset.from, to: e.dataset.to }).toString());
    const series = await apiGet(`/api/v1/subscribers/web-traffic/usage?${q}`);
    const sum = (k) => series.points.reduce((a, p) => a + p[k], 0);
    assert.equal(Number(await chart.getAttribute('data-total-up')), sum('up_bytes'), `${id} up`);
    assert.equal(Number(await chart.getAttribute('data-total-down')), sum('down_bytes'), `${id} down`);
    assert.equal(Number(await chart.getAttribute('data-points')), series.points.length);
  }
  // All of this cycle's traffic falls in the daily chart of this cycle (and in the last 48 hours).
  assert.equal(Number(await daily.getAttribute('data-total-up')), detail.up_bytes);
  assert.equal(Number(await daily.getAttribute('data-total-down')), detail.down_bytes);
  assert.equal(Number(await page.locator('#chart-hourly').getAttribute('data-total-down')), detail.down_bytes);
  assert.equal(await page.locator('#subscriber-id').textContent(), 'web-traffic');
  assert.ok(await page.locator('#address-list [data-address]').count() >= 1);
  assert.ok(await page.locator('#admin-actions').isVisible());
  await shot(page, 'subscriber-1280x800');
  await page.setViewportSize(PHONE);
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), 'no sideways scrolling on a phone');
  await shot(page, 'subscriber-phone');
  await page.close();
});

test('a billing token gets a read-only page', async () => {
  const page = await openPage();
  await signIn(page, BILLING, '#/subscribers/web-traffic');
  await page.locator('#chart-daily').waitFor();
  assert.match(await page.locator('#role').textContent(), /billing/);
  assert.equal(await page.locator('#admin-actions').count(), 0);
  for (const name of ['Change plan', 'Set override', 'Add top-up', 'Bind', 'Release']) {
    assert.equal(await page.getByRole('button', { name, exact: true }).count(), 0, name);
  }
  await page.close();
});

test('a failed action shows the API\'s error message', async () => {
  const page = await openPage();
  await signIn(page, ADMIN, '#/subscribers/web-fail');
  await page.locator('#bind-form').waitFor();
  // 100.64.100.1 belongs to web-sub-01: the API refuses with 409 and changes nothing.
  await page.getByLabel('Bind an address').fill('100.64.100.1');
  await page.locator('#bind-form button[type=submit]').click();
  await page.locator('#confirm[open]').waitFor();
  await page.locator('#confirm-ok').click();
  const error = page.locator('#action-error');
  await error.waitFor();
  const direct = await apiCall('POST', '/api/v1/subscribers/web-fail/addresses', { body: { address: '100.64.100.1' } });
  assert.equal(direct.status, 409);
  const text = await error.textContent();
  assert.ok(text.includes(direct.body.detail), `page: ${text}\napi: ${direct.body.detail}`);
  assert.equal(await error.getAttribute('role'), 'alert');
  // A size the page cannot read is refused before any request, with a message.
  await page.getByLabel('Quota').fill('lots');
  await page.locator('#quota-form button[type=submit]').click();
  assert.match(await page.locator('#action-error').textContent(), /write a size like/);
  // Cancelling the confirmation sends nothing.
  await page.getByLabel('Bind an address').fill('100.64.101.9');
  await page.locator('#bind-form button[type=submit]').click();
  await page.keyboard.press('Escape');
  assert.equal((await apiGet('/api/v1/subscribers/web-fail')).addresses.length, 1);
  await page.close();
});

// Confirms the dialog and waits for the page's success note.
async function confirmAndWait(page, form) {
  await page.locator(`${form} button[type=submit]`).click();
  await page.locator('#confirm-ok').click();
  await page.locator('#action-ok').waitFor();
}

test('admin actions: plan, quota override, top-up, bind and release', async () => {
  const id = 'web-sub-30';
  const base = `/api/v1/subscribers/${id}`;
  const page = await openPage();
  await signIn(page, ADMIN, `#/subscribers/${id}`);
  await page.locator('#admin-actions').waitFor();

  await page.getByLabel('Bind an address').fill('100.64.102.1');
  await confirmAndWait(page, '#bind-form');
  assert.ok((await apiGet(base)).addresses.includes('100.64.102.1/32'));
  await page.locator('#address-list [data-address="100.64.102.1/32"]').waitFor();
  await page.getByLabel('Release an address').selectOption('100.64.102.1/32');
  await confirmAndWait(page, '#unbind-form');
  assert.ok(!(await apiGet(base)).addresses.includes('100.64.102.1/32'));

  assert.equal((await apiCall('GET', '/api/v1/plans')).status, 200);
  await page.getByLabel('Plan', { exact: true }).selectOption('web-tiny');
  await confirmAndWait(page, '#plan-form');
  assert.equal((await apiGet(base)).plan, 'web-tiny');
  await page.getByLabel('Quota', { exact: true }).fill('5 GB');
  await confirmAndWait(page, '#quota-form');
  assert.equal((await apiGet(`${base}/quota`)).quota_bytes, 5e9);
  await page.getByLabel('Amount').fill('1.5 GB');
  await confirmAndWait(page, '#topup-form');
  const topups = (await apiGet(`${base}/topups`)).items;
  assert.equal(topups.length, 1);
  assert.equal(topups[0].bytes, 1.5e9);
  assert.match(topups[0].idempotency_key, /^web-[0-9a-f]{32}$/);
  await page.locator('#topup-table').waitFor();
  await page.locator('#quota-remove').click();
  await page.locator('#confirm-ok').click();
  await page.locator('#action-ok').waitFor();
  assert.equal((await apiGet(`${base}/quota`)).quota_bytes, null);
  await page.close();
});

test('every form control has a label', async () => {
  const page = await openPage();
  await signIn(page, ADMIN, '#/subscribers/web-fail');
  await page.locator('#admin-actions').waitFor();
  const unlabelled = await page.$$eval('input, select, textarea', (els) => els
    .filter((e) => e.type !== 'hidden' && !e.labels?.length && !e.getAttribute('aria-label')).map((e) => e.outerHTML));
  assert.deepEqual(unlabelled, []);
  await page.close();
});

test('a top-up on a blocked subscriber turns the badge normal', async () => {
  let blocked = false;
  for (let i = 0; i < 40 && !blocked; i += 1) {
    const d = await apiGet('/api/v1/subscribers/web-blocked');
    blocked = d.state?.state === 'blocked';
    if (!blocked) await new Promise((r) => { setTimeout(r, 500); });
  }
  assert.ok(blocked, 'the policy engine did not block web-blocked (over its 100 kB plan) within 20 s');
  const page = await openPage();
  await signIn(page, ADMIN, '#/subscribers/web-blocked');
  await page.locator('#topup-form').waitFor();
  assert.equal(await badge(page), 'blocked');
  await page.getByLabel('Amount').fill('10 MB');
  await page.locator('#topup-form button[type=submit]').click();
  await page.locator('#confirm-ok').click();
  await page.locator('#action-ok').waitFor();
  for (let i = 0; i < 30 && (await badge(page)) !== 'normal'; i += 1) {
    await new Promise((r) => { setTimeout(r, 1000); });
    if (i % 5 === 4) await page.reload();
    await page.locator('#state-badge .badge').waitFor();
  }
  assert.equal(await badge(page), 'normal');
  assert.equal((await apiGet('/api/v1/subscribers/web-blocked')).state.state, 'normal');
  await shot(page, 'subscriber-after-topup');
  await page.close();
});

test('nothing was requested from anywhere but ctquotad, and no script error', () => {
  assert.deepEqual(foreign, []);
  assert.deepEqual(consoleErrors, []);
});
