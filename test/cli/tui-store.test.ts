import { execFileSync } from 'node:child_process';
import t from 'tap';
import { BodyPreview, WebSocketFrameCounter } from '../../cli/origin/capture.js';
import { replayRefusal } from '../../cli/origin/replay.js';
import { shellQuote, toCurl } from '../../cli/ui/tui/curl.js';
import { shortenMiddle } from '../../cli/ui/tui/format.js';
import { exchange, makeCapture, makeStore, ready } from '../helpers/tui.js';

t.test('history and body previews stay bounded over a long session', async (t) => {
  const { store } = makeStore({ maxRows: 100, maxBodyBytes: 1024 * 1024 });
  ready(store);
  const body = Buffer.alloc(64 * 1024, 1);
  for (let i = 1; i <= 2000; i++) {
    exchange(store, i, { method: 'POST', body, status: 200, responseBody: body });
  }
  t.equal(store.rowCount, 100);
  t.ok(store.bodyBytesRetained <= 1024 * 1024, `retained ${store.bodyBytesRetained} ≤ 1 MiB`);
  let sum = 0;
  for (let i = 0; i < store.rowCount; i++) sum += store.rowAt(i)!.capture!.retainedBytes;
  t.equal(sum, store.bodyBytesRetained, 'the accounting matches what rows hold');
  const newest = store.rowAt(store.rowCount - 1)!.capture!;
  t.equal(newest.responseBody.capturedBytes, 64 * 1024, 'the newest keep their previews');
  const oldest = store.rowAt(0)!.capture!;
  t.ok(oldest.responseBody.released, 'the oldest lost theirs');
  t.equal(oldest.responseBody.totalBytes, 64 * 1024, 'but keep their sizes');
  t.equal(store.totals().total, 2000);
});

t.test('rates over 1 and 5 minutes, percentiles without WebSockets', async (t) => {
  const { store, clock } = makeStore();
  ready(store);
  // 120 requests a minute for 5 minutes, then a quiet minute.
  for (let s = 0; s < 300; s++) {
    exchange(store, s * 2 + 1, { durationMs: 10 });
    exchange(store, s * 2 + 2, { durationMs: 30 });
    clock.advance(1000);
  }
  let totals = store.totals();
  t.equal(Math.round(totals.rate1m * 10) / 10, 2, '2/s over the last minute');
  t.equal(Math.round(totals.rate5m * 10) / 10, 2, '2/s over 5 minutes');
  t.equal(totals.p50Ms, 10);
  t.equal(totals.p90Ms, 30);
  clock.advance(60_000);
  totals = store.totals();
  t.equal(totals.rate1m, 0, 'nothing in the last minute');
  t.ok(totals.rate5m > 1.5 && totals.rate5m < 1.7, `5m rate decays (${totals.rate5m})`);
  store.onEvent({
    event: 'request-start',
    id: 9999,
    method: 'GET',
    path: '/ws',
    upgrade: true,
  });
  store.onEvent({
    event: 'request',
    id: 9999,
    method: 'GET',
    path: '/ws',
    status: 101,
    durationMs: 3_600_000,
    bytesIn: 0,
    bytesOut: 0,
    upgrade: true,
  });
  t.equal(store.totals().p90Ms, 30, 'a long WebSocket does not skew p90');
});

t.test('a request whose events come twice is one row', async (t) => {
  const { store } = makeStore();
  ready(store);
  store.onEvent({ event: 'request-start', id: 1, method: 'GET', path: '/x', upgrade: false });
  store.onEvent({ event: 'request-start', id: 1, method: 'GET', path: '/x', upgrade: false });
  const end = {
    id: 1,
    method: 'GET',
    path: '/x',
    status: 200,
    durationMs: 1,
    bytesIn: 0,
    bytesOut: 0,
    upgrade: false,
  };
  store.onEvent({ event: 'request', ...end });
  store.onEvent({ event: 'request', ...end });
  t.equal(store.rowCount, 1);
  t.equal(store.totals().total, 1);
});

t.test('BodyPreview keeps a copy of the first bytes only', async (t) => {
  const p = new BodyPreview(10);
  const chunk = Buffer.from('abcdef');
  p.add(chunk);
  chunk.fill(0x7a); // the caller reuses its buffer
  p.add(Buffer.from('ghijkl'));
  t.equal(p.bytes().toString(), 'abcdefghij');
  t.equal(p.totalBytes, 12);
  t.ok(p.truncated);
  p.release();
  t.equal(p.bytes().length, 0);
  t.equal(p.totalBytes, 12);
});

t.test('WebSocketFrameCounter: messages across any chunk split', async (t) => {
  const frame = (b0: number, payload: Buffer, mask = true): Buffer => {
    const len = payload.length;
    const ext =
      len < 126
        ? Buffer.from([(mask ? 0x80 : 0) | len])
        : len < 65536
          ? Buffer.from([(mask ? 0x80 : 0) | 126, len >> 8, len & 0xff])
          : Buffer.concat([
              Buffer.from([(mask ? 0x80 : 0) | 127]),
              (() => {
                const b = Buffer.alloc(8);
                b.writeBigUInt64BE(BigInt(len));
                return b;
              })(),
            ]);
    return Buffer.concat([
      Buffer.from([b0]),
      ext,
      mask ? Buffer.from([1, 2, 3, 4]) : Buffer.alloc(0),
      payload,
    ]);
  };
  const stream = Buffer.concat([
    frame(0x81, Buffer.from('hi')), // text, FIN
    frame(0x89, Buffer.alloc(0)), // ping: not a message
    frame(0x02, Buffer.alloc(300, 1)), // binary, not FIN (16-bit length)
    frame(0x80, Buffer.alloc(70_000, 2)), // continuation, FIN (64-bit length): 1 message
    frame(0x8a, Buffer.from('pong')), // pong
    frame(0x82, Buffer.alloc(0), false), // empty binary message, unmasked
  ]);
  for (const size of [1, 2, 3, 7, 125, 4096, stream.length]) {
    const c = new WebSocketFrameCounter();
    for (let i = 0; i < stream.length; i += size) c.push(stream.subarray(i, i + size));
    t.equal(c.messages, 3, `3 messages with ${size}-byte chunks`);
    t.equal(c.bytes, stream.length);
    t.ok(c.valid);
  }
  const bad = new WebSocketFrameCounter();
  bad.push(Buffer.from('HTTP/1.1 200 OK\r\n'));
  t.notOk(bad.valid, 'not WebSocket frames: counting stops');
});

t.test('curl: quoting, methods, binary bodies through printf', async (t) => {
  t.equal(shellQuote('/plain/path'), '/plain/path');
  t.equal(shellQuote("it's"), "'it'\\''s'");
  const head = toCurl(makeCapture({ method: 'HEAD', url: '/h' }), 'https://x.qt.localhost');
  t.equal(head.command, 'curl --head https://x.qt.localhost/h');
  const get = toCurl(makeCapture({ url: '/a b' }), 'http://x.localhost:8080');
  t.equal(get.command, "curl 'http://x.localhost:8080/a b'");
  const bin = toCurl(
    makeCapture({
      method: 'POST',
      url: '/bin',
      body: Buffer.from([0, 0x25, 0x27, 0x5c, 0x41, 0xff]),
    }),
    'https://x.qt.localhost',
  );
  t.equal(
    bin.command,
    "printf '\\000\\045\\047\\134A\\377' | curl https://x.qt.localhost/bin \\\n  --data-binary @-",
  );
  // The printf part produces the exact bytes.
  const printf = bin.command.slice(0, bin.command.indexOf(' | '));
  const out = execFileSync('sh', ['-c', printf]);
  t.same([...out], [0, 0x25, 0x27, 0x5c, 0x41, 0xff]);
  const cut = toCurl(makeCapture({ method: 'POST', body: 'x'.repeat(20), limit: 8 }), 'https://x');
  t.match(cut.notes[0], /only the first 8 of 20 body bytes/);
});

t.test('replayRefusal names what cannot be replayed', async (t) => {
  t.equal(replayRefusal(makeCapture({ method: 'POST', body: 'ok' })), undefined);
  t.match(replayRefusal(makeCapture({ headers: [['Upgrade', 'websocket']] })), /WebSocket/);
  t.match(
    replayRefusal(makeCapture({ body: 'x'.repeat(20), limit: 4 })),
    /larger than the 4 bytes kept/,
  );
});

t.test('shortenMiddle keeps both ends', async (t) => {
  t.equal(shortenMiddle('/abcdefghij', 20), '/abcdefghij');
  t.equal(shortenMiddle('/abcdefghijklmnopqrstuvwxyz', 11), '/abcde…wxyz');
  t.equal(shortenMiddle('/abc', 2), '/…');
});
