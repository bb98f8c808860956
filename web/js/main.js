// The page's shell: sign-in, the header, and hash routes
//   #/                    overview
//   #/subscribers?q=…     the list
//   #/subscribers/<id>    one subscriber
// Every view renders into <main> and gets the focus, so keyboard and screen
// reader users land on the new content.

import { ApiError, probeRole, session } from './api.js';
import { errorBox, h, replace } from './dom.js';
import { renderOverview } from './overview.js';
import { renderList } from './subscribers.js';
import { renderSubscriber } from './subscriber.js';

const main = document.getElementById('main');
let generation = 0;  // a view still loading when the route changes draws nothing

function showChrome(signedIn) {
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('who').hidden = !signedIn;
  document.getElementById('role').textContent = signedIn
    ? (session.isAdmin ? 'admin' : 'billing (read-only)') : '';
  document.body.dataset.role = signedIn ? session.role : '';
}

function renderSignIn(message) {
  showChrome(false);
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false', 'aria-describedby': 'token-help' });
  const status = h('div', { id: 'signin-status', 'aria-live': 'polite' }, message ? errorBox(new Error(message)) : null);
  const form = h('form', { id: 'signin', class: 'card narrow' },
    h('h1', { text: 'Sign in' }),
    h('label', { for: 'token', text: 'API token' }), input,
    h('p', { id: 'token-help', class: 'help', text: 'A token from “ctquotad token create”. It is kept in this tab only (session storage). A billing token gets a read-only page.' }),
    h('button', { type: 'submit', text: 'Sign in' }),
    status);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    replace(status, h('p', { text: 'Checking the token…' }));
    try {
      const role = await probeRole(token);
      session.save(token, role);
      route();
    } catch (e) {
      replace(status, errorBox(e));
      input.focus();
    }
  });
  replace(main, form);
  input.focus();
}

function markNav(name) {
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.nav === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function route() {
  if (!session.token) {
    renderSignIn();
    return;
  }
  showChrome(true);
  const mine = ++generation;
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, queryText] = hash.split('?');
  const query = new URLSearchParams(queryText || '');
  const view = h('div', { class: 'view' }, h('p', { class: 'loading', text: 'Loading…' }));
  replace(main, view);
  main.focus({ preventScroll: true });
  const ctx = { view, query, isCurrent: () => mine === generation, admin: session.isAdmin };
  try {
    if (path === '/' || path === '') {
      markNav('overview');
      document.title = 'Overview · ctquota';
      await renderOverview(ctx);
    } else if (path === '/subscribers') {
      markNav('subscribers');
      document.title = 'Subscribers · ctquota';
      await renderList(ctx);
    } else if (path.startsWith('/subscribers/')) {
      markNav('subscribers');
      const id = decodeURIComponent(path.slice('/subscribers/'.length));
      document.title = `${id} · ctquota`;
      await renderSubscriber({ ...ctx, id });
    } else {
      replace(view, h('h1', { text: 'Not found' }), h('p', {}, 'No such page. ', h('a', { href: '#/', text: 'Go to the overview' })));
    }
  } catch (e) {
    if (ctx.isCurrent() && session.token) {
      replace(view, h('h1', { text: 'Could not load this page' }), errorBox(e instanceof ApiError ? e : new Error(String(e))));
    }
  }
}

document.getElementById('sign-out').addEventListener('click', () => {
  session.clear();
  location.hash = '#/';
  renderSignIn();
});
window.addEventListener('ctquota:signed-out', (ev) => renderSignIn(`Signed out: ${ev.detail || 'the token was refused'}`));
window.addEventListener('hashchange', route);
route();
