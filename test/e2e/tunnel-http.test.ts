/**
 * Visitor → relay (real TLS) → tunnel client (real TLS WebSocket) → local origin, all
 * in this process over loopback sockets.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import https from 'node:https';
import t from 'tap';
import WebSocket, { WebSocketServer } from 'ws';
import { localhostAwareLookup } from '../../cli/tunnel/client.js';
import { connectH2, visitH2 } from '../helpers/h2-visitor.js';
import {
  connectTunnel,
  startOrigin,
  startTestRelay,
  visit as visitH1,
  type TestRelay,
  type VisitOptions,
  type VisitResponse,
} from '../helpers/relay-env.js';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

// The HTTP fidelity cases run twice with the same assertions: once as HTTP/1.1
// visitors, once as HTTP/2 visitors of the same HTTPS listener (ALPN h2). Plain-HTTP
// visits stay HTTP/1.1 in both (that listener has no h2).
type Visit = (env: TestRelay, hostname: string, options?: VisitOptions) => Promise<VisitResponse>;
const PROTOCOLS: ['h1' | 'h2', Visit][] = [
  ['h1', visitH1],
  [
    'h2',
    (env, hostname, options = {}) =>
      options.scheme === 'http' ? visitH1(env, hostname, options) : visitH2(env, hostname, options),
  ],
];

for (const [protocol, visit] of PROTOCOLS) {
  t.test(`methods, headers and bodies pass through (${protocol})`, async (t) => {
    const env = await startTestRelay(t);
    const { port } = await startOrigin(t, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        if (req.url === '/no-content') {
          res.writeHead(204).end();
          return;
        }
        if (req.url === '/not-modified') {
          res.writeHead(304, { etag: '"x"' }).end();
          return;
        }
        res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']);
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            method: req.method,
            url: req.url,
            bodyLength: body.length,
            body: body.toString(),
            host: req.headers.host,
            xff: req.headers['x-forwarded-for'],
            xfproto: req.headers['x-forwarded-proto'],
            xfhost: req.headers['x-forwarded-host'],
            custom: req.headers['x-custom'],
            keepAliveHeader: req.headers['keep-alive'] ?? null,
            fooHeader: req.headers['x-foo'] ?? null,
            latin1: req.headers['x-latin1'],
          }),
        );
      });
    });
    const tunnel = await connectTunnel(t, env, String(port));
    t.match(tunnel.hostname, /^[a-z2-9]{10}\.qt\.localhost$/);
    t.ok(tunnel.assignment.urls[0]?.startsWith(`https://${tunnel.hostname}:`), 'https URL first');

    for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const body = method === 'GET' || method === 'OPTIONS' ? undefined : `payload for ${method}`;
      const res = await visit(env, tunnel.hostname, {
        method,
        path: '/echo?x=1&y=%20two',
        headers: {
          'x-custom': 'yes',
          'keep-alive': 'timeout=5',
          connection: 'keep-alive, x-foo',
          'x-foo': 'hop',
          'x-forwarded-for': '6.6.6.6',
          'x-latin1': Buffer.from([0x63, 0x61, 0x66, 0xe9]).toString('latin1'),
        },
        ...(body !== undefined ? { body } : {}),
      });
      t.equal(res.status, 200, `${method} status`);
      const echo = JSON.parse(res.body.toString()) as Record<string, unknown>;
      t.equal(echo['method'], method);
      t.equal(echo['url'], '/echo?x=1&y=%20two', 'query string intact');
      t.equal(echo['body'], body ?? '');
      t.equal(echo['host'], tunnel.hostname, 'visitor Host preserved');
      t.equal(
        echo['xff'],
        '127.0.0.1',
        'X-Forwarded-For is the visitor address, not the spoofed one',
      );
      t.equal(echo['xfproto'], 'https');
      t.equal(echo['xfhost'], tunnel.hostname);
      t.equal(echo['custom'], 'yes');
      t.equal(echo['keepAliveHeader'], null, 'Keep-Alive removed');
      t.equal(echo['fooHeader'], null, 'header named in Connection removed');
      t.equal(echo['latin1'], 'caf\u00e9', 'header value bytes intact');
      t.same(
        res.headers['set-cookie'],
        ['a=1; Path=/', 'b=2; Path=/'],
        'both Set-Cookie headers arrive',
      );
    }

    // The relay forwards a body only for a request that frames one (RFC 9112 §6.3); the
    // others end their stream with the OPEN.
    const framings: [string, string[], string | undefined, string][] = [
      ['GET', ['Content-Length', '5'], 'hello', 'a GET with a Content-Length body'],
      ['DELETE', ['Transfer-Encoding', 'chunked'], 'a chunked body', 'a chunked DELETE body'],
      ['POST', ['Content-Length', '0'], undefined, 'a POST with Content-Length: 0'],
      ['GET', [], undefined, 'a GET without framing headers'],
    ];
    for (const [method, headers, body, what] of framings) {
      const res = await visit(env, tunnel.hostname, {
        method,
        path: '/framing',
        headers,
        ...(body !== undefined ? { body } : {}),
      });
      t.equal(res.status, 200, `${what}: status`);
      const echo = JSON.parse(res.body.toString()) as Record<string, unknown>;
      t.equal(echo['body'], body ?? '', `${what}: the origin gets the body`);
    }

    const head = await visit(env, tunnel.hostname, { method: 'HEAD', path: '/x' });
    t.equal(head.status, 200);
    t.equal(head.body.length, 0, 'HEAD has no body');
    const noContent = await visit(env, tunnel.hostname, { path: '/no-content' });
    t.equal(noContent.status, 204);
    t.equal(noContent.body.length, 0);
    const notModified = await visit(env, tunnel.hostname, { path: '/not-modified' });
    t.equal(notModified.status, 304);
    t.equal(notModified.headers.etag, '"x"');

    const plain = await visit(env, tunnel.hostname, { scheme: 'http', path: '/p' });
    t.equal(plain.status, 200, 'plain HTTP listener serves the tunnel too');
    t.equal((JSON.parse(plain.body.toString()) as { xfproto: string }).xfproto, 'http');
  });

  t.test(`50 MiB upload and 50 MiB download, checked by hash (${protocol})`, async (t) => {
    const env = await startTestRelay(t);
    const download = randomBytes(50 * 1024 * 1024);
    const { port } = await startOrigin(t, (req, res) => {
      if (req.method === 'GET') {
        res.setHeader('content-length', download.length);
        res.end(download);
        return;
      }
      const hash = createHash('sha256');
      let n = 0;
      req.on('data', (c: Buffer) => {
        hash.update(c);
        n += c.length;
      });
      req.on('end', () => res.end(JSON.stringify({ n, hash: hash.digest('hex') })));
    });
    const tunnel = await connectTunnel(t, env, String(port));
    const upload = randomBytes(50 * 1024 * 1024);
    const up = await visit(env, tunnel.hostname, { method: 'POST', path: '/up', body: upload });
    t.same(JSON.parse(up.body.toString()), { n: upload.length, hash: sha256(upload) });
    const down = await visit(env, tunnel.hostname, { path: '/down' });
    t.equal(down.body.length, download.length);
    t.equal(sha256(down.body), sha256(download));
    const req = tunnel.events.filter((e) => e.event === 'request');
    t.ok(req.length >= 2, 'request events emitted');
  });

  t.test(`SSE events arrive one by one before the stream ends (${protocol})`, async (t) => {
    const env = await startTestRelay(t);
    let next: (() => void) | undefined;
    const { port } = await startOrigin(t, (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      let i = 0;
      const send = (): void => {
        i++;
        res.write(`data: event ${i}\n\n`);
        if (i === 3) res.end();
        else next = send;
      };
      send();
    });
    const tunnel = await connectTunnel(t, env, String(port));
    // Each protocol's response is an async iterable of body chunks.
    let contentType: unknown;
    let body: AsyncIterable<Buffer>;
    if (protocol === 'h1') {
      const req = https.request({
        host: '127.0.0.1',
        port: env.httpsPort,
        path: '/events',
        headers: { host: tunnel.hostname, accept: 'text/event-stream' },
        servername: tunnel.hostname,
        ca: env.ca,
        agent: false,
      });
      req.end();
      const [res] = (await once(req, 'response')) as [IncomingMessage];
      contentType = res.headers['content-type'];
      body = res;
    } else {
      const session = connectH2(env, tunnel.hostname);
      t.teardown(() => session.close());
      const req = session.request({
        ':path': '/events',
        ':authority': tunnel.hostname,
        accept: 'text/event-stream',
      });
      req.end();
      const [headers] = (await once(req, 'response')) as [Record<string, unknown>];
      contentType = headers['content-type'];
      body = req;
    }
    t.equal(contentType, 'text/event-stream');
    const received: string[] = [];
    for await (const chunk of body) {
      received.push(String(chunk));
      // The origin sends the next event only after we saw this one: proves no buffering.
      const send = next;
      next = undefined;
      send?.();
    }
    t.same(received.join('').split('\n\n').filter(Boolean), [
      'data: event 1',
      'data: event 2',
      'data: event 3',
    ]);
    t.ok(received.length >= 3, 'each event arrived as its own chunk');
  });

  t.test(`200 concurrent requests on one tunnel (${protocol})`, async (t) => {
    const env = await startTestRelay(t);
    const { port } = await startOrigin(t, (req, res) => {
      setTimeout(() => res.end(`ok ${req.url}`), 5);
    });
    const tunnel = await connectTunnel(t, env, String(port));
    // Over h2 the 200 share one connection (100 streams at a time, the relay's limit;
    // the client queues the rest).
    const session = protocol === 'h2' ? connectH2(env, tunnel.hostname) : undefined;
    t.teardown(() => session?.close());
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        session !== undefined
          ? visitH2(env, tunnel.hostname, { path: `/r${i}` }, session)
          : visit(env, tunnel.hostname, { path: `/r${i}` }),
      ),
    );
    const bad = results.filter((r, i) => r.status !== 200 || r.body.toString() !== `ok /r${i}`);
    t.equal(bad.length, 0, 'all 200 answered correctly, each with its own response');
  });

  t.test(
    `visitor-facing errors: unknown host, unknown tunnel, origin down (${protocol})`,
    async (t) => {
      const env = await startTestRelay(t);
      const unknownHost = await visit(env, 'example.com', { scheme: 'http' });
      t.equal(unknownHost.status, 404);
      t.match(unknownHost.body.toString(), /Unknown host/);
      const noTunnel = await visit(env, 'nosuchtunnel.qt.localhost', {
        headers: { accept: 'text/html' },
      });
      t.equal(noTunnel.status, 404);
      t.match(noTunnel.headers['content-type'], /text\/html/);
      t.match(noTunnel.body.toString(), /No such tunnel/);

      // A port nothing listens on: bind one, then close it.
      const { server, port } = await startOrigin(t, () => {});
      await new Promise<void>((r) => server.close(() => r()));
      const tunnel = await connectTunnel(t, env, String(port));
      const down = await visit(env, tunnel.hostname);
      t.equal(down.status, 502);
      t.match(down.body.toString(), /local app is not answering/);
      t.match(down.body.toString(), new RegExp(`localhost:${port}`), 'names the local target');
      t.notMatch(
        down.body.toString(),
        /stream reset/,
        "the client's reason, not the mux's wording",
      );

      const health = await visit(env, 'qt.localhost', { path: '/healthz' });
      t.equal(health.status, 200);
      t.match(JSON.parse(health.body.toString()), { ok: true, tunnels: 1 });
    },
  );
}

t.test('WebSocket echo: text, binary, 1 MiB message, close codes', async (t) => {
  const env = await startTestRelay(t);
  const { server, port } = await startOrigin(t, (_req, res) => res.end('not a websocket'));
  const wss = new WebSocketServer({ server });
  t.teardown(() => wss.close());
  wss.on('connection', (ws, req) => {
    ws.send(`hello ${req.headers['x-forwarded-proto']}`);
    ws.on('message', (data, isBinary) => {
      if (!isBinary && data.toString() === 'bye') {
        ws.close(4001, 'origin says bye');
        return;
      }
      ws.send(data, { binary: isBinary });
    });
  });
  const tunnel = await connectTunnel(t, env, String(port));
  const ws = new WebSocket(`wss://${tunnel.hostname}:${env.httpsPort}/socket`, {
    ca: env.ca,
    lookup: localhostAwareLookup,
  } as WebSocket.ClientOptions);
  const messages: { data: Buffer; isBinary: boolean }[] = [];
  const waiters: (() => void)[] = [];
  ws.on('message', (data: Buffer, isBinary) => {
    messages.push({ data, isBinary });
    waiters.shift()?.();
  });
  const nextMessage = async (): Promise<{ data: Buffer; isBinary: boolean }> => {
    if (messages.length === 0) await new Promise<void>((r) => waiters.push(r));
    return messages.shift()!;
  };
  await once(ws, 'open');
  t.equal((await nextMessage()).data.toString(), 'hello https');
  ws.send('text message');
  const text = await nextMessage();
  t.equal(text.data.toString(), 'text message');
  t.equal(text.isBinary, false);
  const big = randomBytes(1024 * 1024);
  ws.send(big);
  const bin = await nextMessage();
  t.equal(bin.isBinary, true);
  t.equal(sha256(bin.data), sha256(big), '1 MiB binary message intact');
  ws.send('bye');
  const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
  t.equal(code, 4001, 'origin close code propagates');
  t.equal(reason.toString(), 'origin says bye');

  // Visitor-initiated close reaches the origin.
  const ws2 = new WebSocket(`wss://${tunnel.hostname}:${env.httpsPort}/`, {
    ca: env.ca,
    lookup: localhostAwareLookup,
  } as WebSocket.ClientOptions);
  const originClosed = new Promise<number>((resolve) =>
    wss.once('connection', (sock) => sock.once('close', (c) => resolve(c))),
  );
  await once(ws2, 'open');
  ws2.close(4002, 'visitor leaves');
  t.equal(await originClosed, 4002, 'visitor close code reaches the origin');
});
