// Browser half of the ICE-TCP namespace test (issue 12), run by
// e2e/nattest's TestTCPChromium with `ip netns exec` inside the client
// namespace, whose network drops every UDP packet it sends: Chromium opens
// the room page at the router's public TCP port, the page's player watches
// the Pion publisher over WHEP, and media can only arrive over ICE-TCP
// (Chromium's active TCP candidates to pinhole's passive one). It prints
// ok/not ok lines and one "RESULT {json}" line the Go test asserts on:
// decoded frames, the selected candidate pair of every peer connection.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CHROMIUM, check, chromiumArgs, log, reporter } from './harness.mjs';

const BASE = (process.env.PINHOLE_URL || '').replace(/\/$/, '');
const ROOM = process.env.PINHOLE_ROOM || 'tcp';
const FRAMES = 30; // a second of the publisher's video: decoding, not one lucky keyframe
const WAIT = 45_000; // ICE-TCP connects in well under a second here; generous for a loaded machine
const { step, finish } = reporter('tcp: ', 'tcp: ');

// Every RTCPeerConnection the page makes, for getStats() from the test.
function keepPeers() {
  const Orig = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Orig(...args);
    window.__pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Orig.prototype;
  Object.setPrototypeOf(window.RTCPeerConnection, Orig);
}

// selectedPairs is, for each peer connection, its transport's selected
// candidate pair with both candidates.
async function selectedPairs() {
  const out = [];
  for (const pc of window.__pcs || []) {
    const stats = await pc.getStats();
    const byId = new Map();
    stats.forEach((s) => byId.set(s.id, s));
    stats.forEach((s) => {
      if (s.type !== 'transport' || !s.selectedCandidatePairId) return;
      const pair = byId.get(s.selectedCandidatePairId);
      const local = pair && byId.get(pair.localCandidateId);
      const remote = pair && byId.get(pair.remoteCandidateId);
      out.push({
        connection: pc.connectionState,
        state: pair && pair.state,
        local: local && { protocol: local.protocol, type: local.candidateType, tcpType: local.tcpType, address: local.address, port: local.port },
        remote: remote && { protocol: remote.protocol, type: remote.candidateType, tcpType: remote.tcpType, address: remote.address, port: remote.port },
        bytesReceived: pair && pair.bytesReceived,
      });
    });
  }
  return out;
}

async function main() {
  check(BASE.startsWith('http://'), `PINHOLE_URL is ${BASE}`);
  const profile = mkdtempSync(path.join(tmpdir(), 'pinhole-tcp-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: chromiumArgs(),
  });
  const result = { frames: 0, pairs: [] };
  try {
    const page = await context.newPage();
    await page.addInitScript(keepPeers);
    page.on('console', (m) => { if (m.type() === 'error') log(`# console: ${m.text()}`); });
    await step('the room page plays the publisher', async () => {
      await page.goto(`${BASE}/rooms/${encodeURIComponent(ROOM)}`);
      await page.waitForFunction(() => !!document.querySelector('video.remote')?.dataset.firstFrameAt, null, { timeout: WAIT });
      // Frames decoded, counted by the video element itself.
      await page.waitForFunction((n) => {
        const v = document.querySelector('video.remote');
        return v && v.getVideoPlaybackQuality().totalVideoFrames >= n;
      }, FRAMES, { timeout: WAIT });
      const q = await page.evaluate(() => {
        const v = document.querySelector('video.remote');
        return { frames: v.getVideoPlaybackQuality().totalVideoFrames, width: v.videoWidth, height: v.videoHeight };
      });
      result.frames = q.frames;
      log(`# ${q.frames} frames decoded, ${q.width}x${q.height}`);
    });
    await step('the selected candidate pair is TCP', async () => {
      result.pairs = await page.evaluate(selectedPairs);
      log(`# selected pairs: ${JSON.stringify(result.pairs)}`);
      check(result.pairs.length > 0, 'no selected candidate pair');
      for (const p of result.pairs) check(p.local && p.local.protocol === 'tcp', `selected pair not TCP: ${JSON.stringify(p)}`);
    });
  } finally {
    log(`RESULT ${JSON.stringify(result)}`);
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

main().then(() => finish(), (err) => finish(err));
