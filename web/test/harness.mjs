// Shared by web.test.mjs and diagnostics.test.mjs: the Chromium they drive,
// the flags it needs on this machine, and the ok/not ok reporting whose last
// line ("N passed, N failed") CI reads.

// Debian's Chromium: a browser download does not work here.
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// chromiumArgs: headless, and nothing that reaches for the network on its
// own (the closed network refuses background connections, many at a time),
// plus the caller's flags. The pages of one test stand for people on
// different machines, each looking at their own: a page behind another tab
// is not throttled (timers once a second, no frames rendered), which would
// measure Chromium's tab scheduling instead of pinhole.
export function chromiumArgs(...extra) {
  return [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
    '--disable-background-timer-throttling', '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows',
    ...extra,
  ];
}

// Latin words allowed on a Chinese page outside data: protocol and product names.
export const ALLOWED_LATIN = new Set(['pinhole', 'WHIP', 'WHEP', 'UDP', 'HTTPS', 'localhost']);

export const log = (...a) => console.log(...a);

export function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

// reporter runs named steps, printing "ok - <prefix><name>" or "not ok"
// with the error, and finish prints "<label>N passed, N failed" and exits
// 1 on any failure.
export function reporter(prefix = '', label = '') {
  const results = [];
  async function step(name, fn) {
    const t0 = Date.now();
    try {
      await fn();
      results.push({ name, ok: true });
      log(`ok - ${prefix}${name} (${Date.now() - t0} ms)`);
    } catch (err) {
      results.push({ name, ok: false, err });
      log(`not ok - ${prefix}${name} (${Date.now() - t0} ms)\n  ${String(err && err.stack ? err.stack : err).split('\n').slice(0, 6).join('\n  ')}`);
    }
  }
  function finish(setupErr) {
    if (setupErr) {
      results.push({ name: 'setup', ok: false, err: setupErr });
      log(`not ok - ${prefix}setup: ${setupErr && setupErr.stack ? setupErr.stack : setupErr}`);
    }
    const failed = results.filter((r) => !r.ok).length;
    log(`${label}${results.length - failed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  }
  return { step, finish };
}
