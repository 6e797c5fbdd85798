// Drives Debian's headless Chromium with Device Bound Session Credentials on (software keys),
// step by step, for tests/dbsc_browser.rs: the test sends one JSON command per line on stdin,
// the script answers each with one JSON line on stdout. The test owns the scenario (and the
// asserts); this script only does what a person and the browser would do, and reports what
// Chromium saw through the DevTools protocol's DBSC events (Network.enableDeviceBoundSessions).
//
// usage: node tests/browser/dbsc.mjs http://127.0.0.1:PORT
// commands:
//   {"cmd":"goto","path":"/whoami"}          navigate; the page's #seen JSON, status, and the
//                                            DBSC usage Chromium reported for that request
//   {"cmd":"login","user":"alice"}           the demo's login form, then the page it lands on
//   {"cmd":"cookies"}                        the browser's cookies for the site (with values)
//   {"cmd":"clear_cookie","name":"..."}      remove one cookie from the browser's jar
//   {"cmd":"wait_event","type":"creation|refresh|termination|challenge","count":N,"timeout_ms":T}
//                                            wait until N events of that type were seen
//   {"cmd":"events"}                         every DBSC event seen so far
//   {"cmd":"close"}
// Every answer has "ok": true, or "ok": false and "error".
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const base = process.argv[2];
if (!base) {
  console.error('usage: node dbsc.mjs http://127.0.0.1:PORT');
  process.exit(2);
}

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
// The flags the project documents for DBSC on Linux: the feature (off by default outside
// Windows) and the software key provider that stands in for a TPM.
const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run',
  '--enable-features=DeviceBoundSessions,EnableBoundSessionCredentialsSoftwareKeysForManualTesting'];
// A fresh profile each run: no cookie, DBSC session or signing quota from an earlier run.
const profile = mkdtempSync(join(tmpdir(), 'session-guard-dbsc-chromium-'));

// DBSC events (Network.deviceBoundSessionEventOccurred), in arrival order, each tagged with
// its type and the milliseconds since the browser started (for the report; never asserted).
const events = [];
// requestId -> { url, usages } from requestWillBeSent / requestWillBeSentExtraInfo.
const requests = new Map();
const t0 = Date.now();
const waiters = [];

const typeOf = (e) => (e.creationEventDetails ? 'creation'
  : e.refreshEventDetails ? 'refresh'
    : e.terminationEventDetails ? 'termination'
      : e.challengeEventDetails ? 'challenge' : 'other');

function onEvent(e) {
  events.push({ type: typeOf(e), at_ms: Date.now() - t0, ...e });
  for (const w of waiters.splice(0)) w();
}

const countOf = (type) => events.filter((e) => e.type === type).length;

async function waitEvent(type, count, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (countOf(type) < count) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`saw ${countOf(type)} DBSC ${type} events, expected ${count}`);
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, left);
      waiters.push(() => { clearTimeout(timer); resolve(); });
    });
  }
  return events.filter((e) => e.type === type);
}

// What the app upstream saw, as the test's upstream renders it: <pre id="seen">JSON</pre>.
// The page has loaded when this runs: no waiting for an element another upstream never renders.
async function seen(page) {
  const el = await page.$('#seen');
  const text = el ? await el.textContent() : null;
  try { return text ? JSON.parse(text) : null; } catch { return text; }
}

// DBSC usages Chromium reported for requests to `url` since `from` (an index into the log).
function usagesFor(url, from) {
  return [...requests.values()].slice(from)
    .filter((r) => r.url === url)
    .map((r) => (r.usages || []).map((u) => u.usage));
}

let context;
let page;

async function goto(path) {
  const from = requests.size;
  const url = `${base}${path}`;
  const resp = await page.goto(url);
  return { status: resp ? resp.status() : null, url: page.url(), seen: await seen(page), usages: usagesFor(url, from) };
}

async function login(user) {
  await page.goto(`${base}/auth/login`);
  await page.fill('#username', user);
  await page.fill('#password', 'demo');
  const from = requests.size;
  await Promise.all([page.waitForURL(`${base}/`), page.click('#submit')]);
  return { url: page.url(), seen: await seen(page), usages: usagesFor(`${base}/`, from) };
}

async function run(c) {
  switch (c.cmd) {
    case 'goto': return goto(c.path);
    case 'login': return login(c.user);
    case 'cookies': return { cookies: await context.cookies(base) };
    case 'clear_cookie':
      await context.clearCookies({ name: c.name });
      return { cookies: await context.cookies(base) };
    case 'wait_event': return { events: await waitEvent(c.type, c.count ?? 1, c.timeout_ms ?? 15000) };
    case 'events': return { events };
    default: throw new Error(`unknown command ${JSON.stringify(c.cmd)}`);
  }
}

const reply = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

try {
  context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args });
  context.setDefaultTimeout(20000);
  page = context.pages()[0] || (await context.newPage());
  const cdp = await context.newCDPSession(page);
  cdp.on('Network.requestWillBeSent', (e) => {
    const r = requests.get(e.requestId) || {};
    // A redirect reuses the requestId: keep one entry per URL by re-inserting.
    requests.delete(e.requestId);
    requests.set(e.requestId, { ...r, url: e.request.url });
  });
  cdp.on('Network.requestWillBeSentExtraInfo', (e) => {
    const r = requests.get(e.requestId) || {};
    requests.set(e.requestId, { ...r, usages: e.deviceBoundSessionUsages || r.usages });
  });
  cdp.on('Network.deviceBoundSessionEventOccurred', onEvent);
  await cdp.send('Network.enable');
  await cdp.send('Network.enableDeviceBoundSessions', { enable: true });
  reply({ ok: true, ready: true, version: context.browser()?.version() ?? null });
} catch (e) {
  reply({ ok: false, error: String(e && e.stack ? e.stack : e) });
  rmSync(profile, { recursive: true, force: true });
  process.exit(1);
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let c;
  try { c = JSON.parse(line); } catch (e) { reply({ ok: false, error: `bad command: ${e}` }); continue; }
  if (c.cmd === 'close') break;
  try {
    reply({ ok: true, ...(await run(c)) });
  } catch (e) {
    reply({ ok: false, error: String(e && e.stack ? e.stack : e) });
  }
}
await context.close().catch(() => {});
rmSync(profile, { recursive: true, force: true });
reply({ ok: true, closed: true });
process.exit(0);
