// Hand-written SVG charts. Every chart comes with its data as a table (a toggle), so the
// numbers are readable without the picture (screen readers, copying, small screens).

import { fmtNum, h, s } from './dom.js';

// Drawn at the width of the page's column (read when drawn), so text keeps its size.
function width() {
  const main = document.getElementById('main');
  return Math.max(300, Math.min(1100, (main?.clientWidth || 800) - 60));
}

// A titled figure: the chart, and a button that swaps it for the same data as a table.
export function figure(title, chart, table, summary) {
  const body = h('div', { class: 'chart-body' }, chart);
  const tableBox = h('div', { class: 'chart-table', hidden: true }, table);
  const toggle = h('button', { type: 'button', class: 'small', 'aria-pressed': 'false' }, 'Show table');
  toggle.addEventListener('click', () => {
    const showTable = tableBox.hidden;
    tableBox.hidden = !showTable;
    body.hidden = showTable;
    toggle.setAttribute('aria-pressed', String(showTable));
    toggle.textContent = showTable ? 'Show chart' : 'Show table';
  });
  chart.setAttribute('role', 'img');
  chart.setAttribute('aria-label', summary || title);
  return h('figure', { class: 'chart' }, h('figcaption', {}, h('span', {}, title), toggle), body, tableBox);
}

export function dataTable(headers, rows, caption) {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      {},
      caption ? h('caption', {}, caption) : null,
      h('thead', {}, h('tr', {}, headers.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))),
    ),
  );
}

function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

// Horizontal bars, one per row: {label, value (0..max), text, before (optional, 0..max)}.
export function barChart(rows, { max = 1 } = {}) {
  const W = width();
  const ch = W < 500 ? 8.5 : 7; // a character's width at the chart's font size
  const labelWidth = Math.min(220, W * 0.35);
  const valueWidth = Math.max(50, ...rows.map((r) => String(r.text).length * ch + 10));
  const rowH = 22;
  const top = 6;
  const height = top * 2 + rows.length * rowH;
  const plotW = W - labelWidth - valueWidth;
  const svg = s('svg', { viewBox: `0 0 ${W} ${height}`, class: 'bars', preserveAspectRatio: 'xMinYMin meet' });
  rows.forEach((row, i) => {
    const y = top + i * rowH;
    const frac = max > 0 ? Math.max(0, Math.min(1, row.value / max)) : 0;
    svg.append(
      s('text', { x: labelWidth - 6, y: y + 15, 'text-anchor': 'end', class: 'label' },
        s('title', {}, row.label), truncate(row.label, Math.floor(labelWidth / ch) - 1)),
      s('rect', { x: labelWidth, y: y + 3, width: plotW, height: rowH - 8, class: 'track' }),
      s('rect', { x: labelWidth, y: y + 3, width: Math.max(0.5, frac * plotW), height: rowH - 8, class: 'bar' }),
      s('text', { x: labelWidth + plotW + 6, y: y + 15, class: 'value' }, row.text),
    );
    if (row.before !== undefined && row.before !== null && row.before > 0) {
      const bx = labelWidth + Math.min(1, row.before / max) * plotW;
      svg.append(s('line', { x1: bx, x2: bx, y1: y + 1, y2: y + rowH - 3, class: 'marker' }));
    }
  });
  return svg;
}

function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= step0) || step0;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(10)));
  return out;
}

function extent(values, pad = 0) {
  const finite = values.filter((v) => Number.isFinite(v));
  if (!finite.length) return [0, 1];
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (lo === hi) {
    lo -= Math.abs(lo) * 0.1 || 0.5;
    hi += Math.abs(hi) * 0.1 || 0.5;
  }
  const d = (hi - lo) * pad;
  return [lo - d, hi + d];
}

// Axes for x/y plots; returns the svg and the scale functions.
function axes({ xDomain, yDomain, xLabel, yLabel, height = 300, cls = 'plot' }) {
  const W = width();
  const m = { l: 58, r: 16, t: 12, b: 42 };
  const svg = s('svg', { viewBox: `0 0 ${W} ${height}`, class: cls, preserveAspectRatio: 'xMinYMin meet' });
  const x = (v) => m.l + ((v - xDomain[0]) / (xDomain[1] - xDomain[0])) * (W - m.l - m.r);
  const y = (v) => height - m.b - ((v - yDomain[0]) / (yDomain[1] - yDomain[0])) * (height - m.t - m.b);
  for (const t of niceTicks(...yDomain)) {
    svg.append(
      s('line', { x1: m.l, x2: W - m.r, y1: y(t), y2: y(t), class: 'grid' }),
      s('text', { x: m.l - 6, y: y(t) + 4, 'text-anchor': 'end', class: 'tick' }, fmtNum(t, 3)),
    );
  }
  for (const t of niceTicks(...xDomain)) {
    svg.append(s('text', { x: x(t), y: height - m.b + 16, 'text-anchor': 'middle', class: 'tick' }, fmtNum(t, 3)));
  }
  svg.append(
    s('line', { x1: m.l, x2: W - m.r, y1: height - m.b, y2: height - m.b, class: 'axis' }),
    s('line', { x1: m.l, x2: m.l, y1: m.t, y2: height - m.b, class: 'axis' }),
    s('text', { x: (m.l + W - m.r) / 2, y: height - 6, 'text-anchor': 'middle', class: 'axis-label' }, xLabel),
    s('text', { x: 14, y: (m.t + height - m.b) / 2, 'text-anchor': 'middle', class: 'axis-label',
      transform: `rotate(-90 14 ${(m.t + height - m.b) / 2})` }, yLabel),
  );
  return { svg, x, y };
}

// Lines: series [{name, points: [{x, y}]}], with a legend.
export function lineChart(series, { xLabel, yLabel }) {
  const xs = series.flatMap((se) => se.points.map((p) => p.x));
  const ys = series.flatMap((se) => se.points.map((p) => p.y));
  const { svg, x, y } = axes({ xDomain: extent(xs), yDomain: extent(ys, 0.05), xLabel, yLabel });
  series.forEach((se, i) => {
    const pts = se.points.filter((p) => Number.isFinite(p.y));
    const cls = `series s${i % 8}`;
    svg.append(
      s('polyline', { points: pts.map((p) => `${x(p.x)},${y(p.y)}`).join(' '), class: cls }),
      ...pts.map((p) => s('circle', { cx: x(p.x), cy: y(p.y), r: 3, class: `dot s${i % 8}` },
        s('title', {}, `${se.name}: ${fmtNum(p.x, 3)} → ${fmtNum(p.y)}`))),
    );
  });
  const legend = h('ul', { class: 'legend' },
    series.map((se, i) => h('li', {}, h('span', { class: `swatch s${i % 8}` }), se.name)));
  return h('div', { class: 'chart-stack' }, svg, legend);
}

// Points, a connected front and a marked pick: [{x, y, label, front, chosen}].
export function scatterChart(points, { xLabel, yLabel }) {
  const { svg, x, y } = axes({
    xDomain: extent(points.map((p) => p.x), 0.05),
    yDomain: extent(points.map((p) => p.y), 0.05),
    xLabel,
    yLabel,
  });
  const front = points.filter((p) => p.front).sort((a, b) => a.x - b.x);
  if (front.length > 1) {
    svg.append(s('polyline', { points: front.map((p) => `${x(p.x)},${y(p.y)}`).join(' '), class: 'series s0' }));
  }
  for (const p of points) {
    const cls = p.chosen ? 'dot chosen' : p.front ? 'dot s0' : 'dot other';
    svg.append(s('circle', { cx: x(p.x), cy: y(p.y), r: p.chosen ? 7 : 4, class: cls },
      s('title', {}, `${p.label}: ${fmtNum(p.x)}, ${fmtNum(p.y)}${p.chosen ? ' (chosen)' : ''}`)));
    if (p.chosen) {
      svg.append(s('text', { x: x(p.x) + 10, y: y(p.y) - 8, class: 'annot' }, 'chosen'));
    }
  }
  return svg;
}

// green: faster beyond the interval; red: slower beyond it; grey: within noise
function speedClass(r) {
  const lo = r.lo ?? r.value;
  const hi = r.hi ?? r.value;
  if (lo > 1) return 'faster';
  if (hi < 1) return 'slower';
  return 'unclear';
}

// Speed-ups with their 95% intervals and a line at 1x: [{label, value, lo, hi}].
export function speedupChart(rows) {
  const W = width();
  const ch = W < 500 ? 8.5 : 7;
  const labelWidth = Math.min(250, W * 0.42);
  const rowH = 24;
  const height = 30 + rows.length * rowH;
  const hi = Math.max(1.2, ...rows.map((r) => r.hi ?? r.value));
  const plotW = W - labelWidth - 70;
  const x = (v) => labelWidth + (v / hi) * plotW;
  const svg = s('svg', { viewBox: `0 0 ${W} ${height}`, class: 'bars', preserveAspectRatio: 'xMinYMin meet' });
  rows.forEach((r, i) => {
    const y = 6 + i * rowH;
    svg.append(
      s('text', { x: labelWidth - 6, y: y + 15, 'text-anchor': 'end', class: 'label' }, s('title', {}, r.label), truncate(r.label, Math.floor(labelWidth / ch) - 1)),
      s('rect', { x: labelWidth, y: y + 4, width: Math.max(0.5, x(r.value) - labelWidth), height: rowH - 10,
        class: `bar ${speedClass(r)}` }),
      s('text', { x: x(hi) + 6, y: y + 15, class: 'value' }, `${fmtNum(r.value, 3)}x`),
    );
    if (r.lo !== undefined && r.hi !== undefined) {
      svg.append(s('line', { x1: x(r.lo), x2: x(r.hi), y1: y + 9, y2: y + 9, class: 'whisker' }));
    }
  });
  const base = x(1);
  svg.append(
    s('line', { x1: base, x2: base, y1: 2, y2: height - 22, class: 'reference' }),
    s('text', { x: base, y: height - 8, 'text-anchor': 'middle', class: 'tick' }, '1x (no change)'),
  );
  return svg;
}
