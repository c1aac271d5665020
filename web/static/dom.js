// Small DOM helpers shared by the pages: an element builder, translated and
// data nodes, a keyed list updater (so refreshing lists keeps focus and
// half-finished interactions) and a poller.
import { localize, lang, t } from './i18n.js';

/**
 * h builds an element. props: class, text, i18n (+ args), v (data text),
 * dataset, on<Event> handlers, boolean/attribute values; children may be
 * nodes, strings, arrays, null.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, val] of Object.entries(props || {})) {
    if (val === undefined || val === null || val === false) continue;
    if (k === 'class') el.className = val;
    else if (k === 'text') el.textContent = val;
    else if (k === 'i18n') el.dataset.i18n = val;
    else if (k === 'args') el.dataset.i18nArgs = JSON.stringify(val);
    else if (k === 'v') {
      el.dataset.v = '';
      el.textContent = val;
    } else if (k === 'dataset') Object.assign(el.dataset, val);
    else if (k.startsWith('on') && typeof val === 'function') el.addEventListener(k.slice(2), val);
    else if (val === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(val));
  }
  append(el, children);
  // Children built with h are translated already; only el itself is left.
  if (Object.keys(el.dataset).some((d) => d.startsWith('i18n'))) localize(el);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** tr is a translated span (or tag) for key. */
export function tr(key, args, tag = 'span', props = {}) {
  return h(tag, { ...props, i18n: key, args });
}

/** setTr points el at another message and translates it now. */
export function setTr(el, key, args) {
  el.dataset.i18n = key;
  if (args) el.dataset.i18nArgs = JSON.stringify(args);
  else delete el.dataset.i18nArgs;
  localize(el);
}

/** setV shows data (not a label) in el. */
export function setV(el, text) {
  delete el.dataset.i18n;
  delete el.dataset.i18nArgs;
  el.dataset.v = '';
  if (el.textContent !== text) el.textContent = text;
}

/**
 * reconcile makes container's children match items by key: new items are
 * created, kept ones updated in place, gone ones removed.
 */
export function reconcile(container, items, key, create, update) {
  const existing = new Map();
  for (const child of [...container.children]) {
    if (child.dataset.key !== undefined) existing.set(child.dataset.key, child);
  }
  let prev = null;
  for (const item of items) {
    const k = String(key(item));
    let el = existing.get(k);
    if (el) existing.delete(k);
    else {
      el = create(item);
      el.dataset.key = k;
    }
    update(el, item);
    const want = prev ? prev.nextElementSibling : container.firstElementChild;
    if (want !== el) container.insertBefore(el, want);
    prev = el;
  }
  for (const el of existing.values()) el.remove();
}

/** fmtClock formats a time of day in the current language. */
export function fmtClock(d) {
  return new Date(d).toLocaleTimeString(lang());
}

/** fmtDateTime formats a date and time in the current language. */
export function fmtDateTime(d) {
  return new Date(d).toLocaleString(lang());
}

/** secondsSince is how long ago d was, in seconds. */
export function secondsSince(d) {
  return (Date.now() - new Date(d).getTime()) / 1000;
}

/** fmtBitrate renders bits per second with a unit. */
export function fmtBitrate(bps) {
  if (!Number.isFinite(bps)) return '—';
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mbit/s`;
  return `${Math.round(bps / 1e3)} kbit/s`;
}

/** shortId abbreviates a session id for display. */
export function shortId(id) {
  return id && id.length > 10 ? id.slice(0, 8) : id || '';
}

/**
 * poll runs fn now and then every ms after each run ends (never
 * overlapping), until the returned stop is called or the page is hidden
 * for good. onState(ok, err) reports each run.
 */
export function poll(fn, ms, onState = () => {}) {
  let timer = null;
  let stopped = false;
  let running = false;
  let again = false; // now() was asked for while a run was in flight
  const run = async () => {
    timer = null;
    running = true;
    try {
      await fn();
      onState(true);
    } catch (err) {
      onState(false, err);
    }
    running = false;
    if (stopped) return;
    if (again) {
      again = false;
      run();
      return;
    }
    timer = setTimeout(run, typeof ms === 'function' ? ms() : ms);
  };
  run();
  const stop = () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
  window.addEventListener('pagehide', stop, { once: true });
  return {
    stop,
    now: () => {
      if (stopped) return;
      if (running) {
        again = true;
        return;
      }
      if (timer) clearTimeout(timer);
      run();
    },
  };
}

/** liveBadge shows when a polled view was last refreshed. */
export function liveBadge() {
  const el = h('p', { class: 'live', 'aria-live': 'off' });
  return {
    el,
    report(ok) {
      el.classList.toggle('stale', !ok);
      if (ok) setTr(el, 'live.updated', { time: fmtClock(Date.now()) });
      else setTr(el, 'live.failed');
    },
  };
}

/** setTitle names the browser tab after a message, kept in the current language. */
export function setTitle(key, args) {
  const apply = () => {
    document.title = `${t(key, args)} · pinhole`;
  };
  apply();
  document.addEventListener('pinhole:lang', apply);
}
