// Browser test of pinhole over HTTPS with --tls-self-signed: Chromium trusts
// the certificate by the SPKI fingerprint pinhole logged at start
// (--ignore-certificate-errors-spki-list), the page is a secure context, so
// getUserMedia works, and a fake camera publishes over WHIP. Run through
// run.sh, in the network namespace with only lo up.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CHROMIUM, check, chromiumArgs, log, reporter } from './harness.mjs';

const BASE = (process.env.PINHOLE_HTTPS_URL || '').replace(/\/$/, '');
const SPKI = process.env.PINHOLE_SPKI || '';
const WAIT = 30_000;
const { step, finish } = reporter('https: ', 'https: ');

async function main() {
  check(BASE.startsWith('https://'), `PINHOLE_HTTPS_URL is ${BASE}`);
  check(SPKI !== '', 'no SPKI fingerprint from pinhole\'s log');
  const profile = mkdtempSync(path.join(tmpdir(), 'pinhole-https-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: chromiumArgs('--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      `--ignore-certificate-errors-spki-list=${SPKI}`),
  });
  try {
    const page = await context.newPage();
    await step('the page is served over HTTPS as a secure context', async () => {
      await page.goto(`${BASE}/rooms/https-test`);
      check(await page.evaluate(() => window.isSecureContext), 'not a secure context');
      check(await page.evaluate(() => !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)), 'no getUserMedia');
    });
    await step('a fake camera publishes over WHIP on https://', async () => {
      await page.waitForSelector('#pub-start:not([disabled])', { timeout: WAIT });
      await page.click('#pub-start');
      await page.waitForFunction(() => document.querySelector('.publish [data-stat=state]')?.dataset.state === 'connected', null, { timeout: WAIT });
      await page.waitForFunction(() => Number(document.querySelector('.publish [data-stat=frames]')?.textContent) > 0, null, { timeout: WAIT });
      log('# published over HTTPS, frames sent');
    });
    await step('the same certificate is not trusted without the fingerprint', async () => {
      const other = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs() });
      try {
        const p = await other.newPage();
        let refused = false;
        try {
          await p.goto(`${BASE}/healthz`, { timeout: 10_000 });
        } catch (err) {
          refused = /ERR_CERT/.test(String(err));
        }
        check(refused, 'an untrusted self-signed certificate was accepted');
      } finally {
        await other.close();
      }
    });
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

main().then(() => finish(), (err) => finish(err));
