/**
 * The relay's visitor listeners: the HTTPS server (HTTP/1.1, and HTTP/2 by ALPN), the
 * plain-HTTP server and its extra addresses (`--lan`), with their socket options and
 * limits, each handing its requests to the edge server (relay/edge/server.ts).
 */
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { ResolvedRelayConfig } from '../config.js';
import type { RelayCertificate } from './certificate.js';
import type { VisitorConnections } from './connections.js';
import { HTTPS_ALPN_PROTOCOLS, createH2Edge, routeAlpn, type H2Edge } from './h2.js';
import type { EdgeServer } from './server.js';

export interface Listeners {
  /** Every listening server (HTTPS, HTTP, HTTP's extra addresses). */
  readonly servers: (http.Server | https.Server)[];
  readonly httpsServer: https.Server | undefined;
  readonly h2Edge: H2Edge | undefined;
  /** The ports they listen on (undefined when that listener is off). */
  readonly httpsPort: number | undefined;
  readonly httpPort: number | undefined;
}

/**
 * Creates and starts the listeners `config` asks for. On failure (a port in use...)
 * those already listening are closed again and the error is thrown.
 */
export async function listenForVisitors(
  config: ResolvedRelayConfig,
  deps: {
    edge: EdgeServer;
    visitors: VisitorConnections;
    /** Absent in ACME mode until the manager has one (handshakes fail meanwhile). */
    certificate: RelayCertificate | undefined;
    log: Logger;
  },
): Promise<Listeners> {
  const { edge, visitors, certificate, log } = deps;
  const serverOptions: http.ServerOptions = {
    keepAliveTimeout: config.keepAliveTimeoutMs,
    headersTimeout: config.headersTimeoutMs,
    requestTimeout: 0, // bodies may stream for as long as they need
    maxHeaderSize: 16 * 1024,
    noDelay: true,
    // Visitor sockets buffer up to 256 KiB before write() says "wait": with Node's
    // 16 KiB default, every 64 KiB DATA frame paused the tunnel stream until the next
    // event-loop turn, capping a download at ~200 MB/s with both processes half idle.
    highWaterMark: 256 * 1024,
    // headersTimeout is only enforced when Node checks connections: check every second,
    // so a slowloris connection is closed at ~15 s rather than up to 45 s.
    connectionsCheckingInterval: 1_000,
  };

  const servers: (http.Server | https.Server)[] = [];
  const listen = async (
    server: http.Server | https.Server,
    port: number,
    host = config.host,
  ): Promise<number> => {
    const plainHttp = !(server instanceof https.Server);
    server.on('connection', (socket: net.Socket) => visitors.admit(socket, plainHttp));
    // One more than the guard allows, so a request over the limit is seen (Node drops
    // headers past maxHeadersCount silently) and refused with 431.
    server.maxHeadersCount = config.guard.maxHeaders + 1;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    servers.push(server);
    return (server.address() as AddressInfo).port;
  };

  let httpsServer: https.Server | undefined;
  let h2Edge: H2Edge | undefined;
  let httpsPort: number | undefined;
  let httpPort: number | undefined;
  try {
    if (config.httpsPort !== null) {
      const server = https.createServer(
        {
          ...serverOptions,
          ...(certificate === undefined ? {} : { cert: certificate.cert, key: certificate.key }),
          minVersion: 'TLSv1.2',
          // A client that connects and never finishes the TLS handshake is dropped.
          handshakeTimeout: 10_000,
          ALPNProtocols: config.http2 === false ? ['http/1.1'] : HTTPS_ALPN_PROTOCOLS,
        },
        edge.onRequest('https'),
      );
      if (config.http2 !== false) {
        h2Edge = createH2Edge({
          limits: config.http2,
          onRequest: edge.onH2Request,
          onSessionError: (err) => log.debug({ err }, 'h2 visitor session'),
          clock: config.clock,
        });
        routeAlpn(server, h2Edge);
      }
      server.on('upgrade', edge.onUpgrade('https'));
      server.on('tlsClientError', () => {}); // handshake failures are the client's problem
      httpsPort = await listen(server, config.httpsPort);
      httpsServer = server;
    }
    if (config.httpPort !== null) {
      const server = http.createServer(serverOptions, edge.onRequest('http'));
      server.on('upgrade', edge.onUpgrade('http'));
      httpPort = await listen(server, config.httpPort);
      for (const host of config.extraHttpHosts) {
        const extra = http.createServer(serverOptions, edge.onRequest('http'));
        extra.on('upgrade', edge.onUpgrade('http'));
        await listen(extra, httpPort, host);
      }
    }
  } catch (err) {
    for (const s of servers) s.close();
    throw err;
  }
  for (const s of servers) {
    // CONNECT: never an open proxy (without a listener Node just drops the connection).
    s.on('connect', edge.onConnect);
    s.on('clientError', edge.onClientError);
  }
  return { servers, httpsServer, h2Edge, httpsPort, httpPort };
}
