import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { WebSocketServer } from 'ws';
import type { OriginEvent, RequestEvent } from '../../cli/events.js';
import {
  OriginProxy,
  REPLAY_LIMIT_BYTES,
  type OriginProxyOptions,
} from '../../cli/origin/proxy.js';
import { parseTarget } from '../../cli/origin/target.js';
import { generateCertificate } from '../../relay/edge/certificate.js';
import { StreamResetError } from '../../shared/errors.js';
import type { MuxSession } from '../../shared/mux/session.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import type { HeaderPairs, RequestHead, ResponseHead } from '../../shared/protocol/tunnel.js';
import { muxPair } from '../helpers/mux-pair.js';

const VISITOR_HOST = 'demo.qt.localhost';

// ---- helpers ------------------------------------------------------------------------

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** Listens on `host` port 0, closes (connections included) with the test. */
async function listen(t: Test, server: net.Server, host = '127.0.0.1'): Promise<number> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('secureConnection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.listen(0, host);
  await once(server, 'listening');
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    if (server.listening) await new Promise((resolve) => server.close(resolve));
  });
  return (server.address() as net.AddressInfo).port;
}

async function origin(t: Test, handler: Handler, host = '127.0.0.1') {
  const server = http.createServer(handler);
  const port = await listen(t, server, host);
  return { server, port };
}

interface Rig {
  proxy: OriginProxy;
  relay: MuxSession;
  events: OriginEvent[];
  /** Resolves with the first event (already seen or future) that matches. */
  waitFor<E extends OriginEvent>(match: (e: OriginEvent) => e is E): Promise<E>;
  requestEvent(path: string): Promise<RequestEvent>;
}

async function rig(t: Test, target: string, options: Partial<OriginProxyOptions> = {}) {
  const pair = await muxPair('memory');
  const events: OriginEvent[] = [];
  const emitter = new EventEmitter();
  const proxy = new OriginProxy({
    target: parseTarget(target),
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
  const waitFor = <E extends OriginEvent>(match: (e: OriginEvent) => e is E): Promise<E> => {
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
  const r: Rig = {
    proxy,
    relay: pair.server,
    events,
    waitFor,
    requestEvent: (path) =>
      waitFor((e): e is RequestEvent => e.event === 'request' && e.path === path),
  };
  return r;
}

function head(over: Partial<RequestHead> = {}): RequestHead {
  return {
    method: 'GET',
    url: '/',
    httpVersion: '1.1',
    headers: [['Host', VISITOR_HOST]],
    upgrade: false,
    remoteAddress: '203.0.113.7',
    scheme: 'https',
    ...over,
  };
}

/** A request head with a body of `length` bytes announced by Content-Length. */
function headWithLength(method: string, url: string, length: number): RequestHead {
  return head({
    method,
    url,
    headers: [
      ['Host', VISITOR_HOST],
      ['Content-Length', String(length)],
    ],
  });
}

/**
 * Writes `total` bytes, `pieceAt(offset)` at a time, with backpressure as a file stream
 * would; `onWritten` sees the running total as each piece is handed to `res`.
 */
function writeInPieces(
  res: http.ServerResponse,
  total: number,
  pieceAt: (offset: number) => Buffer,
  onWritten?: (bytes: number) => void,
): void {
  let offset = 0;
  const write = (): void => {
    while (offset < total) {
      const piece = pieceAt(offset);
      offset += piece.length;
      onWritten?.(offset);
      if (!res.write(piece)) {
        res.once('drain', write);
        return;
      }
    }
    res.end();
  };
  write();
}

/** Opens a stream as the relay would; the stream stays open until the caller ends it. */
function open(relay: MuxSession, h: RequestHead): MuxStream {
  return relay.openStream({ ...h });
}

/** Reads a stream to its end; rejects if it is reset instead. */
async function collect(s: MuxStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  await once(s, 'end');
  return Buffer.concat(chunks);
}

async function send(
  relay: MuxSession,
  h: RequestHead,
  body?: Buffer | string,
): Promise<{ reply: ResponseHead; body: Buffer }> {
  const s = open(relay, h);
  const done = collect(s);
  if (body === undefined) s.end();
  else s.end(body);
  const data = await done;
  return { reply: s.replyMeta as unknown as ResponseHead, body: data };
}

function header(pairs: HeaderPairs, name: string): string[] {
  return pairs.filter(([k]) => k.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** Echoes method, url, raw headers and the body's length and hash as JSON. */
const echo: Handler = (req, res) => {
  const hash = createHash('sha256');
  let length = 0;
  req.on('data', (c: Buffer) => {
    hash.update(c);
    length += c.length;
  });
  req.on('end', () => {
    const json = JSON.stringify({
      method: req.method,
      url: req.url,
      rawHeaders: req.rawHeaders,
      length,
      sha256: hash.digest('hex'),
    });
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('Content-Length', Buffer.byteLength(json));
    res.end(req.method === 'HEAD' ? undefined : json);
  });
};

interface Echoed {
  method: string;
  url: string;
  rawHeaders: string[];
  length: number;
  sha256: string;
}

function echoed(body: Buffer): Echoed {
  return JSON.parse(body.toString()) as Echoed;
}

// ---- plain HTTP ---------------------------------------------------------------------

t.test('methods, query strings and bodies reach the origin', async (t) => {
  const { port } = await origin(t, echo);
  const { relay } = await rig(t, `127.0.0.1:${port}`);
  const url = '/search?q=a%20b&x=1&x=2&empty=&utf=%C3%A9';
  for (const method of ['GET', 'DELETE', 'OPTIONS']) {
    const { reply, body } = await send(relay, head({ method, url }));
    t.equal(reply.status, 200, method);
    t.match(echoed(body), { method, url, length: 0 }, method);
  }
  for (const method of ['POST', 'PUT', 'PATCH']) {
    const payload = `payload of ${method}`;
    const h = headWithLength(method, url, payload.length);
    const { reply, body } = await send(relay, h, payload);
    t.equal(reply.status, 200, method);
    t.match(echoed(body), { method, url, length: payload.length }, method);
  }
  // No Content-Length (the visitor sent chunked; the relay dropped Transfer-Encoding).
  const chunked = await send(relay, head({ method: 'POST', url: '/c' }), 'chunked body');
  t.match(echoed(chunked.body), { method: 'POST', length: 12 });
  // Even a method Node sends without framing by default keeps its body.
  const del = await send(relay, head({ method: 'DELETE', url: '/d' }), 'delete body');
  t.match(echoed(del.body), { method: 'DELETE', length: 11 });

  const headRes = await send(relay, head({ method: 'HEAD', url }));
  t.equal(headRes.reply.status, 200);
  t.equal(headRes.body.length, 0, 'HEAD has no body');
  t.ok(Number(header(headRes.reply.headers, 'content-length')[0]) > 0, 'but keeps its length');
});

t.test('requests with and without a body share one keep-alive connection', async (t) => {
  const { server, port } = await origin(t, echo);
  let connections = 0;
  server.on('connection', () => connections++);
  const { relay } = await rig(t, `127.0.0.1:${port}`);
  const lengths: number[] = [];
  for (const body of ['', '{"a":1}', 'chunked, no length', '', 'x'.repeat(200_000)]) {
    const h =
      body === 'chunked, no length'
        ? head({ method: 'PUT', url: '/c' })
        : headWithLength('POST', '/hook', body.length);
    const { reply, body: got } = await send(relay, h, body);
    t.equal(reply.status, 200);
    lengths.push(echoed(got).length);
    lengths.push(echoed((await send(relay, head({ url: '/get' }))).body).length);
  }
  t.same(lengths, [0, 0, 7, 0, 18, 0, 0, 0, 200_000, 0], 'every body arrived whole');
  t.equal(connections, 1, 'ten requests, one connection');
});

for (const close of [false, true]) {
  t.test(
    `an origin that answers before reading the body${close ? ' and closes' : ''}: the rest is dropped`,
    async (t) => {
      let connections = 0;
      const { server, port } = await origin(t, (req, res) => {
        if (req.url === '/upload') {
          // Answers at once without reading the 8 MiB body. Node then drains it, or with
          // Connection: close closes the connection with the body unread (a reset, which
          // our next body write runs into before the answer is read).
          const headers = { 'Content-Length': '8', ...(close ? { Connection: 'close' } : {}) };
          res.writeHead(413, headers).end('too big\n');
          return;
        }
        echo(req, res);
      });
      server.on('connection', () => connections++);
      const { relay, requestEvent } = await rig(t, `127.0.0.1:${port}`);
      const total = 8 * 1024 * 1024;
      const s = open(relay, headWithLength('POST', '/upload', total));
      const body = collect(s);
      let sent = 0;
      const chunk = Buffer.alloc(64 * 1024, 0x62);
      const pump = (): void => {
        while (sent < total) {
          sent += chunk.length;
          if (sent >= total) {
            s.end(chunk);
            return;
          }
          if (!s.write(chunk)) {
            s.once('drain', pump);
            return;
          }
        }
      };
      pump();
      t.equal((await body).toString(), 'too big\n');
      t.equal((s.replyMeta as unknown as ResponseHead).status, 413);
      const event = await requestEvent('/upload');
      t.equal(event.status, 413);
      t.equal(event.error, undefined, 'a complete answer, not a failure');
      t.equal(sent, total, 'the visitor could send its whole body (drained into nothing)');
      const next = await send(relay, head({ url: '/next' }));
      t.equal(echoed(next.body).url, '/next', 'the next request is served');
      t.equal(connections, 2, 'on a new connection');
    },
  );
}

t.test('204 and 304 end cleanly', async (t) => {
  const { port } = await origin(t, (req, res) => {
    if (req.url === '/204') res.writeHead(204, { 'X-Kind': 'no-content' }).end();
    else res.writeHead(304, { ETag: '"v1"' }).end();
  });
  const { relay, requestEvent } = await rig(t, `127.0.0.1:${port}`);
  const a = await send(relay, head({ url: '/204' }));
  t.equal(a.reply.status, 204);
  t.same(header(a.reply.headers, 'x-kind'), ['no-content']);
  t.equal(a.body.length, 0);
  const b = await send(
    relay,
    head({
      url: '/304',
      headers: [
        ['Host', VISITOR_HOST],
        ['If-None-Match', '"v1"'],
      ],
    }),
  );
  t.equal(b.reply.status, 304);
  t.same(header(b.reply.headers, 'etag'), ['"v1"']);
  t.equal(b.body.length, 0);
  t.notOk((await requestEvent('/304')).error);
});

t.test('header order, case, repeats and latin1 bytes survive both ways', async (t) => {
  let seen: string[] = [];
  const { port } = await origin(t, (req, res) => {
    seen = req.rawHeaders;
    res.setHeader('Set-Cookie', ['a=1; Path=/', 'b=2; HttpOnly', 'c=3']);
    res.setHeader('X-Latin', 'caf\u00e9 \u00ff');
    res.statusMessage = 'Fine Thanks';
    // A Buffer body: with a string body Node writes the head in UTF-8, not latin1.
    res.end(Buffer.from('ok'));
  });
  const { relay } = await rig(t, `127.0.0.1:${port}`);
  const { reply } = await send(
    relay,
    head({
      headers: [
        ['Host', VISITOR_HOST],
        ['X-Multi', 'one'],
        ['accept', '*/*'],
        ['x-multi', 'two'],
        ['X-Latin', 'na\u00efve \u00e9t\u00e9'],
        ['X-Forwarded-For', '203.0.113.7'],
      ],
    }),
  );
  const pairs: HeaderPairs = [];
  for (let i = 0; i < seen.length; i += 2) pairs.push([seen[i]!, seen[i + 1]!]);
  const relevant = pairs.filter(([k]) =>
    /^(host|x-multi|accept|x-latin|x-forwarded-for)$/i.test(k),
  );
  t.same(relevant, [
    ['Host', VISITOR_HOST],
    ['X-Multi', 'one'],
    ['accept', '*/*'],
    ['x-multi', 'two'],
    ['X-Latin', 'na\u00efve \u00e9t\u00e9'],
    ['X-Forwarded-For', '203.0.113.7'],
  ]);
  t.equal(reply.statusMessage, 'Fine Thanks');
  t.same(header(reply.headers, 'set-cookie'), ['a=1; Path=/', 'b=2; HttpOnly', 'c=3']);
  t.same(header(reply.headers, 'x-latin'), ['caf\u00e9 \u00ff']);
});

t.test('hop-by-hop headers are removed both ways', async (t) => {
  let seen: http.IncomingHttpHeaders = {};
  const { port } = await origin(t, (req, res) => {
    seen = req.headers;
    res.setHeader('Connection', 'keep-alive, X-Internal');
    res.setHeader('X-Internal', 'secret');
    res.setHeader('Keep-Alive', 'timeout=5');
    res.setHeader('Proxy-Authenticate', 'Basic');
    res.setHeader('X-Kept', 'yes');
    res.write('chunked ');
    res.end('body');
  });
  const { relay } = await rig(t, `127.0.0.1:${port}`);
  const { reply, body } = await send(
    relay,
    head({
      headers: [
        ['Host', VISITOR_HOST],
        ['Connection', 'keep-alive, X-Hop'],
        ['X-Hop', '1'],
        ['Keep-Alive', 'timeout=5'],
        ['TE', 'trailers'],
        ['Proxy-Authorization', 'Basic eA=='],
        ['X-End', '1'],
      ],
    }),
  );
  t.equal(body.toString(), 'chunked body');
  t.notOk(seen['x-hop']);
  t.notOk(seen['keep-alive']);
  t.notOk(seen['te']);
  t.notOk(seen['proxy-authorization']);
  t.equal(seen['x-end'], '1');
  const names = reply.headers.map(([k]) => k.toLowerCase());
  for (const hop of ['connection', 'x-internal', 'keep-alive', 'transfer-encoding']) {
    t.notOk(names.includes(hop), `${hop} removed`);
  }
  t.notOk(names.includes('proxy-authenticate'));
  t.same(header(reply.headers, 'x-kept'), ['yes']);
});

t.test('Host header: preserve, rewrite or a fixed value', async (t) => {
  const { port } = await origin(t, (req, res) => res.end(req.headers.host));
  const cases: [OriginProxyOptions['hostHeader'], string][] = [
    [undefined, VISITOR_HOST],
    ['preserve', VISITOR_HOST],
    ['rewrite', `127.0.0.1:${port}`],
    [{ value: 'app.internal' }, 'app.internal'],
  ];
  for (const [mode, expected] of cases) {
    const { relay } = await rig(
      t,
      `127.0.0.1:${port}`,
      mode === undefined ? {} : { hostHeader: mode },
    );
    const { body } = await send(relay, head());
    t.equal(body.toString(), expected, JSON.stringify(mode));
    // A request without Host (HTTP/1.0) still gets one.
    const bare = await send(relay, head({ headers: [] }));
    t.equal(
      bare.body.toString(),
      mode === undefined || mode === 'preserve' ? `127.0.0.1:${port}` : expected,
    );
  }
});

t.test('20 MiB upload and download, checked by sha256', async (t) => {
  const data = randomBytes(20 * 1024 * 1024);
  const { port } = await origin(t, (req, res) => {
    if (req.method === 'POST') {
      echo(req, res);
      return;
    }
    res.setHeader('Content-Length', data.length);
    writeInPieces(res, data.length, (offset) => data.subarray(offset, offset + 256 * 1024));
  });
  const { relay, requestEvent } = await rig(t, `127.0.0.1:${port}`);

  const up = open(relay, headWithLength('POST', '/upload', data.length));
  const upBody = collect(up);
  for (let offset = 0; offset < data.length; offset += 1024 * 1024) {
    if (!up.write(data.subarray(offset, offset + 1024 * 1024))) await once(up, 'drain');
  }
  up.end();
  t.match(echoed(await upBody), { length: data.length, sha256: sha256(data) });
  const upEvent = await requestEvent('/upload');
  t.equal(upEvent.bytesIn, data.length);

  const down = await send(relay, head({ url: '/download' }));
  t.equal(down.body.length, data.length);
  t.equal(sha256(down.body), sha256(data));
  const downEvent = await requestEvent('/download');
  t.equal(downEvent.bytesOut, data.length);
});

t.test('a response the relay does not read holds the origin back', async (t) => {
  const total = 64 * 1024 * 1024;
  const piece = Buffer.alloc(256 * 1024, 0x61);
  let written = 0;
  const { port } = await origin(t, (req, res) => {
    if (req.url === '/ping') {
      res.end('pong');
      return;
    }
    res.setHeader('Content-Length', total);
    writeInPieces(
      res,
      total,
      () => piece,
      (bytes) => (written = bytes),
    );
  });
  const { relay } = await rig(t, `127.0.0.1:${port}`);
  const stream = open(relay, head({ url: '/big' }));
  stream.end();
  await once(stream, 'reply');
  // A barrier instead of a sleep: a small request through the same proxy and origin goes
  // round the whole loop. Once the origin wrote nothing during two of them in a row, it is
  // held back (or done: the bound below tells the two apart).
  let still = 0;
  let pong = '';
  for (let round = 0; round < 500 && still < 2; round++) {
    const before = written;
    pong = (await send(relay, head({ url: '/ping' }))).body.toString();
    still = written === before ? still + 1 : 0;
  }
  t.equal(pong, 'pong', 'the proxy serves other streams meanwhile');
  t.equal(still, 2, 'the origin stopped writing');
  // Bounded by the stream window, the buffers' high-water marks and the kernel's
  // socket buffers, never by the body's size.
  t.ok(written < total / 4, `origin wrote ${(written / 2 ** 20).toFixed(1)} MiB of 64 unread`);
  let received = 0;
  stream.on('data', (chunk: Buffer) => (received += chunk.length));
  await once(stream, 'end');
  t.equal(received, total, 'all of it arrives once read');
});

t.test('a chunked body in many small chunks per read waits for drain once', async (t) => {
  // One 64 KiB socket read holds ~60 of these chunks: after the first one that fills the
  // stream, each of the others used to add its own 'drain' listener (Node warned at 11).
  const piece = Buffer.alloc(1024, 0x62);
  const chunk = Buffer.concat([Buffer.from('400\r\n'), piece, Buffer.from('\r\n')]);
  const count = 4096;
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => {
      socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
      socket.write(Buffer.concat(Array.from({ length: count }, () => chunk)));
      socket.end('0\r\n\r\n');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const warnings: string[] = [];
  const onWarning = (w: Error): void => {
    warnings.push(`${w.name}: ${w.message}`);
  };
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  const { relay } = await rig(t, `127.0.0.1:${(server.address() as net.AddressInfo).port}`);
  const stream = open(relay, head({ url: '/many' }));
  stream.end();
  await once(stream, 'reply');
  // Unread for a while: the CLI's side of the stream fills and stays full.
  for (let i = 0; i < 20; i++) await send(relay, head({ url: '/barrier' }));
  const body = await collect(stream);
  t.equal(body.length, count * piece.length, 'the whole body');
  t.ok(body.equals(Buffer.alloc(count * piece.length, 0x62)), 'byte for byte');
  await new Promise((resolve) => setImmediate(resolve));
  t.same(warnings, [], 'no listener pile-up warning');
});

t.test('server-sent events flow chunk by chunk', async (t) => {
  let sse: http.ServerResponse | undefined;
  const opened = new EventEmitter();
  const { port } = await origin(t, (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    res.flushHeaders();
    sse = res;
    opened.emit('open');
  });
  const { relay } = await rig(t, `127.0.0.1:${port}`);
  const s = open(
    relay,
    head({
      url: '/events',
      headers: [
        ['Host', VISITOR_HOST],
        ['Accept', 'text/event-stream'],
      ],
    }),
  );
  const gotOpen = once(opened, 'open');
  s.end();
  const [reply] = (await once(s, 'reply')) as [ResponseHead];
  await gotOpen;
  t.equal(reply.status, 200);
  t.same(header(reply.headers, 'content-type'), ['text/event-stream']);
  let received = '';
  s.on('data', (c: Buffer) => {
    received += c.toString();
  });
  for (let i = 1; i <= 5; i++) {
    const event = `id: ${i}\ndata: tick ${i}\n\n`;
    sse!.write(event);
    // The next event is written only once this one reached the relay side.
    while (!received.endsWith(event)) await once(s, 'data');
  }
  t.equal(s.readableEnded, false, 'still open before the origin ends it');
  const ended = once(s, 'end');
  sse!.end();
  await ended;
  t.equal(received.split('\n\n').length - 1, 5);
});

// ---- keep-alive ---------------------------------------------------------------------

t.test('idle pooled sockets closed by the origin never reach a visitor', async (t) => {
  // Origin A announces its timeout (Keep-Alive: timeout=1, Node's default behaviour);
  // origin B hides it, so the agent keeps the socket until the origin closes it.
  const sockets = { a: [] as net.Socket[], b: [] as net.Socket[] };
  const a = await origin(t, (_req, res) => res.end('a'));
  a.server.keepAliveTimeout = 1000;
  a.server.on('connection', (s: net.Socket) => sockets.a.push(s));
  const b = await origin(t, (_req, res) => {
    res.setHeader('Connection', 'keep-alive'); // suppresses the Keep-Alive hint
    res.end('b');
  });
  b.server.keepAliveTimeout = 1000;
  b.server.on('connection', (s: net.Socket) => sockets.b.push(s));
  const ra = await rig(t, `127.0.0.1:${a.port}`);
  const rb = await rig(t, `127.0.0.1:${b.port}`, { idleSocketTimeoutMs: 30_000 });
  t.equal((await send(ra.relay, head())).body.toString(), 'a');
  t.equal((await send(rb.relay, head())).body.toString(), 'b');
  // The one wait of this file: until the origins' real keep-alive timeout closed the
  // idle connections (Node 20 closes ~1 s after keepAliveTimeout; A's goes at once,
  // as the agent does not pool a socket announced with timeout=1).
  await Promise.all([...sockets.a, ...sockets.b].map((s) => s.destroyed || once(s, 'close')));
  t.equal((await send(ra.relay, head({ url: '/2' }))).body.toString(), 'a');
  t.equal((await send(rb.relay, head({ url: '/2' }))).body.toString(), 'b');
  t.equal(sockets.a.length, 2);
  t.equal(sockets.b.length, 2);
  t.notOk((await ra.requestEvent('/2')).error);
  t.notOk((await rb.requestEvent('/2')).error);
});

/**
 * A raw HTTP/1.1 origin that serves the first request of each connection and drops the
 * connection, unanswered, once it has read a second one: the race of an idle timeout,
 * made certain. Answers `conn N req 1 body <first 40 body bytes>`.
 */
function dropsSecondRequest(): { server: net.Server; connections: () => number } {
  let connections = 0;
  const server = net.createServer((socket) => {
    const n = ++connections;
    let served = 0;
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const headText = buf.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(headText)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        const body = buf.subarray(end + 4, end + 4 + length).toString();
        buf = buf.subarray(end + 4 + length);
        if (++served === 2) {
          socket.destroy();
          return;
        }
        const text = `conn ${n} req ${served} body ${body.slice(0, 40)}`;
        socket.write(
          `HTTP/1.1 200 OK\r\nContent-Length: ${text.length}\r\nConnection: keep-alive\r\n\r\n${text}`,
        );
      }
    });
  });
  return { server, connections: () => connections };
}

t.test('a reused socket the origin drops is retried once on a fresh connection', async (t) => {
  const { server, connections: count } = dropsSecondRequest();
  const port = await listen(t, server);
  const { relay, events } = await rig(t, `127.0.0.1:${port}`);
  const post = (url: string, body: string): RequestHead => headWithLength('POST', url, body.length);

  // Warm the pool: the connection this request leaves idle is the one the origin drops.
  t.equal((await send(relay, post('/', ''), '')).body.toString(), 'conn 1 req 1 body ');
  const payload = '{"event":"invoice.paid"}';
  const retried = await send(relay, post('/hook', payload), payload);
  t.equal(retried.reply.status, 200);
  t.equal(retried.body.toString(), `conn 2 req 1 body ${payload}`, 'body replayed');
  t.equal(count(), 2);

  // A body larger than the replay buffer cannot be sent again: the visitor gets the error.
  t.equal((await send(relay, post('/warm', ''), '')).body.toString(), 'conn 3 req 1 body ');
  const big = 'x'.repeat(REPLAY_LIMIT_BYTES + 1);
  await t.rejects(send(relay, post('/big', big), big), {
    resetCode: ErrorCode.CONNECT_ERROR,
    message: new RegExp(`127\\.0\\.0\\.1:${port} closed the connection before answering`),
  });
  t.equal(count(), 3, 'not retried');

  t.notOk(events.some((e) => e.event === 'warning'));
  const done = events.filter((e): e is RequestEvent => e.event === 'request');
  t.same(
    done.map((e) => [e.path, e.status, e.error === undefined]),
    [
      ['/', 200, true],
      ['/hook', 200, true],
      ['/warm', 200, true],
      ['/big', 502, false],
    ],
  );
});

t.test('a body-less request on a reused connection the origin drops is retried', async (t) => {
  const { server, connections } = dropsSecondRequest();
  const port = await listen(t, server);
  const { relay, events } = await rig(t, `127.0.0.1:${port}`);
  t.equal((await send(relay, head({ url: '/a' }))).body.toString(), 'conn 1 req 1 body ');
  const retried = await send(relay, head({ url: '/b' }));
  t.equal(retried.reply.status, 200);
  t.equal(retried.body.toString(), 'conn 2 req 1 body ', 'sent again on a new connection');
  t.equal(connections(), 2);
  // And a HEAD, whose answer has a length but no body.
  t.equal((await send(relay, head({ url: '/c', method: 'HEAD' }))).reply.status, 200);
  t.equal(connections(), 3);
  t.notOk(events.some((e) => e.event === 'warning'));
});

// ---- failures -----------------------------------------------------------------------

t.test('refused: CONNECT_ERROR naming the target, one warning per outage', async (t) => {
  const port = await freePort();
  const { relay, events, requestEvent } = await rig(t, `127.0.0.1:${port}`);
  const warnings = (): OriginEvent[] => events.filter((e) => e.event === 'warning');
  const refused = {
    resetCode: ErrorCode.CONNECT_ERROR,
    message: new RegExp(`nothing is listening on 127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`),
  };
  await t.rejects(send(relay, head({ url: '/1' })), refused);
  await t.rejects(send(relay, head({ url: '/2' })), refused);
  t.equal(warnings().length, 1, 'warned once');
  t.match(warnings()[0], {
    event: 'warning',
    code: 'origin-unreachable',
    message: new RegExp(`nothing is listening on 127\\.0\\.0\\.1:${port}: start your server`),
  });
  t.match(await requestEvent('/1'), {
    status: 502,
    error: /nothing is listening/,
    bytesOut: 0,
  });

  // The origin comes up: requests pass, and a new outage warns again.
  const server = http.createServer((_req, res) => res.end('up'));
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  t.equal((await send(relay, head({ url: '/3' }))).body.toString(), 'up');
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await t.rejects(send(relay, head({ url: '/4' })), refused);
  t.equal(warnings().length, 2, 'warned again after a success');
});

t.test('refused on localhost names localhost', async (t) => {
  const port = await freePort();
  const { relay } = await rig(t, String(port));
  await t.rejects(send(relay, head()), {
    resetCode: ErrorCode.CONNECT_ERROR,
    message: new RegExp(`nothing is listening on localhost:${port} \\(ECONNREFUSED\\)`),
  });
});

const hasIPv6Loopback = await new Promise<boolean>((resolve) => {
  const probe = net.createServer();
  probe.once('error', () => resolve(false));
  probe.listen(0, '::1', () => probe.close(() => resolve(true)));
});

t.test(
  'localhost tries 127.0.0.1 and ::1 and remembers which answered',
  { skip: hasIPv6Loopback ? false : '::1 is not available on this machine' },
  async (t) => {
    const six = await origin(t, (req, res) => res.end(`six ${req.socket.localAddress}`), '::1');
    const r6 = await rig(t, String(six.port));
    t.equal((await send(r6.relay, head())).body.toString(), 'six ::1');
    t.equal(r6.proxy.localhostAddress, '::1', 'remembered');
    t.equal((await send(r6.relay, head())).body.toString(), 'six ::1');

    const four = await origin(t, (req, res) => res.end(`four ${req.socket.localAddress}`));
    const r4 = await rig(t, `localhost:${four.port}`);
    t.equal((await send(r4.relay, head())).body.toString(), 'four 127.0.0.1');
    t.equal(r4.proxy.localhostAddress, '127.0.0.1');
  },
);

t.test('an origin killed mid-response resets the stream, never a clean end', async (t) => {
  const { port } = await origin(t, (req, res) => {
    if (req.url === '/length') res.setHeader('Content-Length', 100_000);
    res.write(Buffer.alloc(1000, 'x'));
    // Killed once the first bytes are on their way.
    setImmediate(() => res.socket?.destroy());
  });
  const { relay, requestEvent } = await rig(t, `127.0.0.1:${port}`);
  for (const url of ['/length', '/chunked']) {
    const s = open(relay, head({ url }));
    s.end();
    let ended = false;
    let bytes = 0;
    s.on('data', (c: Buffer) => (bytes += c.length));
    s.on('end', () => (ended = true));
    const [err] = (await once(s, 'close').then(
      () => [s.errored],
      (e: unknown) => [e],
    )) as [unknown];
    t.type(err, StreamResetError, url);
    t.match(err, { resetCode: ErrorCode.INTERNAL_ERROR, message: /failed mid-response/ }, url);
    t.equal((s.replyMeta as unknown as ResponseHead).status, 200, 'replied first');
    t.notOk(ended, 'no clean end');
    t.ok(bytes <= 1000);
    t.match(await requestEvent(url), { status: 200, error: /failed mid-response/ });
  }
});

t.test('a visitor that goes away aborts the origin request', async (t) => {
  const closed = new EventEmitter();
  const { port } = await origin(t, (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    res.write('data: first\n\n');
    res.on('close', () => closed.emit('close', res.writableFinished));
  });
  const { relay, requestEvent } = await rig(t, `127.0.0.1:${port}`);
  const s = open(relay, head({ url: '/stream' }));
  s.on('error', () => {});
  s.end();
  await once(s, 'data');
  const originClosed = once(closed, 'close');
  s.reset(ErrorCode.CANCEL, 'visitor closed the tab');
  const [finished] = (await originClosed) as [boolean];
  t.equal(finished, false, 'origin response aborted');
  t.match(await requestEvent('/stream'), { status: 200, error: 'the visitor went away' });
});

t.test('an origin that never answers times out', async (t) => {
  const { port } = await origin(t, () => {});
  const { relay, requestEvent } = await rig(t, `127.0.0.1:${port}`, {
    responseHeadTimeoutMs: 150,
  });
  await t.rejects(send(relay, head({ url: '/slow' })), {
    resetCode: ErrorCode.TIMEOUT,
    message: new RegExp(`127\\.0\\.0\\.1:${port} did not answer within 150 ms`),
  });
  t.match(await requestEvent('/slow'), { status: 504, error: /did not answer/ });
});

t.test('metadata that is not a request head is a protocol error', async (t) => {
  const { relay, events } = await rig(t, '127.0.0.1:9');
  const s = relay.openStream({ hello: 'world' });
  s.end();
  await t.rejects(once(s, 'end'), {
    resetCode: ErrorCode.PROTOCOL_ERROR,
    message: /not a request head/,
  });
  t.same(events, []);
});

t.test('bytes the origin cannot accept in a header are refused, not sent', async (t) => {
  const { port } = await origin(t, (_req, res) => res.end('never'));
  const { relay } = await rig(t, `127.0.0.1:${port}`);
  await t.rejects(
    send(
      relay,
      head({
        headers: [
          ['Host', VISITOR_HOST],
          ['X-Bad', 'a\r\nb'],
        ],
      }),
    ),
    {
      resetCode: ErrorCode.PROTOCOL_ERROR,
      message: /cannot forward the request/,
    },
  );
});

// ---- events -------------------------------------------------------------------------

t.test('request-start and request events', async (t) => {
  const { port } = await origin(t, (req, res) => {
    req.resume();
    req.on('end', () => res.end('response!'));
  });
  const { relay, events, requestEvent } = await rig(t, `127.0.0.1:${port}`);
  await send(relay, head({ method: 'POST', url: '/hooks?x=1' }), 'hello');
  const done = await requestEvent('/hooks?x=1');
  const start = events.find((e) => e.event === 'request-start');
  t.same(start, {
    event: 'request-start',
    id: 1,
    method: 'POST',
    path: '/hooks?x=1',
    upgrade: false,
  });
  t.match(done, {
    event: 'request',
    id: 1,
    method: 'POST',
    path: '/hooks?x=1',
    status: 200,
    bytesIn: 5,
    bytesOut: 9,
    upgrade: false,
  });
  t.type(done.durationMs, 'number');
  t.notOk('error' in done);
  t.ok(events.indexOf(start!) < events.indexOf(done));
});

// ---- dev server host checks ---------------------------------------------------------

t.test('Vite and webpack-dev-server host rejections produce one hint', async (t) => {
  const vite = await origin(t, (req, res) => {
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    res.writeHead(403, { 'Content-Type': 'text/plain' });
    res.end(
      `Blocked request. This host (${JSON.stringify(host)}) is not allowed.\n` +
        `To allow this host, add ${JSON.stringify(host)} to \`server.allowedHosts\` in vite.config.js.`,
    );
  });
  const rv = await rig(t, `localhost:${vite.port}`);
  const h = head({ headers: [['Host', `${VISITOR_HOST}:8443`]] });
  const first = await send(rv.relay, h);
  t.equal(first.reply.status, 403);
  t.match(first.body.toString(), /^Blocked request/, 'the body still reaches the visitor');
  await send(rv.relay, h);
  const hints = rv.events.filter((e) => e.event === 'hint');
  t.equal(hints.length, 1, 'hinted once');
  t.match(hints[0], {
    event: 'hint',
    code: 'host-rejected',
    hostname: VISITOR_HOST,
    message: /--host-header rewrite/,
  });
  // The wildcard first (the random name changes every run), never the current name.
  t.match(hints[0], {
    message: /server: \{ allowedHosts: \['\.qt\.localhost'\] \}.*--host-header rewrite/,
  });
  t.notMatch(hints[0]!.message, /'demo\.qt\.localhost'/);
  t.match(hints[0], { message: /Vite/ });

  const webpack = await origin(t, (_req, res) => {
    res.statusCode = 403;
    res.end('Invalid Host header');
  });
  const rw = await rig(t, `127.0.0.1:${webpack.port}`);
  await send(rw.relay, head());
  const hint = await rw.waitFor((e): e is OriginEvent => e.event === 'hint');
  t.match(hint, {
    hostname: VISITOR_HOST,
    message:
      /webpack-dev-server.*devServer: \{ allowedHosts: \['\.qt\.localhost'\] \}.*--host-header rewrite/s,
  });

  const plain = await origin(t, (_req, res) => {
    res.statusCode = 403;
    res.end('Forbidden: you shall not pass');
  });
  const rp = await rig(t, `127.0.0.1:${plain.port}`);
  await send(rp.relay, head());
  t.notOk(
    rp.events.some((e) => e.event === 'hint'),
    'an ordinary 403 is no hint',
  );

  // The refusal split across writes (and after blank lines) is still recognised.
  const split = await origin(t, (_req, res) => {
    res.writeHead(403, { 'Content-Type': 'text/plain' });
    res.write('\r\n  Bloc');
    setTimeout(() => res.end('ked request. This host ("x") is not allowed.'), 20);
  });
  const rs = await rig(t, `127.0.0.1:${split.port}`);
  const body = await send(rs.relay, head());
  t.match(body.body.toString(), /Blocked request/);
  t.match(
    await rs.waitFor((e): e is OriginEvent => e.event === 'hint'),
    { message: /Vite/ },
    'a refusal that arrives in pieces',
  );
});

// ---- WebSocket ----------------------------------------------------------------------

/** A client-to-server WebSocket frame (masked), payload below 126 bytes. */
function clientFrame(opcode: number, payload: Buffer): Buffer {
  const mask = randomBytes(4);
  const out = Buffer.alloc(6 + payload.length);
  out[0] = 0x80 | opcode;
  out[1] = 0x80 | payload.length;
  mask.copy(out, 2);
  for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i]! ^ mask[i % 4]!;
  return out;
}

/** Reads one unmasked server frame (payload below 126 bytes) from the stream. */
async function serverFrame(s: MuxStream, buffered: { buf: Buffer }) {
  for (;;) {
    const b = buffered.buf;
    if (b.length >= 2 && b.length >= 2 + (b[1]! & 0x7f)) {
      const len = b[1]! & 0x7f;
      buffered.buf = b.subarray(2 + len);
      return { opcode: b[0]! & 0x0f, payload: b.subarray(2, 2 + len) };
    }
    const [chunk] = (await once(s, 'data')) as [Buffer];
    buffered.buf = Buffer.concat([buffered.buf, chunk]);
  }
}

function upgradeHead(url: string): RequestHead {
  return head({
    url,
    upgrade: true,
    headers: [
      ['Host', VISITOR_HOST],
      ['Upgrade', 'websocket'],
      ['Connection', 'Upgrade'],
      ['Sec-WebSocket-Key', randomBytes(16).toString('base64')],
      ['Sec-WebSocket-Version', '13'],
    ],
  });
}

t.test('WebSocket upgrade: 101, then raw bytes both ways, close both ways', async (t) => {
  const server = http.createServer((_req, res) => res.end('plain'));
  const wss = new WebSocketServer({ server, path: '/ws' });
  const serverClosed = new EventEmitter();
  wss.on('connection', (ws, req) => {
    ws.send(`hello ${req.headers.host}`);
    ws.on('message', (data, isBinary) => {
      if (data.toString() === 'bye') ws.terminate();
      else ws.send(data, { binary: isBinary });
    });
    ws.on('close', () => serverClosed.emit('close'));
  });
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
  });
  const port = await listen(t, server);
  const { relay, requestEvent } = await rig(t, `127.0.0.1:${port}`);

  // 1. Echo, then the origin ends the connection: the stream ends cleanly.
  const s = open(relay, upgradeHead('/ws'));
  const buffered = { buf: Buffer.alloc(0) };
  const [reply] = (await once(s, 'reply')) as [ResponseHead];
  t.equal(reply.status, 101);
  t.same(header(reply.headers, 'upgrade'), ['websocket']);
  t.same(header(reply.headers, 'connection'), ['Upgrade']);
  t.equal(header(reply.headers, 'sec-websocket-accept').length, 1);
  t.same(await serverFrame(s, buffered), {
    opcode: 1,
    payload: Buffer.from(`hello ${VISITOR_HOST}`),
  });
  s.write(clientFrame(1, Buffer.from('ping through the tunnel')));
  t.same(await serverFrame(s, buffered), {
    opcode: 1,
    payload: Buffer.from('ping through the tunnel'),
  });
  const ended = once(s, 'end');
  s.write(clientFrame(1, Buffer.from('bye')));
  await ended; // the origin's FIN became the stream's FIN
  s.end();
  const event = await requestEvent('/ws');
  t.match(event, { status: 101, upgrade: true });
  t.notOk(event.error);
  t.ok(event.bytesIn > 0 && event.bytesOut > 0);

  // 2. The visitor goes away: the origin's socket closes.
  const s2 = open(relay, upgradeHead('/ws?second'));
  s2.on('error', () => {});
  await once(s2, 'reply');
  const originSawClose = once(serverClosed, 'close');
  s2.reset(ErrorCode.CANCEL, 'visitor left');
  await originSawClose;
  t.match(await requestEvent('/ws?second'), { status: 101, error: 'the visitor went away' });

  // 3. An upgrade the origin refuses is answered like any response.
  const refused = open(relay, upgradeHead('/not-ws'));
  const body = collect(refused);
  const [no] = (await once(refused, 'reply')) as [ResponseHead];
  refused.end();
  t.equal(no.status, 400);
  await body;
  t.match(await requestEvent('/not-ws'), { status: 400 });
});

// ---- https origins ------------------------------------------------------------------

t.test('https origin: extra CA, insecure, and a clear refusal otherwise', async (t) => {
  const { cert, key } = await generateCertificate('localhost');
  const server = https.createServer({ cert, key }, (req, res) =>
    res.end(`tls ${req.headers.host}`),
  );
  const port = await listen(t, server);
  const target = `https://localhost:${port}`;

  const withCa = await rig(t, target, { ca: cert });
  t.equal((await send(withCa.relay, head())).body.toString(), `tls ${VISITOR_HOST}`);
  t.equal(withCa.proxy.localhostAddress, '127.0.0.1');

  const insecure = await rig(t, target, { insecure: true, hostHeader: 'rewrite' });
  t.equal((await send(insecure.relay, head())).body.toString(), `tls localhost:${port}`);

  const strict = await rig(t, target);
  await t.rejects(send(strict.relay, head()), {
    resetCode: ErrorCode.CONNECT_ERROR,
    message: new RegExp(
      `TLS verification of https://localhost:${port} failed: .*--origin-ca FILE.*--origin-insecure`,
    ),
  });
  t.match(
    strict.events.find((e) => e.event === 'warning'),
    { message: /TLS verification/ },
  );

  // http:// pointed at an https server, and https:// at a plain http server.
  const mixed = await rig(t, `127.0.0.1:${port}`);
  await t.rejects(send(mixed.relay, head()), {
    resetCode: ErrorCode.CONNECT_ERROR,
    message: new RegExp(`if it serves HTTPS, use https://127\\.0\\.0\\.1:${port}`),
  });
  const plain = await origin(t, (_req, res) => res.end('plain'));
  const wrong = await rig(t, `https://127.0.0.1:${plain.port}`, { insecure: true });
  await t.rejects(send(wrong.relay, head()), {
    resetCode: ErrorCode.CONNECT_ERROR,
    message: /did not answer in TLS \(\w+\): is it a plain http:\/\/ server\?/,
  });
});

t.test('https origin: bodies both ways on one kept connection', async (t) => {
  const { cert, key } = await generateCertificate('localhost');
  let connections = 0;
  const server = https.createServer({ cert, key }, (req, res) => {
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    req.on('end', () => res.end(`${req.method} ${bytes} ${hash.digest('hex')}`));
  });
  server.on('secureConnection', () => connections++);
  const port = await listen(t, server);
  const { relay } = await rig(t, `https://localhost:${port}`, { ca: cert });
  const body = Buffer.alloc(1024 * 1024, 0x62);
  const digest = createHash('sha256').update(body).digest('hex');
  const post = await send(relay, headWithLength('POST', '/up', body.length), body);
  t.equal(post.body.toString(), `POST ${body.length} ${digest}`);
  // No length: sent chunked, as Node frames a POST.
  const chunked = await send(relay, head({ method: 'POST', url: '/chunked' }), body);
  t.equal(chunked.body.toString(), `POST ${body.length} ${digest}`);
  const get = await send(relay, head());
  t.match(get.body.toString(), /^GET 0 /);
  t.equal(connections, 1, 'one TLS connection for all three');
});

t.test('close() aborts open requests and refuses new streams', async (t) => {
  const { port } = await origin(t, () => {});
  const { relay, proxy, waitFor, requestEvent } = await rig(t, `127.0.0.1:${port}`);
  const s = open(relay, head({ url: '/pending' }));
  const ended = once(s, 'end');
  s.end();
  await waitFor((e): e is OriginEvent => e.event === 'request-start');
  proxy.close();
  await t.rejects(ended, { resetCode: ErrorCode.CANCEL, message: /shutting down/ });
  t.match(await requestEvent('/pending'), { error: /shutting down/ });
  await t.rejects(send(relay, head({ url: '/after' })), {
    resetCode: ErrorCode.REFUSED_STREAM,
    message: /shutting down/,
  });
});

t.test('over a real TLS WebSocket mux', async (t) => {
  const data = randomBytes(3 * 1024 * 1024 + 5);
  const { port } = await origin(t, (req, res) => {
    if (req.method === 'PUT') echo(req, res);
    else res.end(data);
  });
  const pair = await muxPair('tls-ws');
  const proxy = new OriginProxy({ target: parseTarget(`127.0.0.1:${port}`) });
  pair.client.on('stream', (s: MuxStream) => proxy.handle(s));
  t.teardown(async () => {
    proxy.close();
    await pair.close();
  });
  const up = await send(pair.server, head({ method: 'PUT', url: '/up' }), data);
  t.match(echoed(up.body), { method: 'PUT', length: data.length, sha256: sha256(data) });
  const down = await send(pair.server, head({ url: '/down' }));
  t.equal(sha256(down.body), sha256(data));
});
