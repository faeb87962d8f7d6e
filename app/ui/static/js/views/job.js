// One job: header with live status and progress, cancel/delete, downloads, the report's
// tables and charts once it succeeded, and the events log (live over SSE).

import { api, download, streamEvents } from '../api.js';
import { clear, confirmButton, fmtNum, h, progressBar, replace, shortId, statusBadge } from '../dom.js';
import {
  exportsTable, layerFigure, metricsTable, paretoFigure, sensitivityFigure, sensitivityReports, speedupFigure,
} from '../report.js';

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
const POLL_MS = 1500;
const IDLE_POLL_MS = 3000; // a finished job is still watched: deleted elsewhere, the page says so

function section(title, ...body) {
  const content = body.filter(Boolean);
  if (!content.length) return null;
  return h('section', { 'aria-label': title }, h('h2', {}, title), content);
}

function formatName(linkName) {
  return linkName === 'model' ? 'model (input’s format)' : linkName.replace(/^model_/, '');
}

function eventItem(ev) {
  const time = ev.at ? new Date(ev.at).toLocaleTimeString() : '';
  let text = ev.message;
  if (!text) {
    const d = ev.data || {};
    text = d.status ? `status: ${d.status}` : d.phase ? `phase: ${d.phase}` : JSON.stringify(d);
  }
  return h('li', { dataset: { seq: ev.seq } }, h('time', { datetime: ev.at || '' }, time), ' ',
    h('span', { class: `tag ev-${ev.type}` }, ev.type), ' ', text);
}

export async function jobView({ main, signal }, jobId) {
  const title = h('h1', {}, `Job ${shortId(jobId)}`);
  const header = h('div', { class: 'job-header card', id: 'job-header' });
  const announce = h('p', { class: 'sr-only', role: 'status' }); // status and phase changes only
  const actions = h('div', { class: 'actions' });
  const notice = h('div', { role: 'status', class: 'notice', id: 'job-notice' });
  const reportBox = h('div', { id: 'report' });
  const eventsList = h('ol', { class: 'events', id: 'events' });
  main.append(
    h('p', {}, h('a', { href: '#/jobs' }, '← All jobs')),
    title, announce, header, actions, notice, reportBox,
    h('section', { 'aria-label': 'Events' }, h('h2', {}, 'Events'), eventsList));

  let job = null;
  let gone = false;
  let reportShown = false;
  const seen = new Set();
  let timer = null;
  let actionsFor = null;

  function goneMessage() {
    if (gone) return;
    gone = true;
    clearTimeout(timer);
    clear(actions);
    replace(header, h('div', { class: 'error-box', role: 'alert', id: 'job-gone' },
      `This job no longer exists: it was deleted (here or elsewhere). `,
      h('a', { href: '#/jobs' }, 'Back to the jobs list')));
  }

  function addEvents(items) {
    for (const ev of items) {
      if (seen.has(ev.seq)) continue;
      seen.add(ev.seq);
      eventsList.append(eventItem(ev));
    }
  }

  function renderHeader() {
    const said = `Status ${job.status}, phase ${job.progress?.phase || 'none'}`;
    if (announce.textContent !== said) announce.textContent = said;
    const st = job.spec?.strategy || {};
    const params = Object.entries(st).filter(([k, v]) => k !== 'name' && v !== null)
      .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(', ');
    replace(header, 
      h('div', { class: 'status-line' }, statusBadge(job.status), ' ',
        h('span', { class: 'phase', id: 'job-phase' }, job.progress?.phase || ''), ' ',
        progressBar(job.progress?.fraction, 'job progress')),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Strategy'), h('dd', {}, h('strong', {}, st.name || '?'), params ? ` (${params})` : ''),
        h('dt', {}, 'Model'), h('dd', { class: 'mono' }, job.model_id),
        h('dt', {}, 'Dataset'), h('dd', { class: 'mono' }, job.dataset_id || 'none'),
        h('dt', {}, 'Labels'), h('dd', {}, Object.entries(job.metadata || {}).map(([k, v]) => `${k}=${v}`).join(', ') || 'none'),
        h('dt', {}, 'Created'), h('dd', {}, job.created_at),
        job.finished_at ? [h('dt', {}, 'Finished'), h('dd', {}, job.finished_at)] : null,
        job.attempts > 1 ? [h('dt', {}, 'Attempts'), h('dd', {}, job.attempts)] : null),
      job.error ? h('div', { class: 'error-box', role: 'alert' }, h('strong', {}, `${job.error.reason}: `), job.error.message) : null);
    if (job.status !== actionsFor) renderActions(); // not on every poll: focus stays put
  }

  function renderActions() {
    actionsFor = job.status;
    clear(actions);
    if (!TERMINAL.has(job.status) && job.status !== 'cancelling') {
      actions.append(confirmButton('Cancel', 'Cancel this job?', async () => {
        try {
          job = await api(`/v1/jobs/${jobId}/cancel`, { method: 'POST' });
          notice.textContent = 'Cancel requested.';
          renderHeader();
        } catch (err) {
          notice.textContent = `Cancel failed: ${err.message}`;
        }
      }));
    }
    if (TERMINAL.has(job.status)) {
      actions.append(confirmButton('Delete', 'Delete this job, its events and its files?', async () => {
        try {
          await api(`/v1/jobs/${jobId}`, { method: 'DELETE' });
          gone = true;
          clearTimeout(timer);
          location.hash = '#/jobs';
        } catch (err) {
          notice.textContent = err.status === 404 ? '' : `Delete failed: ${err.message}`;
          if (err.status === 404) goneMessage();
        }
      }));
    }
    if (job.status === 'succeeded') {
      const formats = Object.keys(job.links || {}).filter((k) => k === 'model' || k.startsWith('model_'));
      actions.append(h('span', { class: 'downloads', role: 'group', 'aria-label': 'Downloads' },
        formats.map((name) => h('button', {
          type: 'button', class: 'download', dataset: { format: name },
          onclick: async () => {
            notice.textContent = `Downloading ${formatName(name)}…`;
            try {
              const got = await download(job.links[name], `${jobId}-${name}`);
              notice.textContent = `Downloaded ${got.name} (${fmtNum(got.size)} bytes).`;
            } catch (err) {
              notice.textContent = `Download failed: ${err.message}`;
            }
          },
        }, `Download ${formatName(name)}`))));
    }
  }

  async function showReport() {
    reportShown = true;
    let report;
    try {
      report = await api(`/v1/jobs/${jobId}/report`, { signal });
    } catch (err) {
      if (err.status === 404) goneMessage();
      else if (err.name !== 'AbortError') reportBox.append(h('p', { class: 'error-box' }, `No report: ${err.message}`));
      return;
    }
    const evaluation = report.evaluation
      ? h('p', { class: 'muted' }, `Evaluated on the ${report.evaluation.split} split, ${report.evaluation.samples} samples.`)
      : h('p', { class: 'muted' }, 'No dataset: quality metrics need one; sizes, FLOPs and latency are measured.');
    replace(reportBox, 
      report.warnings?.length ? section('Warnings', h('ul', { class: 'warnings' }, report.warnings.map((w) => h('li', {}, w)))) : null,
      section('Before and after', evaluation, metricsTable(report)),
      section('Layers', layerFigure(job, report)),
      section('Latency per runtime', speedupFigure(report)),
      section('LiteRT exports', exportsTable(report)),
      section('Sensitivity', ...sensitivityReports(job, report).map(([title, sens]) => sensitivityFigure(sens, title))),
      section('Search', paretoFigure(report)),
    );
  }

  async function poll() {
    clearTimeout(timer);
    try {
      job = await api(`/v1/jobs/${jobId}`, { signal });
    } catch (err) {
      if (err.status === 404) goneMessage();
      else if (err.name !== 'AbortError' && err.status !== 401) notice.textContent = `Could not refresh: ${err.message}`;
      if (err.status === 404 || err.status === 401 || err.name === 'AbortError') return;
    }
    if (job) {
      renderHeader();
      if (job.status === 'succeeded' && !reportShown) await showReport();
    }
    const wait = job && TERMINAL.has(job.status) ? IDLE_POLL_MS : POLL_MS;
    if (!signal.aborted && !gone) timer = setTimeout(poll, wait);
  }
  signal.addEventListener('abort', () => clearTimeout(timer));

  // the first page of events, then the live stream from there
  try {
    addEvents((await api(`/v1/jobs/${jobId}/events`, { signal })).items);
  } catch (err) {
    if (err.status === 404) {
      goneMessage();
      header.querySelector('#job-gone').firstChild.textContent = `There is no job ${jobId} (it was deleted, or it belongs to another key). `;
      return;
    }
    throw err;
  }
  await poll();
  if (gone || signal.aborted) return;
  // the stream ends after the job's terminal event; a dropped connection resumes after the
  // last event seen (Last-Event-ID), as long as the job is unfinished and the page open
  const onEvent = (type, data) => {
    if (type === 'error') {
      if (/no longer exists/.test(data.message || '')) goneMessage();
      return;
    }
    addEvents([data]);
    if (type === 'status' || type === 'phase') poll();
  };
  const follow = async () => {
    while (!signal.aborted && !gone && !(job && TERMINAL.has(job.status))) {
      const last = Math.max(-1, ...seen);
      try {
        await streamEvents(`/v1/jobs/${jobId}/events`, onEvent, { signal, lastEventId: last >= 0 ? last : undefined });
      } catch (err) {
        if (err.name === 'AbortError' || err.status === 401 || err.status === 404) return;
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  };
  follow(); // not awaited: the view is drawn, the log keeps filling
}
