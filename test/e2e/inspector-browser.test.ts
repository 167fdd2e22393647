/**
 * The web inspector in a real browser (Debian's chromium through playwright-core),
 * against the real CLI process with its embedded relay: requests sent to the public URL
 * appear in the list without a reload, the details show the JSON body (foldable), a
 * replay with an edited body reaches the origin, and the "copy as curl" command runs
 * with the real curl and reaches the origin through the tunnel.
 *
 * Needs /usr/bin/chromium (.ci/run installs it) and curl; skipped, saying so, without.
 * QT_INSPECTOR_SCREENSHOT=FILE also saves a screenshot of the page (docs/inspector.png).
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Page } from 'playwright-core';
import t from 'tap';
import { startInspector } from '../../cli/inspector/server.js';
import { spawnCli } from '../helpers/processes.js';
import { exchange, makeStore, ready } from '../helpers/tui.js';
import { CHROMIUM_ARGS, CHROMIUM_PATH as CHROMIUM } from '../helpers/chromium.js';

/** A 1×1 PNG. */
const PIXEL_PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

interface Seen {
  method: string;
  url: string;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** POSTs `body` to the tunnel's public URL (Host header to the embedded relay on loopback). */
function post(publicUrl: string, pathname: string, body: string, headers = {}): Promise<number> {
  const url = new URL(publicUrl);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: Number(url.port),
        method: 'POST',
        path: pathname,
        headers: {
          host: url.host,
          'content-type': 'application/json',
          'x-github-event': 'push',
          ...headers,
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Waits (bounded) until the request list shows `n` rows. */
async function rowCount(page: Page, n: number, timeoutMs: number): Promise<void> {
  const rows = page.locator('#requests tbody tr');
  const until = Date.now() + timeoutMs;
  let count = await rows.count();
  while (count !== n && Date.now() < until) {
    await page.waitForTimeout(50);
    count = await rows.count();
  }
  if (count !== n) throw new Error(`the list shows ${count} rows, not ${n}`);
}

function freePort(): Promise<number> {
  const server = http.createServer();
  server.listen(0, '127.0.0.1');
  return once(server, 'listening').then(() => {
    const { port } = server.address() as AddressInfo;
    server.close();
    return port;
  });
}

const skip = existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} is not installed (apt-get install chromium); .ci/run installs it`;

t.test(
  'the inspector in chromium: live list, JSON details, edited replay, curl',
  { skip },
  async (t) => {
    // The origin records what reaches it.
    const seen: Seen[] = [];
    const arrivals: (() => void)[] = [];
    const origin = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({
          method: req.method ?? '',
          url: req.url ?? '',
          body: Buffer.concat(chunks).toString(),
          headers: req.headers,
        });
        for (const wake of arrivals.splice(0)) wake();
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ received: true, n: seen.length }));
      });
    });
    origin.listen(0, '127.0.0.1');
    await once(origin, 'listening');
    t.teardown(() => {
      origin.closeAllConnections();
      origin.close();
    });
    const originPort = (origin.address() as AddressInfo).port;
    /** Waits (bounded) until the origin has seen `n` requests. */
    const originSaw = async (n: number): Promise<Seen> => {
      for (let i = 0; i < 100 && seen.length < n; i++) {
        await new Promise<void>((resolve) => {
          arrivals.push(resolve);
          setTimeout(resolve, 200).unref();
        });
      }
      if (seen.length < n) throw new Error(`the origin saw ${seen.length} requests, not ${n}`);
      return seen[n - 1]!;
    };

    const cli = spawnCli(t, [
      `127.0.0.1:${originPort}`,
      '--log',
      'json',
      '--inspect-port',
      String(await freePort()),
    ]);
    const ready = JSON.parse(await cli.waitFor(/"event":"ready"/, 'stdout', 60_000)) as {
      url: string;
      inspector: string;
    };
    t.match(ready.inspector, /^http:\/\/127\.0\.0\.1:\d+$/);

    const userDataDir = await mkdtemp(path.join(os.tmpdir(), 'qt-chromium-'));
    t.teardown(() => rm(userDataDir, { recursive: true, force: true }));
    const context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 720 },
    });
    t.teardown(() => context.close());
    const page = context.pages()[0] ?? (await context.newPage());
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(msg.text());
    });
    await page.goto(ready.inspector);
    await page.locator('#live', { hasText: 'live' }).waitFor({ timeout: 20_000 });
    t.equal(await page.locator('#public-url').textContent(), ready.url, 'the public URL is shown');

    // Requests appear while the page is open, without a reload.
    const webhook = JSON.stringify({
      event: 'order.created',
      order: { id: 'ord_42', items: [{ sku: 'tea', qty: 2 }], total: 1250 },
    });
    t.equal(await post(ready.url, '/webhooks/shop', webhook), 200);
    const rows = page.locator('#requests tbody tr');
    // A row shows up while its request is open (status …), then gets its status.
    await page
      .locator('#requests tbody tr', { hasText: /POST\/webhooks\/shop200/ })
      .waitFor({ timeout: 20_000 });
    t.equal(await rows.count(), 1);
    t.equal(await post(ready.url, '/webhooks/second', '{"second":true}'), 200);
    await page
      .locator('#requests tbody tr', { hasText: '/webhooks/second' })
      .waitFor({ timeout: 20_000 });
    t.equal(await rows.count(), 2, 'the second request appeared live');

    // Filter by text and by method.
    await page.fill('#filter-text', 'second');
    await rowCount(page, 1, 5_000);
    await page.fill('#filter-text', '');
    await page.selectOption('#filter-method', 'GET');
    await rowCount(page, 0, 5_000);
    await page.selectOption('#filter-method', '');

    // Details: the JSON body pretty-printed as a foldable tree.
    await page.locator('#requests tbody tr', { hasText: '/webhooks/shop' }).click();
    const json = page.locator('#details-pane .json').first();
    await json.waitFor({ timeout: 10_000 });
    const tree = await json.innerText();
    t.match(tree, /"event": "order\.created"/);
    t.match(tree, /"sku": "tea"/);
    t.match(tree, /"total": 1250/);
    const fold = json.locator('details').nth(1); // "order": { … }
    t.equal(await fold.getAttribute('open'), '', 'nested objects start unfolded');
    await fold.locator('summary').first().click();
    t.equal(await fold.getAttribute('open'), null, 'a click folds it');
    t.match(await page.locator('#details-pane').innerText(), /x-github-event/i, 'headers shown');

    if (process.env['QT_INSPECTOR_SCREENSHOT']) {
      await fold.locator('summary').first().click();
      await page.screenshot({ path: process.env['QT_INSPECTOR_SCREENSHOT'] });
    }

    // Replay with an edited body: a new entry, linked to its original, and the origin gets it.
    await page.click('#replay-edit');
    const edited = JSON.stringify({ event: 'order.cancelled', order: { id: 'ord_42' } });
    await page.fill('form.edit textarea[name=body]', edited);
    await page.fill('form.edit input[name=path]', '/webhooks/shop?replayed=1');
    await page.click('#send-edited');
    const replayed = await originSaw(3);
    t.match(replayed, { method: 'POST', url: '/webhooks/shop?replayed=1', body: edited });
    t.equal(replayed.headers['x-github-event'], 'push', 'the other headers stay');
    await page
      .locator('#details-pane h2', { hasText: 'replay of #1' })
      .waitFor({ timeout: 10_000 });
    t.match(await page.locator('#details-pane').innerText(), /Replay with edits of entry 1/);
    await page
      .locator('#requests tbody tr', { hasText: 'edited replay' })
      .waitFor({ timeout: 10_000 });

    // Copy as curl: the command runs with the real curl and reaches the origin.
    await page.locator('#requests tbody tr', { hasText: '/webhooks/second' }).click();
    await page.locator('#details-pane h2', { hasText: '/webhooks/second' }).waitFor();
    await page.click('#copy-curl');
    const command = (await page.locator('#curl').textContent()) ?? '';
    t.match(command, /^curl '?http:\/\/[a-z0-9]+\.localhost:\d+\/webhooks\/second'? /);
    const output = await new Promise<string>((resolve, reject) => {
      execFile('sh', ['-c', `${command} --silent --show-error --max-time 20`], (err, stdout) =>
        err ? reject(err) : resolve(stdout),
      );
    });
    t.match(output, /"received":true/);
    const viaCurl = await originSaw(4);
    t.match(viaCurl, { method: 'POST', url: '/webhooks/second', body: '{"second":true}' });
    t.equal(viaCurl.headers['x-forwarded-host'], new URL(ready.url).host, 'it came via the tunnel');
    await rowCount(page, 4, 10_000);

    // Clear empties the list.
    await page.click('#clear');
    await rowCount(page, 0, 10_000);
    t.same(pageErrors, [], 'no errors in the page');
  },
);

t.test(
  'the page shows a queue delivery, form data as a table and an image',
  { skip },
  async (t) => {
    const { store } = makeStore();
    ready(store);
    exchange(store, 1, {
      method: 'POST',
      url: '/hooks/stripe',
      headers: [
        ['Content-Type', 'application/json'],
        ['X-Quick-Tunnel-Delivery-Id', 'dlv_0042'],
        ['X-Quick-Tunnel-Queued-At', '2026-12-07T03:15:00.000Z'],
      ],
      body: '{"type":"invoice.paid"}',
      status: 200,
    });
    exchange(store, 2, {
      method: 'POST',
      url: '/form',
      headers: [['Content-Type', 'application/x-www-form-urlencoded']],
      body: 'name=Ada+Lovelace&city=London',
      status: 200,
    });
    exchange(store, 3, {
      method: 'GET',
      url: '/pixel.png',
      status: 200,
      responseHeaders: [['Content-Type', 'image/png']],
      responseBody: Buffer.from(PIXEL_PNG, 'base64'),
    });
    const inspector = await startInspector({
      tunnels: [{ store, replay: () => Promise.reject(new Error('not in this test')) }],
      port: 0,
    });
    t.teardown(() => inspector.close());

    const userDataDir = await mkdtemp(path.join(os.tmpdir(), 'qt-chromium-'));
    t.teardown(() => rm(userDataDir, { recursive: true, force: true }));
    const context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
    });
    t.teardown(() => context.close());
    const page = context.pages()[0] ?? (await context.newPage());
    await page.goto(inspector.url);
    await rowCount(page, 3, 20_000);
    t.match(
      await page.locator('#requests tbody tr', { hasText: '/hooks/stripe' }).textContent(),
      /from queue/,
      'the list marks it',
    );

    await page.locator('#requests tbody tr', { hasText: '/hooks/stripe' }).click();
    const notice = page.locator('#details-pane .notice.queue');
    await notice.waitFor({ timeout: 10_000 });
    const text = (await notice.textContent()) ?? '';
    t.match(text, /Delivered from queue/);
    t.match(text, /arrived at the relay .*2026/);
    t.match(text, /delivery id dlv_0042/);

    await page.locator('#requests tbody tr', { hasText: '/form' }).click();
    const form = page.locator('#details-pane table.form');
    await form.waitFor({ timeout: 10_000 });
    t.same(await form.locator('tr').allInnerTexts(), ['name\tAda Lovelace', 'city\tLondon']);

    await page.locator('#requests tbody tr', { hasText: '/pixel.png' }).click();
    const img = page.locator('#details-pane img.body');
    await img.waitFor({ timeout: 10_000 });
    t.match(await img.getAttribute('src'), /^data:image\/png;base64,/);
    t.equal(
      await img.evaluate((el) => (el as unknown as { naturalWidth: number }).naturalWidth),
      1,
    );
  },
);
