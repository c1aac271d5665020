// Entry point: picks the language, marks the current navigation link and
// mounts the page module chosen by the path. Navigation is by plain links
// (full page loads): each page sets itself up from scratch and cleans up
// its peers on pagehide.
import { pick, setLang } from './i18n.js';
import { h, tr } from './dom.js';
import { takeAdminToken } from './api.js';

const routes = [
  { re: /^\/$/, nav: 'rooms', load: () => import('./rooms.js') },
  { re: /^\/rooms\/([^/]+)\/?$/, nav: 'rooms', load: () => import('./room.js') },
  { re: /^\/ports\/?$/, nav: 'ports', load: () => import('./ports.js') },
  { re: /^\/diagnostics\/?$/, nav: 'diagnostics', load: () => import('./diagnostics.js') },
];

async function main() {
  takeAdminToken();
  const select = document.getElementById('lang');
  const initial = pick();
  select.value = initial;
  setLang(initial, false);
  select.addEventListener('change', () => setLang(select.value));

  const root = document.getElementById('main');
  const path = location.pathname;
  const route = routes.find((r) => r.re.test(path));
  if (!route) {
    root.append(h('section', { class: 'card' }, tr('page.notFound', null, 'p'), h('a', { href: '/', i18n: 'page.home' })));
    return;
  }
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === route.nav) a.setAttribute('aria-current', 'page');
  }
  const m = path.match(route.re);
  const mod = await route.load();
  mod.mount(root, { params: m.slice(1).map(decodeSegment), query: new URLSearchParams(location.search) });
}

// decodeSegment decodes a path segment; a malformed escape is shown as typed.
function decodeSegment(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

// Pages stop their polls and peers on pagehide; one restored from the
// back/forward cache would be frozen, so it starts afresh.
window.addEventListener('pageshow', (ev) => {
  if (ev.persisted) location.reload();
});

main();
