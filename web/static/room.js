// Room page (/rooms/{room}): publish camera, microphone or screen over
// WHIP; watch every other publisher of the room over WHEP (one player per
// publisher, following it with ?publisher=<participant id>); the participant
// list; live getStats() figures and the leased port of every peer.
import { h, tr, setTr, setV, reconcile, poll, liveBadge, fmtBitrate, fmtDateTime, secondsSince, shortId, setTitle } from './dom.js';
import { request, getJSON, errorBox, enc, UserError, adminToken } from './api.js';
import { Peer, mediaError, videoCodecs, mark } from './rtc.js';

const REFRESH_MS = 1000; // participants, without the event stream: a new publisher should appear within a second
const STREAM_REFRESH_MS = 10000; // with the event stream open the poll is only a safety net
const ROOM_EVENTS = ['participant.joined', 'participant.left', 'participant.state', 'publisher.started', 'publisher.stopped'];
const ENDED = new Set(['closed', 'failed']);
const ORPHAN_POLLS = 3; // refreshes a viewer waits for pinhole to end it after its publisher left
const STATES = new Set(['new', 'connecting', 'connected', 'disconnected', 'failed', 'closed']);

/** mount renders the room page for params[0] into root. */
export function mount(root, { params }) {
  const room = params[0];
  setTitle('room.title', { name: room });

  const own = new Set(); // participant ids of this page's peers, marked "you"
  const players = new Map(); // publisher session id -> player
  let publishPending = false;
  let roomInfo = null;
  // eventSeq counts room events. A player started from an event is newer
  // than a participant list fetched before it (eventSeq at the fetch's
  // start), which must not remove it.
  let eventSeq = 0;

  // ---- header and missing-room notice
  const counts = h('p', { class: 'lead', i18n: 'room.counts', args: { p: 0, v: 0 } });
  const missingBox = h('div', { class: 'notice warn', hidden: true, role: 'status' },
    h('p', {}, tr('room.missing', { name: room })),
    h('p', {}, tr('room.missingHint')),
    h('p', {}, h('button', { type: 'button', class: 'small', i18n: 'room.createIt', onclick: createRoom })));
  const pageStatus = h('div', { class: 'status-area', 'aria-live': 'polite' });

  // ---- publish card
  const pub = publishCard();
  // ---- participants card
  const live = liveBadge();
  const partList = h('ul', { class: 'participants' });
  const partEmpty = h('p', { class: 'empty', i18n: 'part.none' });
  // ---- watch section
  const autoWatch = h('input', { type: 'checkbox', id: 'auto-watch', checked: true });
  const viewToken = h('input', { id: 'view-token', autocomplete: 'off' });
  const viewTokenField = h('div', { class: 'field', hidden: true },
    h('label', { for: 'view-token', i18n: 'watch.token' }), viewToken);
  const playersEl = h('div', { class: 'players' });
  const watchEmpty = h('p', { class: 'empty', i18n: 'watch.none' });

  root.append(
    h('div', { class: 'page-head' },
      h('p', { class: 'crumb' }, h('a', { href: '/', i18n: 'room.back' })),
      h('h1', { i18n: 'room.title', args: { name: room } }),
      counts),
    pageStatus,
    missingBox,
    h('div', { class: 'columns' },
      pub.el,
      h('section', { class: 'card', 'aria-labelledby': 'part-h' },
        h('div', { class: 'card-head' }, h('h2', { id: 'part-h', i18n: 'part.title' }), live.el),
        partList, partEmpty)),
    h('section', { class: 'card', 'aria-labelledby': 'watch-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'watch-h', i18n: 'watch.title' }),
        h('label', { class: 'check' }, autoWatch, tr('watch.auto'))),
      viewTokenField, watchEmpty, playersEl));

  autoWatch.addEventListener('change', () => {
    if (autoWatch.checked) for (const p of players.values()) if (!p.started) p.start();
  });

  async function createRoom() {
    try {
      await request('POST', '/api/v1/rooms', { json: { name: room }, token: adminToken() });
      pageStatus.replaceChildren();
      poller.now();
    } catch (err) {
      pageStatus.replaceChildren(errorBox(err, { admin: true }));
    }
  }

  const poller = poll(async () => {
    const seq = eventSeq;
    const list = await getJSON('/api/v1/rooms');
    roomInfo = (list.rooms || []).find((r) => r.name === room) || null;
    missingBox.hidden = !!roomInfo || publishPending || !!pub.peer;
    let parts = [];
    if (roomInfo) {
      const pl = await getJSON(`/api/v1/rooms/${enc(room)}/participants`);
      parts = pl.participants || [];
    }
    setTr(counts, 'room.counts', { p: roomInfo ? roomInfo.publishers : 0, v: roomInfo ? roomInfo.viewers : 0 });
    pub.tokenField.hidden = !(roomInfo && roomInfo.publish_protected);
    viewTokenField.hidden = !(roomInfo && roomInfo.view_protected);
    renderParticipants(parts);
    syncPlayers(parts, seq);
    if (roomInfo) openEvents();
  }, () => (streamOpen ? STREAM_REFRESH_MS : REFRESH_MS), live.report);

  // Room events (GET /api/v1/rooms/{room}/events): pinhole pushes every
  // join, leave, state change and publication, and each refreshes the view
  // at once, so a viewer starts watching a new publisher while it is still
  // connecting. While the stream is down (proxy, restart) EventSource
  // reconnects by itself and the one-second poll carries on meanwhile.
  let events = null;
  let streamOpen = false;
  function openEvents() {
    if (typeof EventSource === 'undefined') return;
    if (events && events.readyState !== EventSource.CLOSED) return;
    events = new EventSource(`/api/v1/rooms/${enc(room)}/events`);
    events.onopen = () => {
      streamOpen = true;
      poller.now(); // what happened before the stream opened
    };
    events.onerror = () => {
      streamOpen = false;
    };
    for (const t of ROOM_EVENTS) {
      events.addEventListener(t, (ev) => {
        eventSeq++;
        mark(`room.${t}`);
        if (t === 'participant.joined' || t === 'publisher.started') watchFromEvent(ev.data);
        poller.now();
      });
    }
  }
  window.addEventListener('pagehide', () => events && events.close(), { once: true });

  // watchFromEvent starts watching the publisher a room event names, at
  // once: pinhole announces a publisher when its answer is recorded, and
  // takes a viewer of it from then on (media follows when the publisher
  // connects), so the viewer's setup runs alongside the publisher's
  // instead of after a refetch of the participant list.
  function watchFromEvent(data) {
    let part;
    try {
      part = JSON.parse(data).participant;
    } catch {
      return; // the refresh that follows reads the list anyway
    }
    if (!part || part.role !== 'publisher' || ENDED.has(part.state)) return;
    watchPublisher(part, eventSeq);
    watchEmpty.hidden = players.size > 0;
  }

  // watchPublisher adds a player for publisher part unless there is one
  // or it is our own; born is the eventSeq it was started at.
  function watchPublisher(part, born) {
    // While our own WHIP POST is in flight our session may already be
    // listed under an id we do not know yet: never watch ourselves.
    if (publishPending || own.has(part.id) || players.has(part.id)) return;
    const pl = player(part);
    pl.born = born;
    players.set(part.id, pl);
    playersEl.append(pl.el);
    if (autoWatch.checked) pl.start();
  }

  function renderParticipants(parts) {
    const shown = parts.filter((p) => p.state !== 'closed')
      .sort((a, b) => (a.role === b.role ? a.since.localeCompare(b.since) : a.role === 'publisher' ? -1 : 1));
    partEmpty.hidden = shown.length > 0;
    reconcile(partList, shown, (p) => p.id, (p) => h('li', { dataset: { participant: p.id } },
      h('span', { class: `tag role-${p.role}`, i18n: `role.${p.role === 'publisher' ? 'publisher' : 'viewer'}` }),
      h('code', { class: 'id', title: p.id, v: p.user_id || shortId(p.id) }),
      h('span', { class: 'tag you', i18n: 'part.you', hidden: true }),
      h('span', { class: 'tag state' }),
      h('span', { class: 'since muted' })),
    (li, p) => {
      li.querySelector('.you').hidden = !own.has(p.id);
      const st = li.querySelector('.state');
      st.dataset.state = p.state;
      setState(st, p.state);
      const since = li.querySelector('.since');
      since.title = fmtDateTime(p.since);
      setTr(since, 'time.ago', { s: secondsSince(p.since) });
    });
  }

  // syncPlayers makes the players match parts, a participant list fetched
  // when eventSeq was seq.
  function syncPlayers(parts, seq) {
    const pubs = parts.filter((p) => p.role === 'publisher' && !ENDED.has(p.state) && !own.has(p.id));
    const pubIds = new Set(pubs.map((p) => p.id));
    const liveIds = new Set(parts.filter((p) => !ENDED.has(p.state)).map((p) => p.id));
    for (const [id, p] of players) {
      if (pubIds.has(id) || p.born > seq) {
        p.orphaned = 0;
        continue;
      }
      // The publisher left. pinhole usually ends its viewers itself; give
      // it ORPHAN_POLLS refreshes before ending ours with DELETE, so that
      // we do not DELETE (and get 404 for) a session already gone.
      const vid = p.peer && p.peer.participantId;
      if (vid && liveIds.has(vid) && ++p.orphaned < ORPHAN_POLLS) continue;
      if (vid && !liveIds.has(vid)) p.peer.markGone();
      p.destroy();
      players.delete(id);
    }
    for (const p of pubs) watchPublisher(p, 0);
    watchEmpty.hidden = players.size > 0;
  }

  // ---- publisher
  function publishCard() {
    const source = h('select', { id: 'pub-source' },
      h('option', { value: 'av', i18n: 'src.av' }),
      h('option', { value: 'video', i18n: 'src.video' }),
      h('option', { value: 'audio', i18n: 'src.audio' }),
      h('option', { value: 'screen', i18n: 'src.screen' }));
    const camera = h('select', { id: 'pub-camera' });
    const mic = h('select', { id: 'pub-mic' });
    const codec = h('select', { id: 'pub-codec' }, h('option', { value: '', i18n: 'codec.auto' }),
      videoCodecs().map((c) => h('option', { value: c, v: c })));
    const token = h('input', { id: 'pub-token', autocomplete: 'off' });
    const tokenField = h('div', { class: 'field', hidden: true }, h('label', { for: 'pub-token', i18n: 'pub.token' }), token);
    const cameraField = h('div', { class: 'field' }, h('label', { for: 'pub-camera', i18n: 'pub.camera' }), camera);
    const micField = h('div', { class: 'field' }, h('label', { for: 'pub-mic', i18n: 'pub.mic' }), mic);
    const start = h('button', { type: 'submit', class: 'primary', id: 'pub-start', i18n: 'pub.start' });
    const stop = h('button', { type: 'button', id: 'pub-stop', i18n: 'pub.stop', disabled: true });
    const status = h('p', { class: 'status', id: 'pub-status', i18n: 'pub.idle', 'aria-live': 'polite' });
    const errors = h('div', { class: 'status-area' });
    const preview = h('video', { class: 'preview', playsinline: true, autoplay: true, hidden: true, 'data-i18n-aria-label': 'pub.preview' });
    preview.muted = true;
    const stats = statsPanel('publisher');
    stats.el.hidden = true;
    const form = h('form', { class: 'publish-form' },
      h('div', { class: 'row' },
        h('div', { class: 'field' }, h('label', { for: 'pub-source', i18n: 'pub.source' }), source),
        h('div', { class: 'field' }, h('label', { for: 'pub-codec', i18n: 'pub.codec' }), codec)),
      h('div', { class: 'row' }, cameraField, micField),
      tokenField,
      h('div', { class: 'actions' }, start, stop));
    const el = h('section', { class: 'card publish', 'aria-labelledby': 'pub-h' },
      h('h2', { id: 'pub-h', i18n: 'pub.title' }), form, status, errors, preview, stats.el);
    const card = { el, tokenField, peer: null };
    let stream = null;

    const syncSource = () => {
      cameraField.hidden = !['av', 'video'].includes(source.value);
      micField.hidden = !['av', 'audio'].includes(source.value);
      codec.disabled = source.value === 'audio';
    };
    source.addEventListener('change', syncSource);
    syncSource();

    async function refreshDevices() {
      if (!navigator.mediaDevices?.enumerateDevices) return;
      const devices = await navigator.mediaDevices.enumerateDevices();
      const fill = (select, kind, key) => {
        const keep = select.value;
        const list = devices.filter((d) => d.kind === kind && d.deviceId && d.deviceId !== 'default');
        select.replaceChildren(h('option', { value: '', i18n: 'dev.default' }),
          ...list.map((d, i) => (d.label ? h('option', { value: d.deviceId, v: d.label })
            : h('option', { value: d.deviceId, i18n: key, args: { n: i + 1 } }))));
        if ([...select.options].some((o) => o.value === keep)) select.value = keep;
      };
      fill(camera, 'videoinput', 'dev.camera');
      fill(mic, 'audioinput', 'dev.mic');
    }
    refreshDevices().catch(() => {});
    navigator.mediaDevices?.addEventListener?.('devicechange', () => refreshDevices().catch(() => {}));

    async function getMedia() {
      const md = navigator.mediaDevices;
      if (!md) throw new UserError('err.insecure');
      const screen = source.value === 'screen';
      try {
        if (screen) return await md.getDisplayMedia({ video: true, audio: true });
        const v = camera.value ? { deviceId: { exact: camera.value } } : true;
        const a = mic.value ? { deviceId: { exact: mic.value } } : true;
        return await md.getUserMedia({
          video: source.value === 'audio' ? false : v,
          audio: source.value === 'video' ? false : a,
        });
      } catch (err) {
        throw mediaError(err, screen);
      }
    }

    const setBusy = (busy) => {
      start.disabled = busy;
      stop.disabled = !busy;
      source.disabled = busy;
      camera.disabled = busy;
      mic.disabled = busy;
      codec.disabled = busy || source.value === 'audio';
      token.disabled = busy;
    };

    function end(statusKey) {
      const peer = card.peer;
      card.peer = null;
      if (peer) peer.stop();
      // Figures of a session that never existed would only confuse.
      if (!peer || !peer.sessionId) stats.el.hidden = true;
      else stats.state('closed');
      if (stream) stream.getTracks().forEach((t) => t.stop());
      stream = null;
      preview.srcObject = null;
      preview.hidden = true;
      setBusy(false);
      setTr(status, statusKey);
      stop.blur();
    }

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (card.peer || publishPending) return;
      mark('publisher.click');
      errors.replaceChildren();
      setBusy(true);
      setTr(status, 'status.starting');
      // The connection and its offer are made while the browser opens the
      // camera and microphone (the kinds are known unless it is a screen
      // share); the offer is only sent once the stream exists, so a refused
      // permission never appears in the room as a publisher.
      const peer = new Peer({ role: 'publisher', room, token: token.value });
      const kinds = { av: ['audio', 'video'], video: ['video'], audio: ['audio'] }[source.value];
      if (kinds) peer.prepare(kinds, codec.value);
      try {
        stream = await getMedia();
      } catch (err) {
        peer.stop();
        errors.replaceChildren(errorBox(err));
        end('pub.idle');
        return;
      }
      mark('publisher.media');
      refreshDevices().catch(() => {});
      if (stream.getVideoTracks().length) {
        preview.srcObject = stream;
        preview.hidden = false;
      }
      // A screen share ended from the browser's own bar ends publishing.
      stream.getTracks().forEach((t) => t.addEventListener('ended', () => {
        if (card.peer) end('status.stopped');
      }));
      card.peer = peer;
      stats.reset();
      peer.onstate = (s) => {
        if (peer !== card.peer) return;
        stats.state(s);
        if (s === 'gathering') setTr(status, 'status.gathering');
        else if (s === 'sending') setTr(status, 'status.sending');
        else if (s === 'connecting' || s === 'new') setTr(status, 'status.connecting');
        else if (s === 'connected') setTr(status, 'status.publishing');
      };
      peer.onstats = (s) => stats.update(s);
      peer.onsession = (s) => stats.session(s);
      peer.onfailed = () => {
        errors.replaceChildren(errorBox(new UserError('err.connFailed'), { sessionId: peer.sessionId }));
        end('status.stopped');
      };
      peer.onended = (reason) => {
        end('status.ended');
        if (reason) errors.replaceChildren(h('p', { class: 'muted detail', v: reason }));
      };
      publishPending = true;
      try {
        await peer.start(stream, codec.value);
        if (peer.sessionId) {
          own.add(peer.participantId);
          stats.sessionId(peer.sessionId);
          stats.el.hidden = false;
        }
      } catch (err) {
        errors.replaceChildren(errorBox(err, { room }));
        end('pub.idle');
      } finally {
        publishPending = false;
        poller.now();
      }
    });
    stop.addEventListener('click', () => {
      end('status.stopped');
      poller.now();
    });
    return card;
  }

  // ---- one WHEP player per publisher
  function player(part) {
    const pid = part.id;
    const video = h('video', { playsinline: true, autoplay: true, class: 'remote' });
    video.muted = true; // autoplay is allowed muted; the user unmutes
    const mute = h('button', { type: 'button', class: 'small', i18n: 'player.unmute', disabled: true });
    const toggle = h('button', { type: 'button', class: 'small', i18n: 'player.retry' });
    const status = h('p', { class: 'status', 'aria-live': 'polite' });
    const first = h('p', { class: 'muted first-frame', hidden: true });
    const errors = h('div', { class: 'status-area' });
    const stats = statsPanel('viewer');
    stats.el.hidden = true;
    const el = h('section', { class: 'player card inset', dataset: { publisher: pid } },
      h('h3', {}, h('span', { i18n: 'player.title', args: { id: part.user_id || shortId(pid) } })),
      h('div', { class: 'video-box' }, video),
      h('div', { class: 'actions' }, mute, toggle),
      status, first, errors, stats.el);
    const p = { el, started: false, peer: null, orphaned: 0, born: 0 };

    mute.addEventListener('click', () => {
      video.muted = !video.muted;
      setTr(mute, video.muted ? 'player.unmute' : 'player.mute');
    });
    toggle.addEventListener('click', () => (p.peer ? stopPeer('status.stopped') : p.start()));

    function stopPeer(key) {
      const peer = p.peer;
      p.peer = null;
      if (peer) {
        own.delete(peer.participantId);
        peer.stop();
      }
      video.srcObject = null;
      mute.disabled = true;
      setTr(toggle, 'player.retry');
      status.hidden = !key;
      if (key) setTr(status, key);
      if (!peer || !peer.sessionId) stats.el.hidden = true;
      else stats.state('closed');
    }

    p.start = async () => {
      if (p.peer) return;
      p.started = true;
      mark('viewer.start');
      status.hidden = false;
      errors.replaceChildren();
      first.hidden = true;
      delete video.dataset.firstFrameAt;
      delete video.dataset.firstFrameRtp;
      stats.reset();
      const peer = new Peer({ role: 'viewer', room, publisher: pid, token: viewToken.value });
      p.peer = peer;
      setTr(toggle, 'player.stop');
      const t0 = performance.now();
      peer.onstate = (s) => {
        if (peer !== p.peer) return;
        stats.state(s);
        if (s === 'connected') setTr(status, video.dataset.firstFrameAt ? 'status.watching' : 'status.waiting');
        else if (s === 'gathering') setTr(status, 'status.gathering');
        else if (s === 'sending') setTr(status, 'status.sending');
        else if (s === 'connecting' || s === 'new') setTr(status, 'status.connecting');
      };
      peer.ontrack = (stream) => {
        mark('viewer.track');
        if (video.srcObject !== stream) video.srcObject = stream;
        mute.disabled = false;
        video.play().catch(() => {
          // Autoplay refused (not muted): the user presses play.
        });
        const onFrame = (now, meta) => {
          if (peer !== p.peer || video.dataset.firstFrameAt) return;
          // When the frame went to the compositor, not when this callback
          // runs (up to a display refresh later); loadeddata has no such time.
          const at = meta && meta.presentationTime ? meta.presentationTime : performance.now();
          // For a WebRTC stream, receiveTime is when the frame's last
          // packet arrived: the marks tell the network from the decoder.
          if (meta && meta.receiveTime) mark('viewer.received', meta.receiveTime);
          // Which frame it was: pinhole's timeline names the keyframe it sent.
          if (meta && meta.rtpTimestamp !== undefined) video.dataset.firstFrameRtp = String(meta.rtpTimestamp);
          mark('viewer.frame', at);
          // Epoch milliseconds: the browser test compares it with the publish click.
          video.dataset.firstFrameAt = String(Math.round(performance.timeOrigin + at));
          first.hidden = false;
          setTr(first, 'player.firstFrame', { ms: Math.round(performance.now() - t0) });
          setTr(status, 'status.watching');
        };
        if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(onFrame);
        else video.addEventListener('loadeddata', onFrame, { once: true });
      };
      peer.onstats = (s) => stats.update(s);
      peer.onsession = (s) => stats.session(s);
      peer.onfailed = () => {
        errors.replaceChildren(errorBox(new UserError('err.connFailed'), { sessionId: peer.sessionId }));
        stopPeer(null);
      };
      peer.onended = () => stopPeer('status.ended');
      try {
        await peer.start(null);
        if (peer.sessionId) {
          own.add(peer.participantId);
          stats.sessionId(peer.sessionId);
          stats.el.hidden = false;
        }
      } catch (err) {
        if (peer !== p.peer) return;
        errors.replaceChildren(errorBox(err, { room }));
        stopPeer(null);
      }
    };
    p.destroy = () => {
      stopPeer(null);
      el.remove();
    };
    return p;
  }
}

function setState(el, s) {
  if (STATES.has(s)) setTr(el, `state.${s}`);
  else setV(el, s || '—');
}

// statsPanel is the live figures of one peer: getStats() values and, from
// GET /api/v1/sessions/{id}, the leased port pinhole gave it.
function statsPanel(role) {
  const rows = [
    ['state', 'stat.state'],
    ['bitrate', 'stat.bitrate'],
    ['fps', 'stat.fps'],
    ['resolution', 'stat.resolution'],
    ['rtt', 'stat.rtt'],
    ['loss', 'stat.loss'],
    ['frames', role === 'publisher' ? 'stat.framesEncoded' : 'stat.framesDecoded'],
    ['audio', role === 'publisher' ? 'stat.audioSent' : 'stat.audioReceived'],
    ['codecs', 'stat.codec'],
    ['pair', 'stat.pair'],
    ['localPort', 'stat.localPort'],
    ['publicAddr', 'stat.publicAddr'],
    ['session', 'stat.session'],
  ];
  const dd = {};
  const dl = h('dl', { class: 'stats' }, rows.map(([k, label]) => {
    dd[k] = h('dd', { dataset: { stat: k }, v: '—' });
    return h('div', { class: `stat stat-${k}` }, h('dt', { i18n: label }), dd[k]);
  }));
  const el = h('details', { class: 'stats-box', open: true }, h('summary', { i18n: 'stat.title' }), dl);
  const dash = (k) => setV(dd[k], '—');
  return {
    el,
    reset() {
      rows.forEach(([k]) => dash(k));
    },
    state(s) {
      // Before the answer the connection is, for the user, still new.
      const st = STATES.has(s) ? s : 'new';
      dd.state.dataset.state = st;
      setState(dd.state, st);
    },
    sessionId(id) {
      setV(dd.session, id);
    },
    update(s) {
      setV(dd.bitrate, fmtBitrate(s.bitrate));
      if (Number.isFinite(s.fps)) setTr(dd.fps, 'unit.fps', { n: Math.round(s.fps) });
      else dash('fps');
      setV(dd.resolution, s.width ? `${s.width}×${s.height}` : '—');
      if (Number.isFinite(s.rtt)) setTr(dd.rtt, 'unit.ms', { n: Math.round(s.rtt) });
      else dash('rtt');
      setV(dd.loss, Number.isFinite(s.loss) ? `${(s.loss * 100).toFixed(1)} %` : '—');
      setV(dd.frames, String(s.frames));
      setV(dd.audio, String(s.audioPackets));
      setV(dd.codecs, s.codecs.length ? s.codecs.join(', ') : '—');
      setV(dd.pair, s.pair || '—');
    },
    session(sess) {
      const lease = sess.lease || {};
      setV(dd.localPort, lease.local_port ? String(lease.local_port) : '—');
      setV(dd.publicAddr, lease.public_addr || '—');
    },
  };
}
