// Form fields generated from JSON Schemas (the strategies' parameters from GET /v1/strategies):
// defaults, ranges and descriptions come from the schema. Validation is the API's: the form
// sends what was entered and shows each 422 field error next to the field it names.

import { h } from './dom.js';

function resolve(schema, root) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split('/').pop();
    return { ...(root.$defs?.[name] || {}), ...schema, $ref: undefined };
  }
  return schema || {};
}

// The non-null branch of anyOf [X, null], and whether null is allowed.
function unwrap(schema, root) {
  const s = resolve(schema, root);
  if (Array.isArray(s.anyOf)) {
    const branches = s.anyOf.map((b) => resolve(b, root));
    const real = branches.filter((b) => b.type !== 'null');
    const merged = real.length === 1 ? { ...real[0], ...s, anyOf: undefined, type: real[0].type } : s;
    return { schema: merged, nullable: real.length < branches.length };
  }
  return { schema: s, nullable: false };
}

function rangeText(s) {
  const parts = [];
  if (s.minimum !== undefined) parts.push(`≥ ${s.minimum}`);
  if (s.exclusiveMinimum !== undefined) parts.push(`> ${s.exclusiveMinimum}`);
  if (s.maximum !== undefined) parts.push(`≤ ${s.maximum}`);
  if (s.exclusiveMaximum !== undefined) parts.push(`< ${s.exclusiveMaximum}`);
  return parts.length ? `range ${parts.join(', ')}` : '';
}

export const fieldId = (path) => `f-${path.replace(/[^a-zA-Z0-9_]+/g, '-')}`;

function humanize(name) {
  return name.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
}

// One field: {el, read() -> value or undefined}
export function field(name, rawSchema, root, path, required = false) {
  const { schema, nullable } = unwrap(rawSchema, root);
  const id = fieldId(path);
  const helpId = `${id}-help`;
  const errId = `${id}-error`;
  const label = schema.title && schema.title !== humanize(name) ? schema.title : humanize(name);
  const facts = [schema.description, rangeText(schema),
    schema.default !== undefined && schema.default !== null ? `default ${JSON.stringify(schema.default)}` : '',
    required ? 'required' : ''].filter(Boolean).join(' · ');
  const describedBy = `${helpId} ${errId}`;
  let input;
  let read;

  if (schema.type === 'object' && schema.properties) {
    const sub = objectFields(schema, root, path);
    return {
      el: h('fieldset', { class: 'group', dataset: { field: path } }, h('legend', {}, label),
        schema.description ? h('p', { class: 'help', id: helpId }, schema.description) : null,
        sub.el, h('p', { class: 'field-error', id: errId })),
      read: () => {
        const v = sub.read();
        return Object.keys(v).length ? v : undefined;
      },
    };
  }
  if (schema.type === 'array' && schema.items && resolve(schema.items, root).enum) {
    const options = resolve(schema.items, root).enum;
    const boxes = options.map((opt) => h('input', { type: 'checkbox', value: opt, id: `${id}-${opt}`,
      checked: Array.isArray(schema.default) && schema.default.includes(opt) }));
    return {
      el: h('fieldset', { class: 'field', dataset: { field: path }, 'aria-describedby': describedBy },
        h('legend', {}, label),
        boxes.map((b) => h('label', { class: 'check', for: b.id }, b, b.value)),
        h('p', { class: 'help', id: helpId }, facts), h('p', { class: 'field-error', id: errId })),
      read: () => {
        const v = boxes.filter((b) => b.checked).map((b) => b.value);
        return v.length ? v : undefined;
      },
    };
  }
  if (schema.const !== undefined) {
    return { el: null, read: () => schema.const };
  }
  if (Array.isArray(schema.enum)) {
    input = h('select', { id, 'aria-describedby': describedBy },
      nullable || (!required && schema.default === undefined) ? h('option', { value: '' }, '(none)') : null,
      schema.enum.map((opt) => h('option', { value: JSON.stringify(opt), selected: opt === schema.default }, String(opt))));
    read = () => (input.value === '' ? (nullable ? null : undefined) : JSON.parse(input.value));
  } else if (schema.type === 'boolean') {
    input = h('input', { id, type: 'checkbox', checked: schema.default === true, 'aria-describedby': describedBy });
    read = () => input.checked;
  } else if (schema.type === 'integer' || schema.type === 'number') {
    const min = schema.minimum ?? schema.exclusiveMinimum;
    const max = schema.maximum ?? schema.exclusiveMaximum;
    input = h('input', {
      id, type: 'number', inputmode: 'decimal', 'aria-describedby': describedBy,
      step: schema.type === 'integer' ? '1' : 'any',
      min: min !== undefined ? String(min) : undefined, max: max !== undefined ? String(max) : undefined,
      value: typeof schema.default === 'number' ? String(schema.default) : '',
      required: required || undefined,
    });
    read = () => (input.value === '' ? (nullable && schema.default === null ? null : undefined) : Number(input.value));
  } else if (schema.type === 'array') {
    input = h('textarea', { id, rows: 2, 'aria-describedby': describedBy,
      value: Array.isArray(schema.default) ? schema.default.join('\n') : '' });
    read = () => {
      const lines = input.value.split('\n').map((l) => l.trim()).filter(Boolean);
      return lines.length ? lines : undefined;
    };
  } else {
    input = h('input', { id, type: 'text', 'aria-describedby': describedBy,
      value: typeof schema.default === 'string' ? schema.default : '' });
    read = () => (input.value === '' ? undefined : input.value);
  }
  const wrap = h('div', { class: schema.type === 'boolean' ? 'field check-field' : 'field', dataset: { field: path } },
    h('label', { for: id }, label, required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null),
    input,
    h('p', { class: 'help', id: helpId }, facts),
    h('p', { class: 'field-error', id: errId }));
  return { el: wrap, read };
}

// Every property of an object schema: {el, read() -> object without the empty fields}
export function objectFields(schema, root, path) {
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([name, prop]) => [
    name, field(name, prop, root, `${path}.${name}`, required.has(name)),
  ]);
  return {
    el: h('div', { class: 'fields' }, fields.map(([, f]) => f.el)),
    read: () => {
      const out = {};
      for (const [name, f] of fields) {
        const v = f.read();
        if (v !== undefined) out[name] = v;
      }
      return out;
    },
  };
}

export function clearErrors(form) {
  for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  for (const el of form.querySelectorAll('.has-error')) el.classList.remove('has-error');
}

// Put each {field, message} next to the element whose data-field names it (or its nearest
// named ancestor: "body.strategy.sparsity.x" lands on "body.strategy.sparsity"); the rest go
// to `fallback`. Returns the first field shown, to focus it.
export function showFieldErrors(form, errors, fallback) {
  let first = null;
  const unplaced = [];
  for (const err of errors) {
    const parts = String(err.field || '').split('.');
    let target = null;
    while (parts.length && !target) {
      target = form.querySelector(`[data-field="${CSS.escape(parts.join('.'))}"]`);
      parts.pop();
    }
    if (!target) {
      unplaced.push(`${err.field}: ${err.message}`);
      continue;
    }
    target.classList.add('has-error');
    const box = target.querySelector(':scope > .field-error');
    box.textContent = box.textContent ? `${box.textContent}; ${err.message}` : err.message;
    box.setAttribute('role', 'alert');
    const control = target.querySelector('input, select, textarea');
    if (control) control.setAttribute('aria-invalid', 'true');
    first = first || control || target;
  }
  if (unplaced.length) fallback(unplaced);
  return first;
}
