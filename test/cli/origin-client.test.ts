/**
 * Conformance suite for the OriginClient (cli/origin/client.ts) as the proxy uses it
 * (http1-client.ts on http1.ts, for http and https origins) over raw TCP and TLS origins that answer with exact bytes: the request on the wire and keep-alive, response framings (HEAD, 204/304,
 * interim 1xx), stale pooled connections, an early answer (413) before the body was
 * read, backpressure, upgrades, errors, and a differential run against Node's own
 * client on the same raw responses (the cases response-parser.test.ts had).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { Readable, type Duplex } from 'node:stream';
import t, { type Test } from 'tap';
import type { AttemptInfo, OriginClient, OriginResponseHead } from '../../cli/origin/client.js';
import { Http1OriginClient } from '../../cli/origin/http1-client.js';
import type { Http1PoolOptions } from '../../cli/origin/http1.js';
import { generateCertificate } from '../../relay/edge/certificate.js';
import type { HeaderPairs } from '../../shared/protocol/tunnel.js';
import { RESPONSE_CORPUS } from '../helpers/response-corpus.js';
import { eventually, withinOrThrow } from '../helpers/wait.js';

const LOCAL = '127.0.0.1';
const WAIT_MS = 5000;

async function listen(t: Test, server: net.Server): Promise<number> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.listen(0, LOCAL);
  await once(server, 'listening');
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    if (server.listening) await new Promise((resolve) => server.close(resolve));
  });
  return (server.address() as net.AddressInfo).port;
}

interface Conn {
  socket: net.Socket;
  requests: string[];
  received(): string;
}

/**
 * A TCP origin (TLS with `secure`) that hands each request head (bodies are not parsed)
 * to `onRequest`.
 */
async function rawOrigin(
  t: Test,
  onRequest: (conn: Conn, request: string) => void,
  secure?: tls.TlsOptions,
): Promise<{ port: number; conns: Conn[] }> {
  const conns: Conn[] = [];
  const handle = (socket: net.Socket): void => {
    socket.on('error', () => {});
    const bytes: Buffer[] = [];
    const conn: Conn = {
      socket,
      requests: [],
      received: () => Buffer.concat(bytes).toString('latin1'),
    };
    conns.push(conn);
    let pending = '';
    socket.on('data', (chunk: Buffer) => {
      bytes.push(chunk);
      pending += chunk.toString('latin1');
      let end: number;
      while ((end = pending.indexOf('\r\n\r\n')) >= 0) {
        const request = pending.slice(0, end + 4);
        pending = pending.slice(end + 4);
        conn.requests.push(request);
        onRequest(conn, request);
      }
    });
  };
  const server = secure ? tls.createServer(secure, handle) : net.createServer(handle);
  return { port: await listen(t, server), conns };
}

function ok(body: string, extra = ''): string {
  return `HTTP/1.1 200 OK\r\n${extra}Content-Length: ${body.length}\r\n\r\n${body}`;
}

function newClient(t: Test, port: number, options: Partial<Http1PoolOptions> = {}): OriginClient {
  const client = new Http1OriginClient({
    hostname: LOCAL,
    port,
    idleTimeoutMs: 5000,
    maxHeaderBytes: 16 * 1024,
    connectTimeoutMs: 5000,
    ...options,
  });
  t.teardown(() => client.close());
  return client;
}

interface Call {
  events: string[];
  head: OriginResponseHead | undefined;
  chunks: Buffer[];
  body(): string;
  error: (Error & { code?: string }) | undefined;
  info: AttemptInfo | undefined;
  socket: Duplex | undefined;
  settled(): Promise<void>;
  resume(): void;
  abort(err?: Error): void;
}

function send(
  client: OriginClient,
  method: string,
  path: string,
  options: {
    headers?: HeaderPairs;
    body?: Readable;
    fresh?: boolean;
    upgrade?: string;
    /** onData's answer (default true: keep reading). */
    onData?: (call: Call, chunk: Buffer) => boolean;
  } = {},
): Call {
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  const call: Call = {
    events: [],
    head: undefined,
    chunks: [],
    body: () => Buffer.concat(call.chunks).toString('latin1'),
    error: undefined,
    info: undefined,
    socket: undefined,
    settled: () => withinOrThrow(done, WAIT_MS, `${method} ${path} to end`),
    resume: () => handle.resume(),
    abort: (err) => handle.abort(err),
  };
  const sink = {
    onHead(head: OriginResponseHead) {
      call.events.push('head');
      call.head = head;
    },
    onData(chunk: Buffer) {
      if (call.events.at(-1) !== 'body') call.events.push('body');
      call.chunks.push(Buffer.from(chunk));
      return options.onData?.(call, chunk) ?? true;
    },
    onEnd() {
      call.events.push('end');
      resolveDone();
    },
    onError(err: Error, info: AttemptInfo) {
      call.events.push('error');
      call.error = err;
      call.info = info;
      resolveDone();
    },
    onUpgrade(head: OriginResponseHead, socket: Duplex) {
      call.events.push('upgrade');
      call.head = head;
      call.socket = socket;
      resolveDone();
    },
  };
  const request = {
    method,
    path,
    headers: options.headers ?? [['Host', 'app.test']],
    body: options.body,
    ...(options.fresh !== undefined ? { fresh: options.fresh } : {}),
  };
  const handle =
    options.upgrade === undefined
      ? client.request(request, sink)
      : client.upgrade(request, options.upgrade, sink);
  return call;
}

/** A body of `total` bytes of `byte`, pushed in 64 KiB chunks as it is read. */
function bodyOf(total: number, byte = 0x61): Readable {
  let left = total;
  const chunk = Buffer.alloc(64 * 1024, byte);
  return new Readable({
    read() {
      if (left <= 0) {
        this.push(null);
        return;
      }
      const n = Math.min(left, chunk.length);
      left -= n;
      this.push(n === chunk.length ? chunk : chunk.subarray(0, n));
    },
  });
}

// ---- differential: Node's client and ours on the same raw responses -----------------

type Result =
  | { ok: true; status: number; statusMessage: string; rawHeaders: string[]; body: string }
  | { ok: false; code: string };

/** Serves `bytes` once on 127.0.0.1 (then closes) for one request. */
async function serveOnce(t: Test, bytes: Buffer): Promise<number> {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.resume();
    socket.end(bytes);
  });
  return listen(t, server);
}

function viaNode(port: number): Promise<Result> {
  return new Promise<Result>((resolve) => {
    const req = http.request({ host: LOCAL, port, agent: false }, (res) => {
      const body: Buffer[] = [];
      res.on('data', (chunk: Buffer) => body.push(chunk));
      res.on('end', () =>
        resolve({
          ok: true,
          status: res.statusCode!,
          statusMessage: res.statusMessage!,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(body).toString('latin1'),
        }),
      );
      res.on('error', (err: NodeJS.ErrnoException) =>
        resolve({ ok: false, code: err.code ?? err.message }),
      );
    });
    req.on('error', (err: NodeJS.ErrnoException) =>
      resolve({ ok: false, code: err.code ?? err.message }),
    );
    req.on('upgrade', (_res, socket) => {
      socket.destroy();
      resolve({ ok: false, code: 'upgrade' });
    });
    req.end();
  });
}

async function viaOurs(t: Test, port: number): Promise<Result> {
  const client = newClient(t, port);
  const call = send(client, 'GET', '/', { headers: [['Host', 'x']] });
  await call.settled();
  if (call.error !== undefined) return { ok: false, code: call.error.code ?? call.error.message };
  return {
    ok: true,
    status: call.head!.status,
    statusMessage: call.head!.statusMessage,
    rawHeaders: call.head!.headers.flat(),
    body: call.body(),
  };
}

t.test('the request on the wire; one connection reused for the next', async (t) => {
  const origin = await rawOrigin(t, (conn) => conn.socket.write(ok('hello')));
  const client = newClient(t, origin.port);
  const first = send(client, 'GET', '/a?b=1', {
    headers: [
      ['Host', 'app.test:8080'],
      ['X-Mixed-CASE', 'a, b'],
      ['accept', '*/*'],
      ['X-Latin', '\u00e9\u00a0'],
    ],
  });
  await first.settled();
  t.same(first.events, ['head', 'body', 'end']);
  t.equal(first.body(), 'hello');
  const wire = origin.conns[0]!.requests[0]!;
  t.match(wire, /^GET \/a\?b=1 HTTP\/1\.1\r\n/);
  t.match(wire, /\r\nHost: app\.test:8080\r\nX-Mixed-CASE: a, b\r\naccept: \*\/\*\r\nX-Latin: /);
  t.match(wire, /\r\nConnection: keep-alive\r\n\r\n$/);
  t.ok(Buffer.from(wire, 'latin1').includes(Buffer.from([0xe9, 0xa0])), 'latin1 bytes sent');
  const second = send(client, 'GET', '/b');
  await second.settled();
  t.equal(origin.conns.length, 1, 'the connection was reused');
  const fresh = send(client, 'GET', '/c', { fresh: true });
  await fresh.settled();
  t.equal(origin.conns.length, 2, 'fresh: a connection of its own');
});

t.test('response heads: order, case, repeats and latin1 kept', async (t) => {
  // The reason phrase: latin1 bytes kept, as Node does (undici would decode UTF-8).
  const reason = Buffer.from('Cr\u00e9\u00e9', 'latin1');
  const origin = await rawOrigin(t, (conn) =>
    conn.socket.write(
      Buffer.concat([
        Buffer.from('HTTP/1.1 201 ', 'latin1'),
        reason,
        Buffer.from('\r\n', 'latin1'),
        Buffer.from('Set-Cookie: a=1\r\nX-A: \xe9\r\n', 'latin1'),
        Buffer.from('set-cookie: b=2\r\nContent-Length: 2\r\n\r\nhi', 'latin1'),
      ]),
    ),
  );
  const call = send(newClient(t, origin.port), 'GET', '/');
  await call.settled();
  t.equal(call.head?.status, 201);
  t.equal(call.head?.statusMessage, 'Cr\u00e9\u00e9');
  t.same(call.head?.headers, [
    ['Set-Cookie', 'a=1'],
    ['X-A', '\u00e9'],
    ['set-cookie', 'b=2'],
    ['Content-Length', '2'],
  ]);
});

t.test('framings: chunked with trailers, HEAD, 204, 304, interim 1xx', async (t) => {
  const answers: Record<string, string> = {
    '/chunked':
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nX-T: 1\r\n\r\n',
    '/head': 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n',
    '/204': 'HTTP/1.1 204 No Content\r\nContent-Length: 42\r\n\r\n',
    '/304': 'HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n',
    '/interim':
      'HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n' +
      ok('final'),
  };
  const origin = await rawOrigin(t, (conn, request) =>
    conn.socket.write(answers[request.split(' ')[1]!]!),
  );
  const client = newClient(t, origin.port);
  for (const path of Object.keys(answers)) {
    const call = send(client, path === '/head' ? 'HEAD' : 'GET', path);
    await call.settled();
    const expected: Record<string, [number, string]> = {
      '/chunked': [200, 'hello!'],
      '/head': [200, ''],
      '/204': [204, ''],
      '/304': [304, ''],
      '/interim': [200, 'final'],
    };
    t.same([call.head?.status, call.body()], expected[path], path);
    t.equal(call.events.at(-1), 'end', `${path}: ends cleanly`);
    t.equal(call.events.filter((e) => e === 'head').length, 1, `${path}: one head`);
  }
  const after = send(client, 'GET', '/chunked');
  await after.settled();
  t.equal(after.body(), 'hello!', 'the connection is still in step');
});

t.test('a kept connection the origin closes as the next request arrives', async (t) => {
  const origin = await rawOrigin(t, (conn) => {
    if (conn.requests.length === 1) conn.socket.write(ok('first'));
    else conn.socket.destroy();
  });
  const client = newClient(t, origin.port);
  await send(client, 'GET', '/1').settled();
  const second = send(client, 'GET', '/2');
  await second.settled();
  t.equal(second.events.at(-1), 'error');
  t.same(second.info, { reused: true, responseStarted: false }, 'safe to retry');
  const retry = send(client, 'GET', '/2', { fresh: true });
  await retry.settled();
  t.equal(retry.body(), 'first', 'the retry runs on a new connection');
  t.equal(origin.conns.length, 2);
});

t.test('idle connections: timeout, Keep-Alive hint, dropIdle, maxIdle', async (t) => {
  const closed = (conn: { socket: net.Socket }): Promise<unknown> =>
    withinOrThrow(once(conn.socket, 'close'), WAIT_MS, 'the origin sees the connection close');
  // Closed after idleTimeoutMs.
  const a = await rawOrigin(t, (conn) => conn.socket.write(ok('a')));
  await send(newClient(t, a.port, { idleTimeoutMs: 100 }), 'GET', '/').settled();
  await closed(a.conns[0]!);
  // The server's Keep-Alive hint (less 1 s) when shorter than idleTimeoutMs.
  const b = await rawOrigin(t, (conn) => conn.socket.write(ok('b', 'Keep-Alive: timeout=2\r\n')));
  await send(newClient(t, b.port, { idleTimeoutMs: 60_000 }), 'GET', '/').settled();
  await closed(b.conns[0]!);
  // dropIdle closes what is idle.
  const c = await rawOrigin(t, (conn) => conn.socket.write(ok('c')));
  const client = newClient(t, c.port, { idleTimeoutMs: 60_000 });
  await send(client, 'GET', '/').settled();
  client.dropIdle();
  await closed(c.conns[0]!);
  // maxIdle 1: of two connections used at once, one is kept, one closed.
  const held: net.Socket[] = [];
  const d = await rawOrigin(t, (conn) => {
    held.push(conn.socket);
    if (held.length === 2) for (const s of held) s.write(ok('d'));
  });
  const two = newClient(t, d.port, { idleTimeoutMs: 60_000, maxIdle: 1 });
  await Promise.all([send(two, 'GET', '/1').settled(), send(two, 'GET', '/2').settled()]);
  await Promise.race(d.conns.map((conn) => closed(conn)));
  t.equal(d.conns.filter((conn) => !conn.socket.destroyed).length, 1, 'one kept');
});

t.test('a request body streams with backpressure, framed by length or chunked', async (t) => {
  const total = 8 * 1024 * 1024;
  const server = http.createServer((req, res) => {
    const hash = createHash('sha256');
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      hash.update(c);
    });
    req.on('end', () =>
      res.end(`${n} ${req.headers['transfer-encoding'] ?? '-'} ${hash.digest('hex')}`),
    );
  });
  const port = await listen(t, server);
  const client = newClient(t, port);
  const expected = createHash('sha256');
  const sample = bodyOf(total);
  for await (const c of sample) expected.update(c as Buffer);
  const digest = expected.digest('hex');
  const sized = send(client, 'POST', '/up', {
    headers: [
      ['Host', 'x'],
      ['Content-Length', String(total)],
    ],
    body: bodyOf(total),
  });
  await sized.settled();
  t.equal(sized.body(), `${total} - ${digest}`);
  const chunked = send(client, 'PUT', '/up', { body: bodyOf(total) });
  await chunked.settled();
  t.equal(chunked.body(), `${total} chunked ${digest}`);
});

t.test('onData false pauses the response until resume()', async (t) => {
  const total = 4 * 1024 * 1024;
  const server = http.createServer((_req, res) => {
    res.setHeader('content-length', total);
    res.end(Buffer.alloc(total, 0x62));
  });
  const client = newClient(t, await listen(t, server));
  let paused = 0;
  const call = send(client, 'GET', '/', {
    onData: (c) => {
      paused++;
      setTimeout(() => c.resume(), 1);
      return false;
    },
  });
  await call.settled();
  t.equal(call.body().length, total);
  t.ok(paused > 1, `paused ${paused} times`);
});

t.test('an early answer (413) before the body was read arrives whole', async (t) => {
  const answer =
    'HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n';
  // In a process of its own, or its answer and close would always be read before our
  // next write: there the kernel resets the connection while the body is being sent.
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const net = require('node:net');
      const server = net.createServer((socket) => {
        socket.on('error', () => {});
        socket.once('data', () => { socket.write(${JSON.stringify(answer)}); socket.destroy(); });
      });
      server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.teardown(() => {
    child.kill();
  });
  const [line] = (await withinOrThrow(once(child.stdout!, 'data'), WAIT_MS, 'the origin')) as [
    Buffer,
  ];
  const client = newClient(t, Number(line.toString().trim()));
  const outcomes: string[] = [];
  for (let i = 0; i < 10; i++) {
    const body = bodyOf(64 * 1024 * 1024);
    const call = send(client, 'POST', '/upload', {
      headers: [
        ['Host', 'x'],
        ['Content-Length', String(64 * 1024 * 1024)],
      ],
      body,
    });
    await call.settled();
    body.destroy();
    outcomes.push(
      `${call.head?.status ?? call.error?.message} ${call.events.join(',')} ${call.body()}`,
    );
  }
  t.same([...new Set(outcomes)], ['413 head,body,end too big\n'], 'every try got the 413');
});

t.test('upgrades: 101 hands the socket over; a refusal is a plain response', async (t) => {
  const origin = await rawOrigin(t, (conn, request) => {
    if (request.startsWith('GET /no ')) {
      conn.socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno');
      return;
    }
    conn.socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-A: 1\r\n\r\nearly',
    );
    conn.socket.on('data', (chunk: Buffer) => conn.socket.write(`echo:${chunk.toString()}`));
  });
  const client = newClient(t, origin.port);
  const headers: HeaderPairs = [
    ['Host', 'x'],
    ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
  ];
  const up = send(client, 'GET', '/ws', { headers, upgrade: 'websocket' });
  await up.settled();
  t.same(up.events, ['upgrade']);
  t.equal(up.head?.status, 101);
  t.same(up.head?.headers, [
    ['Upgrade', 'websocket'],
    ['Connection', 'Upgrade'],
    ['X-A', '1'],
  ]);
  const socket = up.socket!;
  t.teardown(() => socket.destroy());
  let seen = '';
  t.ok(socket.isPaused(), 'handed over paused');
  socket.on('data', (c: Buffer) => (seen += c.toString())).resume();
  socket.write('ping');
  t.ok(await eventually(() => seen === 'earlyecho:ping', WAIT_MS), 'the echo');
  t.match(origin.conns[0]!.requests[0]!, /\r\nconnection: upgrade\r\nupgrade: websocket\r\n/i);
  const no = send(client, 'GET', '/no', { headers, upgrade: 'websocket' });
  await no.settled();
  t.same([no.head?.status, no.body(), no.events], [403, 'no', ['head', 'body', 'end']]);
  t.equal(origin.conns.length, 2, 'each upgrade on a connection of its own');
});

t.test('an https origin: SNI, a kept TLS connection, an upgrade on one of its own', async (t) => {
  const { cert, key } = await generateCertificate('localhost');
  const names: (string | false)[] = [];
  const origin = await rawOrigin(
    t,
    (conn, request) => {
      names.push((conn.socket as tls.TLSSocket).servername ?? false);
      if (!request.startsWith('GET /ws ')) {
        conn.socket.write(ok(`tls ${request.split(' ')[1]}`));
        return;
      }
      conn.socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nhi');
      conn.socket.on('data', (chunk: Buffer) => conn.socket.write(`echo:${chunk.toString()}`));
    },
    { cert, key },
  );
  // `localhost` without a resolver: it is 127.0.0.1, where the origin listens.
  const lookup = ((_name, _options, callback: (...args: unknown[]) => void) =>
    callback(null, [{ address: LOCAL, family: 4 }])) as net.LookupFunction;
  const client = newClient(t, origin.port, {
    hostname: 'localhost',
    lookup,
    tls: { rejectUnauthorized: true, ca: [cert] },
  });
  for (const path of ['/a', '/b']) {
    const call = send(client, 'GET', path);
    await call.settled();
    t.same([call.events, call.body()], [['head', 'body', 'end'], `tls ${path}`]);
  }
  t.equal(origin.conns.length, 1, 'both requests on one TLS connection');
  const up = send(client, 'GET', '/ws', { upgrade: 'websocket' });
  await up.settled();
  t.same([up.events, up.head?.status], [['upgrade'], 101]);
  const socket = up.socket!;
  t.teardown(() => socket.destroy());
  let seen = '';
  socket.on('data', (chunk: Buffer) => (seen += chunk.toString())).resume();
  socket.write('ping');
  t.ok(await eventually(() => seen === 'hiecho:ping', WAIT_MS), 'the echo, over TLS');
  t.equal(origin.conns.length, 2, 'the upgrade on a connection of its own');
  t.same(names, ['localhost', 'localhost', 'localhost'], 'SNI: the target name');

  // An IP target sends no SNI; a certificate not trusted fails the call, before any byte.
  const byIp = newClient(t, origin.port, { tls: { rejectUnauthorized: false } });
  const call = send(byIp, 'GET', '/ip');
  await call.settled();
  t.same([call.events, call.body()], [['head', 'body', 'end'], 'tls /ip']);
  t.equal(names.at(-1), false, 'no SNI for an IP');
  const strict = send(newClient(t, origin.port, { tls: { rejectUnauthorized: true } }), 'GET', '/');
  await strict.settled();
  t.match(strict.error, {
    code: /^(DEPTH_ZERO_SELF_SIGNED_CERT|ERR_TLS_CERT_ALTNAME_INVALID|UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)$/,
  });
  t.same(strict.info, { reused: false, responseStarted: false });
});

t.test('errors: refused, invalid request, abort', async (t) => {
  const server = net.createServer();
  server.listen(0, LOCAL);
  await once(server, 'listening');
  const dead = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  const refused = send(newClient(t, dead), 'GET', '/');
  await refused.settled();
  t.equal(refused.error?.code, 'ECONNREFUSED');
  t.same(refused.info, { reused: false, responseStarted: false });

  const origin = await rawOrigin(t, () => {});
  const client = newClient(t, origin.port);
  t.throws(() => send(client, 'GET', '/', { headers: [['X', 'a\nb']] }));
  t.throws(() => send(client, 'G T', '/'));
  t.throws(() => send(client, 'GET', '/a b'));
  const hanging = send(client, 'GET', '/hang');
  const boom = new Error('boom');
  hanging.abort(boom);
  await hanging.settled();
  t.equal(hanging.error, boom, 'abort(err) is the call’s error, reported once');
  t.same(hanging.events, ['error']);
});

t.test('an origin that does not connect in time: a connect timeout', async (t) => {
  // A lookup that never answers keeps the socket connecting (no traffic leaves loopback).
  const lookup = (() => {}) as net.LookupFunction;
  const client = newClient(t, 9, { hostname: 'origin.test', lookup, connectTimeoutMs: 100 });
  const call = send(client, 'GET', '/');
  await call.settled();
  t.equal(call.error?.code, 'QT_ERR_ORIGIN_CONNECT_TIMEOUT');
  t.same(call.info, { reused: false, responseStarted: false });
});

t.test('differential against Node’s client', async (t) => {
  const show = (r: Result): string =>
    r.ok
      ? `${r.status} ${JSON.stringify(r.statusMessage)} body ${JSON.stringify(r.body)}`
      : `error ${r.code}`;
  const rows: string[] = [];
  for (const [name, judgement, text] of RESPONSE_CORPUS) {
    const port = await serveOnce(t, Buffer.from(text, 'latin1'));
    const node = await withinOrThrow(viaNode(port), WAIT_MS, `${name} via Node`);
    const ours = await viaOurs(t, port);
    const same =
      node.ok && ours.ok ? JSON.stringify(node) === JSON.stringify(ours) : node.ok === ours.ok;
    if (!same) rows.push(`| ${name} | ${show(node)} | ${show(ours)} |`);
    if (judgement === 'agree') {
      if (node.ok) t.same(ours, node, `${name}: the same response as Node`);
      else t.equal(ours.ok, false, `${name}: refused, as by Node (${node.code})`);
    } else {
      // Ours may be stricter, never a different accepted response.
      t.ok(
        !ours.ok || same,
        `${name}: Node ${show(node)}; ours must match or refuse: ${show(ours)}`,
      );
    }
  }
  t.comment(['| case | Node | ours |', '|---|---|---|', ...rows].join('\n'));
});
