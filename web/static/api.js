// pinhole's HTTP API as the pages use it: fetch wrappers that turn
// application/problem+json answers into ApiError, and errorBox, which says
// what went wrong in the user's language with the server's detail beside it.
import { h, tr } from './dom.js';

/** ApiError is a failed API call: an RFC 9457 problem, or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, problem = {}, retryAfter = null) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

// retryAfterSeconds reads Retry-After: delta-seconds or an HTTP date.
function retryAfterSeconds(v) {
  if (!v) return null;
  if (/^\d+$/.test(v.trim())) return Number(v.trim());
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, Math.round((at - Date.now()) / 1000));
}

/**
 * request performs one API call and returns the Response when it is 2xx;
 * otherwise it throws ApiError. opts: json (body to encode), body, headers,
 * keepalive, token (Bearer). Calls to /api/ without a token of their own
 * carry the admin token when the user gave one: listings and diagnostics
 * are the admin's, and pinhole shows the admin more.
 */
export async function request(method, url, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  let body = opts.body;
  if (opts.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.json);
  }
  const token = opts.token !== undefined ? opts.token : (String(url).startsWith('/api/') ? adminToken() : '');
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(url, { method, headers, body, keepalive: !!opts.keepalive, cache: 'no-store' });
  } catch (err) {
    throw new ApiError(0, { title: String(err && err.message ? err.message : err) });
  }
  if (res.ok) return res;
  let problem = {};
  const ctype = res.headers.get('Content-Type') || '';
  try {
    if (ctype.includes('json')) problem = await res.json();
    else {
      const text = (await res.text()).trim();
      if (text) problem = { detail: text.slice(0, 300) };
    }
  } catch {
    // An unreadable body still leaves the status to report.
  }
  throw new ApiError(res.status, problem, retryAfterSeconds(res.headers.get('Retry-After')));
}

/** getJSON fetches and decodes a JSON resource. */
export async function getJSON(url) {
  return (await request('GET', url)).json();
}

/** enc encodes one path segment. */
export const enc = encodeURIComponent;

/**
 * errorBox renders err for people: a translated sentence for the cases
 * users can act on (pool full, room missing, token, network, media
 * permission, connection failed) and the server's problem detail beside it.
 * ctx: {room, sessionId, admin (the call was a management request)}.
 */
export function errorBox(err, ctx = {}) {
  const box = h('div', { class: 'notice error', role: 'alert' });
  const p = err instanceof ApiError ? err.problem : {};
  const lines = [];
  const links = [];
  if (err instanceof ApiError) {
    if (err.status === 0) lines.push(tr('err.network'));
    else if (err.status === 503 && (p.total !== undefined || err.retryAfter !== null)) {
      lines.push(tr('err.poolFull', { leased: p.leased ?? '?', total: p.total ?? '?', retry: err.retryAfter ?? '?' }));
    } else if (err.status === 404 && ctx.room) {
      lines.push(tr('err.roomMissing', { room: ctx.room }));
      links.push(h('a', { href: '/', i18n: 'err.roomsLink' }));
    } else if ((err.status === 401 || err.status === 403) && ctx.admin) lines.push(tr('err.admin'));
    else if (err.status === 401 || err.status === 403) lines.push(tr('err.unauthorized'));
    else if (!p.title) lines.push(tr('err.http', { status: err.status }));
    // The server's own words: its title and detail are data, shown as sent.
    const said = [p.title, p.detail].filter(Boolean).join(': ');
    if (said) lines.push(h('span', { class: 'detail', v: said }));
    for (const e of p.errors || []) {
      lines.push(h('span', { class: 'detail', v: `${e.field}: ${e.message}` }));
    }
  } else if (err && err.i18n) {
    lines.push(tr(err.i18n, err.args));
    if (err.i18n === 'err.connFailed') {
      const q = ctx.sessionId ? `?session=${enc(ctx.sessionId)}` : '';
      links.push(h('a', { href: `/diagnostics${q}`, i18n: 'err.diagLink' }));
    }
    if (err.detail) lines.push(h('span', { class: 'detail', v: err.detail }));
  } else {
    lines.push(h('span', { class: 'detail', v: String(err && err.message ? err.message : err) }));
  }
  for (const l of lines) box.append(h('p', {}, l));
  if (links.length) box.append(h('p', {}, links));
  return box;
}

/** UserError is an error with a translated message (and optional detail). */
export class UserError extends Error {
  constructor(key, args, detail) {
    super(key);
    this.i18n = key;
    this.args = args;
    this.detail = detail;
  }
}

/** notice renders a translated success or info line. */
export function notice(kind, key, args) {
  return h('div', { class: `notice ${kind}`, role: 'status' }, h('p', {}, tr(key, args)));
}

const ADMIN_KEY = 'pinhole.adminToken';

/**
 * adminToken is the admin token the user entered, or that the link pinhole
 * prints at start handed over (#admin-token=...; see takeAdminToken). It is
 * kept in sessionStorage: for this tab only, gone when it closes.
 */
export function adminToken(value) {
  try {
    if (value !== undefined) {
      if (value) sessionStorage.setItem(ADMIN_KEY, value);
      else sessionStorage.removeItem(ADMIN_KEY);
    }
    return sessionStorage.getItem(ADMIN_KEY) || '';
  } catch {
    return value || '';
  }
}

/**
 * takeAdminToken keeps the token of a link like /#admin-token=... (pinhole
 * prints one at start) and removes it from the address bar. A fragment is
 * never sent to the server, so the token is in no access log.
 */
export function takeAdminToken() {
  const m = location.hash.match(/^#admin-token=([^&]+)/);
  if (!m) return;
  adminToken(decodeURIComponent(m[1]));
  history.replaceState(null, '', location.pathname + location.search);
}
