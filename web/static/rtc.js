// WHIP/WHEP client and getStats() summaries.
//
// Signalling is non-trickle: the offer is sent once ICE gathering is
// complete, and pinhole's answer carries all of its candidates (its leased
// port at the public address), so no PATCH is needed. The WHIP/WHEP
// resource (the Location of the 201) is DELETEd when the peer stops, also on
// pagehide with fetch keepalive, so the leased port is freed at once rather
// than after pinhole's timeouts.
import { request, getJSON, UserError, enc } from './api.js';

// GATHER_TIMEOUT_MS bounds the wait for ICE gathering: host candidates come
// in milliseconds, but an unreachable STUN/TURN server could hold gathering
// for tens of seconds. What has been gathered by then is sent.
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
    this.onPageHide = () => this.stop(true);
  }

  /**
   * start negotiates. Publishers pass their MediaStream and an optional
   * codec name (H264, VP8, VP9, AV1) to prefer.
   */
  async start(stream, codec) {
    if (!window.RTCPeerConnection) throw new UserError('err.unsupported');
    this.emit('onstate', 'gathering');
    window.addEventListener('pagehide', this.onPageHide);
    if (!this.pc) this.pc = this.build();
    const pc = this.pc;
    if (this.role === 'publisher') this.addMedia(stream, codec);
    await this.offer();
    if (this.stopped) return;
    this.emit('onstate', 'sending');
    const base = this.role === 'publisher' ? '/whip/' : '/whep/';
    const q = this.publisher ? `?publisher=${enc(this.publisher)}` : '';
    const res = await request('POST', `${base}${enc(this.room)}${q}`, {
      body: pc.localDescription.sdp,
      headers: { 'Content-Type': 'application/sdp' },
      token: this.token,
    });
    const loc = res.headers.get('Location');
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
    this.loop(() => this.sampleStats(), STATS_MS);
    if (this.sessionId) this.loop(() => this.fetchSession(), SESSION_MS);
  }

  // offer makes the offer and waits for gathering, once per peer.
  offer() {
    if (!this.offered) {
      const pc = this.pc;
      this.offered = (async () => {
        await pc.setLocalDescription(await pc.createOffer());
        this.mark('offer');
        await waitGathering(pc);
        this.mark('gathered');
      })();
    }
    return this.offered;
  }

  // addMedia adds a publisher's tracks, each on a sendonly transceiver.
  addMedia(stream, codec) {
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
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      const remote = new MediaStream();
      pc.addEventListener('track', (ev) => {
        remote.addTrack(ev.track);
        this.emit('ontrack', remote);
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
