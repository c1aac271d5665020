// Browser test of the diagnostics page's path picture (issue 13): Debian's
// Chromium driven by playwright-core against a real pinhole at
// PINHOLE_BROKEN_URL that advertises a public address nobody can reach
// (a documentation address; the namespace has only lo up, so the browser's
// checks to it fail at once). diagnostics.sh starts it.
//
//  1. A real browser publisher (RTCPeerConnection, WHIP) whose mapping is
//     broken: its checks go to the advertised address, which has no route,
//     and an nftables rule drops what pinhole's leased ports send, so
//     pinhole cannot reach the browser's own candidate on loopback either.
//     ?session=<id> must draw the path with the router/tunnel step red and
//     pointed at, the steps before it green, in English and Chinese.
//  2. The TCP forward missing, from the page's point of view: an nftables
//     rule in this test's own namespace drops (then rejects) TCP to
//     pinhole's port; the signaling check must say "timed out" (then
//     "refused") with its own verdict and the signaling step red.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CHROMIUM, check, chromiumArgs, log, reporter } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.PINHOLE_BROKEN_URL || 'http://127.0.0.1:18082').replace(/\/$/, '');
const PORT = new URL(BASE).port;
// The pion/turn server diagnostics.sh runs: as a STUN server it gives the
// browser a srflx candidate on 127.0.0.1 (its host candidates are mDNS
// names, which pinhole does not resolve).
const STUN = process.env.PINHOLE_TURN || '127.0.0.1:3478';
// The broken pinhole's --udp-ports (diagnostics.sh).
const UDP_PORTS = process.env.PINHOLE_BROKEN_UDP_PORTS || '10126-10127';
const ART = process.env.PINHOLE_ARTIFACTS || path.join(here, 'artifacts');
// Generous: pinhole names a broken mapping 3 s after the answer.
const VERDICT_MS = 30_000;
const WAIT = 30_000;
const TABLE = `pinhole_diagpath_${process.pid}`;

mkdirSync(ART, { recursive: true });
const { step, finish } = reporter('diagpath: ', 'diagpath: ');

function nft(...args) {
  return execFileSync('nft', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

// hasNft: the TCP-forward step needs nftables in this namespace.
function hasNft() {
  try {
    nft('list', 'tables');
    return true;
  } catch {
    return false;
  }
}

// block makes TCP to pinhole's port fail the way a missing forward does:
// 'drop' (a router or firewall that drops, the client times out) or
// 'reject' (nothing listens: a reset, the client is refused at once).
function block(how) {
  rule('tcp', 'dport', PORT, ...(how === 'drop' ? ['drop'] : ['reject', 'with', 'tcp', 'reset']));
}

// rule installs one output rule in this test's own table (only lo is up:
// it filters nothing beyond this namespace).
function rule(...r) {
  unblock();
  nft('add', 'table', 'inet', TABLE);
  nft('add', 'chain', 'inet', TABLE, 'out', '{ type filter hook output priority 0; policy accept; }');
  nft('add', 'rule', 'inet', TABLE, 'out', ...r);
}

function unblock() {
  try {
    nft('delete', 'table', 'inet', TABLE);
  } catch {
    // not there
  }
}

// publish offers a test pattern from this browser (non-trickle WHIP) and
// keeps the peer open; it returns the session id.
async function publish(page) {
  return page.evaluate(async (stun) => {
    const canvas = document.createElement('canvas');
    canvas.width = 160;
    canvas.height = 90;
    const g = canvas.getContext('2d');
    setInterval(() => { g.fillStyle = `hsl(${Date.now() % 360} 60% 50%)`; g.fillRect(0, 0, 160, 90); }, 40);
    const stream = canvas.captureStream(25);
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceServers: [{ urls: `stun:${stun}` }] });
    for (const t of stream.getTracks()) pc.addTransceiver(t, { direction: 'sendonly', streams: [stream] });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => {
      if (pc.iceGatheringState === 'complete') r();
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r());
      setTimeout(r, 3000);
    });
    const res = await fetch('/whip/diagpath', { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    if (res.status !== 201) throw new Error(`WHIP POST: HTTP ${res.status}`);
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    window.__pc = pc; // kept open: the session stays up while it is judged
    return res.headers.get('Location').split('/').pop();
  }, STUN);
}

async function main() {
  const profile = mkdtempSync(path.join(tmpdir(), 'pinhole-diagpath-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    locale: 'en-US',
    viewport: { width: 1280, height: 900 },
    args: chromiumArgs('--allow-loopback-in-peer-connection'),
  });
  context.setDefaultTimeout(WAIT);
  try {
    await run(context);
  } finally {
    unblock();
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

async function run(context) {
  log(`# path picture: pinhole ${BASE}`);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  let id = '';

  await step('a broken mapping: the router/tunnel step is red and pointed at, with its fix', async () => {
    await page.goto(`${BASE}/diagnostics`);
    await page.waitForSelector('#diag-run-all');
    if (!hasNft()) throw new Error('nft is missing in the test namespace (apt-get install nftables)');
    rule('udp', 'sport', UDP_PORTS, 'drop');
    let d;
    let t0;
    try {
      id = await publish(page);
      t0 = Date.now();
      // Poll pinhole's verdict the way a person reloading the page would.
      for (;;) {
        d = await (await fetch(`${BASE}/api/v1/sessions/${id}/diagnosis`)).json();
        if (d.verdict.status === 'fail' || Date.now() - t0 > VERDICT_MS) break;
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      unblock();
    }
    log(`#   verdict ${d.verdict.id} at ${d.verdict.hop}, ${Math.round(d.verdict.since_start_ms)} ms after the offer, seen ${Date.now() - t0} ms after the POST`);
    check(d.verdict.id === 'no-packet' && d.verdict.hop === 'mapping', `verdict ${JSON.stringify(d.verdict)}`);

    const view = await context.newPage();
    view.on('pageerror', (e) => errors.push(e.message));
    await view.goto(`${BASE}/diagnostics?session=${id}`);
    const broken = await view.waitForSelector('#diag-session .diag-step.broken');
    const st = await broken.evaluate((el) => ({
      step: el.dataset.step, status: el.dataset.status, current: el.getAttribute('aria-current'),
      border: getComputedStyle(el).borderTopColor, text: el.textContent,
    }));
    const bad = await view.evaluate(() => {
      const probe = document.createElement('span');
      probe.style.color = 'var(--bad)';
      document.body.append(probe);
      const c = getComputedStyle(probe).color;
      probe.remove();
      return c;
    });
    log(`#   broken step ${st.step} (${st.status}), border ${st.border}, red is ${bad}`);
    check(st.step === 'public' && st.status === 'fail' && st.current === 'step', `broken step ${JSON.stringify(st)}`);
    check(st.border === bad, `the broken step is not drawn red: ${st.border} vs ${bad}`);
    const steps = await view.$$eval('#diag-session .diag-step', (els) => els.map((el) => `${el.dataset.step}:${el.dataset.status}`));
    log(`#   path ${steps.join(' ')}`);
    for (const s of ['client:ok', 'signaling:ok', 'public:fail', 'lease:skipped', 'ice:skipped']) check(steps.includes(s), `path lacks ${s}: ${steps}`);
    const fix = await view.textContent('#diag-session .diag-path-fix');
    check(/port forward/.test(fix) && /--public-ports/.test(fix), `fix beside the path: ${fix}`);
    check((await view.textContent('#diag-session .diag-verdict-id')).includes('no-packet'), 'verdict id not shown');
    await view.screenshot({ path: path.join(ART, 'diagpath-broken.png'), fullPage: true });

    // The same picture in Chinese, the step names translated.
    await view.evaluate(() => localStorage.setItem('pinhole.lang', 'zh-CN'));
    await view.goto(`${BASE}/diagnostics?session=${id}`);
    await view.waitForSelector('#diag-session .diag-step.broken');
    const zh = await view.textContent('#diag-session .diag-step.broken .diag-step-name');
    const ptr = await view.textContent('#diag-session .diag-step.broken .diag-step-pointer');
    log(`#   zh: ${zh} / ${ptr}`);
    check(zh === '路由器或隧道' && ptr === '在此中断', `broken step name ${zh} / ${ptr}`);
    await view.evaluate(() => localStorage.setItem('pinhole.lang', 'en'));
    await view.close();
  });

  await step('TCP forward missing (dropped): the signaling check times out and says so', async () => {
    if (!hasNft()) {
      log('# SKIP: nft is not available in this namespace; the TCP-forward step was NOT tested');
      return;
    }
    block('drop');
    try {
      await page.click('li[data-check="signaling"] button');
      await page.waitForFunction(() => document.querySelector('li[data-check="signaling"] .diag-result')?.dataset.status === 'fail', null, { timeout: WAIT });
    } finally {
      unblock();
    }
    const out = await page.$eval('li[data-check="signaling"] .diag-result', (el) => ({ verdict: el.dataset.verdict, text: el.textContent,
      broken: el.querySelector('.diag-step.broken')?.dataset.step }));
    log(`#   ${out.verdict}: ${out.text.replace(/\s+/g, ' ').slice(0, 200)}`);
    check(out.verdict === 'signaling-timeout' && out.broken === 'signaling', `signaling check ${JSON.stringify(out)}`);
    check(/TCP/.test(out.text) && /FRP/.test(out.text), 'the fix does not name the router/FRP TCP forward');
  });

  await step('TCP forward missing (rejected): the signaling check says refused', async () => {
    if (!hasNft()) return;
    block('reject');
    const t0 = Date.now();
    try {
      await page.click('li[data-check="signaling"] button');
      await page.waitForFunction(() => document.querySelector('li[data-check="signaling"] .diag-result')?.dataset.verdict === 'signaling-refused', null, { timeout: WAIT });
    } finally {
      unblock();
    }
    log(`#   refused named in ${Date.now() - t0} ms`);
    await page.screenshot({ path: path.join(ART, 'diagpath-signaling.png'), fullPage: true });
  });

  await step('no page errors', async () => {
    check(errors.length === 0, errors.join('\n'));
  });
}

main().then(() => finish(), (err) => finish(err));
