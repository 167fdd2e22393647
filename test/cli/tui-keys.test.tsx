import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import type { ExchangeCapture } from '../../cli/origin/capture.js';
import { OriginProxy } from '../../cli/origin/proxy.js';
import { replayRequest } from '../../cli/origin/replay.js';
import { parseTarget } from '../../cli/origin/target.js';
import { App } from '../../cli/ui/tui/app.js';
import { exchange, KEYS, makeStore, ready, renderApp } from '../helpers/tui.js';

/** The marker of the selected row (inverse video too, when the terminal has it). */
const SELECTED = '› ';

/** The frame line that holds `text`. */
function line(frame: string, text: string): string {
  return frame.split('\n').find((l) => l.includes(text)) ?? '';
}

t.test('↑/↓ select a row (highlighted); Esc follows the newest again', async (t) => {
  const { store } = makeStore();
  ready(store);
  for (let i = 1; i <= 3; i++) exchange(store, i, { url: `/sel${i}` });
  const app = renderApp(t, { store });
  let frame = await app.frame(/sel3/);
  t.notOk(frame.includes(SELECTED), 'nothing selected at first');
  await app.press(KEYS.up);
  frame = await app.frame(/› /);
  t.ok(line(frame, '/sel3').includes(SELECTED), 'the first ↑ selects the newest row');
  await app.press(KEYS.up, KEYS.up);
  frame = await app.frame(/› [^\n]*sel1/);
  t.notOk(line(frame, '/sel3').includes(SELECTED));
  await app.press(KEYS.up);
  t.ok(line(await app.frame(/sel1/), '/sel1').includes(SELECTED), 'stops at the oldest');
  await app.press(KEYS.down);
  t.ok(line(await app.frame(/› [^\n]*sel2/), '/sel2').includes(SELECTED));
  await app.press(KEYS.enter);
  t.match(await app.frame(/#2 {2}GET/), /#2 {2}GET \/sel2/, 'Enter opens the selected one');
  await app.press(KEYS.escape, KEYS.escape);
  frame = await app.frame(/TIME/);
  t.notOk(frame.includes(SELECTED), 'Esc in the list: back to following');
});

t.test('the selection stays put while new requests arrive', async (t) => {
  const { store } = makeStore();
  ready(store);
  for (let i = 1; i <= 50; i++) exchange(store, i, { url: `/keep${i}` });
  const app = renderApp(t, { store, height: 20 });
  await app.frame(/keep50/);
  await app.press(KEYS.up, KEYS.up, KEYS.up);
  let frame = await app.frame(/› [^\n]*keep48/);
  for (let i = 51; i <= 60; i++) exchange(store, i, { url: `/keep${i}` });
  frame = await app.frame(/Requests\s+60 total/);
  t.ok(line(frame, '/keep48 ').includes(SELECTED), 'still /keep48, still visible');
  t.notMatch(frame, /keep60/, 'the window did not jump to the newest');
});

t.test('r replays the selected request to the local origin as a new row', async (t) => {
  const seen: { method: string; url: string; body: string; header: string }[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        body,
        header: String(req.headers['x-signature']),
      });
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ replayed: true }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const proxy = new OriginProxy({ target: parseTarget(`127.0.0.1:${port}`) });
  t.teardown(() => {
    proxy.close();
    server.closeAllConnections();
    server.close();
  });
  const { store } = makeStore();
  ready(store);
  exchange(store, 1, {
    method: 'POST',
    url: '/hook?x=1',
    headers: [
      ['Host', 'k3mzq7x2ab.qt.localhost'],
      ['X-Signature', 'sig-1'],
      ['Content-Length', '11'],
    ],
    body: 'hello=world',
    status: 200,
  });
  const app = renderApp(t, {
    store,
    replay: (capture: ExchangeCapture) => replayRequest(proxy, capture),
  });
  await app.frame(/hook/);
  await app.press(KEYS.up, 'r');
  const frame = await app.frame(/↻#1[^\n]*200/);
  t.match(frame, /POST\s+↻#1 \/hook\?x=1\s+200\s+\d+ ms\s+17 B/);
  t.same(seen, [{ method: 'POST', url: '/hook?x=1', body: 'hello=world', header: 'sig-1' }]);
  t.equal(store.rowCount, 2);
  // The replay has its own details: the origin's answer.
  await app.press(KEYS.escape, KEYS.enter);
  const details = await app.frame(/replay of #1/);
  t.match(details, /replay of #1 {2}POST \/hook\?x=1/);
  t.match(details, /"replayed": true/);

  // r in the details view: the footer says the replay was sent, then its status.
  await app.press(KEYS.escape, KEYS.up, KEYS.up, KEYS.enter);
  await app.frame(/#1 {2}POST \/hook\?x=1/);
  await app.press('r');
  const fed = await app.frame(/↻ replay of #1: 200 in \d+ ms/);
  t.match(fed, /a new ↻ row in the list/);
  t.equal(seen.length, 2, 'sent again');
});

t.test('r refuses what cannot be replayed faithfully, and says why', async (t) => {
  const { store } = makeStore();
  ready(store);
  exchange(store, 1, { method: 'POST', url: '/upload', body: 'x'.repeat(100), limit: 10 });
  const app = renderApp(t, { store, replay: () => Promise.reject(new Error('not called')) });
  await app.frame(/upload/);
  await app.press('r');
  t.match(
    await app.frame(/cannot replay/),
    /cannot replay #1: the request body \(100 bytes\) was larger than the 10 bytes kept/,
  );
  t.equal(store.rowCount, 1);
});

t.test('c clears the list (open requests stay), totals are kept', async (t) => {
  const { store } = makeStore();
  ready(store);
  for (let i = 1; i <= 5; i++) exchange(store, i, { url: `/old${i}` });
  store.onEvent({
    event: 'request-start',
    id: 6,
    method: 'GET',
    path: '/still-open',
    upgrade: false,
  });
  const app = renderApp(t, { store });
  await app.frame(/old5/);
  await app.press('c');
  const frame = await app.frame(/^(?![\s\S]*old5)/);
  t.notMatch(frame, /old\d/);
  t.match(frame, /\/still-open/);
  t.match(frame, /5 total · 1 open/);
  store.onEvent({
    event: 'request',
    id: 3,
    method: 'GET',
    path: '/old3',
    status: 200,
    durationMs: 1,
    bytesIn: 0,
    bytesOut: 0,
    upgrade: false,
  });
  t.equal(store.rowCount, 1, 'a late end of a cleared request adds nothing');
});

t.test('q and Ctrl-C quit once; the header says the tunnel is closing', async (t) => {
  for (const key of ['q', KEYS.ctrlC]) {
    const { store } = makeStore();
    ready(store);
    let quits = 0;
    const app = renderApp(t, { store, onQuit: () => quits++ });
    await app.frame(/online/);
    await app.press(key);
    t.match(await app.frame(/closing/), /◌ closing the tunnel…/);
    await app.press(key);
    t.equal(quits, 1, `${JSON.stringify(key)} quits once`);
  }
});

t.test('p shows the request as a curl command and copies it', async (t) => {
  const { store } = makeStore();
  ready(store);
  exchange(store, 1, {
    method: 'PUT',
    url: "/items/7?name=o'brien",
    headers: [
      ['Host', 'k3mzq7x2ab.qt.localhost'],
      ['Content-Type', 'application/json'],
      ['Accept-Encoding', 'gzip'],
      ['X-Forwarded-For', '203.0.113.9'],
    ],
    body: '{"a":1}',
  });
  const copied: string[] = [];
  const app = renderApp(t, { store, copy: (text) => copied.push(text), caFile: '/tmp/relay.crt' });
  await app.frame(/items/);
  await app.press('p');
  const frame = await app.frame(/curl -X PUT/);
  const expected = [
    "curl -X PUT 'https://k3mzq7x2ab.qt.localhost:8443/items/7?name=o'\\''brien' \\",
    "  -H 'Content-Type: application/json' \\",
    '  --compressed \\',
    '  --cacert /tmp/relay.crt \\',
    `  --data-binary '{"a":1}'`,
  ].join('\n');
  t.ok(frame.includes(expected), 'the command, ready to paste');
  t.equal(copied[0], expected, 'copied to the clipboard');
  t.match(frame, /↑↓ scroll\s+esc back\s+q quit/);
  await app.press(KEYS.escape);
  t.match(await app.frame(/TIME/), /PUT/);
});

t.test('o shows the public URL as a QR code (or asks for room)', async (t) => {
  const { store } = makeStore();
  ready(store);
  const app = renderApp(t, { store, height: 30 });
  await app.press('o');
  const frame = await app.frame(/█/);
  t.match(frame, /https:\/\/k3mzq7x2ab\.qt\.localhost:8443/);
  t.match(frame, /Scan with a phone camera/);
  t.ok(frame.split('\n').filter((l) => /^██[█▀▄ ]{20}/.test(l)).length >= 10, 'QR block lines');
  await app.press(KEYS.escape);
  await app.frame(/TIME/);

  const small = renderApp(t, { store, height: 12, width: 40 });
  await small.press('o');
  t.match(await small.frame(/Make the terminal/), /Make the terminal at least \d+×\d+/);
});

t.test('layout follows the terminal size (rerender with a new size)', async (t) => {
  const { store } = makeStore();
  ready(store);
  for (let i = 1; i <= 40; i++) exchange(store, i, { url: `/r${i}`, responseBody: 'abc' });
  const app = renderApp(t, { store, width: 100, height: 30 });
  let frame = await app.frame(/r40/);
  t.equal(frame.split('\n').length, 30);
  t.match(line(frame, '/r40 '), /3 B$/);
  app.rerender(
    <App
      store={store}
      onQuit={() => {}}
      color={false}
      frameMs={0}
      tickMs={0}
      width={50}
      height={12}
    />,
  );
  frame = await app.frame(/^(?![\s\S]*SIZE)/);
  t.equal(frame.split('\n').length, 12, 'fills the new height');
  t.ok(
    frame.split('\n').every((l) => l.length <= 50),
    'nothing wider than 50 columns',
  );
  t.match(line(frame, '/r40 '), /GET\s+\/r40\s+200\s+5 ms$/, 'the size column dropped');
  t.notMatch(frame, /\/r30 /, 'fewer rows fit');
});
