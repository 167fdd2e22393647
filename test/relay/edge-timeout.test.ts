/**
 * The edge's response timeout on the injectable clock: a tunnel client that never sends
 * a response head gets its visitor a 504 exactly `responseTimeoutMs` after the request
 * went out (not 1 ms before), its tunnel stream reset with TIMEOUT, and no timer left;
 * a head in time cancels the timeout. For HTTP/1.1 requests, upgrades and HTTP/2
 * streams: real visitor connections on 127.0.0.1 to the edge's forwarders, a real mux
 * session pair (in memory) to a scripted tunnel client, time from a FakeClock.
 */
import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import t, { type Test } from 'tap';
import { StreamResetError } from '../../shared/errors.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import { createH2Edge, forwardH2Request } from '../../relay/edge/h2.js';
import {
  forwardRequest,
  forwardUpgrade,
  type ForwardContext,
  type ForwardResult,
} from '../../relay/edge/proxy.js';
import { testCertificate } from '../helpers/certs.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { muxPair, type MuxPair } from '../helpers/mux-pair.js';

const HOSTNAME = 'abc.qt.localhost';
const TIMEOUT_MS = 30_000;

interface Setup {
  clock: FakeClock;
  pair: MuxPair;
  /** ForwardResults reported by the forwarder (onDone is called synchronously on a 504). */
  results: ForwardResult[];
  ctx: ForwardContext;
}

async function setup(t: Test): Promise<Setup> {
  const clock = new FakeClock();
  // pair.server plays the relay's session, pair.client the tunnel client's.
  const pair = await muxPair('memory', {
    client: { keepAliveIntervalMs: 0 },
    server: { keepAliveIntervalMs: 0 },
  });
  t.teardown(() => pair.close());
  const results: ForwardResult[] = [];
  const ctx: ForwardContext = {
    hostname: HOSTNAME,
    scheme: 'http',
    responseTimeoutMs: TIMEOUT_MS,
    clock,
    onDone: (r) => results.push(r),
  };
  return { clock, pair, results, ctx };
}

/** The next stream the tunnel client gets, and the errors it sees. */
async function nextTunnelStream(pair: MuxPair): Promise<{ stream: MuxStream; errors: Error[] }> {
  const [stream] = (await once(pair.client, 'stream')) as [MuxStream];
  const errors: Error[] = [];
  stream.on('error', (err: Error) => errors.push(err));
  stream.resume();
  return { stream, errors };
}

async function listen(t: Test, server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        (server as http.Server).closeAllConnections?.();
        server.close(() => resolve());
      }),
  );
  return (server.address() as AddressInfo).port;
}

/** An HTTP/1.1 server whose requests go to the edge's forwarder over `s.pair`. */
async function h1Edge(t: Test, s: Setup): Promise<number> {
  const server = http.createServer((req, res) => forwardRequest(req, res, s.pair.server, s.ctx));
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) =>
    forwardUpgrade(req, socket, head, s.pair.server, s.ctx),
  );
  return listen(t, server);
}

interface Answer {
  status: number;
  body: string;
}

function get(port: number): { answer: Promise<Answer>; settled: () => boolean } {
  let settled = false;
  const answer = new Promise<Answer>((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path: '/slow',
      headers: { host: HOSTNAME },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.end();
  }).finally(() => (settled = true));
  return { answer, settled: () => settled };
}

/** Lets the sockets and the in-memory transport deliver what is already written. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

t.test('HTTP/1.1: 504 at responseTimeoutMs, not before; the tunnel stream is reset', async (t) => {
  const s = await setup(t);
  const port = await h1Edge(t, s);
  const arrived = nextTunnelStream(s.pair);
  const visitor = get(port);
  const { errors } = await arrived;
  t.same(s.clock.pendingDelays(), [TIMEOUT_MS], 'one timer: the response timeout');

  s.clock.advance(TIMEOUT_MS - 1);
  await settle();
  t.same(s.results, [], 'not finished 1 ms before the timeout');
  t.equal(visitor.settled(), false, 'the visitor is still waiting');
  t.same(errors, [], 'the tunnel stream is still open');

  s.clock.advance(1);
  t.match(s.results, [{ status: 504 }], 'finished with 504 at the timeout');
  const answer = await visitor.answer;
  t.equal(answer.status, 504);
  t.match(answer.body, /no response within 30 s/);
  await settle();
  t.equal(errors.length, 1, 'the tunnel client saw a reset');
  t.type(errors[0], StreamResetError);
  t.equal((errors[0] as StreamResetError).resetCode, ErrorCode.TIMEOUT);
  t.equal(s.clock.pending, 0, 'no timer left');
});

t.test('HTTP/1.1: a response head in time cancels the timeout', async (t) => {
  const s = await setup(t);
  const port = await h1Edge(t, s);
  const arrived = nextTunnelStream(s.pair);
  let head: http.IncomingMessage | undefined;
  let body = '';
  const req = http.request({ host: '127.0.0.1', port, headers: { host: HOSTNAME } });
  req.on('error', () => {});
  const responded = once(req, 'response');
  req.end();
  const { stream } = await arrived;
  s.clock.advance(TIMEOUT_MS - 1);
  // The head in time, the body long after: a slow download is no timeout.
  stream.reply({ status: 200, headers: [['content-length', '2']] });
  [head] = (await responded) as [http.IncomingMessage];
  t.equal(head.statusCode, 200);
  head.setEncoding('utf8');
  head.on('data', (chunk: string) => (body += chunk));
  t.equal(s.clock.pending, 0, 'the head cleared the timeout');
  s.clock.advance(TIMEOUT_MS);
  t.same(s.results, [], 'no 504 while the body is still coming');
  stream.end('ok');
  await once(head, 'end');
  t.equal(body, 'ok');
  t.match(s.results, [{ status: 200 }], 'one result: the 200');
});

t.test('upgrade: 504 at responseTimeoutMs, not before', async (t) => {
  const s = await setup(t);
  const port = await h1Edge(t, s);
  const arrived = nextTunnelStream(s.pair);
  const socket = net.connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  let received = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => (received += chunk));
  const closed = once(socket, 'close');
  socket.write(
    `GET /ws HTTP/1.1\r\nHost: ${HOSTNAME}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  );
  const { errors } = await arrived;
  t.same(s.clock.pendingDelays(), [TIMEOUT_MS]);

  s.clock.advance(TIMEOUT_MS - 1);
  await settle();
  t.equal(received, '', 'no answer 1 ms before the timeout');
  t.same(s.results, []);

  s.clock.advance(1);
  t.match(s.results, [{ status: 504 }]);
  await closed;
  t.match(received, /^HTTP\/1\.1 504 /);
  await settle();
  t.equal((errors[0] as StreamResetError | undefined)?.resetCode, ErrorCode.TIMEOUT);
  t.equal(s.clock.pending, 0, 'no timer left');
});

t.test('HTTP/2: 504 at responseTimeoutMs, not before', async (t) => {
  const s = await setup(t);
  s.ctx.scheme = 'https';
  const { cert, key } = await testCertificate();
  const edge = createH2Edge({ onRequest: (req) => forwardH2Request(req, s.pair.server, s.ctx) });
  const server = tls.createServer({ cert, key, ALPNProtocols: ['h2'] }, (socket) =>
    edge.attach(socket),
  );
  const port = await listen(t, server);
  t.teardown(() => edge.destroyAll());

  const client = http2.connect(`https://${HOSTNAME}:${port}`, {
    host: '127.0.0.1',
    servername: HOSTNAME,
    ca: cert,
  });
  client.on('error', () => {});
  t.teardown(() => client.destroy());
  const arrived = nextTunnelStream(s.pair);
  const request = client.request({ ':path': '/slow' });
  request.end();
  let status: number | undefined;
  request.on('response', (headers) => (status = Number(headers[':status'])));
  let body = '';
  request.setEncoding('utf8');
  request.on('data', (chunk: string) => (body += chunk));
  const ended = once(request, 'end');
  const { errors } = await arrived;
  // The h2 session's first-request and idle timers are Node's: the fake clock has only ours.
  t.same(s.clock.pendingDelays(), [TIMEOUT_MS]);

  s.clock.advance(TIMEOUT_MS - 1);
  await settle();
  t.equal(status, undefined, 'no response head 1 ms before the timeout');
  t.same(s.results, []);

  s.clock.advance(1);
  t.match(s.results, [{ status: 504 }]);
  await ended;
  t.equal(status, 504);
  t.match(body, /no response within 30 s/);
  await settle();
  t.equal((errors[0] as StreamResetError | undefined)?.resetCode, ErrorCode.TIMEOUT);
  t.equal(s.clock.pending, 0, 'no timer left');
});
