/**
 * shared/speed.ts: the QUICK_TUNNEL_SPEED_TRICKS switch (parsing, a clear error for an
 * unknown trick), the feature check on `ws`'s internals (a WebSocket whose internals are
 * not what we measured against gets no trick), and a real TLS WebSocket carrying frames
 * intact with every trick off.
 */
import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import WebSocket, { WebSocketServer } from 'ws';
import { readSpeedTricksSetting } from '../../shared/config.js';
import { ConfigError } from '../../shared/errors.js';
import {
  tunnelClientWsOptions,
  tunnelServerWsOptions,
  writesMessagesItself,
  wsTransport,
} from '../../shared/mux/transport.js';
import {
  SPEED_TRICKS,
  configureSpeedTricks,
  currentTurn,
  parseSpeedTricks,
  speedTrickOn,
  wsSocketAccess,
} from '../../shared/speed.js';
import { TEST_DOMAIN, testCertificate } from '../helpers/certs.js';
import { spawnCli } from '../helpers/processes.js';

t.test('the setting: on, off, a list; unknown names are refused', async (t) => {
  t.same([...parseSpeedTricks(undefined)], SPEED_TRICKS, 'unset: all on');
  t.same([...parseSpeedTricks(' On ')], SPEED_TRICKS, 'on');
  t.same([...parseSpeedTricks('off')], [], 'off');
  t.same(
    [...parseSpeedTricks('sticky-session, ws-socket')].sort(),
    ['sticky-session', 'ws-socket'],
    'a list keeps those on',
  );
  let err: unknown;
  try {
    parseSpeedTricks('ws-socket,turbo');
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof ConfigError, 'a ConfigError');
  t.equal((err as ConfigError).code, 'QT_ERR_CONFIG');
  t.match((err as ConfigError).message, "unknown trick 'turbo'", 'naming the trick');
  t.match((err as ConfigError).message, SPEED_TRICKS.join(', '), 'and the choices');
  t.equal(readSpeedTricksSetting({}), undefined);
  t.equal(readSpeedTricksSetting({ QUICK_TUNNEL_SPEED_TRICKS: ' ' }), undefined);
  t.equal(readSpeedTricksSetting({ QUICK_TUNNEL_SPEED_TRICKS: 'off' }), 'off');
});

t.test('sticky-session: one number per turn when on, a new one per call when off', async (t) => {
  t.teardown(() => configureSpeedTricks(readSpeedTricksSetting()));
  configureSpeedTricks('sticky-session');
  const a = currentTurn();
  t.equal(currentTurn(), a, 'same turn, same number');
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  t.not(currentTurn(), a, 'a later turn, another number');
  configureSpeedTricks('off');
  t.not(currentTurn(), currentTurn(), 'off: never sticky');
});

t.test('ws internals: used only when they are what we expect', async (t) => {
  t.teardown(() => configureSpeedTricks(readSpeedTricksSetting()));
  const zeroMask = (): void => {};
  const socket = { write() {}, cork() {}, uncork() {} };
  const fake = (over: Record<string, unknown>): WebSocket =>
    ({
      _socket: socket,
      _isServer: false,
      _sender: { _socket: socket, _generateMask: zeroMask },
      ...over,
    }) as unknown as WebSocket;
  configureSpeedTricks('on');
  t.same(wsSocketAccess(fake({}), zeroMask), { socket, writesItself: true }, 'ws 8 layout');
  t.equal(wsSocketAccess(fake({}), () => {})?.writesItself, false, 'another mask: ws frames');
  t.equal(wsSocketAccess(fake({ _isServer: true }), zeroMask)?.writesItself, false, 'a server');
  t.equal(wsSocketAccess(fake({ _socket: undefined }), zeroMask), undefined, 'no _socket');
  t.equal(wsSocketAccess(fake({ _sender: { sock: socket } }), zeroMask), undefined, 'renamed');
  t.equal(
    wsSocketAccess(fake({ _socket: { write() {} } }), zeroMask),
    undefined,
    'a socket without cork',
  );
  t.equal(wsSocketAccess(fake({ _isServer: undefined }), zeroMask), undefined, 'no _isServer');
  configureSpeedTricks('off');
  t.equal(wsSocketAccess(fake({}), zeroMask), undefined, 'switched off');
});

t.test('every trick off: a TLS WebSocket still carries every frame, in order', async (t) => {
  t.teardown(() => configureSpeedTricks(readSpeedTricksSetting()));
  configureSpeedTricks('off');
  const { cert, key } = await testCertificate();
  const httpsServer = https.createServer({ cert, key });
  const wss = new WebSocketServer({ server: httpsServer, ...tunnelServerWsOptions() });
  httpsServer.listen(0, '127.0.0.1');
  await once(httpsServer, 'listening');
  const url = `wss://127.0.0.1:${(httpsServer.address() as AddressInfo).port}/`;
  const serverConnected = once(wss, 'connection') as Promise<[WebSocket]>;
  const options: WebSocket.ClientOptions & { servername: string } = {
    ...tunnelClientWsOptions(url),
    ca: cert,
    servername: TEST_DOMAIN,
  };
  const client = new WebSocket(url, options);
  const [[server]] = await Promise.all([serverConnected, once(client, 'open')]);
  t.teardown(async () => {
    client.terminate();
    for (const c of wss.clients) c.terminate();
    wss.close();
    httpsServer.closeAllConnections();
    await new Promise<void>((resolve) => httpsServer.close(() => resolve()));
  });
  t.equal(speedTrickOn('ws-socket'), false);
  t.equal(writesMessagesItself(client), false, 'ws.send frames the messages');
  const received: Buffer[] = [];
  server.on('message', (data: Buffer) => received.push(data));
  const transport = wsTransport(client);
  const sent: Buffer[] = [];
  for (let i = 0; i < 200; i++) {
    const frame = Buffer.alloc([7, 3000, 60_000][i % 3]!, i & 0xff);
    sent.push(frame);
    transport.send(frame);
  }
  const total = sent.reduce((n, b) => n + b.length, 0);
  const closed = once(server, 'close');
  transport.close(1000, 'done');
  await closed;
  t.equal(Buffer.concat(received).length, total, 'every byte arrived before the close');
  t.ok(Buffer.concat(received).equals(Buffer.concat(sent)), 'intact and in order');
});

t.test('the CLI refuses an unknown trick with a ConfigError, exit 1', async (t) => {
  const cli = spawnCli(t, ['--version'], { env: { QUICK_TUNNEL_SPEED_TRICKS: 'ws-socket,turbo' } });
  t.equal(await cli.exited, 1, 'a user error');
  t.match(
    cli.stderr.join('\n'),
    /^error: QUICK_TUNNEL_SPEED_TRICKS=ws-socket,turbo: unknown trick 'turbo'/,
  );
});
