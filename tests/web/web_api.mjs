// The API side of the web tests: the world web_world.py made (from the
// environment) and plain HTTP calls to ctquotad, to compare the page with.

import assert from 'node:assert/strict';
import http from 'node:http';

export const env = (name) => {
  if (!process.env[name]) throw new Error(`${name} is not set: run this through web_world.py`);
  return process.env[name];
};
export const BASE = env('CTQWEB_BASE');
export const ADMIN = env('CTQWEB_ADMIN');
export const BILLING = env('CTQWEB_BILLING');
export const ARTIFACTS = env('CTQWEB_ARTIFACTS');
export const TRAFFIC = JSON.parse(env('CTQWEB_TRAFFIC'));
// Subscribers on plans with cycles of their own: {id: {plan, start, end, up, down}}.
export const OWN_CYCLES = JSON.parse(env('CTQWEB_OWN_CYCLES'));

export async function apiCall(method, p, { token = ADMIN, body, headers = {} } = {}) {
  const res = await fetch(BASE + p, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

export async function apiGet(p, token = ADMIN) {
  const r = await apiCall('GET', p, { token });
  assert.equal(r.status, 200, `GET ${p}: ${JSON.stringify(r.body)}`);
  return r.body;
}

export async function pageAll(p, query = '', limit = 1000) {
  const items = [];
  let cursor = null;
  do {
    const body = await apiGet(`${p}?limit=${limit}${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    items.push(...body.items);
    cursor = body.next_cursor;
  } while (cursor);
  return items;
}

// The raw path goes out as written (fetch would normalise "..").
export function rawGet(rawPath, method = 'GET', headers = {}) {
  const url = new URL(BASE);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path: rawPath, method, headers }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

export async function apiCounts() {
  const total = (await pageAll('/api/v1/subscribers')).length;
  const probe = await apiCall('GET', '/api/v1/subscribers?state=blocked&limit=1');
  if (probe.status !== 200) return { total };
  const throttled = (await pageAll('/api/v1/subscribers', '&state=throttled')).length;
  const blocked = (await pageAll('/api/v1/subscribers', '&state=blocked')).length;
  return { total, normal: total - throttled - blocked, throttled, blocked };
}

