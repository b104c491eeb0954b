// The console in a real browser: headless Debian Chromium driven by playwright-core.
//
//   node tests/browser/console.test.mjs        (after `cargo build -p khaacho --bin khaacho`)
//
// Starts `target/debug/khaacho serve --demo` on a free port with a fresh SQLite file and a
// mock Twilio (a local HTTP server that refuses messages until told otherwise), then:
//  1. signs in as `operator`, opens the order board, places an order through the API and
//     waits for it to appear on the board without a reload;
//  2. places an order above pipeline.review_above_npr (held for review) and approves it on
//     the held-orders page;
//  3. waits for an order notification that the mock Twilio refused for good (a dead message
//     in the outbox), lets Twilio accept again, and retries it on the queue page;
//  4. signs in as `vendor` and accepts an offer routed to the first demo vendor;
//  5. signs in as `admin`: the breakers page, safe mode switched on and off;
//  6. signs in as `retailer` on a 360 px screen: its orders, its account in Nepali;
// Access tokens live 75 s here, so the console must refresh its token on the way (checked).
// A screenshot of every page visited goes to target/browser-screenshots/. Exits non-zero with
// a message on any failure; the server is always stopped.

import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, createWriteStream, existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BINARY = process.env.KHAACHO_BIN || path.join(ROOT, 'target/debug/khaacho');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = path.join(ROOT, 'target/browser-screenshots');
const STEP_MS = 30_000;
// Short-lived access tokens, so the console must refresh them while the test runs (it does
// so a minute before expiry, at the earliest 5 s after the last refresh).
const ACCESS_TTL_SECS = 75;

const log = (...a) => console.log('[browser]', ...a);

class Failure extends Error {}

function fail(msg) {
  throw new Failure(msg);
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Polls `fn` until it returns a truthy value, or fails with `what` after `ms`. */
async function until(what, fn, ms = STEP_MS) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  fail(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
}

/** A mock of Twilio's Messages API: refuses every message (400, error 21211) until `accept`. */
function mockTwilio() {
  const state = { accept: false, posts: 0, server: null };
  state.server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      state.posts += 1;
      res.setHeader('content-type', 'application/json');
      if (req.method === 'POST' && req.url.endsWith('/Messages.json') && state.accept) {
        res.statusCode = 201;
        res.end(JSON.stringify({ sid: `SM${String(state.posts).padStart(32, '0')}`, status: 'queued' }));
      } else {
        res.statusCode = 400;
        res.end(JSON.stringify({ code: 21211, message: "The 'To' number is not a valid phone number.", status: 400 }));
      }
    });
  });
  return state;
}

class Api {
  constructor(base) {
    this.base = base;
    this.token = null;
  }

  async login(username, password) {
    this.token = null;
    const r = await this.call('POST', '/api/v1/auth/login', { username, password });
    this.token = r.access_token;
    this.credentials = [username, password];
    return this;
  }

  async call(method, p, body, expect, again = true) {
    const headers = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.base + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (res.status === 401 && this.token && again) {
      // Access tokens live ACCESS_TTL_SECS here: sign in again.
      await this.login(...this.credentials);
      return this.call(method, p, body, expect, false);
    }
    const text = await res.text();
    if (expect ? res.status !== expect : !res.ok) fail(`${method} ${p} answered ${res.status}: ${text.slice(0, 400)}`);
    return text ? JSON.parse(text) : null;
  }
}

/** Every label the console uses exists in English and in Nepali, in Devanagari. */
function checkLabels() {
  const src = readFileSync(path.join(ROOT, 'crates/khaacho/src/console/assets/console.js'), 'utf8');
  const literal = src.match(/const DICT = (\{[\s\S]*?\n\});/);
  if (!literal) fail('console.js has no DICT');
  // eslint-disable-next-line no-new-func
  const dict = new Function(`return ${literal[1]};`)();
  const used = new Set([...src.matchAll(/\bt\('([a-z0-9_]+)'\)/g)].map((m) => m[1]));
  const problems = [];
  for (const k of used) if (!(k in dict.en)) problems.push(`${k}: no English label`);
  for (const k of Object.keys(dict.en)) {
    if (!(k in dict.ne)) problems.push(`${k}: no Nepali label`);
    else if (!/[\u0900-\u097F]/.test(dict.ne[k])) problems.push(`${k}: Nepali label not in Devanagari`);
  }
  if (problems.length) fail(`labels: ${problems.join('; ')}`);
}

async function main() {
  checkLabels();
  if (!existsSync(BINARY)) fail(`${BINARY} does not exist: build it first (cargo build -p khaacho --bin khaacho)`);
  if (!existsSync(CHROMIUM)) fail(`${CHROMIUM} does not exist (apt-get install chromium)`);
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'khaacho-browser-'));
  const [port, twilioPort] = [await freePort(), await freePort()];
  const base = `http://127.0.0.1:${port}`;
  const twilio = mockTwilio();
  await new Promise((r) => twilio.server.listen(twilioPort, '127.0.0.1', r));

  const serverLog = path.join(SHOTS, 'server.log');
  const out = createWriteStream(serverLog);
  const server = spawn(BINARY, ['serve', '--demo'], {
    cwd: tmp,
    env: {
      ...process.env,
      DATABASE_URL: `sqlite://${path.join(tmp, 'khaacho.db')}`,
      KHAACHO_LISTEN: `127.0.0.1:${port}`,
      KHAACHO_LOG_FORMAT: 'json',
      KHAACHO_AUTH__ACCESS_TTL_SECS: String(ACCESS_TTL_SECS),
      KHAACHO_CHANNELS__TWILIO_ACCOUNT_SID: 'AC00000000000000000000000000000000',
      KHAACHO_CHANNELS__TWILIO_AUTH_TOKEN: 'browser-test-token',
      KHAACHO_CHANNELS__TWILIO_API_BASE: `http://127.0.0.1:${twilioPort}`,
      KHAACHO_CHANNELS__WHATSAPP_FROM: 'whatsapp:+14155238886',
      KHAACHO_CHANNELS__SMS_FROM: '+15005550006',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  server.stdout.pipe(out);
  server.stderr.pipe(out);
  let exited = null;
  server.on('exit', (code, signal) => { exited = { code, signal }; });
  let browser = null;
  const stop = () => {
    if (exited == null) {
      try { process.kill(-server.pid, 'SIGTERM'); } catch { /* gone */ }
    }
  };
  process.on('exit', stop);
  try {
    await until(`${base}/ready (server log: ${serverLog})`, async () => {
      if (exited) fail(`the server exited (${JSON.stringify(exited)}); see ${serverLog}`);
      const r = await fetch(`${base}/ready`).catch(() => null);
      return r && r.ok;
    }, 60_000);
    log('server ready at', base);

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
    const page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
    let shot = 0;
    let phone = false;
    const screenshot = async (name) => {
      shot += 1;
      const file = path.join(SHOTS, `${String(shot).padStart(2, '0')}-${name}.png`);
      await page.screenshot({ path: file, fullPage: !phone });
      log('screenshot', path.relative(ROOT, file));
    };
    const ready = async (name) => {
      await page.waitForFunction((n) => document.body.dataset.page === n && document.querySelector('#main').dataset.ready === '1', name, { timeout: STEP_MS });
      const err = await page.locator('#error').isVisible() ? await page.locator('#error').innerText() : null;
      if (err) fail(`the ${name} page shows an error: ${err}`);
    };
    // Marks the shown page stale, does `act`, and waits for `name` rendered afresh (a hash
    // change renders on the next task, so `ready` alone could see the old page).
    const afresh = async (name, act) => {
      await page.evaluate(() => { document.querySelector('#main').dataset.ready = 'stale'; });
      await act();
      await ready(name);
    };
    const signIn = async (username, password, home) => {
      await page.goto(`${base}/`);
      await ready('login');
      await screenshot(`login-${username}`);
      await page.fill('input[name=username]', username);
      await page.fill('input[name=password]', password);
      await page.click('button[type=submit]');
      await ready(home);
    };

    // The operator's API client, for what a customer would do elsewhere.
    const op = await new Api(base).login('operator', 'demo-operator-password');
    const retailers = await op.call('GET', '/api/v1/retailers?limit=2');
    const retailer = retailers.items[0].id;

    // A refused sign-in shows the problem's title and detail, not a blank page.
    await page.goto(`${base}/`);
    await ready('login');
    await page.fill('input[name=username]', 'operator');
    await page.fill('input[name=password]', 'not-the-password');
    await page.click('button[type=submit]');
    await page.waitForSelector('#error:visible', { timeout: STEP_MS });
    const refused = await page.locator('#error').innerText();
    if (!/unauthorized/i.test(refused) || !/invalid username or password/.test(refused)) {
      fail(`a refused sign-in showed ${JSON.stringify(refused)}`);
    }
    await screenshot('login-refused');

    // 1. The board updates live.
    await signIn('operator', 'demo-operator-password', 'board');
    await page.waitForSelector('#live[data-state=up]', { timeout: STEP_MS });
    await page.evaluate(() => { window.__sameDocument = true; });
    const firstToken = await page.evaluate(() => JSON.parse(sessionStorage.getItem('khaacho.session')).access);
    await screenshot('board');
    const placed = await op.call('POST', '/api/v1/orders', {
      retailer_id: retailer, payment_mode: 'cash',
      lines: [{ sku: 'WAIWAI-CHICKEN-75G', qty: 3, unit: 'carton' }],
    }, 202);
    log('placed order', placed.order_id);
    await page.waitForSelector(`#board tr[data-order="${placed.order_id}"]`, { timeout: STEP_MS })
      .catch(() => fail(`order ${placed.order_id} did not appear on the board without a reload`));
    if (!(await page.evaluate(() => window.__sameDocument === true))) fail('the board was reloaded');
    // Its status moves on in place as the pipeline runs.
    await page.waitForSelector(`#board tr[data-order="${placed.order_id}"]:not([data-status=received])`, { timeout: STEP_MS })
      .catch(() => fail(`order ${placed.order_id} stayed "received" on the board`));
    await screenshot('board-live');
    // The filters: by retailer the order stays; by a status it is not in, it goes.
    await afresh('board', () => page.selectOption('select[name=retailer]', retailer));
    await page.waitForSelector(`#board tr[data-order="${placed.order_id}"]`, { timeout: STEP_MS });
    await afresh('board', () => page.selectOption('select[name=status]', 'cancelled'));
    if (await page.locator(`#board tr[data-order="${placed.order_id}"]`).count()) fail('the status filter kept an order of another status');
    await screenshot('board-filtered');
    await afresh('board', () => page.selectOption('select[name=status]', ''));

    // The order page with its timeline.
    await page.click(`#board tr[data-order="${placed.order_id}"] a`);
    await ready('order');
    if ((await page.locator('ol.timeline li').count()) < 1) fail('the order page shows no timeline');
    await screenshot('order');

    // 2. A held order (above review_above_npr, NPR 500,000: 200 kg of cardamom at about
    //    NPR 3,400, which every demo offer of it has in stock) is approved.
    const big = await op.call('POST', '/api/v1/orders', {
      retailer_id: retailer, payment_mode: 'cash',
      lines: [{ sku: 'SUKMEL', qty: 200, unit: 'kg' }],
    }, 202);
    log('placed a large order', big.order_id);
    await until(`order ${big.order_id} to be held`, async () => {
      const o = await op.call('GET', `/api/v1/orders/${big.order_id}`);
      if (['rejected', 'failed'].includes(o.status)) {
        const why = (o.lines || []).map((l) => `${l.sku}: ${l.reject_code} ${l.reject_detail}`).join('; ');
        fail(`the large order went ${o.status}: ${o.reject_reason} (${why})`);
      }
      return o.status === 'on_hold';
    });
    await afresh('held', () => page.click('#nav a[data-page=held]'));
    const heldRow = page.locator(`tr[data-order="${big.order_id}"]`);
    await heldRow.waitFor({ timeout: STEP_MS });
    await screenshot('held');
    await heldRow.locator('input.reason').fill('known customer, confirmed by phone');
    await heldRow.locator('button[data-action=approve]').click();
    await until(`order ${big.order_id} to leave on_hold`, async () => {
      const o = await op.call('GET', `/api/v1/orders/${big.order_id}`);
      return o.status !== 'on_hold' && o;
    });
    await page.locator(`tr[data-order="${big.order_id}"]`).waitFor({ state: 'detached', timeout: STEP_MS });
    await screenshot('held-approved');

    // 3. A message Twilio refused for good is retried from the queue page.
    const dead = await until('a message refused by Twilio to go dead', async () => {
      const page1 = await op.call('GET', '/api/v1/channels/messages?status=dead&limit=100');
      return page1.items.find((m) => (m.last_error || '').includes('refused by Twilio'));
    }, 60_000);
    log('dead message', dead.id, dead.channel, dead.last_error);
    twilio.accept = true;
    await afresh('queue', () => page.click('#nav a[data-page=queue]'));
    const deadRow = page.locator(`tr[data-message="${dead.id}"]`);
    await deadRow.waitFor({ timeout: STEP_MS });
    await screenshot('queue');
    await deadRow.locator('button[data-action=retry]').click();
    await until(`message ${dead.id} to be sent after the retry`, async () => {
      const all = await op.call('GET', '/api/v1/channels/messages?limit=100');
      const m = all.items.find((x) => x.id === dead.id);
      if (m && m.status === 'dead' && m.attempts > dead.attempts) fail(`the retried message went dead again: ${m.last_error}`);
      return m && ['sent', 'delivered'].includes(m.status);
    }, 60_000);
    await page.locator(`tr[data-message="${dead.id}"]`).waitFor({ state: 'detached', timeout: STEP_MS });
    await screenshot('queue-retried');
    // 3b. A dead job is retried from the queue page. No request makes a job die on purpose,
    //     so this plays the way one does die: safe mode holds an order's validation job in
    //     its queue, the job is marked as if a worker had crashed holding it on its last
    //     attempt (what three `kill -9`s mid-run leave), and the server's own reaper declares
    //     it dead and fails the order. Retrying it from the console must process the order.
    const admin = await new Api(base).login('admin', 'demo-admin-password');
    await admin.call('PUT', '/api/v1/admin/safe-mode', { enabled: true, reason: 'browser test: holding a job' });
    const stuck = await op.call('POST', '/api/v1/orders', {
      retailer_id: retailer, payment_mode: 'cash',
      lines: [{ sku: 'WAIWAI-CHICKEN-75G', qty: 1, unit: 'carton' }],
    }, 202);
    const held = await until(`the validation job of order ${stuck.order_id} to wait in safe mode`, async () => {
      const jobs = await op.call('GET', '/api/v1/admin/jobs?status=queued&kind=order.validate&limit=100');
      return jobs.items.find((j) => j.payload.order_id === stuck.order_id);
    });
    const sql = `UPDATE jobs SET status = 'running', attempts = max_attempts, locked_by = 'crashed-worker', `
      + `locked_until_ms = 0 WHERE kind = 'order.validate' AND status = 'queued' `
      + `AND json_extract(payload, '$.order_id') = '${stuck.order_id}'; SELECT changes();`;
    const edit = spawnSync('sqlite3', ['-cmd', '.timeout 10000', path.join(tmp, 'khaacho.db'), sql], { encoding: 'utf8' });
    if (edit.status !== 0) fail(`sqlite3 could not mark the job as crashed: ${edit.stderr || edit.error}`);
    if (edit.stdout.trim() !== '1') {
      const now = await op.call('GET', `/api/v1/orders/${stuck.order_id}`);
      fail(`job ${held.id} was no longer queued when marked as crashed (order ${now.status}): safe mode did not hold it`);
    }
    const deadJob = await until(`the reaper to declare job ${held.id} dead`, async () => {
      const j = await op.call('GET', `/api/v1/admin/jobs/${held.id}`);
      return j.status === 'dead' && j;
    });
    const failed = await op.call('GET', `/api/v1/orders/${stuck.order_id}`);
    if (failed.status !== 'failed') fail(`order ${stuck.order_id} is ${failed.status} after its job died, not failed`);
    await admin.call('PUT', '/api/v1/admin/safe-mode', { enabled: false, reason: 'browser test: job held' });
    log('dead job', deadJob.id, deadJob.last_error);
    await afresh('board', () => page.click('#nav a[data-page=board]'));
    await afresh('queue', () => page.click('#nav a[data-page=queue]'));
    const deadJobRow = page.locator(`tr[data-job="${held.id}"]`);
    await deadJobRow.waitFor({ timeout: STEP_MS });
    await screenshot('queue-dead-job');
    await deadJobRow.locator('button[data-action=retry]').click();
    await until(`order ${stuck.order_id} to be processed after the retry`, async () => {
      const o = await op.call('GET', `/api/v1/orders/${stuck.order_id}`);
      return !['failed', 'received'].includes(o.status) && o;
    });
    await page.locator(`tr[data-job="${held.id}"]`).waitFor({ state: 'detached', timeout: STEP_MS });
    await screenshot('queue-dead-job-retried');

    for (const name of ['sla', 'mode', 'vendors', 'credit', 'prices', 'outbox']) {
      await afresh(name, () => page.click(`#nav a[data-page=${name}]`));
      await screenshot(name);
    }
    // The console refreshed its access token before it expired, and still works with it.
    await until('the console to refresh its access token', () => page.evaluate(
      (first) => JSON.parse(sessionStorage.getItem('khaacho.session')).access !== first, firstToken), 60_000);
    await afresh('board', () => page.click('#nav a[data-page=board]'));

    // 4. The vendor accepts an offer: an order of a product only the first demo vendor
    //    carries (else the one it sells cheapest), open all day so the hours do not matter.
    const vendor = (await op.call('GET', '/api/v1/vendors?limit=1')).items[0];
    await op.call('PATCH', `/api/v1/vendors/${vendor.id}`, { opens: '00:00', closes: '23:59' });
    const products = await op.call('GET', '/api/v1/products?limit=200');
    let best = null;
    for (const p of products.items) {
      const prices = await op.call('GET', `/api/v1/products/${encodeURIComponent(p.sku)}/prices`);
      const list = prices.by_vendor || [];
      const mine = list.find((x) => x.vendor_id === vendor.id);
      if (!mine) continue;
      const rank = list.filter((x) => x.price_npr < mine.price_npr).length;
      const score = list.length === 1 ? -1 : rank;
      if (!best || score < best.score) best = { sku: p.sku, unit: p.unit, score };
      if (score === -1) break;
    }
    if (!best) fail(`no product is offered by the first demo vendor ${vendor.name}`);
    log('ordering', best.sku, 'for', vendor.name, best.score === -1 ? '(its own product)' : `(price rank ${best.score})`);
    const forVendor = await op.call('POST', '/api/v1/orders', {
      retailer_id: retailer, payment_mode: 'cash', lines: [{ sku: best.sku, qty: 1, unit: best.unit }],
    }, 202);
    const offer = await until(`an offer of order ${forVendor.order_id} to ${vendor.name}`, async () => {
      const parts = await op.call('GET', `/api/v1/fulfilments?status=offered&vendor_id=${vendor.id}&limit=100`);
      return parts.items.find((f) => f.order_id === forVendor.order_id);
    });
    log('offer', offer.id);
    await page.click('#signout');
    await signIn('vendor', 'demo-vendor-password', 'offers');
    const offerRow = page.locator(`tr[data-fulfilment="${offer.id}"]`);
    await offerRow.waitFor({ timeout: STEP_MS });
    await screenshot('offers');
    // The offer names the shop and its district; its phone only once the vendor accepts.
    const shop = await op.call('GET', `/api/v1/retailers/${retailer}`);
    const shopText = async () => offerRow.locator('td.shop').innerText();
    const offered = await shopText();
    if (!offered.includes(shop.name) || !offered.includes(shop.district)) fail(`the offer does not name the shop: ${offered}`);
    if (offered.includes(shop.phone)) fail(`the offer shows the shop's phone before it is accepted: ${offered}`);
    await offerRow.locator('button[data-action=accept]').click();
    await page.waitForSelector(`tr[data-fulfilment="${offer.id}"][data-status=accepted]`, { timeout: STEP_MS })
      .catch(() => fail(`offer ${offer.id} was not shown accepted`));
    await until(`the shop's phone on accepted part ${offer.id}`, async () => (await shopText()).includes(shop.phone));
    const part = await op.call('GET', `/api/v1/fulfilments/${offer.id}`);
    if (part.status !== 'accepted') fail(`offer ${offer.id} is ${part.status}, not accepted`);
    await screenshot('offers-accepted');

    // An admin: the breakers and the LLM switch, and safe mode switched on and off again.
    await page.click('#signout');
    await signIn('admin', 'demo-admin-password', 'board');
    await afresh('agents', () => page.click('#nav a[data-page=agents]'));
    await screenshot('agents');
    await afresh('mode', () => page.click('#nav a[data-page=mode]'));
    for (const [on, text] of [[true, 'Safe mode is ON'], [false, 'Safe mode is off']]) {
      await page.fill('input.reason', on ? 'browser test: pausing processing' : 'browser test: resuming');
      await page.click('button[data-action=safe-mode]');
      await page.waitForSelector(`text=${text}`, { timeout: STEP_MS })
        .catch(() => fail(`the safe-mode switch did not show "${text}"`));
      const m = await op.call('GET', '/api/v1/admin/mode');
      if (m.safe_mode !== on) fail(`safe mode is ${m.safe_mode} after switching it ${on ? 'on' : 'off'}`);
      if (on) await screenshot('mode-safe-on');
    }

    // The retailer's own pages, on a phone-sized screen.
    await page.setViewportSize({ width: 360, height: 740 });
    phone = true;
    await page.click('#signout');
    await signIn('retailer', 'demo-retailer-password', 'board');
    await screenshot('retailer-orders-360px');
    await afresh('account', () => page.click('#nav a[data-page=account]'));
    await afresh('account', () => page.selectOption('#lang', 'ne'));
    if (!(await page.locator('h1').innerText()).includes('मेरो खाता')) fail('the Nepali labels did not apply');
    await screenshot('retailer-account-ne-360px');
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    if (wide > 360) fail(`the account page is ${wide} px wide on a 360 px screen`);

    const real = pageErrors.filter((e) => !/status of 4\d\d/.test(e));
    if (real.length) fail(`the page logged errors: ${real.join(' | ')}`);
    log('OK: every step passed');
  } finally {
    if (browser) await browser.close().catch(() => {});
    stop();
    twilio.server.close();
    await new Promise((r) => setTimeout(r, 200));
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(`[browser] FAILED: ${e instanceof Failure ? e.message : (e && e.stack) || e}`);
  // The server's last words, for a failure seen only in CI's output.
  try {
    const lines = readFileSync(path.join(SHOTS, 'server.log'), 'utf8').trimEnd().split('\n');
    console.error(`[browser] the server's log, last ${Math.min(lines.length, 40)} of ${lines.length} lines:`);
    console.error(lines.slice(-40).join('\n'));
  } catch (err) {
    console.error(`[browser] no server log: ${err.message}`);
  }
  process.exit(1);
});
