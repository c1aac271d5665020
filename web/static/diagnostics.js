// Diagnostics page (/diagnostics): PLACEHOLDER owned by issue 4, which fills
// it in. The contract with the page shell:
//
//   export function mount(root, ctx)
//     root  the <main> element, empty; append the page to it.
//     ctx   { params: [], query: URLSearchParams } - e.g. query.get('session')
//           is set when the room page links here after a failed connection.
//
// Labels: build elements with h()/tr() from ./dom.js and give each visible
// label a data-i18n key; add your keys for both languages with
// addMessages({en: {...}, 'zh-CN': {...}}) from ./i18n.js before building.
// API calls: request/getJSON/errorBox from ./api.js (problem+json aware).
import { h, tr, setTitle } from './dom.js';

/** mount renders the diagnostics page into root. */
export function mount(root, ctx) {
  setTitle('diag.title');
  const session = ctx.query.get('session');
  root.append(
    h('div', { class: 'page-head' }, tr('diag.title', null, 'h1')),
    h('section', { class: 'card' },
      tr('diag.placeholder', null, 'p', { class: 'empty' }),
      session ? h('p', {}, h('code', { v: session })) : null));
}
