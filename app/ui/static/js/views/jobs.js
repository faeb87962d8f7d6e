// The jobs list: polled every 2 s (no reload), filtered by status and labels.

import { api } from '../api.js';
import { age, h, labelCells, progressBar, rerender, shortId, statusBadge } from '../dom.js';

const STATUSES = ['queued', 'running', 'cancelling', 'succeeded', 'failed', 'cancelled'];
const POLL_MS = 2000;
const filters = { statuses: new Set(), labels: '' }; // kept while the tab lives

export function parseLabels(text) {
  const out = [];
  for (const part of text.split(/[,\s]+/).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new Error(`label filter "${part}" is not key=value`);
    out.push([part.slice(0, eq), part.slice(eq + 1)]);
  }
  return out;
}

function query() {
  const q = new URLSearchParams({ limit: '50' });
  for (const st of filters.statuses) q.append('status', st);
  for (const [k, v] of parseLabels(filters.labels)) q.append(`metadata[${k}]`, v);
  return q;
}

function strategyOf(job) {
  const st = job.spec?.strategy || {};
  const amount = st.sparsity ?? st.ratio;
  return amount === undefined ? st.name : `${st.name} ${Math.round(amount * 100)}%`;
}

function labelsOf(job) {
  return Object.entries(job.metadata || {}).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`));
}

const COLUMNS = ['Job', 'Status', 'Strategy', 'Progress', 'Labels', 'Created'];

function row(job) {
  return labelCells(h('tr', { dataset: { job: job.id, status: job.status, key: job.id } },
    h('td', {}, h('a', { href: `#/jobs/${job.id}`, class: 'mono' }, shortId(job.id))),
    h('td', {}, statusBadge(job.status)),
    h('td', {}, strategyOf(job)),
    h('td', {}, h('span', { class: 'phase' }, job.progress?.phase || ''), ' ',
      progressBar(job.progress?.fraction, `job ${shortId(job.id)} progress`)),
    h('td', {}, labelsOf(job)),
    h('td', { title: job.created_at, class: 'age', dataset: { at: job.created_at } }, age(job.created_at))), COLUMNS);
}

export async function jobsView({ main, signal }) {
  const tbody = h('tbody', { id: 'jobs-body' });
  const note = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
  const labelInput = h('input', { id: 'label-filter', type: 'text', value: filters.labels,
    placeholder: 'team=vision', 'aria-describedby': 'label-help' });
  const filterError = h('p', { class: 'field-error', role: 'alert' });
  const boxes = STATUSES.map((st) => {
    const box = h('input', { type: 'checkbox', id: `st-${st}`, value: st, checked: filters.statuses.has(st) });
    box.addEventListener('change', () => {
      if (box.checked) filters.statuses.add(st);
      else filters.statuses.delete(st);
      refresh();
    });
    return h('label', { class: 'check', for: `st-${st}` }, box, st);
  });
  labelInput.addEventListener('change', () => {
    filters.labels = labelInput.value;
    refresh();
  });
  const filterForm = h('form', { class: 'filters', 'aria-label': 'Filter jobs' },
    h('fieldset', {}, h('legend', {}, 'Status'), boxes),
    h('div', {}, h('label', { for: 'label-filter' }, 'Labels'), labelInput,
      h('p', { id: 'label-help', class: 'help' }, 'key=value, several separated by spaces: all must match'),
      filterError));
  filterForm.addEventListener('submit', (e) => {
    e.preventDefault();
    filters.labels = labelInput.value;
    refresh();
  });
  main.append(
    h('div', { class: 'title-row' }, h('h1', {}, 'Jobs'), h('a', { href: '#/new', class: 'button primary' }, 'New job')),
    filterForm,
    h('div', { class: 'table-wrap' }, h('table', { class: 'jobs stack' },
      h('caption', { class: 'sr-only' }, 'Jobs, newest first'),
      h('thead', {}, h('tr', {}, COLUMNS.map((c) => h('th', { scope: 'col' }, c)))),
      tbody)),
    note);

  let timer = null;
  let shown = null; // the list as last drawn: unchanged, only the ages are updated
  async function refresh() {
    clearTimeout(timer);
    filterError.textContent = '';
    let q;
    try {
      q = query();
    } catch (err) {
      filterError.textContent = err.message;
      return;
    }
    try {
      const list = await api(`/v1/jobs?${q}`, { signal });
      const seen = JSON.stringify(list.items);
      if (seen !== shown) rerender(tbody, ...list.items.map(row));
      else for (const cell of tbody.querySelectorAll('td.age')) cell.textContent = age(cell.dataset.at);
      shown = seen;
      note.textContent = list.items.length
        ? `${list.items.length} job(s)${list.next_after ? ' (the newest 50)' : ''}, updated every 2 s`
        : 'No jobs match. Submit one from "New job".';
    } catch (err) {
      if (err.name === 'AbortError' || err.status === 401) return;
      note.textContent = `Could not load jobs: ${err.message}`;
    }
    if (!signal.aborted) timer = setTimeout(refresh, POLL_MS);
  }
  signal.addEventListener('abort', () => clearTimeout(timer));
  await refresh();
}
