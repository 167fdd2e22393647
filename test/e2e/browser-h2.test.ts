/**
 * A real browser through the h2 edge: headless Chromium (Debian's, driven with
 * playwright-core) loads a page and its ES modules over HTTP/2 from a tunnel, and opens
 * a WebSocket to the same tunnel (over HTTP/1.1: the relay does not offer RFC 8441).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import t from 'tap';
import { WebSocketServer } from 'ws';
import { connectTunnel, startOrigin, startTestRelay } from '../helpers/relay-env.js';
import { CHROMIUM_PATH, CHROMIUM_RELAY_ARGS as CHROMIUM_ARGS } from '../helpers/chromium.js';

const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>h2 page</title>
<script type="module" src="/main.js"></script></head><body>loading</body></html>`;
const MAIN = `import { value } from './dep.js';
const ws = new WebSocket('wss://' + location.host + '/ws');
ws.onmessage = (e) => { window.result = { value, echo: e.data }; ws.close(); };
ws.onopen = () => ws.send('ping over ' + value);
ws.onerror = () => { window.result = { value, echo: 'websocket error' }; };`;

t.test('Chromium loads a page over h2 and opens a WebSocket through the relay', async (t) => {
  const env = await startTestRelay(t);
  const { server, port } = await startOrigin(t, (req, res) => {
    const body =
      req.url === '/' ? PAGE : req.url === '/main.js' ? MAIN : 'export const value = 42;';
    res.setHeader('content-type', req.url === '/' ? 'text/html' : 'text/javascript');
    res.end(body);
  });
  const wss = new WebSocketServer({ server });
  t.teardown(() => wss.close());
  const upgrades: string[] = [];
  wss.on('connection', (ws, req) => {
    upgrades.push(String(req.headers['x-forwarded-proto']));
    ws.on('message', (data) => ws.send(`echo: ${String(data)}`));
  });
  const tunnel = await connectTunnel(t, env, String(port));

  const profile = await mkdtemp(path.join(os.tmpdir(), 'qt-chromium-'));
  t.teardown(() => rm(profile, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    args: CHROMIUM_ARGS,
    ignoreHTTPSErrors: true,
    timeout: 60_000,
  });
  t.teardown(() => context.close());
  const page = await context.newPage();
  const url = `https://${tunnel.hostname}:${env.httpsPort}/`;
  const response = await page.goto(url, { timeout: 60_000 });
  t.equal(response?.status(), 200, 'the page loads');
  // Evaluated as strings: the test is compiled without the DOM's types.
  await page.waitForFunction('"result" in window', undefined, { timeout: 30_000 });
  const result = await page.evaluate('window.result');
  t.same(result, { value: 42, echo: 'echo: ping over 42' }, 'modules ran, the WebSocket echoed');
  const protocols = (await page.evaluate(
    `Object.fromEntries(performance.getEntries().filter((e) => 'nextHopProtocol' in e)
      .map((e) => [new URL(e.name).pathname, e.nextHopProtocol]))`,
  )) as Record<string, string>;
  t.match(
    protocols,
    { '/': 'h2', '/main.js': 'h2', '/dep.js': 'h2' },
    'the page and its modules came over h2',
  );
  t.same(upgrades, ['https'], 'the WebSocket reached the app through the tunnel');
});
