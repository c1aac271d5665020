// Rooms page (/): every room with live publisher and viewer counts, a form
// to create one and a two-step delete (no blocking confirm() dialog, which
// keyboard and test users handle badly).
import { h, tr, setTr, setV, reconcile, poll, liveBadge, fmtDateTime, secondsSince, setTitle } from './dom.js';
import { request, getJSON, errorBox, notice, enc, adminToken } from './api.js';

const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;
const REFRESH_MS = 2000; // counts change when peers come and go; 2 s feels live without load

/** mount renders the rooms page into root. */
export function mount(root) {
  setTitle('rooms.title');
  const status = h('div', { class: 'status-area', 'aria-live': 'polite' });

  const name = h('input', {
    id: 'room-name', name: 'name', required: true, maxlength: 64, pattern: '[A-Za-z0-9._\\-]{1,64}',
    autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'room-name-hint',
  });
  const pubToken = h('input', { id: 'publish-token', name: 'publish_token', minlength: 8, maxlength: 256, autocomplete: 'off' });
  const viewToken = h('input', { id: 'view-token', name: 'view_token', minlength: 8, maxlength: 256, autocomplete: 'off' });
  const admin = h('input', { id: 'admin-token', type: 'password', autocomplete: 'off', 'aria-describedby': 'admin-hint' });
  admin.value = adminToken();
  admin.addEventListener('change', () => adminToken(admin.value.trim()));
  const adminBox = h('details', { class: 'tokens', open: !!admin.value },
    h('summary', { i18n: 'admin.title' }),
    h('div', { class: 'field' }, h('label', { for: 'admin-token', class: 'sr', i18n: 'admin.title' }), admin,
      h('small', { id: 'admin-hint', i18n: 'admin.hint' })));
  // A 401 on a management call: show where the admin token goes.
  const needAdmin = (err) => {
    if (err && (err.status === 401 || err.status === 403)) {
      adminBox.open = true;
      admin.focus();
    }
  };
  const form = h('form', { class: 'create', novalidate: true },
    h('div', { class: 'field grow' },
      h('label', { for: 'room-name', i18n: 'rooms.name' }),
      name,
      h('small', { id: 'room-name-hint', i18n: 'rooms.nameHint' })),
    h('details', { class: 'tokens' },
      h('summary', { i18n: 'rooms.tokens' }),
      h('div', { class: 'row' },
        h('div', { class: 'field' }, h('label', { for: 'publish-token', i18n: 'rooms.publishToken' }), pubToken),
        h('div', { class: 'field' }, h('label', { for: 'view-token', i18n: 'rooms.viewToken' }), viewToken)),
      h('small', { i18n: 'rooms.tokenHint' })),
    adminBox,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', i18n: 'rooms.createBtn' })));

  const tbody = h('tbody');
  const empty = h('p', { class: 'empty', i18n: 'rooms.empty', hidden: true });
  const live = liveBadge();
  const table = h('div', { class: 'table-wrap' },
    h('table', { class: 'rooms' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', i18n: 'col.name' }),
        h('th', { scope: 'col', class: 'num', i18n: 'col.publishers' }),
        h('th', { scope: 'col', class: 'num', i18n: 'col.viewers' }),
        h('th', { scope: 'col', i18n: 'col.created' }),
        h('th', { scope: 'col', i18n: 'col.access' }),
        h('th', { scope: 'col', i18n: 'col.actions' }))),
      tbody));

  root.append(
    h('div', { class: 'page-head' }, tr('rooms.title', null, 'h1'), tr('rooms.intro', null, 'p', { class: 'lead' })),
    status,
    h('section', { class: 'card', 'aria-labelledby': 'create-h' }, h('h2', { id: 'create-h', i18n: 'rooms.create' }), form),
    h('section', { class: 'card', 'aria-labelledby': 'list-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'list-h', i18n: 'rooms.list' }), live.el),
      table, empty));

  const show = (el) => status.replaceChildren(el);

  const poller = poll(async () => {
    const list = await getJSON('/api/v1/rooms');
    const rooms = (list.rooms || []).slice().sort((a, b) => a.name.localeCompare(b.name));
    empty.hidden = rooms.length > 0;
    table.hidden = rooms.length === 0;
    reconcile(tbody, rooms, (r) => r.name, createRow, updateRow);
  }, REFRESH_MS, live.report);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { name: name.value.trim() };
    if (!NAME_RE.test(body.name)) {
      name.setAttribute('aria-invalid', 'true');
      name.focus();
      show(notice('error', 'err.badName'));
      return;
    }
    name.removeAttribute('aria-invalid');
    adminToken(admin.value.trim());
    if (pubToken.value) body.publish_token = pubToken.value;
    if (viewToken.value) body.view_token = viewToken.value;
    try {
      await request('POST', '/api/v1/rooms', { json: body, token: adminToken() });
      show(notice('ok', 'rooms.created', { name: body.name }));
      name.value = '';
      pubToken.value = '';
      viewToken.value = '';
      poller.now();
    } catch (err) {
      show(errorBox(err, { admin: true }));
      needAdmin(err);
    }
  });

  function createRow(room) {
    const link = h('a', { href: `/rooms/${enc(room.name)}`, class: 'room-link', v: room.name });
    const del = h('button', { type: 'button', class: 'danger small', i18n: 'rooms.delete', dataset: { action: 'delete' } });
    const open = h('a', { class: 'button small', href: `/rooms/${enc(room.name)}`, i18n: 'rooms.open' });
    const confirmBox = h('span', { class: 'confirm', hidden: true, role: 'group' },
      tr('rooms.confirm', { name: room.name }),
      h('button', { type: 'button', class: 'danger small', i18n: 'rooms.confirmYes', dataset: { action: 'confirm' } }),
      h('button', { type: 'button', class: 'small', i18n: 'rooms.cancel', dataset: { action: 'cancel' } }));
    const actions = h('td', { class: 'row-actions' }, open, del, confirmBox);
    const row = h('tr', { dataset: { room: room.name } },
      h('th', { scope: 'row' }, link),
      h('td', { class: 'num', dataset: { col: 'publishers' } }),
      h('td', { class: 'num', dataset: { col: 'viewers' } }),
      h('td', { dataset: { col: 'created' } }),
      h('td', { dataset: { col: 'access' } }),
      // On a phone the count columns give way to one line of text.
      h('td', { class: 'phone-only', dataset: { col: 'summary' } }),
      actions);
    const setConfirm = (on) => {
      confirmBox.hidden = !on;
      del.hidden = on;
      open.hidden = on;
      (on ? confirmBox.querySelector('[data-action=confirm]') : del).focus();
    };
    actions.addEventListener('click', async (ev) => {
      const action = ev.target.closest('button')?.dataset.action;
      if (action === 'delete') setConfirm(true);
      else if (action === 'cancel') setConfirm(false);
      else if (action === 'confirm') {
        try {
          await request('DELETE', `/api/v1/rooms/${enc(room.name)}`, { token: adminToken() });
          row.remove();
          show(notice('ok', 'rooms.deleted', { name: room.name }));
          poller.now();
        } catch (err) {
          show(errorBox(err, { room: room.name, admin: true }));
          setConfirm(false);
          needAdmin(err);
        }
      }
    });
    actions.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && !confirmBox.hidden) setConfirm(false);
    });
    return row;
  }

  function updateRow(row, room) {
    setV(row.querySelector('[data-col=publishers]'), String(room.publishers));
    setV(row.querySelector('[data-col=viewers]'), String(room.viewers));
    setTr(row.querySelector('[data-col=summary]'), 'room.counts', { p: room.publishers, v: room.viewers });
    const created = row.querySelector('[data-col=created]');
    created.title = fmtDateTime(room.created_at);
    setTr(created, 'time.ago', { s: secondsSince(room.created_at) });
    const access = row.querySelector('[data-col=access]');
    const tags = [];
    if (room.publish_protected) tags.push('access.publish');
    if (room.view_protected) tags.push('access.view');
    if (!tags.length) tags.push('access.open');
    const key = tags.join(',');
    if (access.dataset.tags !== key) {
      access.dataset.tags = key;
      access.replaceChildren(...tags.map((k) => tr(k, null, 'span', { class: k === 'access.open' ? 'tag' : 'tag warn' })));
    }
  }
}
