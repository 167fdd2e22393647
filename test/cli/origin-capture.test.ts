/**
 * The origin proxy's capture option: heads and capped body previews taken as the bytes
 * stream past, without holding the stream back; WebSocket message counts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { WebSocketServer } from 'ws';
import type { OriginEvent, RequestEvent, RequestStartEvent } from '../../cli/events.js';
import { OriginProxy, type OriginProxyOptions } from '../../cli/origin/proxy.js';
import { parseTarget } from '../../cli/origin/target.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import type { RequestHead } from '../../shared/protocol/tunnel.js';
import { muxPair } from '../helpers/mux-pair.js';

async function origin(t: Test, handler: http.RequestListener): Promise<http.Server> {
  const server = http.createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return server;
}

async function rig(t: Test, server: http.Server, options: Partial<OriginProxyOptions> = {}) {
  const port = (server.address() as AddressInfo).port;
  const pair = await muxPair('memory');
  const events: OriginEvent[] = [];
  const emitter = new EventEmitter();
  const proxy = new OriginProxy({
    target: parseTarget(`127.0.0.1:${port}`),
    ...options,
    onEvent: (e) => {
      events.push(e);
      emitter.emit('event', e);
    },
  });
  pair.client.on('stream', (s: MuxStream) => proxy.handle(s));
  t.teardown(async () => {
    proxy.close();
    await pair.close();
  });
  const finished = (path: string): Promise<RequestEvent> => {
    const match = (e: OriginEvent): e is RequestEvent => e.event === 'request' && e.path === path;
    const seen = events.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const on = (e: OriginEvent): void => {
        if (!match(e)) return;
        emitter.off('event', on);
        resolve(e);
      };
      emitter.on('event', on);
    });
  };
  // Streams the test leaves open end with the session: that is not an error here.
  const open = (h: RequestHead): MuxStream => {
    const stream = pair.server.openStream({ ...h });
    stream.on('error', () => {});
    return stream;
  };
  return { open, events, finished };
}

function head(over: Partial<RequestHead> = {}): RequestHead {
  return {
    method: 'GET',
    url: '/',
    httpVersion: '1.1',
    headers: [['Host', 'demo.qt.localhost']],
    upgrade: false,
    remoteAddress: '203.0.113.7',
    scheme: 'https',
    ...over,
  };
}

async function collect(s: MuxStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  await once(s, 'end');
  return Buffer.concat(chunks);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

t.test('no capture unless asked', async (t) => {
  const server = await origin(t, (_req, res) => res.end('ok'));
  const { open, finished } = await rig(t, server);
  const s = open(head({ url: '/plain' }));
  s.end();
  await collect(s);
  t.equal((await finished('/plain')).capture, undefined);
});

t.test('heads and capped body previews; the bodies themselves pass whole', async (t) => {
  const requestBody = randomBytes(100 * 1024);
  const responseBody = randomBytes(200 * 1024);
  let originGot = '';
  const server = await origin(t, (req, res) => {
    const h = createHash('sha256');
    req.on('data', (c: Buffer) => h.update(c));
    req.on('end', () => {
      originGot = h.digest('hex');
      res.setHeader('Content-Type', 'application/octet-stream');
      res.setHeader('X-Origin', 'yes');
      res.end(responseBody);
    });
  });
  const { open, finished, events } = await rig(t, server, {
    capture: true,
    hostHeader: 'rewrite',
  });
  const s = open(
    head({
      method: 'POST',
      url: '/upload?x=1',
      headers: [
        ['Host', 'demo.qt.localhost'],
        ['Content-Length', String(requestBody.length)],
        ['X-Forwarded-For', '203.0.113.7'],
      ],
    }),
  );
  const received = collect(s);
  s.end(requestBody);
  t.equal(sha(await received), sha(responseBody), 'the visitor got the whole response');
  t.equal(originGot, sha(requestBody), 'the origin got the whole request');
  const end = await finished('/upload?x=1');
  const start = events.find((e): e is RequestStartEvent => e.event === 'request-start')!;
  const cap = end.capture!;
  t.equal(start.capture, cap, 'the start carries the same live capture');
  t.match(cap.request, {
    method: 'POST',
    url: '/upload?x=1',
    remoteAddress: '203.0.113.7',
    scheme: 'https',
  });
  const host = cap.request.headers.find(([k]) => k.toLowerCase() === 'host')?.[1];
  t.match(host, /^127\.0\.0\.1:\d+$/, 'headers as the origin got them (Host rewritten)');
  t.equal(cap.requestBody.capturedBytes, 64 * 1024);
  t.equal(cap.requestBody.totalBytes, requestBody.length);
  t.same(cap.requestBody.bytes(), requestBody.subarray(0, 64 * 1024));
  t.equal(cap.response?.status, 200);
  t.ok(cap.response?.headers.some(([k, v]) => k === 'X-Origin' && v === 'yes'));
  t.equal(cap.responseBody.totalBytes, responseBody.length);
  t.same(cap.responseBody.bytes(), responseBody.subarray(0, 64 * 1024));
  t.ok(cap.finishedAt !== undefined);
});

t.test('capturing does not hold the response back (streams as it comes)', async (t) => {
  const release = new EventEmitter();
  const server = await origin(t, (_req, res) => {
    res.setHeader('Content-Type', 'text/event-stream');
    res.write('data: first\n\n');
    release.once('go', () => res.end('data: last\n\n'));
  });
  const { open, finished } = await rig(t, server, { capture: { bodyLimitBytes: 8 } });
  const s = open(head({ url: '/events' }));
  s.end();
  const [first] = (await once(s, 'data')) as [Buffer];
  t.equal(first.toString(), 'data: first\n\n', 'the first event arrives before the origin ends');
  const rest = collect(s);
  release.emit('go');
  t.equal((await rest).toString(), 'data: last\n\n');
  const cap = (await finished('/events')).capture!;
  t.equal(cap.responseBody.bytes().toString(), 'data: fi', 'preview capped at 8 bytes');
  t.equal(cap.responseBody.totalBytes, 25);
});

t.test('WebSocket: one capture, message counts both ways', async (t) => {
  const server = http.createServer();
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => {
    ws.send('welcome');
    ws.on('message', (data) => ws.send(data));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    server.close();
  });
  const { open, finished, events } = await rig(t, server, { capture: true });
  const s = open(
    head({
      url: '/ws',
      upgrade: true,
      headers: [
        ['Host', 'demo.qt.localhost'],
        ['Upgrade', 'websocket'],
        ['Connection', 'Upgrade'],
        ['Sec-WebSocket-Key', randomBytes(16).toString('base64')],
        ['Sec-WebSocket-Version', '13'],
      ],
    }),
  );
  await once(s, 'reply');
  const frame = (text: string): Buffer => {
    const payload = Buffer.from(text);
    const mask = randomBytes(4);
    const out = Buffer.alloc(6 + payload.length);
    out[0] = 0x81;
    out[1] = 0x80 | payload.length;
    mask.copy(out, 2);
    for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i]! ^ mask[i % 4]!;
    return out;
  };
  const start = events.find((e): e is RequestStartEvent => e.event === 'request-start')!;
  const cap = start.capture!;
  // welcome + 3 echoes = 4 frames of 2 + n bytes.
  const expectBytes = 2 + 7 + 3 * (2 + 3);
  let got = 0;
  const allIn = new Promise<void>((resolve) => {
    s.on('data', (c: Buffer) => {
      got += c.length;
      if (got >= expectBytes) resolve();
    });
  });
  s.write(Buffer.concat([frame('one'), frame('two')]));
  s.write(frame('thr'));
  await allIn;
  t.equal(cap.upgraded?.toOrigin.messages, 3, 'visitor → app');
  t.equal(cap.upgraded?.toVisitor.messages, 4, 'app → visitor');
  t.equal(cap.finishedAt, undefined, 'still open');
  s.end();
  const end = await finished('/ws');
  t.equal(end.capture, cap);
  t.equal(end.status, 101);
  t.ok(cap.finishedAt !== undefined);
});
