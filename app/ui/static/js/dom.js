// Small DOM helpers: elements are built with h(), never from HTML strings (no injection).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name === 'value' || (name in el && typeof value !== 'string')) el[name] = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// clear, then append (null/false children skipped, unlike Element.append)
export function replace(el, ...children) {
  return append(clear(el), children);
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (name === 'class') el.setAttribute('class', value);
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function fmtNum(v, digits = 4) {
  if (v === null || v === undefined) return '—';
  if (typeof v !== 'number') return String(v);
  if (Number.isInteger(v)) return v.toLocaleString('en');
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return String(Number(v.toPrecision(digits)));
}

export function fmtPct(v, digits = 1) {
  return v === null || v === undefined ? '—' : `${(v * 100).toFixed(digits)}%`;
}

export function age(iso, now = Date.now()) {
  if (!iso) return '—';
  const secs = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (secs < 60) return `${secs} s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
  return `${Math.floor(secs / 86400)} d ago`;
}

export function shortId(id) {
  return id ? id.slice(0, 8) : '';
}

export function statusBadge(status) {
  return h('span', { class: `badge status-${status}` }, status);
}

export function progressBar(fraction, label) {
  const pct = Math.round((fraction || 0) * 100);
  return h(
    'span',
    { class: 'progress' },
    h('progress', { max: 100, value: pct, 'aria-label': label || `progress ${pct}%` }),
    h('span', { class: 'progress-text' }, `${pct}%`),
  );
}

// Each cell names its column (data-label), so a narrow screen can show rows as cards.
export function labelCells(tr, columns) {
  [...tr.children].forEach((td, i) => {
    if (columns[i]) td.dataset.label = columns[i];
  });
  return tr;
}

const FOCUSABLE = 'a, button, input, select, textarea';

// replace() for a live list: the control that had focus in a row (by its data-key) has it
// again afterwards, so a refresh never throws a keyboard user back to the top of the page.
export function rerender(container, ...children) {
  const active = document.activeElement;
  let key = null;
  let index = -1;
  const row = active && container.contains(active) ? active.closest('[data-key]') : null;
  if (row) {
    key = row.dataset.key;
    index = [...row.querySelectorAll(FOCUSABLE)].indexOf(active);
  }
  replace(container, ...children);
  if (key !== null) {
    const again = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
    const target = again && again.querySelectorAll(FOCUSABLE)[index];
    if (target) target.focus({ preventScroll: true });
  }
  return container;
}

// A two-step confirmation in place (keyboard friendly, no modal dialog).
export function confirmButton(label, question, action, { danger = true } = {}) {
  const wrap = h('span', { class: 'confirm' });
  const start = h('button', { type: 'button', class: danger ? 'danger' : '' }, label);
  const show = (node) => replace(wrap, node);
  const ask = () => {
    const yes = h('button', { type: 'button', class: 'danger' }, `Yes, ${label.toLowerCase()}`);
    const no = h('button', { type: 'button' }, 'Keep');
    yes.addEventListener('click', async () => {
      yes.disabled = true;
      no.disabled = true;
      try {
        await action();
      } finally {
        show(start);
      }
    });
    no.addEventListener('click', () => {
      show(start);
      start.focus();
    });
    show(h('span', { class: 'confirm-ask', role: 'group', 'aria-label': question }, question, ' ', yes, ' ', no));
    yes.focus();
  };
  start.addEventListener('click', ask);
  wrap.append(start);
  wrap.button = start;
  return wrap;
}

export function errorBox(err) {
  return h('div', { class: 'error-box', role: 'alert' }, err.message || String(err));
}
