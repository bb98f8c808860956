// The page's only way to the server: the public REST API under /api/v1, with
// the token kept in session storage (gone when the tab closes). Errors come
// back as ApiError carrying the problem body's title, detail and field errors.

const TOKEN_KEY = 'ctquota.token';
const ROLE_KEY = 'ctquota.role';

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.title = (problem && problem.title) || `HTTP ${status}`;
    this.type = problem && problem.type;
    this.errors = (problem && Array.isArray(problem.errors)) ? problem.errors : [];
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  get role() { return sessionStorage.getItem(ROLE_KEY) || 'billing'; },
  get isAdmin() { return this.role === 'admin'; },
  save(token, role) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(ROLE_KEY, role);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ROLE_KEY);
  },
};

export function subscriberPath(id, ...rest) {
  return ['/api/v1/subscribers', encodeURIComponent(id), ...rest].join('/');
}

export function withQuery(path, query) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
  }
  const text = q.toString();
  return text ? `${path}?${text}` : path;
}

// An idempotency key without crypto.randomUUID (absent outside secure contexts).
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return 'web-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function send(method, path, { body, headers, token } = {}) {
  const h = { Accept: 'application/json', ...(headers || {}) };
  const t = token || session.token;
  if (t) h.Authorization = `Bearer ${t}`;
  let payload;
  if (body !== undefined) {
    h['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers: h, body: payload, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, { title: 'Network error', detail: `ctquotad did not answer (${e.message})` });
  }
  const text = await res.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!res.ok) {
    const problem = parsed && typeof parsed === 'object' ? parsed : { title: res.statusText, detail: text.slice(0, 300) };
    if (res.status === 401 && !token) {
      session.clear();
      window.dispatchEvent(new CustomEvent('ctquota:signed-out', { detail: problem.detail }));
    }
    throw new ApiError(res.status, problem);
  }
  return parsed;
}

export const api = {
  get: (path, opts) => send('GET', path, opts),
  post: (path, body, opts) => send('POST', path, { ...opts, body }),
  put: (path, body, opts) => send('PUT', path, { ...opts, body }),
  del: (path, opts) => send('DELETE', path, opts),
};

// Every item of a cursor-paginated listing.
export async function pageAll(path, query = {}, limit = 1000) {
  const items = [];
  let cursor = null;
  do {
    const body = await api.get(withQuery(path, { ...query, limit, cursor }));
    items.push(...body.items);
    cursor = body.next_cursor;
  } while (cursor);
  return items;
}

// Checks a token and tells its role with a request that cannot change
// anything: DELETE of a subscriber id no subscriber can have (a NUL byte).
// The API authenticates before it looks at the id: 401 for a bad token, 403
// for a billing token (read-only), 404 for an admin token.
export async function probeRole(token) {
  try {
    await send('DELETE', '/api/v1/subscribers/%00', { token });
  } catch (e) {
    if (e.status === 403) return 'billing';
    if (e.status === 404) return 'admin';
    throw e;
  }
  return 'admin';
}

// A feature of the API that this server may not have yet: no such route
// (404/405), or a query parameter it does not know (400).
export function isMissingFeature(err) {
  return err instanceof ApiError && (err.status === 404 || err.status === 405 ||
    ((err.status === 400 || err.status === 422) && /unknown query parameter/i.test(err.message)));
}
