// Drives Debian's headless Chromium through the session-guard demo, as a person would:
// open the site, log in through the form, log out. Prints one JSON object (the last line
// of stdout) with what the browser saw; tests/browser.rs asserts on it.
//
// usage: node tests/browser/login.mjs http://127.0.0.1:PORT [SCREENSHOT_DIR]
import { chromium, request } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const base = process.argv[2];
const shots = process.argv[3];
const COOKIE = '__Host-session';
if (!base) {
  console.error('usage: node login.mjs http://127.0.0.1:PORT [SCREENSHOT_DIR]');
  process.exit(2);
}

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];
// A fresh profile each run: no cookie from an earlier run can leak into this one.
const profile = mkdtempSync(join(tmpdir(), 'session-guard-chromium-'));

const meshCookie = async (context) =>
  (await context.cookies(base)).find((c) => c.name === COOKIE) || null;
const text = async (page, id) => (await page.textContent(`#${id}`))?.trim() ?? null;
const shot = async (page, name) => {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
};
// What the page (i.e. the upstream) saw, read from the demo page's ids.
const seen = async (page) => ({
  url: page.url(),
  subject: await text(page, 'subject'),
  session_id: await text(page, 'session-id'),
  upstream_cookie: await text(page, 'cookie'),
  path: await text(page, 'path'),
});

const result = {};
let context;
try {
  context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args });
  context.setDefaultTimeout(15000);
  const page = context.pages()[0] || (await context.newPage());

  // 1. First visit: the mesh mints an anonymous session.
  const first = await page.goto(`${base}/`);
  const cookie = await meshCookie(context);
  result.before = {
    status: first.status(),
    // Raw Set-Cookie lines as the browser received them, for the Domain/Max-Age checks.
    set_cookie: ((await first.allHeaders())['set-cookie'] || '').split('\n').filter(Boolean),
    cookie,
    // HttpOnly: page scripts must not see the mesh cookie (but do see the app's theme cookie).
    document_cookie: await page.evaluate(() => document.cookie),
    ...(await seen(page)),
  };
  await shot(page, '1-anonymous');

  // 2. A planted session ID in a link is stripped before the app sees the URL.
  await page.goto(`${base}/?jsessionid=ATTACKER&page=2`);
  result.planted_link = await seen(page);

  // 3. Log in through the form; the auth service's 303 brings us back to "/".
  await page.goto(`${base}/auth/login`);
  await page.fill('#username', 'alice');
  await page.fill('#password', 'demo');
  await Promise.all([page.waitForURL(`${base}/`), page.click('#submit')]);
  result.after_login = { cookie: await meshCookie(context), ...(await seen(page)) };
  await shot(page, '2-logged-in');

  // 4. Replay the pre-login cookie from a separate client (no browser state at all).
  if (cookie) {
    const api = await request.newContext({ extraHTTPHeaders: { cookie: `${COOKIE}=${cookie.value}` } });
    const r = await api.get(`${base}/whoami`);
    result.replay_old = { status: r.status(), body: await r.json().catch(() => null) };
    await api.dispose();
  }

  // 5. Log out: the mesh expires its cookie; the next page is a new anonymous session.
  await Promise.all([page.waitForURL(`${base}/`), page.click('#logout')]);
  result.after_logout = { cookie: await meshCookie(context), ...(await seen(page)) };
  await shot(page, '3-logged-out');
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.error ? 1 : 0);
