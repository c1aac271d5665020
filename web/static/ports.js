// Ports page (/ports): the lease map. Every port of pinhole's UDP range is a
// cell: free or leased, by which sessions and rooms, since when, how many
// packets arrived on it (the quickest test of a broken port mapping) and the
// public address it is announced as.
import { h, tr, setTr, setV, reconcile, poll, liveBadge, fmtDateTime, secondsSince, shortId, setTitle } from './dom.js';
import { getJSON, enc } from './api.js';

const REFRESH_MS = 1000; // packet counters move fast; a second shows them move

/** mount renders the ports page into root. */
export function mount(root) {
  setTitle('ports.title');
  const live = liveBadge();
  const summary = {};
  const chip = (k, label) => {
    summary[k] = h('strong', { v: '—' });
    return h('div', { class: `chip chip-${k}` }, summary[k], tr(label));
  };
  const grid = h('ul', { class: 'port-grid' });
  const empty = h('p', { class: 'empty', i18n: 'ports.empty', hidden: true });
  root.append(
    h('div', { class: 'page-head' }, tr('ports.title', null, 'h1'), tr('ports.intro', null, 'p', { class: 'lead' })),
    h('section', { class: 'card', 'aria-labelledby': 'ports-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'ports-h', i18n: 'ports.map' }), live.el),
      h('div', { class: 'chips' },
        chip('total', 'ports.total'), chip('leased', 'ports.leased'),
        chip('free', 'ports.free'), chip('per', 'ports.perPort')),
      grid, empty));

  poll(async () => {
    const list = await getJSON('/api/v1/ports');
    setV(summary.total, String(list.total));
    setV(summary.leased, String(list.leased));
    setV(summary.free, String(list.free));
    setV(summary.per, String(list.peers_per_port));
    const ports = (list.ports || []).slice().sort((a, b) => a.local_port - b.local_port);
    empty.hidden = ports.length > 0;
    reconcile(grid, ports, (p) => p.local_port, createCell, updateCell);
  }, REFRESH_MS, live.report);
}

function field(name, label) {
  return h('div', { class: 'kv' }, h('dt', { i18n: label }), h('dd', { dataset: { f: name } }));
}

function createCell(port) {
  return h('li', { class: 'port', dataset: { port: port.local_port } },
    h('div', { class: 'port-head' },
      h('span', { class: 'port-num', v: String(port.local_port) }),
      h('span', { class: 'tag state' })),
    h('dl', {},
      field('public', 'ports.public'),
      field('since', 'ports.since'),
      field('packets', 'ports.packets'),
      field('last', 'ports.lastPacket')),
    h('ul', { class: 'port-sessions' }));
}

function updateCell(li, port) {
  const f = (n) => li.querySelector(`[data-f=${n}]`);
  li.dataset.state = port.state;
  const st = li.querySelector('.state');
  st.dataset.state = port.state;
  setTr(st, port.state === 'leased' ? 'state.leased' : 'state.free');
  setV(f('public'), port.public_addr || '—');
  const sessions = port.sessions || [];
  const since = sessions.length ? sessions.map((s) => s.since).sort()[0] : null;
  const sinceEl = f('since');
  if (since) {
    sinceEl.title = fmtDateTime(since);
    setTr(sinceEl, 'time.ago', { s: secondsSince(since) });
  } else {
    sinceEl.removeAttribute('title');
    setV(sinceEl, '—');
  }
  setV(f('packets'), String(port.packets_in ?? 0));
  const last = f('last');
  if (port.last_packet_at) {
    last.title = fmtDateTime(port.last_packet_at);
    setTr(last, 'time.ago', { s: secondsSince(port.last_packet_at) });
  } else {
    last.removeAttribute('title');
    setTr(last, 'ports.never');
  }
  reconcile(li.querySelector('.port-sessions'), sessions, (s) => s.participant_id, (s) => h('li', {},
    h('span', { class: `tag role-${s.role}`, i18n: s.role === 'publisher' ? 'role.publisher' : 'role.viewer' }),
    h('a', { href: `/rooms/${enc(s.room)}`, v: s.room }),
    h('code', { title: s.participant_id, v: s.user_id || shortId(s.participant_id) })), () => {});
}
