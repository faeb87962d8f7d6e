// The report's sections as tables and charts. Pure functions of the job and its report
// (GET /v1/jobs/{id} and /report); sections whose keys are absent are left out.

import { barChart, dataTable, figure, lineChart, scatterChart, speedupChart } from './charts.js';
import { fmtBytes, fmtNum, fmtPct, h } from './dom.js';

const SKIP = new Set(['litert', 'device', 'device_name', 'runs', 'codec', 'context']);
const LOWER_BETTER = /loss|size_bytes|flops|latency|_ms$|relative_l2|kl_divergence|parameters/;
const HIGHER_BETTER = /accuracy|f1|top1|top5/;

// {"a.b": number} for every numeric leaf (SKIP subtrees left out)
export function flatten(obj, prefix = '', out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    if (SKIP.has(k)) continue;
    const path = prefix ? `${prefix}.${k}` : k;
    if (typeof v === 'number') out[path] = v;
    else if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, path, out);
  }
  return out;
}

// +1: an increase is better, -1: a decrease is better, 0: neither
export function direction(path) {
  if (HIGHER_BETTER.test(path)) return 1;
  if (LOWER_BETTER.test(path)) return -1;
  return 0;
}

function fmtMetric(path, v) {
  if (v === undefined || v === null) return '—';
  if (path.startsWith('size_bytes')) return fmtBytes(v);
  if (/sparsity|accuracy|f1|top1|top5/.test(path) && Math.abs(v) <= 1) return fmtPct(v, 2);
  if (/_ms$/.test(path)) return `${fmtNum(v, 3)} ms`;
  return fmtNum(v);
}

function prettyPath(path) {
  return path.replace(/_/g, ' ').split('.').join(' › ');
}

export function metricsTable(report) {
  const before = flatten(report.before);
  const after = flatten(report.after);
  const paths = [...new Set([...Object.keys(before), ...Object.keys(after)])];
  const rows = paths.map((path) => {
    const b = before[path];
    const a = after[path];
    let cell = h('td', { class: 'delta' }, '—');
    if (typeof a === 'number' && typeof b === 'number') {
      const d = a - b;
      const dir = direction(path) * Math.sign(d);
      const tiny = b !== 0 && Math.abs(d / b) < 0.005; // under half a percent: not coloured
      const cls = d === 0 || dir === 0 || tiny ? 'same' : dir > 0 ? 'better' : 'worse';
      const rel = b !== 0 ? ` (${d > 0 ? '+' : ''}${((d / Math.abs(b)) * 100).toFixed(1)}%)` : '';
      const word = cls === 'better' ? 'better' : cls === 'worse' ? 'worse' : '';
      const sign = d > 0 ? '+' : d < 0 ? '−' : '±';
      cell = h('td', { class: `delta ${cls}` }, `${sign}${fmtMetric(path, Math.abs(d))}${rel}`,
        word ? h('span', { class: 'sr-only' }, ` (${word})`) : null);
    }
    return h('tr', {}, h('th', { scope: 'row' }, prettyPath(path)),
      h('td', {}, fmtMetric(path, b)), h('td', {}, fmtMetric(path, a)), cell);
  });
  return h('div', { class: 'table-wrap' }, h('table', { class: 'metrics', id: 'metrics-table' },
    h('caption', {}, 'Before and after pruning; green: better, red: worse'),
    h('thead', {}, h('tr', {}, ['Metric', 'Before', 'After', 'Change'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows)));
}

export function layerFigure(job, report) {
  const kept = job.metrics?.details?.structured?.kept;
  if (kept && Object.keys(kept).length) {
    const rows = Object.entries(kept).map(([layer, k]) => ({
      label: layer, value: k.before ? k.after / k.before : 0, text: `${k.after} / ${k.before} kept`,
    }));
    return figure('Kept channels per layer',
      barChart(rows),
      dataTable(['Layer', 'Channels before', 'Channels after', 'Kept'],
        Object.entries(kept).map(([l, k]) => [l, k.before, k.after, fmtPct(k.before ? k.after / k.before : 0)])),
      `Kept channels per layer for ${rows.length} layers`);
  }
  const layers = report.layers || [];
  if (!layers.length) return null;
  const rows = layers.map((l) => ({
    label: l.name || l.layer, value: l.sparsity ?? 0, before: l.sparsity_before, text: fmtPct(l.sparsity),
  }));
  const rule = report.allocation?.rule ? `; layer budgets by ${report.allocation.rule}` : '';
  return figure(`Sparsity per layer (tick: before${rule})`,
    barChart(rows),
    dataTable(['Weight', 'Shape', 'Size', 'Zeros', 'Sparsity before', 'Sparsity after'],
      layers.map((l) => [l.name || l.layer, (l.shape || []).join('×'), fmtNum(l.size), fmtNum(l.zeros),
        fmtPct(l.sparsity_before), fmtPct(l.sparsity)])),
    `Sparsity per layer: ${rows.map((r) => `${r.label} ${r.text}`).join(', ')}`);
}

// tf -> "TensorFlow"; litert_tflite_int8_2threads -> "LiteRT tflite_int8, 2 threads"
export function runtimeName(runtime) {
  if (runtime === 'tf') return 'TensorFlow';
  const m = /^litert_(.+)_(\d+)threads?$/.exec(runtime);
  return m ? `LiteRT ${m[1]}, ${m[2]} thread${m[2] === '1' ? '' : 's'}` : runtime;
}

export function speedupFigure(report) {
  const rows = [];
  const skipped = [];
  for (const [runtime, batches] of Object.entries(report.speedup || {})) {
    for (const [batch, v] of Object.entries(batches || {})) {
      const label = `${runtimeName(runtime)} · ${batch.replace('_', ' ')}`;
      if (v && typeof v.median === 'number') {
        const [lo, hi] = Array.isArray(v.ci95) ? v.ci95 : [undefined, undefined];
        rows.push({ label, value: v.median, lo, hi, a: v.a?.median_ms, b: v.b?.median_ms });
      } else if (v && v.skipped) skipped.push(`${label}: ${v.skipped}`);
    }
  }
  if (!rows.length && !skipped.length) return null;
  return h('div', {},
    rows.length ? figure('Latency speed-up per runtime (95% interval; green: faster, red: slower, grey: within noise)',
      speedupChart(rows),
      dataTable(['Runtime · batch', 'Original (ms)', 'Pruned (ms)', 'Speed-up', '95% interval'],
        rows.map((r) => [r.label, fmtNum(r.a), fmtNum(r.b), `${fmtNum(r.value, 3)}x`,
          r.lo === undefined ? '—' : `${fmtNum(r.lo, 3)}–${fmtNum(r.hi, 3)}`])),
      `Speed-ups: ${rows.map((r) => `${r.label} ${fmtNum(r.value, 3)}x`).join(', ')}`) : null,
    skipped.length ? h('ul', { class: 'muted' }, skipped.map((t) => h('li', {}, `Not timed: ${t}`))) : null);
}

export function exportsTable(report) {
  const exports = report.exports;
  if (!exports || !Object.keys(exports).length) return null;
  return dataTable(['Format', 'Status', 'Size', 'Quantisation', 'Sparse storage', 'Accuracy in the interpreter'],
    Object.entries(exports).map(([fmt, e]) => [fmt, e.status ?? '—', fmtBytes(e.size_bytes),
      e.quantization ?? '—', e.sparse_storage === undefined ? '—' : e.sparse_storage ? 'yes' : 'no',
      fmtPct(report.after?.litert?.[fmt]?.quality?.accuracy ?? e.quality?.accuracy, 2)]),
    'LiteRT exports');
}

// Sensitivity curves: {layers: [{name, points: [{ratio, accuracy, loss, drop}]}], plot: {y}}.
// A sensitivity job has one in report.sensitivity; a search keeps one per family
// (report.search.sensitivity = {unstructured: {...}, structured: {...}}).
export function sensitivityReports(job, report) {
  const found = [];
  const visit = (obj, title) => {
    if (!obj || typeof obj !== 'object') return;
    if (Array.isArray(obj.layers)) found.push([title, obj]);
    else for (const [k, v] of Object.entries(obj)) if (v && Array.isArray(v.layers)) found.push([`${title} (${k})`, v]);
  };
  visit(report.sensitivity, 'Sensitivity');
  visit(report.search?.sensitivity, 'Sensitivity');
  if (!found.length) visit(job.metrics?.sensitivity, 'Sensitivity');
  return found;
}

export function sensitivityFigure(sens, title = 'Sensitivity') {
  const layers = (sens?.layers || []).filter((l) => Array.isArray(l.points) && l.points.length);
  if (!layers.length) return null;
  const yKey = sens.plot?.y || (layers[0].points.some((p) => typeof p.accuracy === 'number') ? 'accuracy' : 'loss');
  const shown = layers.slice(0, 12);
  const series = shown.map((l) => ({
    name: l.name, points: l.points.map((p) => ({ x: p.ratio, y: p[yKey] })),
  }));
  const note = layers.length > shown.length ? ` (first ${shown.length} of ${layers.length}; all in the table)` : '';
  return figure(`${title}: ${yKey} when one layer alone is pruned${note}`,
    lineChart(series, { xLabel: 'pruned fraction of the layer', yLabel: `validation ${yKey}` }),
    dataTable(['Layer', 'Ratio', 'Accuracy', 'Loss', 'Drop'],
      layers.flatMap((l) => l.points.map((p) => [l.name, fmtNum(p.ratio), fmtNum(p.accuracy), fmtNum(p.loss), fmtNum(p.drop)]))),
    `Sensitivity curves of ${layers.length} layers`);
}

// x of a candidate per objective: size is counted in non-zero parameters by the search
const OBJECTIVE_KEYS = {
  size: ['nonzero_params', 'size_bytes_estimate', 'size_bytes', 'compressed_bytes', 'size'],
  flops: ['flops', 'flops_nonzero'],
  latency: ['latency_ms', 'latency', 'median_ms'],
};
const NESTED = ['compressed', 'nonzero', 'median_ms', 'raw', 'value'];

function numberAt(obj, keys) {
  for (const k of keys) {
    const v = obj?.[k];
    if (typeof v === 'number') return [k, v];
    if (v && typeof v === 'object') {
      for (const n of NESTED) if (typeof v[n] === 'number') return [`${k}.${n}`, v[n]];
    }
  }
  return [null, undefined];
}

// Non-dominated points: smaller x and larger y are both better.
export function paretoFlags(points) {
  return points.map((p) => !points.some((q) => q !== p && q.x <= p.x && q.y >= p.y && (q.x < p.x || q.y > p.y)));
}

// report.search: {objective, candidates: [{index, ratio, val_accuracy, nonzero_params, flops,
// latency_ms, drop, within_budget, pareto}], pareto_front: [index], chosen: index, why}
export function paretoFigure(report) {
  const search = report.search;
  const candidates = search?.candidates;
  if (!Array.isArray(candidates) || !candidates.length) return null;
  const objective = search.objective || 'size';
  const xKeys = [...(OBJECTIVE_KEYS[objective] || []), ...Object.values(OBJECTIVE_KEYS).flat(), 'sparsity', 'ratio'];
  const yKeys = ['val_accuracy', 'validation_accuracy', 'accuracy', 'val_loss', 'loss'];
  const front = Array.isArray(search.pareto_front) ? new Set(search.pareto_front) : null;
  const chosenRef = search.chosen && typeof search.chosen === 'object' ? search.chosen.index : search.chosen;
  let xName = null;
  let yName = null;
  const points = candidates.map((c, i) => {
    const [xk, x] = numberAt(c, xKeys);
    const [yk, y] = numberAt(c, yKeys);
    xName = xName || xk;
    yName = yName || yk;
    const index = c.index ?? i;
    const label = `#${index}${c.family ? ` ${c.family}` : ''}${c.ratio !== undefined ? ` ratio ${c.ratio}` : ''}`;
    return { x, y, index, label, chosen: Boolean(c.chosen) || index === chosenRef, raw: c };
  }).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  if (!points.length) return null;
  const flags = paretoFlags(points);
  points.forEach((p, i) => {
    p.front = front ? front.has(p.index) : typeof p.raw.pareto === 'boolean' ? p.raw.pareto : flags[i];
  });
  const pick = points.find((p) => p.chosen);
  const why = search.why || search.reason;
  const yesNo = (v) => (v === undefined ? '—' : v ? 'yes' : 'no');
  return h('div', {},
    figure(`Search candidates: ${yName} against ${xName} (front joined, pick marked)`,
      scatterChart(points, { xLabel: xName, yLabel: yName }),
      dataTable(['Candidate', xName, yName, 'Drop', 'Within budget', 'On the front', 'Chosen'],
        points.map((p) => [p.label, fmtNum(p.x), fmtNum(p.y), fmtNum(p.raw.drop), yesNo(p.raw.within_budget),
          p.front ? 'yes' : 'no', p.chosen ? 'yes' : ''])),
      `${points.length} candidates${pick ? `; chosen ${pick.label}` : ''}`),
    why ? h('p', {}, h('strong', {}, 'Why this pick: '), String(why)) : null,
    search.test ? h('p', {}, `Test split: accuracy ${fmtPct(search.test.accuracy_before, 2)} before, ${fmtPct(search.test.accuracy_after, 2)} after.`) : null);
}
