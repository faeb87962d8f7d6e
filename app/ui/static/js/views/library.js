// Models and datasets: what was uploaded, what the worker's inspection found, delete.

import { api } from '../api.js';
import { age, confirmButton, fmtBytes, fmtNum, h, labelCells, rerender, shortId } from '../dom.js';

const POLL_MS = 3000;

function shape(sh) {
  return `[${(sh || []).map((d) => (d === null ? '?' : d)).join(', ')}]`;
}

function signatures(details) {
  const sigs = details?.signatures || {};
  return Object.entries(sigs).map(([name, sig]) => h('div', { class: 'sig' }, h('span', { class: 'mono' }, name), ': ',
    (sig.inputs || []).map((t) => `${t.name} ${shape(t.shape)} ${t.dtype}`).join(', '), ' → ',
    (sig.outputs || []).map((t) => `${t.name} ${shape(t.shape)} ${t.dtype}`).join(', ')));
}

function inspectionCell(m) {
  const insp = m.inspection || {};
  if (insp.status === 'failed') {
    return h('td', {}, h('span', { class: 'badge status-failed' }, 'failed'), ' ', insp.error?.message || '');
  }
  if (insp.status !== 'succeeded') return h('td', {}, h('span', { class: 'badge status-queued' }, insp.status || '?'));
  const d = insp.details || {};
  const weights = d.prunable_weights || [];
  return h('td', {},
    h('div', {}, `${fmtNum(d.parameters?.total)} parameters, ${fmtNum(d.parameters?.prunable)} prunable`),
    signatures(d),
    h('details', {}, h('summary', {}, `${weights.length} prunable weight(s)`),
      h('ul', { class: 'compact' }, weights.map((w) => h('li', {}, h('span', { class: 'mono' }, w.name), ` ${shape(w.shape)}`)))));
}

async function listView({ main, signal }, kind, columns, cells, pending) {
  const tbody = h('tbody', {});
  const note = h('p', { role: 'status', class: 'muted' });
  const title = kind === 'model' ? 'Models' : 'Datasets';
  main.append(
    h('div', { class: 'title-row' }, h('h1', {}, title), h('a', { href: '#/new', class: 'button' }, `Upload on “New job”`)),
    h('div', { class: 'table-wrap' }, h('table', { id: `${kind}s-table`, class: 'stack' },
      h('thead', {}, h('tr', {}, [...columns, ''].map((c) => h('th', { scope: 'col' }, c)))), tbody)),
    note);
  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    let list;
    try {
      list = await api(`/v1/${kind}s?limit=100`, { signal });
    } catch (err) {
      if (err.name !== 'AbortError' && err.status !== 401) note.textContent = `Could not load: ${err.message}`;
      return;
    }
    rerender(tbody, ...list.items.map((item) => labelCells(h('tr', { dataset: { id: item.id, key: item.id } },
      cells(item),
      h('td', {}, confirmButton('Delete', `Delete ${item.filename}?`, async () => {
        try {
          await api(`/v1/${kind}s/${item.id}`, { method: 'DELETE' });
          note.textContent = `Deleted ${item.filename}.`;
        } catch (err) {
          note.textContent = `Not deleted: ${err.message}`;
        }
        refresh();
      }))), columns)));
    if (!list.items.length) note.textContent = `No ${kind}s yet.`;
    if (!signal.aborted && list.items.some(pending)) timer = setTimeout(refresh, POLL_MS);
  }
  signal.addEventListener('abort', () => clearTimeout(timer));
  await refresh();
}

export function modelsView(ctx) {
  return listView(ctx, 'model', ['Model', 'Format', 'Size', 'Uploaded', 'Inspection'], (m) => [
    h('td', {}, m.filename, h('div', { class: 'mono muted' }, shortId(m.id))),
    h('td', {}, m.format),
    h('td', {}, fmtBytes(m.size_bytes)),
    h('td', { title: m.created_at }, age(m.created_at)),
    inspectionCell(m),
  ], (m) => m.inspection?.status === 'pending');
}

export function datasetsView(ctx) {
  return listView(ctx, 'dataset', ['Dataset', 'Size', 'Uploaded', 'Splits'], (d) => [
    h('td', {}, d.filename, h('div', { class: 'mono muted' }, shortId(d.id))),
    h('td', {}, fmtBytes(d.size_bytes)),
    h('td', { title: d.created_at }, age(d.created_at)),
    h('td', {}, h('ul', { class: 'compact' }, Object.entries(d.splits || {}).map(([name, sp]) =>
      h('li', {}, `${name}: ${fmtNum(sp.samples)} samples, x ${shape(sp.x_shape)} ${sp.x_dtype}, y ${shape(sp.y_shape)} ${sp.y_dtype}`)))),
  ], () => false);
}
