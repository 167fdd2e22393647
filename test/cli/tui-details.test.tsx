import zlib from 'node:zlib';
import t from 'tap';
import { viewBody } from '../../cli/ui/tui/body.js';
import { BodyPreview } from '../../cli/origin/capture.js';
import { exchange, KEYS, makeStore, ready, renderApp } from '../helpers/tui.js';

/** Opens the details of the newest row and returns the frame. */
async function openDetails(app: Awaited<ReturnType<typeof renderApp>>, until: RegExp) {
  await app.press(KEYS.enter);
  return app.frame(until);
}

t.test('JSON bodies are pretty-printed, with both heads', async (t) => {
  const { store } = makeStore();
  ready(store);
  exchange(store, 1, {
    method: 'POST',
    url: '/hooks/stripe?id=1',
    headers: [
      ['Host', 'k3mzq7x2ab.qt.localhost'],
      ['Content-Type', 'application/json'],
      ['Stripe-Signature', 't=1,v1=abc'],
    ],
    body: '{"type":"charge.succeeded","data":{"amount":4200}}',
    status: 200,
    responseHeaders: [['Content-Type', 'application/json; charset=utf-8']],
    responseBody: '{"received":true}',
  });
  const app = renderApp(t, { store, height: 40 });
  const frame = await openDetails(app, /Request body/);
  t.match(frame, /#1 {2}POST \/hooks\/stripe\?id=1/);
  t.match(frame, /200 · 5 ms · in 50 B · out 17 B · at 03:04:05/);
  t.match(frame, /── Request ─+/);
  t.match(frame, /POST \/hooks\/stripe\?id=1 HTTP\/1\.1 · from 127\.0\.0\.1 over https/);
  t.match(frame, /Stripe-Signature: t=1,v1=abc/);
  t.match(frame, /── Request body · application\/json · 50 B · JSON ─+/);
  t.match(
    frame,
    /\{\n\s*"type": "charge\.succeeded",\n\s*"data": \{\n\s*"amount": 4200\n\s*\}\n\}/,
  );
  t.match(frame, /── Response ─+\n200\nContent-Type: application\/json; charset=utf-8/);
  t.match(
    frame,
    /── Response body · application\/json · 17 B · JSON ─+\n\{\n\s*"received": true\n\}/,
  );
  t.match(frame, /↑↓ scroll\s+←→ prev\/next\s+esc back\s+r replay\s+p curl\s+q quit/);
  await app.press(KEYS.escape);
  t.match(await app.frame(/TIME\s+METHOD/), /POST\s+\/hooks\/stripe/, 'Esc goes back to the list');
});

t.test('text bodies as text; form bodies as key = value', async (t) => {
  const { store } = makeStore();
  ready(store);
  exchange(store, 1, {
    method: 'POST',
    url: '/slack',
    headers: [['Content-Type', 'application/x-www-form-urlencoded']],
    body: 'token=abc&text=hello+world%21&user_name=ann',
    status: 200,
    responseHeaders: [['Content-Type', 'text/plain']],
    responseBody: 'line one\nline two\n',
  });
  const app = renderApp(t, { store, height: 40 });
  const frame = await openDetails(app, /Response body/);
  t.match(
    frame,
    /Request body · application\/x-www-form-urlencoded · 43 B · form ─+\ntoken = abc\ntext = hello world!\nuser_name = ann/,
  );
  t.match(frame, /Response body · text\/plain · 18 B ─+\nline one\nline two/);
});

t.test('binary bodies as a hex dump with the size', async (t) => {
  const { store } = makeStore();
  ready(store);
  const png = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    Buffer.alloc(24, 0),
  ]);
  exchange(store, 1, {
    url: '/logo.png',
    status: 200,
    responseHeaders: [['Content-Type', 'image/png']],
    responseBody: png,
  });
  const app = renderApp(t, { store, height: 40, width: 100 });
  const frame = await openDetails(app, /binary/);
  t.match(frame, /Response body · image\/png · 32 B · binary/);
  t.match(
    frame,
    /00000000 {2}89 50 4e 47 0d 0a 1a 0a {2}00 00 00 00 00 00 00 00 {2}\|\.PNG\.\.\.\.\.\.\.\.\.\.\.\.\|/,
  );
  t.match(frame, /00000010 {2}00 00/);
  t.match(frame, /Request body · no body/);
});

t.test('a truncated preview says how much is shown; scrolling moves through it', async (t) => {
  const { store } = makeStore();
  ready(store);
  const lines = Array.from({ length: 200 }, (_, i) => `line ${i + 1}`).join('\n');
  exchange(store, 1, {
    url: '/big',
    status: 200,
    responseHeaders: [['Content-Type', 'text/plain']],
    responseBody: lines,
    limit: 1024,
  });
  const app = renderApp(t, { store, height: 20 });
  let frame = await openDetails(app, /Response body/);
  t.match(frame, /Response body · text\/plain · 1\.7 KiB · first 1\.0 KiB shown/);
  t.notMatch(frame, /line 150/);
  await app.press('G');
  frame = await app.frame(/line 1\d\d\b/);
  t.notMatch(frame, /#1 {2}GET/, 'the title scrolled away');
  t.notMatch(frame, /line 150/, 'only the kept bytes');
  await app.press('g');
  t.match(await app.frame(/#1 {2}GET/), /#1 {2}GET \/big/);
});

t.test('gzip bodies are decoded; control characters never reach the terminal', async (t) => {
  const { store } = makeStore();
  ready(store);
  exchange(store, 1, {
    url: '/gz',
    status: 200,
    responseHeaders: [
      ['Content-Type', 'application/json'],
      ['Content-Encoding', 'gzip'],
    ],
    responseBody: zlib.gzipSync('{"zipped":"yes \\u001b[31m"}'),
  });
  const app = renderApp(t, { store, height: 30 });
  const frame = await openDetails(app, /zipped/);
  t.match(frame, /gzip, decoded · JSON/);
  t.match(frame, /"zipped": "yes \\u001b\[31m"/, 'JSON escapes the control character');
  t.notOk(frame.includes('\u001b[31m'));
});

t.test('←/→ step through requests in the details view', async (t) => {
  const { store } = makeStore();
  ready(store);
  for (let i = 1; i <= 3; i++) exchange(store, i, { url: `/step${i}`, status: 200 });
  const app = renderApp(t, { store });
  await openDetails(app, /#3 {2}GET \/step3/);
  await app.press(KEYS.left, KEYS.left);
  t.match(await app.frame(/#1 {2}GET/), /#1 {2}GET \/step1/, 'two presses in a row both count');
  await app.press(KEYS.right);
  t.match(await app.frame(/#2 {2}GET/), /#2 {2}GET \/step2/);
});

t.test('WebSocket details: open state and counts; errors in red words', async (t) => {
  const { store } = makeStore();
  ready(store);
  exchange(store, 1, {
    url: '/down',
    status: 502,
    error: 'nothing is listening on localhost:3000 (ECONNREFUSED)',
  });
  const app = renderApp(t, { store });
  const frame = await openDetails(app, /error:/);
  t.match(frame, /error: nothing is listening on localhost:3000 \(ECONNREFUSED\)/);
});

t.test('viewBody: kinds and summaries', async (t) => {
  const body = (s: string | Buffer): BodyPreview => {
    const p = new BodyPreview(64);
    p.add(Buffer.from(s));
    return p;
  };
  t.equal(viewBody(new BodyPreview(), [], 80).kind, 'none');
  t.equal(viewBody(body('{"a":1}'), [], 80).kind, 'json', 'JSON sniffed without a type');
  t.equal(
    viewBody(body('{"a":'), [['content-type', 'application/json']], 80).kind,
    'text',
    'broken JSON as text',
  );
  t.equal(viewBody(body(Buffer.from([0, 1, 2])), [], 80).kind, 'binary');
  const cut = body('é'.repeat(40)); // 80 bytes, cut inside a character at 64
  const view = viewBody(cut, [['content-type', 'text/plain']], 80);
  t.equal(view.kind, 'text', 'a character cut by the limit does not make it binary');
  t.match(view.summary, /80 B · first 64 B shown/);
  const released = body('x');
  released.release();
  t.match(viewBody(released, [], 80).summary, /preview dropped to keep memory bounded/);
  t.equal(
    viewBody(body(Buffer.alloc(20, 7)), [], 40).lines[0],
    '00000000  07 07 07 07 07 07 07 07  |........|',
    '8 bytes a line when narrow',
  );
});
