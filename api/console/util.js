// Helpers shared by live.js and console.js: DOM building, the API client with the operator's token, notices.
// Classic scripts on purpose (no modules, no build): the page is served as one self-contained document.
'use strict';

const TOKEN_KEY = 'crm-events-sink.console.token';

/** The operator's token, kept in localStorage once entered; '' when none (fine while auth is off). */
const auth = {
  get token() {
    return localStorage.getItem(TOKEN_KEY) || '';
  },
  set token(value) {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  },
  /** The token's claims, read without verifying (the API verifies); undefined when it is not a JWT. */
  claims() {
    try {
      const part = this.token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(part));
    } catch {
      return undefined;
    }
  },
};

/**
 * Builds an element. Text always goes in as text (never as HTML): payloads are arbitrary producer data.
 * attrs: className, text, dataset, hidden, disabled, title, href, target, rel, type, onclick, value, max.
 */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (name === 'text') node.textContent = String(value);
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node[name] = value;
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) node.append(child);
  }
  return node;
}

/** An error the API answered with: the status and the API's own message. */
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

/** Calls the API with the token as a bearer header; resolves { status, data }, rejects with an ApiError. */
async function api(method, path, body) {
  // X-Requested-By: the API refuses changes without it or a bearer token, which no cross-site form can send.
  const headers = { accept: 'application/json', 'x-requested-by': 'crm-events-console' };
  if (auth.token) headers.authorization = `Bearer ${auth.token}`;
  // No content-type without a body: Fastify refuses an empty JSON body.
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, `${method} ${path}: the API cannot be reached (${err.message})`);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) throw new ApiError(res.status, explain(res.status, data && data.message, `${method} ${path}`));
  return { status: res.status, data };
}

function explain(status, message, what) {
  if (status === 401)
    return `${message || 'Unauthorized'}: paste a token above (crm-events-sink token --role operator)`;
  return `${what} answered ${status}: ${message || 'no message'}`;
}

let noticeTimer;
/** Shows one message at the top of the page; errors stay until replaced, the rest fade after 8 s. */
function notify(message, kind = 'info') {
  const box = document.getElementById('notice');
  box.textContent = message;
  box.className = `notice ${kind}`;
  box.hidden = false;
  clearTimeout(noticeTimer);
  if (kind !== 'error') noticeTimer = setTimeout(() => (box.hidden = true), 8000);
}

/** Runs an API action from a button: disables it meanwhile and reports a failure as a notice. */
async function act(button, action) {
  button.disabled = true;
  try {
    return await action();
  } catch (err) {
    notify(err.message, 'error');
    return undefined;
  } finally {
    button.disabled = false;
  }
}

/** Local time of an ISO timestamp, e.g. 14:03:22 (with the date when it is not today). */
function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const time = d.toLocaleTimeString([], { hour12: false });
  return d.toDateString() === new Date().toDateString() ? time : `${d.toISOString().slice(0, 10)} ${time}`;
}

/** The "REPLAY ×n source" badge of a replayed journal row; nothing for an original. */
function replayBadge(count, source) {
  if (!count) return null;
  return el('span', { className: 'badge replay', text: `REPLAY ×${count}${source ? ` ${source}` : ''}` });
}

function statusBadge(status) {
  return el('span', { className: `badge status-${String(status).toLowerCase()}`, text: String(status).toLowerCase() });
}
