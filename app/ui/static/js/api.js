// The public /v1 API, with the user's key from sessionStorage (never in a URL).

const KEY_NAME = 'prunekit.apiKey';

export const getKey = () => sessionStorage.getItem(KEY_NAME);
export const setKey = (key) => sessionStorage.setItem(KEY_NAME, key);
export const clearKey = () => sessionStorage.removeItem(KEY_NAME);

export class ApiError extends Error {
  constructor(status, problem) {
    const p = problem || {};
    super(p.detail || p.title || `the server answered HTTP ${status}`);
    this.status = status;
    this.problem = p;
  }

  get fieldErrors() {
    return Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }
}

let authFailure = () => {};
export function onAuthFailure(handler) {
  authFailure = handler;
}

function missingKey() {
  const err = new ApiError(401, {
    title: 'No API key',
    detail: 'No API key entered yet: enter your key to see your jobs, models and datasets.',
  });
  authFailure(err);
  return err;
}

async function problemOf(resp) {
  try {
    return await resp.json();
  } catch {
    return { title: resp.statusText || `HTTP ${resp.status}` };
  }
}

function authHeaders(extra = {}) {
  const key = getKey();
  if (!key) throw missingKey();
  return { Authorization: `Bearer ${key}`, ...extra };
}

async function failed(resp) {
  const err = new ApiError(resp.status, await problemOf(resp));
  if (resp.status === 401) authFailure(err);
  return err;
}

export async function api(path, { method = 'GET', body, headers = {}, signal } = {}) {
  const h = authHeaders({ Accept: 'application/json', ...headers });
  let payload;
  if (body !== undefined) {
    h['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, { method, headers: h, body: payload, cache: 'no-store', signal });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, { title: 'Network error', detail: `the API cannot be reached (${err.message})` });
  }
  if (resp.status === 204) return null;
  if (!resp.ok) throw await failed(resp);
  return resp.json();
}

// A key is checked by the cheapest call that needs one.
export async function checkKey(key) {
  const resp = await fetch('/v1/jobs?limit=1', {
    headers: { Authorization: `Bearer ${key}`, Accept: 'application/json' },
    cache: 'no-store',
  });
  if (resp.ok) return null;
  return new ApiError(resp.status, await problemOf(resp));
}

// multipart upload with progress (XHR: fetch has no upload progress events)
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    let headers;
    try {
      headers = authHeaders();
    } catch (err) {
      reject(err);
      return;
    }
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.setRequestHeader('Authorization', headers.Authorization);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress(e.loaded, e.total);
    });
    xhr.addEventListener('load', () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = { title: xhr.statusText };
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else {
        const err = new ApiError(xhr.status, body);
        if (xhr.status === 401) authFailure(err);
        reject(err);
      }
    });
    xhr.addEventListener('error', () =>
      reject(new ApiError(0, { title: 'Network error', detail: 'the upload was interrupted' })),
    );
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
}

function filenameOf(resp, fallback) {
  const cd = resp.headers.get('Content-Disposition') || '';
  const star = /filename\*=UTF-8''([^;]+)/i.exec(cd);
  if (star) return decodeURIComponent(star[1]);
  const plain = /filename="?([^";]+)"?/i.exec(cd);
  return plain ? plain[1] : fallback;
}

// A download needs the key in a header, so it is fetched and handed to the browser as a blob.
export async function download(path, fallbackName) {
  const resp = await fetch(path, { headers: authHeaders(), cache: 'no-store' });
  if (!resp.ok) throw await failed(resp);
  const blob = await resp.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filenameOf(resp, fallbackName);
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return { name: a.download, size: blob.size };
}

// Server-Sent Events over fetch (EventSource cannot send an Authorization header).
// Calls onEvent(type, data) per message; resolves when the stream ends.
export async function streamEvents(path, onEvent, { signal, lastEventId } = {}) {
  const headers = authHeaders({ Accept: 'text/event-stream' });
  if (lastEventId !== undefined && lastEventId !== null) headers['Last-Event-ID'] = String(lastEventId);
  const resp = await fetch(path, { headers, signal, cache: 'no-store' });
  if (!resp.ok) throw await failed(resp);
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let type = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) type = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(type, JSON.parse(data.join('\n')));
    }
  }
}
