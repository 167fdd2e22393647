/**
 * Builds a connected client/server MuxSession pair, either in memory or over a real
 * TLS WebSocket on 127.0.0.1, and tears it down with the test.
 *
 * `sessionPair` stops before the handshake (tests of the handshake itself, version
 * mismatch); `muxPair` also runs it. Both expose the transports and, over TLS, the
 * sockets, so tests can inject frames or drop the connection.
 */
import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import WebSocket, { WebSocketServer } from 'ws';
import { MuxSession, type HelloHandler, type MuxOptions } from '../../shared/mux/session.js';
import {
  memoryTransportPair,
  tunnelClientWsOptions,
  wsTransport,
  type FrameTransport,
} from '../../shared/mux/transport.js';
import { testCertificate } from './certs.js';

export type PairKind = 'memory' | 'tls-ws';

export interface SessionPair {
  client: MuxSession;
  server: MuxSession;
  clientTransport: FrameTransport;
  serverTransport: FrameTransport;
  /** tls-ws only: the client's WebSocket. */
  clientWs: WebSocket | undefined;
  /** tls-ws only: the server side's WebSocket. */
  serverWs: WebSocket | undefined;
  /** tls-ws only: the server side's TLS socket (destroy it to drop the connection). */
  serverSocket: TLSSocket | undefined;
  /** Closes both sessions and, over TLS, the server. Safe to call twice. */
  close(): Promise<void>;
}

export type MuxPair = SessionPair;

export interface PairOptions {
  client?: MuxOptions;
  server?: MuxOptions;
  clientApp?: unknown;
  onHello?: HelloHandler;
  /**
   * tls-ws only. 'zero' (default): the client's ws options come from
   * tunnelClientWsOptions, as in the CLI (zero masking key, so both sides frame
   * messages themselves). 'random': ws's own random keys, so the client sends through
   * ws.send.
   */
  clientMasking?: 'zero' | 'random';
}

/** Two sessions on a fresh connection, before any handshake frame was sent. */
export async function sessionPair(kind: PairKind, options: PairOptions = {}): Promise<SessionPair> {
  if (kind === 'memory') {
    const [a, b] = memoryTransportPair();
    const client = new MuxSession(a, 'client', options.client);
    const server = new MuxSession(b, 'server', options.server);
    return {
      client,
      server,
      clientTransport: a,
      serverTransport: b,
      clientWs: undefined,
      serverWs: undefined,
      serverSocket: undefined,
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
  let serverSocket: TLSSocket | undefined;
  httpsServer.once('secureConnection', (socket: TLSSocket) => {
    serverSocket = socket;
  });
  httpsServer.listen(0, '127.0.0.1');
  await once(httpsServer, 'listening');
  const port = (httpsServer.address() as AddressInfo).port;
  const serverConnected = once(wss, 'connection') as Promise<[WebSocket]>;
  const url = `wss://127.0.0.1:${port}/`;
  const wsOptions: WebSocket.ClientOptions & { servername: string } = {
    ...(options.clientMasking === 'random'
      ? { perMessageDeflate: false, maxPayload: MuxSession.maxMessageBytes(options.client) }
      : tunnelClientWsOptions(url, options.client)),
    ca: cert,
    servername: 'qt.localhost',
  };
  const clientWs = new WebSocket(url, wsOptions);
  const [[serverWs]] = await Promise.all([serverConnected, once(clientWs, 'open')]);
  const serverTransport = wsTransport(serverWs);
  const clientTransport = wsTransport(clientWs);
  const server = new MuxSession(serverTransport, 'server', options.server);
  const client = new MuxSession(clientTransport, 'client', options.client);
  let closing: Promise<void> | undefined;
  return {
    client,
    server,
    clientTransport,
    serverTransport,
    clientWs,
    serverWs,
    serverSocket,
    close() {
      closing ??= (async () => {
        client.close();
        server.close();
        for (const c of wss.clients) c.terminate();
        wss.close();
        httpsServer.closeAllConnections();
        await new Promise<void>((resolve) => httpsServer.close(() => resolve()));
      })();
      return closing;
    },
  };
}

/** A client/server pair with the handshake done: both sessions are ready. */
export async function muxPair(kind: PairKind, options: PairOptions = {}): Promise<MuxPair> {
  const onHello = options.onHello ?? (() => ({ ok: true }));
  const pair = await sessionPair(kind, options);
  try {
    const accepted = pair.server.accept(onHello);
    await pair.client.connect(options.clientApp ?? {});
    await accepted;
  } catch (err) {
    await pair.close();
    throw err;
  }
  return pair;
}
