// The dashboard in a real browser (issue 6): Debian's chromium driven by playwright-core against
// `scalesense up` started here on free ports, with readings published to its embedded broker.
// Run through `web/e2e/run.sh`, which installs what is missing and sets SCALESENSE_BIN.
//
// Every page opened is watched for console errors and uncaught exceptions; screenshots at
// phone (390×844) and desktop (1440×900) size go to the folder printed at the start.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import mqtt from 'mqtt';

const BIN = process.env.SCALESENSE_BIN;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCALES = 4;
const LOCATION = 'loc-001';
const tapId = (n) => `${LOCATION}#TAP#${String(n).padStart(2, '0')}`;
const deviceId = (n) => `SCALE-${String(n).padStart(4, '0')}`;
const ADMIN = { email: 'admin@demo.local', password: 'e2e-admin-password' };
const MANAGER = { email: 'manager@e2e.local', password: 'e2e-manager-password', role: 'manager' };
const STAFF = { email: 'staff@e2e.local', password: 'e2e-staff-password', role: 'staff' };
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1440, height: 900 };

let work;
let shots;
let server;
let serverLog;
let base;
let mqttUrl;
let browser;
const consoleErrors = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, check, timeoutMs = 60_000, everyMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

/** A REST client with a session, like the dashboard's (cookie + CSRF header). */
class Rest {
  constructor() {
    this.cookie = '';
    this.csrf = '';
  }

  async login({ email, password }) {
    const res = await fetch(`${base}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ email, password }),
    });
    assert.equal(res.status, 200, `login of ${email}: ${await res.clone().text()}`);
    this.cookie = res.headers.get('set-cookie').split(';')[0];
    this.csrf = (await res.json()).csrf_token;
    return this;
  }

  async call(method, url, body) {
    const headers = { Cookie: this.cookie, 'X-CSRF-Token': this.csrf };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(`${base}/api/v1${url}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }
}

let admin;

async function publishReading(n, fields) {
  const client = await mqtt.connectAsync(mqttUrl, {
    clientId: `e2e-${process.pid}-${Date.now()}`,
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  const reading = {
    v: 1,
    seq: 1,
    boot: 1_000_000 + Math.floor(Math.random() * 1_000_000),
    ts: Date.now(),
    weight_lbs: 60,
    battery_v: 3.9,
    battery_pct: 77,
    rssi: -58,
    stable: true,
    tare_status: 'complete',
    ...fields,
  };
  await client.publishAsync(`keg/readings/${deviceId(n)}`, JSON.stringify(reading), { qos: 1 });
  await client.endAsync();
  return reading;
}

/** A new browser context at `size`, its page watched for console errors. */
async function openPage(size, label) {
  const context = await browser.newContext({ viewport: size, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(`${label}: ${message.text()} (${message.location().url})`);
  });
  page.on('pageerror', (error) => consoleErrors.push(`${label}: uncaught ${error.message}`));
  return page;
}

async function signIn(page, who) {
  await page.goto(`${base}/`);
  await page.getByLabel('E-mail').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.locator('[data-testid=tap-card]').first().waitFor();
  await page.locator('[data-testid=live-status][data-state=live]').waitFor({ timeout: 15_000 });
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

const card = (page, n) => page.locator(`[data-testid=tap-card][data-tap="${tapId(n)}"]`);

before(async () => {
  assert.ok(BIN, 'SCALESENSE_BIN is not set: run web/e2e/run.sh');
  work = await mkdtemp(path.join(os.tmpdir(), 'scalesense-e2e-'));
  shots = process.env.SCALESENSE_SCREENSHOTS || path.join(work, 'screenshots');
  await mkdir(shots, { recursive: true });
  console.log(`screenshots: ${shots}`);
  const [httpPort, mqttPort] = [await freePort(), await freePort()];
  base = `http://127.0.0.1:${httpPort}`;
  mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;
  serverLog = path.join(work, 'scalesense-up.log');
  const log = createWriteStream(serverLog);
  server = spawn(BIN, [
    'up',
    '--http', `127.0.0.1:${httpPort}`,
    '--mqtt', `127.0.0.1:${mqttPort}`,
    '--data-dir', path.join(work, 'data'),
    '--admin-password', ADMIN.password,
    '--scales', String(SCALES),
    '--speed', '1',
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info,rmqtt=warn' } });
  server.stdout.pipe(log);
  server.stderr.pipe(log);
  console.log(`scalesense up: ${base} (log: ${serverLog})`);
  await until('scalesense up to be ready', async () => {
    if (server.exitCode !== null) throw new Error(`scalesense up exited with ${server.exitCode}; see ${serverLog}`);
    const res = await fetch(`${base}/readyz`).catch(() => null);
    return res?.ok;
  }, 120_000);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run'],
  });
  admin = await new Rest().login(ADMIN);
  for (const user of [MANAGER, STAFF]) {
    const created = await admin.call('POST', '/users', { email: user.email, password: user.password, role: user.role });
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await until('scalesense up to stop', () => server.exitCode !== null, 30_000).catch(() => server.kill('SIGKILL'));
  }
  console.log(`screenshots: ${shots}`);
});

test('log in; the board shows every demo tap, live', async () => {
  const page = await openPage(DESKTOP, 'board');
  await page.goto(`${base}/`);
  await page.getByRole('button', { name: 'Sign in', exact: true }).waitFor();
  await shot(page, 'desktop-login');
  await signIn(page, ADMIN);
  await until('every tap card', async () => (await page.locator('[data-testid=tap-card]').count()) === SCALES, 15_000);
  for (let n = 1; n <= SCALES; n += 1) {
    await card(page, n).waitFor();
    assert.notEqual(await card(page, n).locator('.beer-name').innerText(), 'No beer assigned');
  }
  await shot(page, 'desktop-board');
  // First load in a fresh browser (nothing cached): everything the page transferred, compressed,
  // through signing in and the board; and how soon the taps show on a reload.
  const fresh = await openPage(DESKTOP, 'first-load');
  await signIn(fresh, ADMIN);
  await fresh.waitForLoadState('networkidle');
  const sentBytes = await fresh.evaluate(() => [
    ...performance.getEntriesByType('navigation'),
    ...performance.getEntriesByType('resource'),
  ].reduce((sum, e) => sum + (e.transferSize || 0), 0));
  await fresh.reload({ waitUntil: 'commit' });
  const visibleAfterMs = await fresh.evaluate(() => new Promise((resolve) => {
    const check = () => (document.querySelector('[data-testid=tap-card]')
      ? resolve(performance.now()) : requestAnimationFrame(check));
    check();
  }));
  console.log(`first load: ${(sentBytes / 1024).toFixed(1)} KB transferred; board visible ${visibleAfterMs.toFixed(0)} ms after a reload`);
  assert.ok(sentBytes < 300 * 1024, `first load transferred ${sentBytes} bytes`);
  await fresh.context().close();
  const phone = await openPage(PHONE, 'board-phone');
  await signIn(phone, ADMIN);
  await shot(phone, 'phone-board');
  await phone.context().close();
  await page.context().close();
});

test('a reading published to the broker changes the level on screen within 2 s', async () => {
  const page = await openPage(DESKTOP, 'live');
  await signIn(page, ADMIN);
  const level = card(page, 1).locator('[data-testid=level-pct]');
  const before = await level.innerText();
  const target = before.startsWith('37') ? 63 : 37;
  const published = Date.now();
  await publishReading(1, { level_pct: target });
  await level.filter({ hasText: `${target} %` }).waitFor({ timeout: 2000 });
  const elapsed = Date.now() - published;
  console.log(`reading visible after ${elapsed} ms`);
  assert.ok(elapsed < 2000, `the level changed after ${elapsed} ms`);
  await page.context().close();
});

test('tap detail: the history chart renders and switches range', async () => {
  const page = await openPage(DESKTOP, 'detail');
  await signIn(page, ADMIN);
  await card(page, 1).click();
  await page.locator('[data-testid=tap-detail]').waitFor();
  const chart = page.locator('[data-testid=chart]');
  await page.locator('[data-testid=chart][data-range="24h"] canvas').waitFor({ timeout: 15_000 });
  for (const range of ['2h', '7d', '30d', '24h']) {
    await page.locator(`button[data-range="${range}"]`).click();
    await page.locator(`[data-testid=chart][data-range="${range}"] canvas`).waitFor({ timeout: 15_000 });
    assert.equal(await page.locator(`button[data-range="${range}"]`).getAttribute('aria-pressed'), 'true');
    assert.ok(Number(await chart.getAttribute('data-points')) > 0, `${range}: no points`);
  }
  await shot(page, 'desktop-tap-detail');
  const phone = await openPage(PHONE, 'detail-phone');
  await signIn(phone, ADMIN);
  await card(phone, 1).click();
  await phone.locator('[data-testid=chart] canvas').waitFor({ timeout: 15_000 });
  await shot(phone, 'phone-tap-detail');
  await phone.context().close();
  await page.context().close();
});

test('a tare from the UI shows the scale\'s answer', async () => {
  const page = await openPage(DESKTOP, 'tare');
  await signIn(page, ADMIN);
  await card(page, SCALES).click();
  await page.locator('button[data-command=tare_empty]').click();
  const result = page.locator('[data-testid=command-result][data-command=tare_empty]');
  await result.waitFor();
  await until('the scale to answer the tare', async () => {
    const stateNow = await result.getAttribute('data-state');
    return stateNow === 'succeeded' || stateNow === 'failed';
  }, 60_000);
  console.log(`tare answered: ${await result.getAttribute('data-state')}: ${(await result.innerText()).replace(/\s+/g, ' ')}`);
  await shot(page, 'desktop-tare-answered');
  await page.context().close();
});

test('a manager assigns a keg; staff sees no assign control and the API refuses staff', async () => {
  const staffPage = await openPage(DESKTOP, 'staff');
  await signIn(staffPage, STAFF);
  await card(staffPage, 2).click();
  await staffPage.locator('[data-testid=tap-detail]').waitFor();
  await staffPage.locator('button[data-command=tare_empty]').waitFor();
  assert.equal(await staffPage.locator('[data-testid=assign-keg]').count(), 0, 'staff sees an assign button');
  await staffPage.goto(`${base}/#/beers`);
  await staffPage.getByRole('heading', { name: 'Beers & kegs' }).waitFor();
  assert.equal(await staffPage.getByRole('heading', { name: 'Put a keg on a tap' }).count(), 0);
  assert.equal(await staffPage.locator('[data-nav=settings]').count(), 0, 'staff sees settings');
  assert.equal(await staffPage.locator('[data-nav=users]').count(), 0, 'staff sees users');
  await shot(staffPage, 'desktop-staff-beers');
  const staff = await new Rest().login(STAFF);
  const refused = await staff.call('PATCH', `/taps/${encodeURIComponent(tapId(2))}`, { keg_id: null });
  assert.equal(refused.status, 403, JSON.stringify(refused.body));
  const refusedKeg = await staff.call('POST', '/kegs', { location_id: LOCATION, beer_id: 'demo-beer-01', keg_type: 'half_barrel' });
  assert.equal(refusedKeg.status, 403);
  await staffPage.context().close();

  const page = await openPage(DESKTOP, 'manager');
  await signIn(page, MANAGER);
  await card(page, 2).click();
  const oldKeg = (await admin.call('GET', `/taps/${encodeURIComponent(tapId(2))}`)).body.keg_id;
  await page.locator('[data-testid=assign-keg]').click();
  const form = page.locator('[data-testid=assign-keg-form]');
  await form.waitFor();
  await form.locator('select[name=keg_type]').selectOption('quarter_barrel');
  await form.locator('[data-testid=weight-badge]').waitFor();
  await until('the beer list', async () => (await form.locator('select[name=beer] option').count()) > 1, 10_000);
  await shot(page, 'desktop-assign-keg');
  await form.getByRole('button', { name: /Replace keg|Put keg on tap/ }).click();
  await page.locator('[data-testid=assign-keg-form]').waitFor({ state: 'detached', timeout: 15_000 });
  const newKeg = (await admin.call('GET', `/taps/${encodeURIComponent(tapId(2))}`)).body.keg_id;
  assert.ok(newKeg && newKeg !== oldKeg, `keg ${oldKeg} → ${newKeg}`);
  await page.locator('[data-testid=keg-id]', { hasText: newKeg }).waitFor();
  const keg = (await admin.call('GET', `/kegs/${newKeg}`)).body;
  assert.equal(keg.keg_type, 'quarter_barrel');
  assert.equal(keg.state, 'tapped');
  await page.context().close();
});

test('an alert fired by the test appears live and can be acknowledged', async () => {
  const page = await openPage(DESKTOP, 'alerts');
  await signIn(page, ADMIN);
  await page.goto(`${base}/#/alerts`);
  await page.getByRole('heading', { name: 'Alerts' }).waitFor();
  // Fire at once and below 50 %: a low-keg alert on tap 3 from one reading.
  const settings = await admin.call('PATCH', `/locations/${LOCATION}/settings`, {
    thresholds: { grace_period_secs: 0, low_keg_warning_pct: 50, low_keg_critical_pct: 5 },
  });
  assert.equal(settings.status, 200, JSON.stringify(settings.body));
  const alert = page.locator(`[data-testid=active-alert][data-kind=low_keg][data-entity="${tapId(3)}"]`);
  const deadline = Date.now() + 60_000;
  let seq = 1;
  // The engine may need a second look after the grace period: keep the condition true.
  while (!(await alert.count()) && Date.now() < deadline) {
    await publishReading(3, { level_pct: 20, seq });
    seq += 1;
    await alert.waitFor({ timeout: 5000 }).catch(() => {});
  }
  await alert.waitFor({ timeout: 1000 });
  await shot(page, 'desktop-alert-live');
  await alert.locator('[data-testid=acknowledge]').click();
  await page.locator(`[data-testid=active-alert][data-entity="${tapId(3)}"][data-state=acknowledged]`).waitFor({ timeout: 10_000 });
  const active = (await admin.call('GET', `/locations/${LOCATION}/alerts`)).body.items;
  const stored = active.find((a) => a.kind === 'low_keg' && a.entity === tapId(3));
  assert.equal(stored?.state, 'acknowledged');
  await shot(page, 'desktop-alert-acknowledged');
  await page.context().close();
});

test('a manager adds an e-mail channel in the settings; the list shows it and a test reports its result', async () => {
  const page = await openPage(DESKTOP, 'channels');
  await signIn(page, MANAGER);
  await page.goto(`${base}/#/settings`);
  const section = page.getByRole('region', { name: 'Notification channels' });
  await section.waitFor();
  const form = page.getByRole('form', { name: 'New channel' });
  await form.getByLabel('Channel kind').selectOption('email');
  await form.getByLabel('Channel target').fill('e2e-manager@bar.example');
  await form.getByRole('button', { name: 'Add channel' }).click();
  const row = section.locator('[data-testid=channel-row]', { hasText: 'e2e-manager@bar.example' });
  await row.waitFor({ timeout: 10_000 });
  assert.match(await row.innerText(), /enabled/);
  const listed = (await admin.call('GET', `/locations/${LOCATION}/channels`)).body.items;
  const channel = listed.find((c) => c.target === 'e2e-manager@bar.example');
  assert.ok(channel, JSON.stringify(listed));
  assert.equal(channel.kind, 'email');
  assert.equal(channel.location_id, LOCATION);
  // This `up` has no SMTP server: the test answers 502 and the page says why.
  await row.getByRole('button', { name: 'Send test' }).click();
  const result = row.locator('[data-testid=channel-test-result]', { hasText: 'Not delivered' });
  await result.waitFor({ timeout: 15_000 });
  assert.match(await result.innerText(), /no SMTP server/);
  // Chromium logs the expected 502 as a console error; that one is this test's, not a fault.
  const expected = consoleErrors.findIndex((e) => e.startsWith('channels:') && e.includes('502') && e.includes('/test'));
  assert.ok(expected >= 0, 'the 502 of the test notification is logged');
  consoleErrors.splice(expected, 1);
  await section.locator('[data-testid=delivery-row]', { hasText: 'dead' }).first().waitFor({ timeout: 10_000 });
  await row.getByRole('button', { name: 'Disable' }).click();
  await row.getByRole('button', { name: 'Enable' }).waitFor();
  await shot(page, 'desktop-settings-channels');
  await page.context().close();
});

test('a manager reads the reports and downloads the inventory as CSV', async () => {
  const page = await openPage(DESKTOP, 'reports');
  await signIn(page, MANAGER);
  await page.goto(`${base}/#/reports`);
  const rows = page.locator('[data-testid=inventory] tbody tr');
  await rows.first().waitFor({ timeout: 15_000 });
  assert.equal(await rows.count(), SCALES, 'one inventory row per tap');
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: 15_000 }),
    page.getByTestId('export-csv').click(),
  ]);
  const csv = await readFile(await download.path(), 'utf8');
  const lines = csv.trim().split('\r\n');
  assert.match(lines[0], /^tap_number,tap_name,beer,/, csv);
  assert.equal(lines.length, SCALES + 1, csv);
  await shot(page, 'desktop-reports');
  await page.context().close();
});

test('every screen renders at phone and desktop size', async () => {
  const screens = [
    ['board', '#/', '[data-testid=tap-card]'],
    ['tap', `#/tap/${encodeURIComponent(tapId(1))}`, '[data-testid=tap-detail]'],
    ['alerts', '#/alerts', 'h1:has-text("Alerts")'],
    ['beers', '#/beers', 'h1:has-text("Beers & kegs")'],
    ['devices', '#/devices', '[data-testid=device-row]'],
    ['settings', '#/settings', 'button:has-text("Save settings")'],
    ['users', '#/users', '[data-testid=user-row]'],
    ['reports', '#/reports', '[data-testid=inventory]'],
    ['tv', '#/tv', '[data-testid=tv] .tv-tap'],
  ];
  for (const [sizeName, size] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    const page = await openPage(size, `screens-${sizeName}`);
    await signIn(page, ADMIN);
    for (const [name, hash, ready] of screens) {
      await page.goto(`${base}/${hash}`);
      await page.locator(ready).first().waitFor({ timeout: 15_000 });
      await sleep(300);
      await shot(page, `${sizeName}-${name}`);
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= size.width, `${sizeName} ${name}: the page scrolls sideways (${width} px)`);
    }
    await page.context().close();
  }
});

test('the app shell loads offline once installed', async () => {
  const context = await browser.newContext({ viewport: PHONE });
  const page = await context.newPage();
  await page.goto(`${base}/`);
  await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  await until('the service worker to control the page', async () => {
    await page.reload();
    return page.evaluate(() => Boolean(navigator.serviceWorker.controller));
  }, 30_000, 500);
  await context.setOffline(true);
  await page.reload();
  await page.getByRole('button', { name: 'Sign in', exact: true }).waitFor({ timeout: 10_000 });
  await shot(page, 'phone-offline-shell');
  await context.close();
});

test('no console errors on any page', () => {
  assert.deepEqual(consoleErrors, []);
});
