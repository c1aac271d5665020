// Browser test of the diagnostics page (issue 4): Debian's Chromium driven by
// playwright-core against a real pinhole at PINHOLE_URL and a real pion/turn
// server (web/test/turnd) at PINHOLE_TURN (host:port), both inside the test's
// network namespace with only lo up, so every packet stays on 127.0.0.1.
// run.sh starts them and runs this file after web.test.mjs.
//
// Every check of the page runs (one click on "Run all checks") and must show
// a result; the ones that can succeed here must succeed. Then the report is
// copied, a session's diagnosis is opened by ?session=, and the Chinese page
// is checked for untranslated labels.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ALLOWED_LATIN, CHROMIUM, check, chromiumArgs, log, reporter } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.PINHOLE_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
const TURN = process.env.PINHOLE_TURN || '127.0.0.1:3478';
const TURN_USER = process.env.PINHOLE_TURN_USER || 'pinhole';
const TURN_PASS = process.env.PINHOLE_TURN_PASS || 'secret';
// pinhole's --admin-token, when the runner sets one: the self-test and room
// management need it.
const ADMIN = process.env.PINHOLE_ADMIN_TOKEN || '';
const adminHeaders = ADMIN ? { Authorization: `Bearer ${ADMIN}` } : {};
const ART = process.env.PINHOLE_ARTIFACTS || path.join(here, 'artifacts');
// Generous: "Run all" takes STUN 5 s + TURN 8 s at most, the connection test
// up to 23 s and the self-test up to 15 s, on a loaded 2-core machine.
const RUN_ALL_MS = 120_000;
const WAIT = 30_000;
const ROOM = 'diag-test';
const CHECKS = ['signaling', 'room', 'stun', 'turn', 'server', 'conn', 'self'];

mkdirSync(ART, { recursive: true });
const { step, finish } = reporter('diagnostics: ', 'diagnostics: ');
const consoleErrors = [];

function watch(page, label) {
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(`[${label}] console: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`[${label}] page error: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400) consoleErrors.push(`[${label}] HTTP ${r.status()} ${r.request().method()} ${r.url()}`);
  });
  return page;
}

// englishLeft: visible text outside data ([data-v], code, [lang=en]) that
// still holds Latin words, i.e. labels the Chinese translation missed.
async function englishLeft(page) {
  return page.evaluate((allowed) => {
    const allow = new Set(allowed);
    const bad = [];
    const isData = (el) => !!el.closest('[data-v], code, [lang="en"], .brand');
    const latin = (s) => (s.match(/[A-Za-z]{2,}/g) || []).filter((w) => !allow.has(w));
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!el || !n.textContent.trim() || isData(el)) continue;
      if (!el.checkVisibility({ visibilityProperty: true })) continue;
      if (latin(n.textContent).length) bad.push(`${n.textContent.trim()} in ${el.outerHTML.slice(0, 160)}`);
    }
    for (const el of document.querySelectorAll('[placeholder], [title], [aria-label]')) {
      if (!el.checkVisibility() || isData(el)) continue;
      for (const a of ['placeholder', 'title', 'aria-label']) {
        const v = el.getAttribute(a);
        if (v && latin(v).length) bad.push(`${a}=${v}`);
      }
    }
    return bad;
  }, [...ALLOWED_LATIN]);
}

const statusOf = (page, id) => page.getAttribute(`li[data-check="${id}"] .diag-result`, 'data-status');
const textOf = (page, id) => page.textContent(`li[data-check="${id}"] .diag-result`);

async function main() {
  const profile = mkdtempSync(path.join(tmpdir(), 'pinhole-diag-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    locale: 'en-US',
    viewport: { width: 1280, height: 900 },
    permissions: ['clipboard-read', 'clipboard-write'],
    // The namespace has only lo: without --allow-loopback-in-peer-connection
    // Chromium gathers no candidate at all (it skips loopback interfaces).
    args: chromiumArgs('--allow-loopback-in-peer-connection'),
  });
  context.setDefaultTimeout(WAIT);
  try {
    await run(context);
  } finally {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

async function run(context) {
  log(`# diagnostics page: pinhole ${BASE}, TURN ${TURN}`);
  // A room with nobody in it yet: the room check must find it.
  const made = await fetch(`${BASE}/api/v1/rooms`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...adminHeaders }, body: JSON.stringify({ name: ROOM }) });
  check(made.status === 201 || made.status === 409, `creating room ${ROOM}: HTTP ${made.status}`);

  const page = watch(await context.newPage(), 'diagnostics');
  let selfSession = '';

  await step('every check runs and shows a result', async () => {
    await page.goto(`${BASE}/diagnostics?room=${ROOM}`);
    await page.waitForSelector('#diag-run-all');
    for (const id of CHECKS) check((await statusOf(page, id)) === 'none', `${id} has a result before running`);
    await page.fill('#diag-stun-url', `stun:${TURN}`);
    await page.fill('#diag-turn-url', `turn:${TURN}?transport=udp`);
    await page.fill('#diag-turn-user', TURN_USER);
    await page.fill('#diag-turn-pass', TURN_PASS);
    await page.fill('#diag-admin-token', ADMIN);
    await page.click('#diag-run-all');
    await page.waitForFunction((ids) => ids.every((id) => {
      const s = document.querySelector(`li[data-check="${id}"] .diag-result`)?.dataset.status;
      return s === 'ok' || s === 'warn' || s === 'fail';
    }), CHECKS, { timeout: RUN_ALL_MS });
    await page.screenshot({ path: path.join(ART, 'diagnostics.png'), fullPage: true });
    const seen = {};
    for (const id of CHECKS) {
      seen[id] = await statusOf(page, id);
      log(`#   ${id}: ${seen[id]} - ${(await textOf(page, id)).replace(/\s+/g, ' ').slice(0, 160)}`);
      check((await textOf(page, id)).trim().length > 0, `${id} shows no text`);
    }
    // What must work on loopback: signaling, the room, the server report
    // (its only warnings are the loopback --public-ip), the browser's own
    // connection, and the self-test through 127.0.0.1.
    for (const id of ['signaling', 'room', 'conn', 'self']) check(seen[id] === 'ok', `${id} is ${seen[id]}: ${await textOf(page, id)}`);
    check(seen.server !== 'fail', `server report failed: ${await textOf(page, 'server')}`);
    check(await page.$('#diag-server-table tbody tr'), 'server report has no rows');
    // STUN and TURN against the loopback pion/turn server.
    check(seen.stun === 'ok', `STUN: ${await textOf(page, 'stun')}`);
    check(seen.turn === 'ok', `TURN: ${await textOf(page, 'turn')}`);
    const verdict = await page.getAttribute('#diag-verdict', 'data-status');
    check(['ok', 'warn', 'fail'].includes(verdict), `verdict status ${verdict}`);
  });

  await step('ICE candidate log lists the gathered candidates', async () => {
    const types = await page.$$eval('#diag-log tbody tr', (rows) => rows.map((r) => r.dataset.type));
    log(`#   candidate types: ${[...new Set(types)].join(', ')} (${types.length} rows)`);
    check(types.length > 0, 'no candidate rows');
  });

  await step('a wrong TURN password fails with a result, not a hang', async () => {
    await page.fill('#diag-turn-pass', 'wrong-password');
    await page.click('li[data-check="turn"] button');
    await page.waitForFunction(() => ['ok', 'warn', 'fail'].includes(document.querySelector('li[data-check="turn"] .diag-result').dataset.status), null, { timeout: WAIT });
    const st = await statusOf(page, 'turn');
    check(st === 'fail', `turn with a wrong password: ${st}: ${await textOf(page, 'turn')}`);
    const v = await page.textContent('#diag-verdict');
    check(/TURN/.test(v), `verdict does not name the TURN check: ${v}`);
  });

  await step('copy report puts everything on the clipboard', async () => {
    await page.click('#diag-copy');
    await page.waitForSelector('#diag-copied');
    const text = await page.evaluate(async () => {
      try {
        return await navigator.clipboard.readText();
      } catch {
        return document.getElementById('diag-report').value;
      }
    });
    const rep = JSON.parse(text);
    check(rep.browser && rep.browser.user_agent, 'no browser in the report');
    for (const id of CHECKS) check(rep.checks[id] && rep.checks[id].status, `report lacks check ${id}`);
    check(rep.server_report && rep.server_report.checks.length > 0, 'report lacks the server report');
    check(rep.candidates.length > 0, 'report lacks candidates');
    const sessions = Object.values(rep.sessions || {});
    check(sessions.length > 0 && sessions.every((s) => s.timeline && s.verdict), 'report lacks session timelines');
    selfSession = Object.keys(rep.sessions).find((id) => rep.sessions[id].room === 'pinhole-selftest') || Object.keys(rep.sessions)[0];
  });

  await step('?session= shows that session\'s timeline and verdict', async () => {
    const p = watch(await context.newPage(), 'session');
    await p.goto(`${BASE}/diagnostics?session=${selfSession}`);
    await p.waitForSelector('#diag-session .diag-session-verdict');
    const st = await p.getAttribute('#diag-session .diag-session-verdict', 'data-status');
    check(st === 'ok', `session verdict ${st}`);
    const rows = await p.$$eval('#diag-session tbody tr', (r) => r.length);
    check(rows >= 5, `timeline has ${rows} rows`);
    await p.close();
  });

  await step('Chinese: no English label left after running the checks', async () => {
    await page.selectOption('#lang', 'zh-CN');
    await page.waitForFunction(() => document.documentElement.lang === 'zh-CN');
    const bad = await englishLeft(page);
    await page.screenshot({ path: path.join(ART, 'diagnostics-zh.png'), fullPage: true });
    check(bad.length === 0, `untranslated: ${JSON.stringify(bad.slice(0, 10))}`);
    await page.selectOption('#lang', 'en');
  });

  await step('no browser console errors', async () => {
    check(consoleErrors.length === 0, `console errors:\n  ${consoleErrors.join('\n  ')}`);
  });
  await fetch(`${BASE}/api/v1/rooms/${ROOM}`, { method: 'DELETE', headers: adminHeaders });
}

let setupErr;
try {
  await main();
} catch (err) {
  setupErr = err;
}
finish(setupErr);
