// The router: views live in the URL fragment (#/jobs, #/jobs/<id>, #/new, #/models,
// #/datasets, #/key); each view gets the main element and an AbortSignal that fires when
// the user leaves it (timers and streams stop).

import { getKey, onAuthFailure } from './api.js';
import { clear, h } from './dom.js';
import { jobView } from './views/job.js';
import { jobsView } from './views/jobs.js';
import { keyView } from './views/key.js';
import { datasetsView, modelsView } from './views/library.js';
import { newJobView } from './views/newjob.js';

const main = document.getElementById('main');
const banner = document.getElementById('banner');
let leave = null;

export function showBanner(text) {
  banner.textContent = text;
  banner.hidden = !text;
}

onAuthFailure((err) => {
  showBanner(
    err.problem.title === 'No API key'
      ? err.message
      : `Your API key was refused: ${err.message}. Enter a valid key to go on.`,
  );
  if (!location.hash.startsWith('#/key')) location.hash = '#/key';
});

const routes = [
  [/^#\/jobs\/([0-9a-zA-Z_-]+)$/, (m, ctx) => jobView(ctx, m[1])],
  [/^#\/jobs$/, (m, ctx) => jobsView(ctx)],
  [/^#\/new$/, (m, ctx) => newJobView(ctx)],
  [/^#\/models$/, (m, ctx) => modelsView(ctx)],
  [/^#\/datasets$/, (m, ctx) => datasetsView(ctx)],
  [/^#\/key$/, (m, ctx) => keyView(ctx)],
];

function markNav(hash) {
  for (const a of document.querySelectorAll('nav a')) {
    const here = hash === a.getAttribute('href') || hash.startsWith(`${a.getAttribute('href')}/`);
    if (here) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function route() {
  if (leave) leave.abort();
  leave = new AbortController();
  let hash = location.hash || '#/jobs';
  if (!getKey() && hash !== '#/key') hash = '#/key';
  if (hash !== location.hash) {
    history.replaceState(null, '', hash);
  }
  if (hash !== '#/key' && getKey()) showBanner('');
  markNav(hash);
  clear(main);
  const found = routes.find(([re]) => re.test(hash));
  const ctx = { main, signal: leave.signal, showBanner };
  try {
    if (found) await found[1](hash.match(found[0]), ctx);
    else main.append(h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/jobs' }, 'Go to jobs')));
  } catch (err) {
    if (err.name === 'AbortError') return;
    if (err.status === 401) return; // the banner and the key page say it
    main.append(h('div', { class: 'error-box', role: 'alert' }, err.message || String(err)));
  }
  const heading = main.querySelector('h1');
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
    document.title = `${heading.textContent} · prunekit`;
  }
}

window.addEventListener('hashchange', route);
route();
