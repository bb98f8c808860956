// Tiny DOM builders: every text goes in as a text node (never innerHTML), so
// ids, reasons and API messages cannot inject markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'text') {
      el.textContent = String(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function replace(el, ...children) {
  el.replaceChildren();
  return build(el, {}, children);
}

export function stateBadge(state) {
  const name = state || 'normal';
  return h('span', { class: `badge badge-${name}`, 'data-state': name, text: name });
}

// An error box for an ApiError or any Error: the problem's detail and, for a
// 422, each field's message.
export function errorBox(err, { id } = {}) {
  const fields = (err && err.errors) || [];
  return h('div', { class: 'error', role: 'alert', id },
    h('strong', { text: err && err.title ? `${err.title}: ` : 'Error: ' }),
    h('span', { class: 'error-detail', text: (err && err.message) || String(err) }),
    fields.length ? h('ul', {}, fields.map((f) => h('li', { text: `${f.field}: ${f.message}` }))) : null);
}

export function table(caption, headers, rows, { id } = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', { id },
      h('caption', { text: caption }),
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, rows)));
}
