/**
 * Builds a connected client/server MuxSession pair, either in memory or over a real
 * TLS WebSocket on 127.0.0.1, and tears it down with the test.
 */
import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { MuxSession, type HelloHandler, type MuxOptions } from '../../shared/mux/session.js';
import { memoryTransportPair, wsTransport } from '../../shared/mux/transport.js';
import { testCertificate } from './certs.js';

export type PairKind = 'memory' | 'tls-ws';

export interface MuxPair {
  client: MuxSession;
  server: MuxSession;
  close(): Promise<void>;
}

export interface PairOptions {
  client?: MuxOptions;
  server?: MuxOptions;
  clientApp?: unknown;
  onHello?: HelloHandler;
}

export async function muxPair(kind: PairKind, options: PairOptions = {}): Promise<MuxPair> {
  const onHello = options.onHello ?? (() => ({ ok: true }));
  if (kind === 'memory') {
    const [a, b] = memoryTransportPair();
    const client = new MuxSession(a, 'client', options.client);
    const server = new MuxSession(b, 'server', options.server);
    const accepted = server.accept(onHello);
    await client.connect(options.clientApp ?? {});
    await accepted;
    return {
      client,
      server,
      async close() {
        client.close();
        server.close();
      },
    };
  }
  const { cert, key } = await testCertificate();
  const httpsServer = https.createServer({ cert, key });
  const wss = new WebSocketServer({
    server: httpsServer,
    perMessageDeflate: false,
    maxPayload: MuxSession.maxMessageBytes(options.server),
  });
  httpsServer.listen(0, '127.0.0.1');
  await once(httpsServer, 'listening');
  const port = (httpsServer.address() as AddressInfo).port;
  const serverReady = new Promise<MuxSession>((resolve) => {
    wss.once('connection', (ws) => {
      const server = new MuxSession(wsTransport(ws), 'server', options.server);
      server.accept(onHello).then(
        () => resolve(server),
        () => {},
      );
    });
  });
  const wsOptions: WebSocket.ClientOptions & { servername: string } = {
    ca: cert,
    servername: 'qt.localhost',
    perMessageDeflate: false,
    maxPayload: MuxSession.maxMessageBytes(options.client),
  };
  const ws = new WebSocket(`wss://127.0.0.1:${port}/`, wsOptions);
  await once(ws, 'open');
  const client = new MuxSession(wsTransport(ws), 'client', options.client);
  await client.connect(options.clientApp ?? {});
  const server = await serverReady;
  return {
    client,
    server,
    async close() {
      client.close();
      server.close();
      for (const c of wss.clients) c.terminate();
      wss.close();
      httpsServer.closeAllConnections();
      await new Promise<void>((resolve) => httpsServer.close(() => resolve()));
    },
  };
}
