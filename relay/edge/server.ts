/**
 * The visitor edge's request handling: what the relay's HTTP(S) listeners call for each
 * HTTP/1.1 request, upgrade, CONNECT and parse error, and for each HTTP/2 stream. Every
 * kind goes through one `resolveTunnel` (relay/edge/resolve.ts) and then to the
 * forwarder for its transport (relay/edge/proxy.ts, relay/edge/h2.ts). Also counts the
 * exchanges in flight, which a graceful stop waits for. The listeners themselves are
 * made in relay/edge/listeners.ts; relay/index.ts only wires.
 */
import http from 'node:http';
import { constants as http2Constants } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { realClock, type Clock } from '../../shared/clock.js';
import { TUNNEL_ENDPOINT_PATH } from '../../shared/protocol/tunnel.js';
import { PEER_ENDPOINT_PATH } from '../cluster/peers.js';
import type { Cluster } from '../cluster/cluster.js';
import type { TunnelEndpoint } from '../control/endpoint.js';
import { h1Responder, h2Responder, type QueueResponder } from '../queue/responders.js';
import type { WebhookQueue } from '../queue/webhook-queue.js';
import type { RelayStats } from '../stats.js';
import type { TunnelRegistry } from '../tunnels/registry.js';
import { closeSoon, isClosing } from './connections.js';
import { forwardH2Request, sendH2Error, serveApexH2, type H2Request } from './h2.js';
import { pages, sendError, sendRawError, type ErrorPage } from './pages.js';
import type { ForwardResult } from './forward.js';
import { forwardRequest, forwardUpgrade } from './proxy.js';
import {
  whenResolved,
  type TunnelResolution,
  type TunnelResolver,
  type TunnelRoute,
} from './resolve.js';

export interface EdgeServerOptions {
  domain: string;
  /** How long to wait for a response head before answering 504. */
  responseTimeoutMs: number;
  /** Time for the response timeouts. Default the real clock. */
  clock?: Clock;
  resolver: TunnelResolver;
  registry: TunnelRegistry;
  cluster: Cluster | undefined;
  /** The tunnel endpoint clients dial (`/_qt/tunnel` on the apex). */
  endpoint: Pick<TunnelEndpoint, 'handleUpgrade'>;
  /** The admin app, loaded on first use. */
  adminApp: () => Promise<FastifyInstance>;
  /** Store-and-forward, when the relay has a data dir. */
  queue: WebhookQueue | undefined;
  stats: RelayStats;
  log: Logger;
}

export interface EdgeServer {
  /** 'request' listener of the HTTP or HTTPS server. */
  onRequest(
    scheme: 'http' | 'https',
  ): (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** 'upgrade' listener of the HTTP or HTTPS server. */
  onUpgrade(
    scheme: 'http' | 'https',
  ): (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** 'connect' listener: CONNECT is refused (never an open proxy). */
  onConnect(req: http.IncomingMessage, socket: Duplex): void;
  /** 'clientError' listener: a parse error or header timeout gets a bare 4xx, then the connection closes. */
  onClientError(err: NodeJS.ErrnoException, socket: Duplex): void;
  /** Each HTTP/2 stream (relay/edge/h2.ts createH2Edge's onRequest). */
  onH2Request(req: H2Request): void;
  /** From now on new requests get "shutting down". */
  shutDown(): void;
  readonly shuttingDown: boolean;
  /** Resolves once no visitor exchange is in progress. */
  whenIdle(): Promise<void>;
  /** Drops the waiters of whenIdle (the grace time is over). */
  forgetIdleWaiters(): void;
}

export function createEdgeServer(opts: EdgeServerOptions): EdgeServer {
  const { domain, resolver, registry, cluster, endpoint, queue, stats, log } = opts;
  const { responseTimeoutMs } = opts;
  const clock = opts.clock ?? realClock;
  let shuttingDown = false;

  // Visitor exchanges in progress (until the visitor's response is fully written):
  // a graceful shutdown waits for these, not only for the mux streams.
  let inflight = 0;
  let inflightIdle: (() => void)[] = [];
  const forwarding = (): void => {
    inflight++;
  };
  const onDone = (scheme: string, hostname: string) => (r: ForwardResult) => {
    inflight--;
    if (inflight === 0) for (const resolve of inflightIdle.splice(0)) resolve();
    stats.request(r);
    if (log.isLevelEnabled('debug')) log.debug({ scheme, hostname, ...r }, 'request');
  };

  /**
   * Answers a refused request. One that named a tunnel with no client connected (not a
   * refusal by the tunnel's rules) may be kept by store-and-forward (relay/queue/) if
   * that named tunnel opted in; else, or if the queue declines, the page.
   */
  const refuse = (
    r: Extract<TunnelResolution, { kind: 'refused' }>,
    req: http.IncomingMessage,
    responder: () => QueueResponder,
    scheme: 'http' | 'https',
    send: (page: ErrorPage) => void,
  ): void => {
    const tunnel: TunnelRoute | undefined = r.tunnel;
    if (
      tunnel === undefined ||
      queue === undefined ||
      shuttingDown ||
      registry.lookup(tunnel.label)?.pickSession() !== undefined
    ) {
      send(r.page);
      return;
    }
    queue.offer(req, responder(), tunnel.label, tunnel.hostname, scheme).then(
      (handled) => {
        if (!handled) send(r.page);
      },
      (err: unknown) => {
        log.error({ err }, 'queue failed to take a request');
        send(r.page);
      },
    );
  };

  // Responses not yet finished, per visitor connection, oldest first (Node writes them
  // in order). A parse error on that connection must not write a raw error response
  // into the middle of one that has already started (see onClientError).
  const unfinished = new WeakMap<Duplex, http.ServerResponse[]>();
  const track = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const socket = req.socket;
    const list = unfinished.get(socket) ?? [];
    if (list.length === 0) unfinished.set(socket, list);
    list.push(res);
    const forget = (): void => {
      const i = list.indexOf(res);
      if (i !== -1) list.splice(i, 1);
    };
    res.once('finish', forget);
    res.once('close', forget);
  };

  /**
   * Runs `then` once every response started earlier on `socket` is complete. An upgrade
   * pipelined behind a request still in flight must not get its 101 first: the earlier
   * response would then land inside the upgraded stream.
   */
  const afterEarlierResponses = (socket: Duplex, then: () => void): void => {
    const list = unfinished.get(socket);
    const last = list?.[list.length - 1];
    if (last === undefined || socket.destroyed) {
      then();
      return;
    }
    socket.pause(); // bytes after the upgrade stay buffered until it is handled
    let called = false;
    const next = (): void => {
      if (called) return;
      called = true;
      afterEarlierResponses(socket, then);
    };
    last.once('finish', next);
    last.once('close', next);
  };

  // Connections that got an error answer close after it (edge/connections.ts), and
  // nothing more read from them is acted on. Node's parser goes on to requests
  // pipelined behind the refused one (it has already parsed them), and a request
  // refused for its framing is exactly where a smuggled one hides.
  const onRequest =
    (scheme: 'http' | 'https') =>
    (req: http.IncomingMessage, res: http.ServerResponse): void => {
      if (isClosing(req.socket)) {
        req.resume();
        res.shouldKeepAlive = false;
        return; // never answered: the connection ends after the refusal
      }
      track(req, res);
      whenResolved(resolver.resolveTunnel(req), (r) => {
        if (r.kind === 'apex') {
          opts.adminApp().then(
            (app) => app.routing(req, res),
            (err: unknown) => {
              log.error({ err }, 'admin app failed to load');
              res.statusCode = 500;
              res.end();
            },
          );
          return;
        }
        if (r.kind === 'refused') {
          refuse(
            r,
            req,
            () => h1Responder(req, res),
            scheme,
            (page) => sendError(res, req.headers, page),
          );
          return;
        }
        forwarding();
        forwardRequest(req, res, r.session, {
          stripAuthorization: r.stripAuthorization,
          hostname: r.tunnel.hostname,
          scheme,
          responseTimeoutMs,
          clock,
          // A connection that is going away refuses requests it has not read: they go
          // to another connection or replica of the same tunnel (retrySession).
          ...resolver.via(r, onDone(scheme, r.tunnel.hostname)),
        });
      });
    };

  const handleUpgrade = (
    scheme: 'http' | 'https',
    req: http.IncomingMessage,
    socket: Duplex,
    head: Buffer,
  ): void => {
    if (isClosing(socket)) {
      socket.end(); // pipelined behind a refused request: flush that answer and close
      return;
    }
    whenResolved(resolver.resolveTunnel(req), (r) => {
      if (r.kind === 'apex') {
        const pathname = (req.url ?? '').split('?')[0];
        if (pathname === TUNNEL_ENDPOINT_PATH && !shuttingDown) {
          endpoint.handleUpgrade(req, socket, head);
        } else if (pathname === PEER_ENDPOINT_PATH && cluster !== undefined) {
          cluster.handlePeerUpgrade(req, socket, head);
        } else {
          sendRawError(socket, req.headers, pages.unknownHost(r.route.kind, domain));
        }
        return;
      }
      // Upgrades are not kept by store-and-forward: the page at once.
      if (r.kind === 'refused') {
        sendRawError(socket, req.headers, r.page);
        return;
      }
      forwarding();
      const via = resolver.via(r, onDone(scheme, r.tunnel.hostname));
      forwardUpgrade(req, socket, head, r.session, {
        stripAuthorization: r.stripAuthorization,
        hostname: r.tunnel.hostname,
        scheme,
        responseTimeoutMs,
        clock,
        onDone: via.onDone,
        ...(via.wrapHead !== undefined ? { wrapHead: via.wrapHead } : {}),
      });
    });
  };

  // HTTP/2 visitors (HTTPS only): the same guard, routing, access checks and limits
  // as over HTTP/1.1, on the stream's h1-shaped view (relay/edge/h2.ts).
  const onH2Request = (req: H2Request): void => {
    const { stream, message } = req;
    whenResolved(resolver.resolveTunnel(message, req.problem), (r) => {
      if (r.kind === 'apex') {
        opts
          .adminApp()
          .then((app) => serveApexH2(req, app))
          .catch((err: unknown) => {
            log.error({ err }, 'admin request over h2 failed');
            if (!stream.destroyed) stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR);
          });
        return;
      }
      if (r.kind === 'refused') {
        refuse(
          r,
          message,
          () => h2Responder(stream, message),
          'https',
          (page) => sendH2Error(stream, message.headers, page),
        );
        return;
      }
      if (stream.destroyed) return; // the visitor cancelled while the tunnel was held
      forwarding();
      forwardH2Request(req, r.session, {
        stripAuthorization: r.stripAuthorization,
        hostname: r.tunnel.hostname,
        scheme: 'https',
        responseTimeoutMs,
        clock,
        ...resolver.via(r, onDone('https', r.tunnel.hostname)),
      });
    });
  };

  return {
    onRequest,
    onUpgrade: (scheme) => (req, socket, head) => {
      socket.on('error', destroySocket);
      if (unfinished.get(socket)?.length) {
        afterEarlierResponses(socket, () => {
          if (!socket.destroyed) handleUpgrade(scheme, req, socket, head);
        });
        return;
      }
      handleUpgrade(scheme, req, socket, head);
    },
    onConnect(req, socket) {
      socket.on('error', destroySocket);
      sendRawError(socket, req.headers, pages.connectRefused());
    },
    onClientError(err, socket) {
      if (!socket.writable) return void socket.destroy();
      // Only an HTTP error gets an HTTP answer. The HTTPS server also routes TLS
      // handshake failures here (handshake timeout included): an answer written to a
      // TLS socket that never finished its handshake waits for it forever, and the
      // connection was never closed.
      const code = err.code ?? '';
      if (!code.startsWith('HPE_') && code !== 'ERR_HTTP_REQUEST_TIMEOUT') {
        return void socket.destroy();
      }
      // A request body that turns out malformed (bad chunk) after its response began:
      // an error response now would land inside that body. Drop the connection instead,
      // so the response is visibly truncated, as Node's own default handler does.
      if (unfinished.get(socket)?.[0]?.headersSent === true) return void socket.destroy();
      const status =
        code === 'HPE_HEADER_OVERFLOW' ? 431 : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      socket.end(
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
      );
      closeSoon(socket);
    },
    onH2Request,
    shutDown() {
      shuttingDown = true;
    },
    get shuttingDown() {
      return shuttingDown;
    },
    whenIdle: () =>
      inflight === 0 ? Promise.resolve() : new Promise((resolve) => inflightIdle.push(resolve)),
    forgetIdleWaiters() {
      inflightIdle = [];
    },
  };
}

/**
 * 'error' listener for a raw socket (upgrades, CONNECT): drop the connection. One shared
 * function, not a closure: a closure in the upgrade handler keeps that handler's whole
 * scope (the upgrade request, its headers, the head buffer) alive as long as the socket,
 * which for a tunnel connection is its lifetime (about 1 KiB per idle tunnel).
 */
function destroySocket(this: Duplex): void {
  this.destroy();
}
