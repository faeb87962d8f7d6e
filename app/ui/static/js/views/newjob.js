// New job: pick or upload a model and a dataset (upload progress from XHR), choose a
// strategy, fill the form generated from its JSON Schema, submit. A 422 puts each field
// error next to its field.

import { ApiError, api, upload } from '../api.js';
import { clear, fmtBytes, h, replace, shortId } from '../dom.js';
import { clearErrors, field, objectFields, showFieldErrors } from '../form.js';

// Job-level options (JobCreate outside `strategy`), in the same JSON Schema form; nothing
// is prefilled, so an untouched option is not sent and the API's default applies.
const JOB_OPTIONS = {
  type: 'object',
  properties: {
    fine_tune: {
      type: 'object', title: 'Fine-tuning',
      description: 'Recovery training after pruning, on the dataset’s train split (needs a dataset). Leave empty for none.',
      properties: {
        epochs: { type: 'integer', minimum: 0, maximum: 1000, description: 'API default 1 when fine-tuning is asked for.' },
        batch_size: { type: 'integer', minimum: 1, maximum: 65536, description: 'API default 64.' },
        learning_rate: { type: 'number', exclusiveMinimum: 0, maximum: 10, description: 'API default 0.001.' },
      },
    },
    preprocessing: {
      type: 'object', title: 'Preprocessing',
      properties: {
        rescale: { type: 'number', description: 'Multiply the dataset’s inputs by this (e.g. 0.00392 for 0..255 pixels).' },
      },
    },
    exports: {
      type: 'array', items: { enum: ['tflite', 'tflite_int8'] },
      description: 'LiteRT files to produce next to the pruned model (each downloadable with ?format=).',
    },
    exclude: { type: 'array', items: { type: 'string' }, description: 'Weights never pruned: one regular expression per line, matched against weight names.' },
    seed: { type: 'integer', minimum: 0, maximum: 2147483647, description: 'Fixes the random choices, for a repeatable job.' },
  },
};

// one key per submission: a retried click is not a second job (randomUUID needs a secure context)
function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function parseLabels(text) {
  const out = {};
  for (const line of text.split(/\n|,/).map((l) => l.trim()).filter(Boolean)) {
    const eq = line.indexOf('=');
    if (eq <= 0) throw new ApiError(422, { errors: [{ field: 'body.metadata', message: `"${line}" is not key=value` }] });
    out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return out;
}

function uploader(kind, onDone) {
  const id = `${kind}-file`;
  const input = h('input', { type: 'file', id, 'aria-describedby': `${id}-status` });
  const bar = h('progress', { max: 100, value: 0, hidden: true, id: `${id}-progress`, 'aria-label': `${kind} upload progress` });
  const status = h('p', { id: `${id}-status`, class: 'help', role: 'status' },
    kind === 'model' ? 'A .keras file or a SavedModel as .zip / .tar.gz.' : 'An .npz with x_train, y_train (and x_test, y_test).');
  input.addEventListener('change', async () => {
    const file = input.files[0];
    if (!file) return;
    bar.hidden = false;
    bar.value = 0;
    status.textContent = `Uploading ${file.name} (${fmtBytes(file.size)})…`;
    try {
      const made = await upload(`/v1/${kind}s`, file, (loaded, total) => {
        bar.value = Math.round((loaded / total) * 100);
        status.textContent = `Uploading ${file.name}: ${fmtBytes(loaded)} of ${fmtBytes(total)}`;
      });
      bar.value = 100;
      status.textContent = `Uploaded ${file.name} as ${shortId(made.id)}.`;
      input.value = '';
      await onDone(made);
    } catch (err) {
      bar.hidden = true;
      status.textContent = `Upload failed: ${err.message}`;
    }
  });
  return h('div', { class: 'field' }, h('label', { for: id }, `Upload a ${kind}`), input, bar, status);
}

function modelLabel(m) {
  const insp = m.inspection?.status;
  return `${m.filename} · ${shortId(m.id)} · ${fmtBytes(m.size_bytes)}${insp && insp !== 'succeeded' ? ` · inspection ${insp}` : ''}`;
}

export async function newJobView({ main, signal }) {
  const [strategies, models, datasets] = await Promise.all([
    api('/v1/strategies', { signal }), api('/v1/models?limit=100', { signal }), api('/v1/datasets?limit=100', { signal }),
  ]);
  const modelSelect = h('select', { id: 'model-select', 'aria-describedby': 'f-body-model_id-error' });
  const datasetSelect = h('select', { id: 'dataset-select', 'aria-describedby': 'f-body-dataset_id-error' });
  const fillModels = (items, pick) => {
    replace(modelSelect, h('option', { value: '' }, items.length ? '(choose a model)' : '(upload a model first)'),
      items.map((m) => h('option', { value: m.id, selected: m.id === pick }, modelLabel(m))));
  };
  const fillDatasets = (items, pick) => {
    replace(datasetSelect, h('option', { value: '' }, '(none: no quality metrics, no fine-tuning)'),
      items.map((d) => h('option', { value: d.id, selected: d.id === pick }, `${d.filename} · ${shortId(d.id)} · ${fmtBytes(d.size_bytes)}`)));
  };
  fillModels(models.items);
  fillDatasets(datasets.items);

  const byName = new Map(strategies.items.map((st) => [st.name, st]));
  const strategySelect = h('select', { id: 'strategy-select', 'aria-describedby': 'strategy-description' },
    strategies.items.map((st) => h('option', { value: st.name, selected: st.name === 'magnitude' },
      `${st.name} (${st.kind}${st.needs_data ? ', needs data' : ''})`)));
  const strategyDescription = h('p', { id: 'strategy-description', class: 'help' });
  const paramsBox = h('div', { id: 'strategy-params' });
  let params = null;
  const renderParams = () => {
    const st = byName.get(strategySelect.value);
    strategyDescription.textContent = st.description || '';
    params = objectFields(st.parameters, st.parameters, 'body.strategy');
    replace(paramsBox, params.el);
  };
  strategySelect.addEventListener('change', renderParams);
  renderParams();

  const options = objectFields(JOB_OPTIONS, JOB_OPTIONS, 'body');
  const labels = field('metadata', { type: 'string', title: 'Labels', description: 'Labels to find the job by: key=value, one per line.' }, {}, 'body.metadata');
  labels.el.querySelector('input').replaceWith(h('textarea', { id: 'f-body-metadata', rows: 2,
    'aria-describedby': 'f-body-metadata-help f-body-metadata-error' }));
  const formError = h('div', { class: 'error-box', role: 'alert', hidden: true, id: 'form-error' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'submit-job' }, 'Submit job');
  const dry = h('button', { type: 'button', id: 'dry-run' }, 'Check only (dry run)');
  const dryOut = h('div', { id: 'dry-run-result', role: 'status' });

  const form = h('form', { class: 'new-job', novalidate: true, 'aria-label': 'New job' },
    h('section', { class: 'card', 'aria-label': 'Model' }, h('h2', {}, '1. Model'),
      h('div', { class: 'field', dataset: { field: 'body.model_id' } }, h('label', { for: 'model-select' }, 'Model'), modelSelect,
        h('p', { class: 'field-error', id: 'f-body-model_id-error' })),
      uploader('model', async (m) => fillModels((await api('/v1/models?limit=100')).items, m.id))),
    h('section', { class: 'card', 'aria-label': 'Dataset' }, h('h2', {}, '2. Dataset (optional)'),
      h('div', { class: 'field', dataset: { field: 'body.dataset_id' } }, h('label', { for: 'dataset-select' }, 'Dataset'), datasetSelect,
        h('p', { class: 'field-error', id: 'f-body-dataset_id-error' })),
      uploader('dataset', async (d) => fillDatasets((await api('/v1/datasets?limit=100')).items, d.id))),
    h('section', { class: 'card', 'aria-label': 'Strategy' }, h('h2', {}, '3. Strategy'),
      h('div', { class: 'field', dataset: { field: 'body.strategy.name' } }, h('label', { for: 'strategy-select' }, 'Strategy'),
        strategySelect, strategyDescription, h('p', { class: 'field-error', id: 'f-body-strategy-name-error' })),
      h('fieldset', { class: 'group', dataset: { field: 'body.strategy' } }, h('legend', {}, 'Parameters'), paramsBox,
        h('p', { class: 'field-error' }))),
    h('section', { class: 'card', 'aria-label': 'Job options' }, h('h2', {}, '4. Job options'), options.el, labels.el),
    formError,
    h('div', { class: 'actions' }, submit, dry),
    dryOut);

  function body() {
    const out = { model_id: modelSelect.value, strategy: params.read(), ...options.read() };
    if (datasetSelect.value) out.dataset_id = datasetSelect.value;
    const meta = parseLabels(form.querySelector('#f-body-metadata').value);
    if (Object.keys(meta).length) out.metadata = meta;
    return out;
  }

  function showError(err) {
    const errors = err instanceof ApiError ? err.fieldErrors : [];
    const first = showFieldErrors(form, errors, (lines) => {
      formError.append(h('ul', {}, lines.map((l) => h('li', {}, l))));
    });
    if (!errors.length || !first) {
      formError.prepend(h('p', {}, err.message));
    }
    formError.hidden = !formError.hasChildNodes();
    (first || formError).focus?.();
    if (!first) formError.scrollIntoView({ block: 'nearest' });
  }

  async function send(validateOnly) {
    clearErrors(form);
    clear(formError).hidden = true;
    clear(dryOut);
    submit.disabled = true;
    dry.disabled = true;
    try {
      const payload = body();
      if (validateOnly) {
        const preview = await api('/v1/jobs?validate_only=true', { method: 'POST', body: payload });
        dryOut.append(h('div', { class: 'card' }, h('h2', {}, 'Dry run: the job is valid'),
          h('pre', { class: 'json' }, JSON.stringify(preview, null, 2))));
        return;
      }
      const job = await api('/v1/jobs', { method: 'POST', body: payload, headers: { 'Idempotency-Key': idempotencyKey() } });
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      if (err.status !== 401) showError(err);
    } finally {
      submit.disabled = false;
      dry.disabled = false;
    }
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    send(false);
  });
  dry.addEventListener('click', () => send(true));
  main.append(h('h1', {}, 'New job'), form);
}
