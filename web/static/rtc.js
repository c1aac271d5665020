// WHIP/WHEP client and getStats() summaries.
//
// Signalling trickles (RFC 9725 section 4.3.1): the offer is POSTed as soon
// as it is set, with whatever candidates the browser already has, and the
// candidates gathered after it go in one PATCH once gathering completes.
// pinhole does not need them to connect (its answer carries its leased port
// at the public address, and the browser's checks to it are enough), so the
// ~100 ms a browser spends gathering no longer delays the answer; they still
// reach pinhole for its diagnosis and for paths only they open. The WHIP/WHEP
// resource (the Location of the 201) is DELETEd when the peer stops, also on
// pagehide with fetch keepalive, so the leased port is freed at once rather
// than after pinhole's timeouts.
import { request, getJSON, UserError, enc } from './api.js';

// GATHER_TIMEOUT_MS bounds the wait for ICE gathering before the trickle
// PATCH: host candidates come in milliseconds, but an unreachable STUN/TURN
// server could hold gathering for tens of seconds. What has been gathered by
// then is sent.
const GATHER_TIMEOUT_MS = 4000;
const STATS_MS = 1000; // one getStats() per second per peer: live without cost
const SESSION_MS = 3000;
const DELETE_WAIT_MS = 2000; // how long stop waits for the DELETE answer before closing anyway

/**
 * mark records a stage of setting up a peer as a performance mark named
 * pinhole.<what>, now or at the given performance.now() time: the browser
 * test reads them for its per-stage table of publish click to first frame,
 * and a user's DevTools timeline shows them.
 */
export function mark(what, at) {
  try {
    performance.mark(`pinhole.${what}`, at === undefined ? undefined : { startTime: at });
  } catch {
    // No User Timing (very old browser): nothing to record.
  }
}

/**
 * waitGathering waits until pc has gathered all candidates, or ms passed.
 * It resolves true when gathering completed or at least one candidate was
 * found (worth sending), false when nothing at all happened (stalled).
 */
export function waitGathering(pc, ms = GATHER_TIMEOUT_MS) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve(true);
  return new Promise((resolve) => {
    let found = false;
    const done = (ok) => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      pc.removeEventListener('icecandidate', seen);
      resolve(ok);
    };
    const check = () => {
      if (pc.iceGatheringState === 'complete') done(true);
    };
    const seen = (ev) => {
      if (ev.candidate) found = true;
    };
    const timer = setTimeout(() => done(found), ms);
    pc.addEventListener('icegatheringstatechange', check);
    pc.addEventListener('icecandidate', seen);
  });
}

// sdpSections returns the ICE credentials of sdp (the first ones: browsers
// repeat them in every m-section) and each m-section's m= line, mid and
// a=candidate lines.
function sdpSections(sdp) {
  const out = { ufrag: '', pwd: '', sections: [] };
  let cur = null;
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith('m=')) {
      cur = { mline: line, mid: '', candidates: [] };
      out.sections.push(cur);
    } else if (line.startsWith('a=ice-ufrag:')) {
      out.ufrag ||= line.slice('a=ice-ufrag:'.length);
    } else if (line.startsWith('a=ice-pwd:')) {
      out.pwd ||= line.slice('a=ice-pwd:'.length);
    } else if (cur && line.startsWith('a=mid:')) {
      cur.mid = line.slice('a=mid:'.length);
    } else if (cur && line.startsWith('a=candidate:')) {
      cur.candidates.push(line);
    }
  }
  return out;
}

/**
 * trickleFragment is the application/trickle-ice-sdpfrag (RFC 8840 section
 * 9) with the candidates of sdp that sent (the offer as POSTed) lacks, each
 * m-section's ending in a=end-of-candidates; '' when there is none.
 */
export function trickleFragment(sdp, sent) {
  const had = new Set(sdpSections(sent).sections.flatMap((m) => m.candidates));
  const cur = sdpSections(sdp);
  const lines = [`a=ice-ufrag:${cur.ufrag}`, `a=ice-pwd:${cur.pwd}`];
  let n = 0;
  for (const m of cur.sections) {
    const fresh = m.candidates.filter((c) => !had.has(c));
    if (!fresh.length) continue;
    n += fresh.length;
    lines.push(m.mline, `a=mid:${m.mid}`, ...fresh, 'a=end-of-candidates');
  }
  return n ? `${lines.join('\r\n')}\r\n` : '';
}

/** sessionIdFrom takes the session id from a WHIP/WHEP resource URL: its last path segment. */
export function sessionIdFrom(resourceUrl) {
  const path = new URL(resourceUrl, location.href).pathname.replace(/\/+$/, '');
  return decodeURIComponent(path.slice(path.lastIndexOf('/') + 1));
}

/** mediaError turns a getUserMedia/getDisplayMedia failure into a translated UserError. */
export function mediaError(err, screen) {
  const name = err && err.name;
  if (name === 'NotAllowedError' || name === 'SecurityError') {
    return new UserError(screen ? 'err.screen' : 'err.permission', null, err.message);
  }
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return new UserError('err.noDevice', null, err.message);
  if (name === 'NotReadableError' || name === 'AbortError') return new UserError('err.deviceBusy', null, err.message);
  return err;
}

/** videoCodecs lists the video codecs this browser can send, from the ones pinhole knows. */
export function videoCodecs() {
  const caps = window.RTCRtpSender?.getCapabilities?.('video');
  const known = ['H264', 'VP8', 'VP9', 'AV1'];
  const have = new Set((caps?.codecs || []).map((c) => c.mimeType.replace(/^video\//i, '').toUpperCase()));
  return known.filter((k) => have.has(k));
}

// preferCodec orders the transceiver's codecs with the chosen one first;
// the rest stay as fallbacks so the offer still negotiates if pinhole
// lacks the choice.
function preferCodec(transceiver, name) {
  if (!name || !transceiver.setCodecPreferences) return;
  const caps = RTCRtpReceiver.getCapabilities?.('video') || RTCRtpSender.getCapabilities('video');
  const mime = `video/${name}`.toLowerCase();
  const first = caps.codecs.filter((c) => c.mimeType.toLowerCase() === mime);
  if (!first.length) return;
  const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== mime);
  transceiver.setCodecPreferences([...first, ...rest]);
}

/**
 * Peer is one WHIP publisher or WHEP viewer. Events (set as properties):
 * onstate(state), onstats(summary), onsession(session), ontrack(stream),
 * onfailed() (no media path; pinhole may have ended the session), onended(reason)
 * (pinhole ended a connected session). At most one of the two fires.
 * Call start, then stop.
 */
export class Peer {
  /**
   * @param {object} o role 'publisher'|'viewer', room, publisher (viewer: session id to follow), token
   */
  constructor(o) {
    this.role = o.role;
    this.room = o.room;
    this.publisher = o.publisher || '';
    this.token = o.token || '';
    this.pc = null;
    this.resourceUrl = '';
    this.sessionId = '';
    this.participantId = ''; // the id the room's participant list shows for this peer
    this.stopped = false;
    this.ended = false; // onfailed or onended was emitted
    this.timers = [];
    this.prev = null;
    this.offered = null; // the promise of offer()
    this.prepared = ''; // the kinds prepare made transceivers for
    this.remote = null; // a viewer's MediaStream of its receivers' tracks
    this.onPageHide = () => this.stop(true);
  }

  /**
   * prepare builds a publisher's connection and starts its offer before the
   * media exists, with one sendonly transceiver per kind ('audio', 'video')
   * and no track yet: creating the offer and gathering then overlap
   * getUserMedia, and start(stream) attaches the tracks with replaceTrack,
   * which needs no renegotiation. Only for sources whose kinds are known
   * before the browser hands out the stream (not a screen share, whose audio
   * the user may or may not share).
   */
  prepare(kinds, codec) {
    if (!window.RTCPeerConnection || this.pc || this.role !== 'publisher') return;
    this.pc = this.build();
    const placeholder = new MediaStream();
    for (const kind of kinds) {
      const tr = this.pc.addTransceiver(kind, { direction: 'sendonly', streams: [placeholder] });
      if (kind === 'video') preferCodec(tr, codec);
    }
    this.prepared = [...kinds].sort().join(',');
    this.offer().catch(() => {
      // start() awaits the same offer and reports its failure.
    });
  }

  /**
   * start negotiates. Publishers pass their MediaStream and an optional
   * codec name (H264, VP8, VP9, AV1) to prefer.
   */
  async start(stream, codec) {
    if (!window.RTCPeerConnection) throw new UserError('err.unsupported');
    this.emit('onstate', 'gathering');
    window.addEventListener('pagehide', this.onPageHide);
    if (this.role === 'publisher') await this.addMedia(stream, codec);
    if (!this.pc) this.pc = this.build();
    const pc = this.pc;
    if (this.remote) this.emit('ontrack', this.remote);
    await this.offer();
    if (this.stopped) return;
    this.emit('onstate', 'sending');
    const base = this.role === 'publisher' ? '/whip/' : '/whep/';
    const q = this.publisher ? `?publisher=${enc(this.publisher)}` : '';
    const offered = pc.localDescription.sdp;
    const res = await request('POST', `${base}${enc(this.room)}${q}`, {
      body: offered,
      headers: { 'Content-Type': 'application/sdp' },
      token: this.token,
    });
    const loc = res.headers.get('Location');
    const etag = res.headers.get('ETag');
    this.participantId = res.headers.get('Pinhole-Participant-Id') || '';
    const answer = await res.text();
    this.mark('answer');
    if (loc) {
      this.resourceUrl = new URL(loc, location.href).href;
      this.sessionId = sessionIdFrom(loc);
    }
    if (this.stopped) {
      // Stopped while the POST was in flight: end the new session too.
      this.release(false);
      return;
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    this.emit('onstate', pc.connectionState === 'new' ? 'connecting' : pc.connectionState);
    this.trickle(offered, etag);
    this.loop(() => this.sampleStats(), STATS_MS);
    if (this.sessionId) this.loop(() => this.fetchSession(), SESSION_MS);
  }

  // offer makes the offer and sets it, once per peer. It does not wait for
  // gathering: start POSTs it at once and trickle sends the rest.
  offer() {
    if (!this.offered) {
      const pc = this.pc;
      this.offered = (async () => {
        await pc.setLocalDescription(await pc.createOffer());
        this.mark('offer');
      })();
    }
    return this.offered;
  }

  // trickle waits for gathering to end (bounded) and PATCHes the candidates
  // the POSTed offer lacked, once (RFC 9725 section 4.3.1, with the ETag of
  // the 201 in If-Match). A failure is ignored: pinhole connects without
  // them, and a session ended meanwhile has nothing to add them to.
  async trickle(offered, etag) {
    const pc = this.pc;
    await waitGathering(pc);
    this.mark('gathered');
    if (this.stopped || pc !== this.pc || !this.resourceUrl || !etag) return;
    const frag = trickleFragment(pc.localDescription.sdp, offered);
    if (!frag) return;
    try {
      await request('PATCH', this.resourceUrl, {
        body: frag,
        headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': etag },
        token: this.token,
      });
    } catch {
      // See above: the connection does not depend on it.
    }
  }

  // addMedia gives a publisher's tracks to the connection: to the
  // transceivers prepare made when the stream has exactly their kinds,
  // otherwise each track on a new sendonly transceiver of a new connection.
  async addMedia(stream, codec) {
    const kinds = stream.getTracks().map((t) => t.kind).sort().join(',');
    if (this.pc && this.prepared === kinds) {
      const free = this.pc.getTransceivers();
      await Promise.all(stream.getTracks().map((track) => {
        const i = free.findIndex((t) => t.receiver.track.kind === track.kind);
        return free.splice(i, 1)[0].sender.replaceTrack(track);
      }));
      return;
    }
    if (this.pc) {
      // Prepared for other kinds than the stream has: start over.
      this.pc.close();
      this.pc = null;
      this.offered = null;
    }
    this.pc = this.build();
    for (const track of stream.getTracks()) {
      const tr = this.pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      if (track.kind === 'video') preferCodec(tr, codec);
    }
  }

  // build makes the RTCPeerConnection with its handlers, and a viewer's
  // transceivers.
  build() {
    // iceCandidatePoolSize 1 starts gathering as the connection is made.
    // Without it Chromium, on a host whose only interface is loopback,
    // sometimes never gathers at all: its network list can arrive before
    // setLocalDescription starts the allocator, which then waits forever
    // (seen in about one run in three in the browser test's namespace).
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceCandidatePoolSize: 1 });
    pc.addEventListener('connectionstatechange', () => {
      if (pc !== this.pc) return;
      this.emit('onstate', pc.connectionState);
      if (pc.connectionState === 'connected') this.mark('connected');
      if (pc.connectionState === 'failed') this.failed();
    });
    pc.addEventListener('iceconnectionstatechange', () => {
      if (pc === this.pc && pc.iceConnectionState === 'connected') this.mark('ice');
    });
    if (this.role === 'viewer') {
      const video = pc.addTransceiver('video', { direction: 'recvonly' });
      const audio = pc.addTransceiver('audio', { direction: 'recvonly' });
      // A receiver's track exists from its transceiver on, before any
      // negotiation. start hands it to the page at once, so a <video>
      // element sets its renderer up while the offer is on its way rather
      // than after the answer, when the first frames already arrive:
      // Chromium decodes the frames that come before the renderer is
      // attached but never shows them, which kept the first picture
      // 150-550 ms of video behind the keyframe pinhole sent.
      this.remote = new MediaStream([video.receiver.track, audio.receiver.track]);
      pc.addEventListener('track', (ev) => {
        if (!this.remote.getTracks().includes(ev.track)) this.remote.addTrack(ev.track);
        this.emit('ontrack', this.remote);
      });
    }
    return pc;
  }

  mark(stage) {
    mark(`${this.role}.${stage}`);
  }

  emit(name, ...args) {
    if (typeof this[name] === 'function') this[name](...args);
  }

  // loop runs fn now and every ms until stop; failures are reported by fn.
  loop(fn, ms) {
    const tick = async () => {
      if (this.stopped) return;
      try {
        await fn();
      } catch {
        // A failed sample is skipped; the next one may succeed.
      }
      if (!this.stopped) this.timers.push(setTimeout(tick, ms));
    };
    tick();
  }

  async fetchSession() {
    if (!this.resourceUrl) return; // ended on the server: nothing to ask
    const s = await getJSON(`/api/v1/sessions/${enc(this.sessionId)}`);
    this.emit('onsession', s);
    if (s.state === 'closed') this.serverClosed(s);
  }

  // failed runs when the browser gives up on the connection. It tells a
  // broken media path from a session pinhole ended on purpose (publisher
  // left, room deleted), which also fails the connection in Chromium.
  async failed() {
    if (this.stopped || this.ended) return;
    let s = null;
    if (this.sessionId && this.resourceUrl) {
      try {
        s = await getJSON(`/api/v1/sessions/${enc(this.sessionId)}`);
      } catch {
        // Unknown: treat as a failed connection.
      }
    }
    if (this.stopped || this.ended) return;
    if (s && s.state === 'closed') this.serverClosed(s);
    else {
      this.ended = true;
      this.emit('onfailed');
    }
  }

  // serverClosed handles a session pinhole has closed: no DELETE is due.
  // One that never connected failed (pinhole's setup timeout ends those
  // long before the browser gives up): onfailed, which points to the
  // diagnostics. One that did connect was ended on purpose: onended(reason).
  serverClosed(s) {
    if (this.stopped || this.ended) return;
    this.ended = true;
    this.markGone();
    const connected = (s.transitions || []).some((t) => t.state === 'connected');
    if (connected) this.emit('onended', s.close_reason || '');
    else this.emit('onfailed');
  }

  /** markGone records that pinhole ended the session itself: stop skips the DELETE. */
  markGone() {
    this.resourceUrl = '';
  }

  async sampleStats() {
    if (!this.pc) return;
    const report = await this.pc.getStats();
    const sum = summarize(report, this.role, this.prev);
    sum.state = this.pc.connectionState;
    this.prev = sum;
    this.emit('onstats', sum);
  }

  // release DELETEs the resource once; keepalive lets it outlive the page.
  // It resolves when pinhole has answered (or failed to).
  release(keepalive) {
    if (!this.resourceUrl) return Promise.resolve();
    const url = this.resourceUrl;
    this.resourceUrl = '';
    return request('DELETE', url, { keepalive, token: this.token }).catch(() => {
      // Gone already (timeout, room deleted): nothing left to free.
    });
  }

  /**
   * stop ends the peer: DELETE on the resource, then close the connection.
   * The order matters: closing first sends a DTLS close that makes pinhole
   * end the session itself, and the DELETE racing it would get 404.
   */
  stop(keepalive = false) {
    if (this.stopped) return;
    this.stopped = true;
    window.removeEventListener('pagehide', this.onPageHide);
    this.timers.forEach(clearTimeout);
    const pc = this.pc;
    if (pc) pc.getSenders().forEach((s) => s.track && s.track.stop());
    const close = () => pc && pc.close();
    if (keepalive) {
      this.release(true);
      close();
    } else {
      const answered = this.release(false);
      // Close anyway if pinhole does not answer soon.
      Promise.race([answered, new Promise((r) => setTimeout(r, DELETE_WAIT_MS))]).then(close);
    }
    this.emit('onstate', 'closed');
  }
}

/**
 * summarize condenses a getStats() report: bitrate (from the byte delta
 * since prev), frame rate, resolution, RTT, packet loss, the selected
 * candidate pair, frame and audio packet counts, codecs.
 */
export function summarize(report, role, prev) {
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  const out = {
    at: 0, bytes: 0, bitrate: NaN, fps: NaN, width: 0, height: 0, rtt: NaN, loss: NaN,
    pair: '', frames: 0, audioPackets: 0, codecs: [],
  };
  let lost = 0;
  let packets = 0;
  let selected = null;
  const codecs = new Set();
  const dir = role === 'publisher' ? 'outbound-rtp' : 'inbound-rtp';
  report.forEach((s) => {
    if (s.type === dir) {
      out.at = Math.max(out.at, s.timestamp);
      out.bytes += (role === 'publisher' ? s.bytesSent : s.bytesReceived) || 0;
      if (s.codecId && byId.has(s.codecId)) codecs.add(byId.get(s.codecId).mimeType.replace(/^\w+\//, ''));
      if (s.kind === 'video') {
        if (s.framesPerSecond !== undefined) out.fps = s.framesPerSecond;
        if (s.frameWidth) {
          out.width = s.frameWidth;
          out.height = s.frameHeight;
        }
        out.frames += (role === 'publisher' ? s.framesEncoded : s.framesDecoded) || 0;
      } else if (s.kind === 'audio') {
        out.audioPackets += (role === 'publisher' ? s.packetsSent : s.packetsReceived) || 0;
      }
      if (role === 'publisher') packets += s.packetsSent || 0;
      else {
        lost += Math.max(0, s.packetsLost || 0);
        packets += (s.packetsReceived || 0) + Math.max(0, s.packetsLost || 0);
      }
    } else if (s.type === 'remote-inbound-rtp' && role === 'publisher') {
      lost += Math.max(0, s.packetsLost || 0);
    } else if (s.type === 'transport' && s.selectedCandidatePairId) {
      selected = byId.get(s.selectedCandidatePairId) || selected;
    } else if (s.type === 'candidate-pair' && !selected && s.nominated && s.state === 'succeeded') {
      selected = s;
    }
  });
  out.codecs = [...codecs];
  if (packets > 0) out.loss = lost / packets;
  if (prev && prev.at && out.at > prev.at) {
    out.bitrate = ((out.bytes - prev.bytes) * 8 * 1000) / (out.at - prev.at);
  }
  if (selected) {
    if (selected.currentRoundTripTime !== undefined) out.rtt = selected.currentRoundTripTime * 1000;
    const l = byId.get(selected.localCandidateId);
    const r = byId.get(selected.remoteCandidateId);
    const fmt = (c) => (c ? `${c.address || c.ip}:${c.port} ${c.candidateType}` : '?');
    if (l || r) out.pair = `${fmt(l)} ⇄ ${fmt(r)} (${(l && l.protocol) || 'udp'})`;
  }
  return out;
}
