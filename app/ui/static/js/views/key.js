// Enter the API key once; it is kept in sessionStorage for this tab only.

import { checkKey, clearKey, getKey, setKey } from '../api.js';
import { h } from '../dom.js';

export function keyView({ main, showBanner }) {
  const input = h('input', {
    id: 'api-key', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true,
    'aria-describedby': 'api-key-help api-key-error', class: 'wide',
  });
  const error = h('p', { id: 'api-key-error', class: 'field-error', role: 'alert' });
  const status = h('p', { class: 'muted', role: 'status' },
    getKey() ? 'A key is saved for this tab.' : 'No key saved yet.');
  const form = h('form', { class: 'card narrow', novalidate: true },
    h('label', { for: 'api-key' }, 'API key'),
    input,
    h('p', { id: 'api-key-help', class: 'help' },
      'Sent as "Authorization: Bearer …" to /v1 and kept in this tab’s session storage only. ',
      '`make run` creates a key for the tenant "local", prints it once and keeps it in var/api-key; ',
      'an operator creates others with `python -m app.auth.cli create --tenant NAME`.'),
    error,
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Save key'),
      h('button', { type: 'button', onclick: () => {
        clearKey();
        status.textContent = 'The key was removed from this tab.';
      } }, 'Forget key')),
    status);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    error.textContent = '';
    input.removeAttribute('aria-invalid');
    if (!key) {
      error.textContent = 'Enter a key: it starts with "pk_".';
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    const err = await checkKey(key).catch((ex) => ({ status: 0, message: ex.message }));
    if (err) {
      error.textContent = err.status === 401
        ? `This key was refused: ${err.message}. Check that you copied all of it, or ask for a new one.`
        : `The key could not be checked: ${err.message}`;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    setKey(key);
    showBanner('');
    location.hash = '#/jobs';
  });
  main.append(h('h1', {}, 'API key'), form);
}
