import t from 'tap';
import { WebSocketFrameCounter } from '../../cli/origin/capture.js';
import { makeCapture, makeStore, exchange, ready, renderApp } from '../helpers/tui.js';

t.test('many rows: the newest fill the list, newest at the bottom', async (t) => {
  const { store } = makeStore();
  ready(store);
  for (let i = 1; i <= 1500; i++) exchange(store, i, { url: `/item/${i}`, durationMs: 7 });
  t.equal(store.rowCount, 1000, 'history bounded to 1000 rows');
  t.equal(store.rowAt(0)?.id, 501, 'the oldest were dropped');
  const app = renderApp(t, { store, height: 30, width: 100 });
  const frame = await app.frame(/item\/1500/);
  const lines = frame.split('\n');
  t.equal(lines.length, 30, 'exactly the terminal height');
  t.match(
    lines[lines.length - 2],
    /GET\s+\/item\/1500\s+200\s+7 ms\s+0 B/,
    'newest just above the footer',
  );
  t.match(frame, /Requests\s+1500 total/);
  const shown = lines.filter((l) => /\/item\/\d+/.test(l)).length;
  t.equal(shown, 30 - 4 - 1 - 1, 'every line between header (4) and footer is a row');
  t.match(
    lines[lines.length - 1],
    /↑↓ select\s+⏎ details\s+r replay\s+p curl\s+o QR\s+c clear\s+q quit/,
  );
});

t.test('columns: time, method, path, status, duration, size; status and errors', async (t) => {
  const { store } = makeStore();
  ready(store);
  exchange(store, 1, {
    method: 'POST',
    url: '/hooks/stripe',
    status: 201,
    responseBody: 'x'.repeat(2048),
  });
  exchange(store, 2, { url: '/missing', status: 404 });
  exchange(store, 3, {
    url: '/boom',
    status: 502,
    error: 'nothing is listening on localhost:3000',
  });
  const app = renderApp(t, { store, width: 100 });
  const frame = await app.frame(/boom/);
  t.match(frame, /TIME\s+METHOD\s+PATH\s+STAT\s+DURATION\s+SIZE/);
  t.match(frame, /03:04:05 POST\s+\/hooks\/stripe\s+201\s+5 ms\s+2\.0 KiB/);
  t.match(frame, /GET\s+\/missing\s+404/);
  t.match(frame, /GET\s+\/boom\s+502/);
});

t.test(
  'open requests show their running time; a long path is shortened in the middle',
  async (t) => {
    const { store, clock } = makeStore();
    ready(store);
    const long = `/api/v1/customers/${'a'.repeat(80)}/orders?expand=items&limit=100`;
    store.onEvent({
      event: 'request-start',
      id: 1,
      method: 'GET',
      path: long,
      upgrade: false,
    });
    clock.advance(1_500);
    const app = renderApp(t, { store, width: 80 });
    const frame = await app.frame(/limit=100/);
    const row = frame.split('\n').find((l) => l.includes('/api/v1/customers'))!;
    t.match(row, /\/api\/v1\/customers\/a+…[a-z&=]*limit=100 /, 'both ends kept');
    t.match(row, /…\s+1\.50 s/, 'open: status … and the time so far');
    t.ok(row.length <= 80, 'fits the width');
    t.match(frame, /1 open/);
  },
);

t.test('narrow terminals drop the size, time and duration columns', async (t) => {
  const { store } = makeStore();
  ready(store);
  exchange(store, 1, { url: '/narrow', responseBody: 'abc' });
  const wide = renderApp(t, { store, width: 100 });
  t.match(await wide.frame(/narrow/), /03:04:05 GET\s+\/narrow\s+200\s+5 ms\s+3 B/);
  const mid = renderApp(t, { store, width: 50 });
  const midRow = (await mid.frame(/narrow/)).split('\n').find((l) => l.includes('/narrow'))!;
  t.notMatch(midRow, /03:04:05|3 B/);
  t.match(midRow, /GET\s+\/narrow\s+200\s+5 ms/);
  const tiny = renderApp(t, { store, width: 30 });
  const tinyRow = (await tiny.frame(/narrow/)).split('\n').find((l) => l.includes('/narrow'))!;
  t.match(tinyRow, /GET\s+\/narrow\s+200$/);
});

t.test('a WebSocket is one row that stays open with message counts', async (t) => {
  const { store } = makeStore();
  ready(store);
  const capture = makeCapture({ url: '/chat', headers: [['Upgrade', 'websocket']], status: 101 });
  capture.finishedAt = undefined;
  const toOrigin = new WebSocketFrameCounter();
  const toVisitor = new WebSocketFrameCounter();
  capture.upgraded = { toOrigin, toVisitor };
  store.onEvent({
    event: 'request-start',
    id: 1,
    method: 'GET',
    path: '/chat',
    upgrade: true,
    capture,
  });
  // Three masked text frames from the visitor, one unmasked from the app.
  const masked = Buffer.from([0x81, 0x82, 1, 2, 3, 4, 0x68 ^ 1, 0x69 ^ 2]);
  toOrigin.push(Buffer.concat([masked, masked, masked]));
  toVisitor.push(Buffer.from([0x81, 0x02, 0x68, 0x69]));
  const app = renderApp(t, { store, width: 100 });
  t.match(await app.frame(/chat/), /GET\s+\/chat ⇄ 3 in · 1 out msgs · open\s+101/);
  toVisitor.push(Buffer.from([0x82, 0x00]));
  store.onEvent({
    event: 'request',
    id: 1,
    method: 'GET',
    path: '/chat',
    status: 101,
    durationMs: 65_000,
    bytesIn: 24,
    bytesOut: 6,
    upgrade: true,
    capture,
  });
  const frame = await app.frame(/2 out/);
  t.match(frame, /\/chat ⇄ 3 in · 2 out msgs\s+101\s+1m 05s\s+6 B/);
  t.notMatch(frame, /· open/);
  t.equal(store.rowCount, 1, 'still one row');
});

t.test('replay rows are marked with the request they replay', async (t) => {
  const { store } = makeStore();
  ready(store);
  exchange(store, 7, { url: '/again' });
  const key = store.startReplay(store.rowAt(0)!);
  store.finishReplay(key, {
    capture: makeCapture({ url: '/again', status: 200 }),
    status: 200,
    durationMs: 3,
    bytesIn: 0,
    bytesOut: 2,
  });
  const app = renderApp(t, { store });
  t.match(await app.frame(/↻/), /GET\s+↻#7 \/again\s+200\s+3 ms\s+2 B/);
});

t.test('paths with control characters are printed harmlessly', async (t) => {
  const { store } = makeStore();
  ready(store);
  exchange(store, 1, { url: '/evil\u001b[2J\u0007' });
  const app = renderApp(t, { store });
  const frame = await app.frame(/evil/);
  t.match(frame, /\/evil·\[2J·/);
  t.notOk(frame.includes('\u001b[2J'));
});
