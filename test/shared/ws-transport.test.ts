/**
 * wsTransport on the CLI's side of a real TLS WebSocket on 127.0.0.1, where it frames
 * messages itself (writesMessagesItself): large frames reach TLS as one buffer per write
 * even when the socket is backed up, every frame arrives intact and in order, `close()`
 * sends what is still queued before the close frame, and `terminate()` fails it.
 */
import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import t, { type Test } from 'tap';
import WebSocket, { WebSocketServer } from 'ws';
import { FRAME_HEADROOM } from '../../shared/protocol/frame.js';
import {
  writesMessagesItself,
  tunnelClientWsOptions,
  tunnelServerWsOptions,
  wsTransport,
} from '../../shared/mux/transport.js';
import { speedTrickOn } from '../../shared/speed.js';
import { TEST_DOMAIN, testCertificate } from '../helpers/certs.js';

const KiB = 1024;

interface Connection {
  client: WebSocket;
  server: WebSocket;
  /** The server's TLS socket: pause it to back the client's writes up. */
  serverSocket: TLSSocket;
  /** Every message the server received, in order. */
  received: Buffer[];
}

async function connect(t: Test, masking: 'zero' | 'random' = 'zero'): Promise<Connection> {
  const { cert, key } = await testCertificate();
  const httpsServer = https.createServer({ cert, key });
  const wss = new WebSocketServer({ server: httpsServer, ...tunnelServerWsOptions() });
  const sockets: TLSSocket[] = [];
  httpsServer.on('secureConnection', (s: TLSSocket) => sockets.push(s));
  httpsServer.listen(0, '127.0.0.1');
  await once(httpsServer, 'listening');
  const url = `wss://127.0.0.1:${(httpsServer.address() as AddressInfo).port}/`;
  const options: WebSocket.ClientOptions & { servername: string } = {
    ...(masking === 'zero' ? tunnelClientWsOptions(url) : { perMessageDeflate: false }),
    ca: cert,
    servername: TEST_DOMAIN,
  };
  const serverConnected = once(wss, 'connection') as Promise<[WebSocket]>;
  const client = new WebSocket(url, options);
  const [[server]] = await Promise.all([serverConnected, once(client, 'open')]);
  const received: Buffer[] = [];
  server.on('message', (data: Buffer) => received.push(data));
  t.teardown(async () => {
    client.terminate();
    for (const c of wss.clients) c.terminate();
    wss.close();
    httpsServer.closeAllConnections();
    await new Promise<void>((resolve) => httpsServer.close(() => resolve()));
  });
  return { client, server, serverSocket: sockets[0]!, received };
}

/** A frame of `size` bytes filled with `fill`, with FRAME_HEADROOM free bytes before it. */
function frameWithHeadroom(size: number, fill: number): Buffer {
  return Buffer.alloc(FRAME_HEADROOM + size, fill).subarray(FRAME_HEADROOM);
}

/** Records the chunk sizes of every write the socket makes (one array per write). */
function recordWrites(socket: unknown): number[][] {
  const writes: number[][] = [];
  const s = socket as {
    _write(chunk: Buffer, encoding: string, cb: () => void): void;
    _writev(chunks: { chunk: Buffer }[], cb: () => void): void;
  };
  const write = s._write;
  const writev = s._writev;
  s._write = function (chunk, encoding, cb) {
    writes.push([chunk.length]);
    write.call(this, chunk, encoding, cb);
  };
  s._writev = function (chunks, cb) {
    writes.push(chunks.map((c) => c.chunk.length));
    writev.call(this, chunks, cb);
  };
  return writes;
}

async function until(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

t.test('only a client with a zero masking key frames its messages itself', async (t) => {
  const zero = await connect(t, 'zero');
  // With shared/speed.ts's ws-socket trick off (QUICK_TUNNEL_SPEED_TRICKS=off), never.
  t.equal(
    writesMessagesItself(zero.client),
    speedTrickOn('ws-socket'),
    'tunnelClientWsOptions over wss',
  );
  t.equal(writesMessagesItself(zero.server), false, "the relay's side uses ws.send");
  const random = await connect(t, 'random');
  t.equal(writesMessagesItself(random.client), false, 'random keys: ws frames the messages');
});

t.test('backed-up socket: large frames reach TLS alone, all arrive in order', async (t) => {
  const conn = await connect(t);
  const transport = wsTransport(conn.client);
  const writes = recordWrites((conn.client as unknown as { _socket: unknown })._socket);
  conn.serverSocket.pause();

  // Sizes around every limit: batched (≤ 4 KiB), larger ones without headroom, and
  // full DATA frames (64 KiB payload + 12-byte header, the peer's maxPayload) with it.
  const sizes = [10, 4 * KiB, 40 * KiB, 3, 64 * KiB + 12, 100, 5 * KiB, 64 * KiB + 12, 1];
  const sent: Buffer[] = [];
  const results: (Error | undefined)[] = [];
  for (let round = 0; round < 40; round++) {
    for (const [i, size] of sizes.entries()) {
      const fill = (round * 13 + i) & 0xff;
      const frame = size >= 64 * KiB ? frameWithHeadroom(size, fill) : Buffer.alloc(size, fill);
      sent.push(Buffer.from(frame));
      transport.send(frame, (err) => results.push(err), size >= 64 * KiB ? FRAME_HEADROOM : 0);
    }
  }
  const total = sent.reduce((n, b) => n + b.length, 0);
  t.ok(transport.bufferedAmount > total / 2, 'what waits in the transport counts as buffered');

  // Let the socket back up, then let the server read.
  await new Promise((r) => setTimeout(r, 50));
  conn.serverSocket.resume();
  await until(() => results.length === sent.length);
  // (ws.send, used when the ws-socket trick is off, calls back with null for success)
  t.equal(results.filter((e) => e != null).length, 0, 'every callback ran without error');
  await until(() => conn.received.reduce((n, b) => n + b.length, 0) >= total);

  t.ok(Buffer.concat(conn.received).equals(Buffer.concat(sent)), 'bytes intact and in order');
  const large = sent.filter((b) => b.length > 16 * KiB).length;
  t.equal(
    conn.received.filter((b) => b.length > 16 * KiB).length,
    large,
    'each large frame is a message of its own',
  );
  const largeWrites = writes.filter((w) => w.some((n) => n > 16 * KiB));
  if (writesMessagesItself(conn.client)) {
    t.ok(largeWrites.length >= large, `${largeWrites.length} writes carried large frames`);
    t.same(
      largeWrites.filter((w) => w.length > 1),
      [],
      'no large frame shared a write with another buffer (TLS would copy them)',
    );
  }
  t.equal(transport.bufferedAmount, 0, 'nothing left buffered');
});

t.test('close() sends every queued frame before the close frame', async (t) => {
  const conn = await connect(t);
  const transport = wsTransport(conn.client);
  conn.serverSocket.pause();
  const sent: Buffer[] = [];
  for (let i = 0; i < 64; i++) {
    const frame = frameWithHeadroom(64 * KiB, i);
    sent.push(Buffer.from(frame));
    transport.send(frame, undefined, FRAME_HEADROOM);
  }
  const closed = once(conn.server, 'close') as Promise<[number, Buffer]>;
  transport.close(1000, 'done');
  conn.serverSocket.resume();
  const [code] = await closed;
  t.equal(code, 1000, 'clean close');
  t.equal(conn.received.length, sent.length, 'every frame arrived first');
  t.ok(Buffer.concat(conn.received).equals(Buffer.concat(sent)), 'intact and in order');
});

t.test('terminate() fails the frames still queued', async (t) => {
  const conn = await connect(t);
  const transport = wsTransport(conn.client);
  conn.serverSocket.pause();
  const errors: (Error | undefined)[] = [];
  for (let i = 0; i < 16; i++) {
    transport.send(frameWithHeadroom(64 * KiB, i), (err) => errors.push(err), FRAME_HEADROOM);
  }
  transport.terminate();
  await until(() => errors.length === 16);
  // Two writes were with the socket already; the other 14 waited in the transport.
  t.ok(errors.filter((e) => e instanceof Error).length >= 14, 'queued frames fail');
  transport.send(Buffer.alloc(10), (err) => errors.push(err));
  t.type(errors.at(-1), Error, 'sending after terminate fails at once');
});
