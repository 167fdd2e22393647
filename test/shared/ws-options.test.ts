/**
 * ws options for tunnel connections (`tunnelClientWsOptions`, `tunnelServerWsOptions`):
 * over wss:// the client sends frames with the MASK bit set and an all-zero key (checked
 * on the wire by a hand-written WebSocket server), over ws:// it keeps random keys, and
 * a mux session over a real TLS WebSocket with these options carries data intact.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import WebSocket, { WebSocketServer } from 'ws';
import { MuxSession } from '../../shared/mux/session.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import {
  tunnelClientWsOptions,
  tunnelServerWsOptions,
  wsTransport,
} from '../../shared/mux/transport.js';
import { TEST_DOMAIN, testCertificate } from '../helpers/certs.js';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

interface FirstFrame {
  opcode: number;
  masked: boolean;
  key: Buffer;
  payload: Buffer;
}

/**
 * A minimal WebSocket server: answers the upgrade, then resolves with the first frame
 * the client sends, as raw bytes (payload unmasked here, so it can be compared).
 */
async function rawWsServer(
  secure: boolean,
): Promise<{ port: number; firstFrame: Promise<FirstFrame>; close(): void }> {
  const { cert, key } = await testCertificate();
  let resolveFrame: (f: FirstFrame) => void = () => {};
  const firstFrame = new Promise<FirstFrame>((resolve) => (resolveFrame = resolve));
  const sockets = new Set<net.Socket>();
  const onSocket = (socket: net.Socket): void => {
    sockets.add(socket);
    let buf = Buffer.alloc(0);
    let upgraded = false;
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        const wsKey = /sec-websocket-key:\s*(\S+)/i.exec(head)?.[1] ?? '';
        const accept = createHash('sha1')
          .update(wsKey + WS_GUID)
          .digest('base64');
        socket.write(
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
        );
        upgraded = true;
      }
      // One frame, payload under 64 KiB: 2 bytes, (+2 extended length), 4-byte key.
      if (buf.length < 2) return;
      const masked = (buf[1]! & 0x80) !== 0;
      let length = buf[1]! & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buf.length < 4) return;
        length = buf.readUInt16BE(2);
        offset = 4;
      }
      const keyBytes = masked ? 4 : 0;
      if (buf.length < offset + keyBytes + length) return;
      const maskKey = Buffer.from(buf.subarray(offset, offset + keyBytes));
      const payload = Buffer.from(buf.subarray(offset + keyBytes, offset + keyBytes + length));
      if (masked) for (let i = 0; i < payload.length; i++) payload[i]! ^= maskKey[i & 3]!;
      resolveFrame({ opcode: buf[0]! & 0x0f, masked, key: maskKey, payload });
    });
    socket.on('error', () => {}); // the client goes away when the test ends
  };
  const server = secure ? tls.createServer({ cert, key }, onSocket) : net.createServer(onSocket);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    firstFrame,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

t.test('options: no deflate, maxPayload from the mux limits', async (t) => {
  const client = tunnelClientWsOptions('wss://relay.example/_qt/tunnel', { maxFrameBytes: 1000 });
  t.equal(client.perMessageDeflate, false);
  t.equal(client.maxPayload, MuxSession.maxMessageBytes({ maxFrameBytes: 1000 }));
  t.type(client.generateMask, 'function');
  t.equal(tunnelClientWsOptions('ws://relay.example/').generateMask, undefined);
  const server = tunnelServerWsOptions();
  t.equal(server.perMessageDeflate, false);
  t.equal(server.maxPayload, MuxSession.maxMessageBytes());
});

for (const secure of [true, false]) {
  t.test(`over ${secure ? 'wss' : 'ws'}: masking key on the wire`, async (t) => {
    const { cert } = await testCertificate();
    const server = await rawWsServer(secure);
    t.teardown(() => server.close());
    const url = `${secure ? 'wss' : 'ws'}://127.0.0.1:${server.port}/`;
    const options: WebSocket.ClientOptions & { servername?: string } = {
      ...tunnelClientWsOptions(url),
      ...(secure ? { ca: cert, servername: TEST_DOMAIN } : {}),
    };
    const ws = new WebSocket(url, options);
    t.teardown(() => ws.terminate());
    await once(ws, 'open');
    const payload = randomBytes(1000);
    ws.send(payload, { binary: true });
    const frame = await server.firstFrame;
    t.equal(frame.opcode, 2, 'binary frame');
    t.ok(frame.masked, 'MASK bit set, as RFC 6455 requires of clients');
    if (secure) t.same([...frame.key], [0, 0, 0, 0], 'zero key over TLS');
    else t.not(frame.key.readUInt32BE(0), 0, 'random key over plain ws');
    t.ok(frame.payload.equals(payload), 'payload intact');
  });
}

t.test('mux session over wss with these options carries data intact', async (t) => {
  const { cert, key } = await testCertificate();
  const httpsServer = https.createServer({ cert, key });
  const wss = new WebSocketServer({ server: httpsServer, ...tunnelServerWsOptions() });
  httpsServer.listen(0, '127.0.0.1');
  await once(httpsServer, 'listening');
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    httpsServer.closeAllConnections();
    httpsServer.close();
  });
  wss.on('connection', (ws) => {
    const server = new MuxSession(wsTransport(ws), 'server');
    server.on('stream', (s: MuxStream) => s.pipe(s));
    server.accept(() => ({ ok: true })).catch(() => {});
  });
  const url = `wss://127.0.0.1:${(httpsServer.address() as AddressInfo).port}/`;
  const options: WebSocket.ClientOptions & { servername: string } = {
    ...tunnelClientWsOptions(url),
    ca: cert,
    servername: TEST_DOMAIN,
  };
  const ws = new WebSocket(url, options);
  await once(ws, 'open');
  const client = new MuxSession(wsTransport(ws), 'client');
  t.teardown(() => client.close());
  await client.connect({});
  const payload = randomBytes(3 * 1024 * 1024 + 7);
  const stream = client.openStream({});
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.end(payload);
  await once(stream, 'end');
  const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  t.equal(digest(Buffer.concat(chunks)), digest(payload));
});
