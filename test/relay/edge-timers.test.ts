/**
 * The edge's connection timers on the injectable clock, driven by a FakeClock over real
 * connections on 127.0.0.1: an HTTP/2 session that sends no request is dropped at
 * firstRequestTimeoutMs, an idle one gets GOAWAY at idleTimeoutMs (neither 1 ms early),
 * the PING budget refills with the clock's time, and an error answer's connection is
 * destroyed `lingerMs` after closeSoon when the visitor never closes it.
 */
import { once } from 'node:events';
import http2, { constants, type ClientHttp2Session } from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import t, { type Test } from 'tap';
import { closeSoon } from '../../relay/edge/connections.js';
import { createH2Edge, type H2Edge, type H2Limits, type H2Request } from '../../relay/edge/h2.js';
import { testCertificate } from '../helpers/certs.js';
import { FakeClock } from '../helpers/fake-clock.js';

const HOSTNAME = 'abc.qt.localhost';

/** Listens on 127.0.0.1; `before` runs first at teardown (closes the connections). */
async function listen(t: Test, server: net.Server, before = (): void => {}): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    before();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

/** Lets the sockets deliver what is already written. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

interface H2Setup {
  clock: FakeClock;
  edge: H2Edge;
  client: ClientHttp2Session;
  /** GOAWAY codes the client received. */
  goaways: number[];
}

/** An h2 edge on the fake clock, and a visitor connected to it (SETTINGS exchanged). */
async function h2Setup(
  t: Test,
  limits: Partial<H2Limits>,
  onRequest: (req: H2Request) => void = () => {},
): Promise<H2Setup> {
  const clock = new FakeClock();
  const { cert, key } = await testCertificate();
  const edge = createH2Edge({ limits, onRequest, clock });
  const server = tls.createServer({ cert, key, ALPNProtocols: ['h2'] }, (socket) =>
    edge.attach(socket),
  );
  let client: ClientHttp2Session | undefined;
  const port = await listen(t, server, () => {
    client?.destroy();
    edge.destroyAll();
  });
  client = http2.connect(`https://${HOSTNAME}:${port}`, {
    host: '127.0.0.1',
    servername: HOSTNAME,
    ca: cert,
  });
  client.on('error', () => {});
  const goaways: number[] = [];
  client.on('goaway', (code: number) => goaways.push(code));
  // The server's SETTINGS: its session (and the session's timers) exist now.
  await once(client, 'remoteSettings');
  return { clock, edge, client, goaways };
}

t.test('h2: a session without a request is dropped at firstRequestTimeoutMs', async (t) => {
  const { clock, edge, client } = await h2Setup(t, { firstRequestTimeoutMs: 15_000 });
  t.same(clock.pendingDelays(), [15_000], 'the first-request timer');
  const closed = once(client, 'close');
  clock.advance(14_999);
  await settle();
  t.equal(client.closed || client.destroyed, false, 'open 1 ms before the timeout');
  t.equal(edge.sessions.size, 1);
  clock.advance(1);
  await closed;
  await settle();
  t.equal(edge.sessions.size, 0, 'the relay dropped it');
  t.equal(clock.pending, 0, 'no timer left');
});

t.test('h2: an idle session gets GOAWAY at idleTimeoutMs after its last stream', async (t) => {
  let streamClosed: Promise<unknown> | undefined;
  const { clock, client, goaways } = await h2Setup(t, { idleTimeoutMs: 65_000 }, (req) => {
    // Listens after the edge's own 'close' listener, which starts the idle timer.
    streamClosed = once(req.stream, 'close');
    req.stream.respond({ ':status': 204 });
    req.stream.end();
  });
  const request = client.request({ ':path': '/' });
  request.end();
  request.resume();
  const [headers] = (await once(request, 'response')) as [http2.IncomingHttpHeaders];
  t.equal(headers[':status'], 204);
  await once(request, 'close');
  await streamClosed;
  t.same(clock.pendingDelays(), [65_000], 'the first-request timer went, the idle timer came');

  clock.advance(64_999);
  await settle();
  t.same(goaways, [], 'no GOAWAY 1 ms before the idle timeout');
  const goaway = once(client, 'goaway');
  clock.advance(1);
  await goaway;
  t.same(goaways, [constants.NGHTTP2_NO_ERROR], 'a graceful GOAWAY');
});

t.test('h2: the PING budget refills with the clock', async (t) => {
  const { clock, client, goaways } = await h2Setup(t, { controlBurst: 3, controlPerSecond: 1 });
  const ping = (): Promise<void> =>
    new Promise((resolve, reject) =>
      client.ping((err) => (err === null ? resolve() : reject(err))),
    );
  for (let i = 0; i < 3; i++) await ping();
  t.same(goaways, [], 'the burst is allowed');
  clock.advance(1_000);
  await ping();
  await settle();
  t.same(goaways, [], 'one more PING after one second of refill');
  const calmed = once(client, 'goaway');
  client.ping(() => {});
  await calmed;
  t.same(goaways, [constants.NGHTTP2_ENHANCE_YOUR_CALM], 'the next one is a flood');
});

t.test('closeSoon: destroys a connection the visitor keeps open, lingerMs later', async (t) => {
  const clock = new FakeClock();
  const server = net.createServer();
  let visitor: net.Socket | undefined;
  const port = await listen(t, server, () => visitor?.destroy());
  const accepted = once(server, 'connection');
  // allowHalfOpen: the visitor never sends its FIN and keeps the connection.
  visitor = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  visitor.on('error', () => {});
  const [socket] = (await accepted) as [net.Socket];
  let received = '';
  visitor.setEncoding('latin1');
  visitor.on('data', (chunk: string) => (received += chunk));
  const ended = once(visitor, 'end');
  socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  closeSoon(socket, 2_000, clock);
  await ended;
  t.match(received, /^HTTP\/1\.1 400 /, 'the answer arrived');
  t.same(clock.pendingDelays(), [2_000], 'the linger timer');

  clock.advance(1_999);
  await settle();
  t.equal(socket.destroyed, false, 'still there 1 ms before the linger is over');
  const closed = once(socket, 'close');
  clock.advance(1);
  t.equal(socket.destroyed, true, 'destroyed once it is');
  await closed;
  t.equal(clock.pending, 0);
});

t.test('closeSoon: a visitor that closes first clears the linger timer', async (t) => {
  const clock = new FakeClock();
  const server = net.createServer();
  let visitor: net.Socket | undefined;
  const port = await listen(t, server, () => visitor?.destroy());
  const accepted = once(server, 'connection');
  visitor = net.connect({ host: '127.0.0.1', port });
  const [socket] = (await accepted) as [net.Socket];
  const closed = once(socket, 'close');
  socket.end();
  closeSoon(socket, 2_000, clock);
  t.same(clock.pendingDelays(), [2_000]);
  visitor.end();
  await closed;
  t.equal(clock.pending, 0, 'no timer left once the connection closed');
});
