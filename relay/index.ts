/**
 * startRelay(config): wires the visitor edge, the tunnel endpoint, the registry and
 * the admin app, and listens. Used by `quick-tunnel relay` and by the CLI's embedded
 * local relay.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { constants as http2Constants } from 'node:http2';
import https from 'node:https';
import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { MuxSession } from '../shared/mux/session.js';
import type { FrameTransport } from '../shared/mux/transport.js';
import { TUNNEL_ENDPOINT_PATH } from '../shared/protocol/tunnel.js';
import { VERSION } from '../shared/version.js';
import type { AcmeManager } from './acme/manager.js';
import { Cluster, clusterUnavailablePage, type Resolution } from './cluster/cluster.js';
import { PEER_ENDPOINT_PATH } from './cluster/peers.js';
import { TunnelEndpoint } from './control/endpoint.js';
import { lockDataDir, type DataDirLock } from './data-dir.js';
import { loadRelayCertificate, type RelayCertificate } from './edge/certificate.js';
import { checkAccess } from './edge/access.js';
import {
  RELAY_DEFAULTS,
  resolveRelayConfig,
  type RelayConfig,
  type ResolvedRelayConfig,
} from './config.js';
import { VisitorConnections, closeSoon, isClosing } from './edge/connections.js';
import { guardRequest } from './edge/guard.js';
import { routeHost, soleTunnelRoute } from './edge/host.js';
import { FailedAuthThrottle, RateLimiter } from './edge/limits.js';
import { pages, sendError, sendRawError, type ErrorPage } from './edge/pages.js';
import {
  forwardRequest,
  forwardUpgrade,
  type ForwardContext,
  type ForwardResult,
} from './edge/proxy.js';
import {
  HTTPS_ALPN_PROTOCOLS,
  createH2Edge,
  forwardH2Request,
  routeAlpn,
  sendH2Error,
  serveApexH2,
  type H2Edge,
  type H2Request,
} from './edge/h2.js';
import { h1Responder, h2Responder } from './queue/responders.js';
import { WebhookQueue } from './queue/webhook-queue.js';
import { RelayStats } from './stats.js';
import { NamedTunnels } from './tunnels/named.js';
import { TunnelRegistry } from './tunnels/registry.js';
import { JsonFileTunnelStore, MemoryTunnelStore } from './tunnels/store.js';

export type { RelayConfig } from './config.js';

export interface Relay {
  readonly domain: string;
  readonly httpsPort: number | undefined;
  readonly httpPort: number | undefined;
  readonly certificate: RelayCertificate | undefined;
  /** ACME mode: the certificate manager (status, renewal). */
  readonly acme: AcmeManager | undefined;
  readonly registry: TunnelRegistry;
  /** Named tunnels: the durable reservations and their live status. */
  readonly named: NamedTunnels;
  readonly stats: RelayStats;
  readonly log: Logger;
  /** Tunnel connections open right now, those still in their handshake included. */
  readonly connections: number;
  /** Visitor TCP connections open right now (both listeners, tunnel clients' included). */
  readonly visitorConnections: number;
  /** Serves a tunnel client over an in-process transport (embedded mode). */
  attach(transport: FrameTransport): MuxSession;
  urlsFor(hostname: string): string[];
  /** The URL clients dial (wss://domain:port/_qt/tunnel), if HTTPS is on. */
  readonly tunnelUrl: string | undefined;
  /** Graceful stop: GOAWAY to clients, stop accepting, wait up to `graceMs`, close. */
  close(graceMs?: number): Promise<void>;
  /** Cluster mode: this relay's node (id, peers, health); undefined for a single relay. */
  readonly cluster: Cluster | undefined;
}

/**
 * Starts a relay. A mistake in `input` (bad port or domain, options that contradict each
 * other) rejects with a ConfigError before anything is opened.
 */
export async function startRelay(input: RelayConfig): Promise<Relay> {
  const config = resolveRelayConfig(input);
  // One relay per data dir, and the dir is private (relay/data-dir.ts).
  const lock = config.dataDir === null ? undefined : await lockDataDir(config.dataDir);
  try {
    return await startWithDataDir(config, lock);
  } catch (err) {
    await lock?.release();
    throw err;
  }
}

async function startWithDataDir(
  config: ResolvedRelayConfig,
  lock: DataDirLock | undefined,
): Promise<Relay> {
  const baseLog = config.logger;
  const domain = config.domain;
  const cluster =
    config.cluster === undefined
      ? undefined
      : await Cluster.connect(config.cluster, domain, baseLog);
  // In cluster mode every line names the node.
  const log = cluster?.logger ?? baseLog;
  const responseTimeoutMs = config.responseTimeoutMs;
  const startedAt = Date.now();

  let certificate: RelayCertificate | undefined;
  if (config.httpsPort !== null && config.acme === undefined) {
    certificate = await loadRelayCertificate({
      domain,
      dataDir: config.dataDir ?? '',
      certFile: config.certFile,
      keyFile: config.keyFile,
    });
  }
  const { key: resumeKey, existed: restarted } =
    cluster !== undefined
      ? { key: cluster.resumeKey, existed: false }
      : config.dataDir === null
        ? { key: randomBytes(32), existed: false }
        : await loadOrCreateKey(config.dataDir);

  // Set once the queue is open; a client that registers gets its queue delivered.
  let queue: WebhookQueue | undefined;
  const registry = new TunnelRegistry({
    holdMs: config.holdMs,
    restarted,
    // After this tick: the endpoint sets the tunnel's access rules right after attaching.
    onRegistered: (tunnel) => queueMicrotask(() => queue?.connected(tunnel)),
    onUnregistered: (tunnel) => {
      if (cluster !== undefined && registry.lookup(tunnel.label) === undefined) {
        cluster.released(tunnel.label);
      }
      log.info(
        {
          event: 'unregistered',
          tunnelId: tunnel.id,
          name: tunnel.kind === 'named' ? tunnel.label : undefined,
          hostname: `${tunnel.label}.${domain}`,
          kind: tunnel.kind,
          connections: tunnel.sessions.length,
        },
        'tunnel unregistered',
      );
    },
  });

  // Filled in once listening: URLs carry the real ports.
  const ports = { https: undefined as number | undefined, http: undefined as number | undefined };
  const urlsFor = (hostname: string): string[] => {
    const urls: string[] = [];
    const hp = config.publicHttpsPort ?? ports.https;
    if (hp !== undefined) urls.push(`https://${hostname}${hp === 443 ? '' : `:${hp}`}`);
    const p = config.publicHttpPort ?? ports.http;
    if (p !== undefined) urls.push(`http://${hostname}${p === 80 ? '' : `:${p}`}`);
    return urls;
  };

  const store =
    config.store ??
    cluster?.store ??
    (config.dataDir === null
      ? new MemoryTunnelStore()
      : await JsonFileTunnelStore.open(config.dataDir));
  const stats = new RelayStats();
  const named = new NamedTunnels({
    store,
    registry,
    domain,
    urlsFor,
    log,
    maxPerClient: config.maxNamedTunnelsPerClient,
    creationsPerHour: config.namedTunnelCreationsPerHour,
  });
  if (config.dataDir !== null) {
    queue = await WebhookQueue.open({
      dataDir: config.dataDir,
      limits: config.queue,
      registry,
      named,
      log,
      rateLimit: (label, hostname) => {
        const waitS = rateLimiter?.take(label) ?? 0;
        return waitS > 0 ? pages.rateLimited(hostname, waitS) : undefined;
      },
      // In a cluster, a queue kept here goes out through the relay its client is on.
      remote:
        cluster === undefined
          ? undefined
          : async (label) => {
              const r = await cluster.resolve(label, 0, () => undefined);
              if (r.kind !== 'remote') return undefined;
              return {
                session: r.session,
                wrapHead: (head) => ({ ...head, qtForward: { label, epoch: r.epoch } }),
              };
            },
    });
  }
  const adminTokens = config.adminTokens;

  const authThrottle = new FailedAuthThrottle(config.maxFailedAuthPerMinute, log);
  const endpoint = new TunnelEndpoint({
    authThrottle,
    named,
    stats,
    registry,
    tokens: config.tokens,
    resumeKey,
    relayVersion: VERSION,
    urlsFor,
    domain,
    mux: config.mux,
    log,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    creationsPerMinute: config.creationsPerMinute,
    cluster,
  });

  let acme: AcmeManager | undefined;
  let admin: Promise<FastifyInstance> | undefined;
  const adminApp = (): Promise<FastifyInstance> => {
    admin ??= import('./admin/app.js').then((m) =>
      m.buildAdminApp({
        authThrottle,
        named,
        stats,
        tokens: config.tokens,
        adminTokens,
        domain,
        registry,
        relayVersion: VERSION,
        open: config.tokens.length === 0,
        startedAt,
        queue,
        ...(config.acme === undefined ? {} : { certificateStatus: () => acme?.status() }),
        publicUrl: urlsFor(domain)[0],
        selfSigned: certificate?.selfSigned === true,
        cluster,
      }),
    );
    return admin;
  };

  const routeFor = (host: string | undefined) => {
    const route = routeHost(host, domain);
    return config.soleTunnelOnIpHosts ? soleTunnelRoute(host, route, domain, registry) : route;
  };

  const guardLimits = config.guard;
  const rateLimiter =
    config.rateLimitPerTunnel > 0
      ? new RateLimiter({
          ratePerSecond: config.rateLimitPerTunnel,
          burst: config.rateLimitPerTunnel * 2,
        })
      : undefined;

  let shuttingDown = false;
  // Visitor exchanges in progress (until the visitor's response is fully written):
  // a graceful shutdown waits for these, not only for the mux streams.
  let inflight = 0;
  let inflightIdle: (() => void)[] = [];
  const forwarding = (): void => {
    inflight++;
  };
  const whenNoInflight = (): Promise<void> =>
    inflight === 0 ? Promise.resolve() : new Promise((resolve) => inflightIdle.push(resolve));
  const onDone = (scheme: string, hostname: string) => (r: ForwardResult) => {
    inflight--;
    if (inflight === 0) for (const resolve of inflightIdle.splice(0)) resolve();
    stats.request(r);
    if (log.isLevelEnabled('debug')) log.debug({ scheme, hostname, ...r }, 'request');
  };

  /**
   * Finds a live session for `label`. A tunnel that is reconnecting (it just lost its
   * last connection, or the relay just restarted) is waited for up to the hold window,
   * so a quick reconnect is invisible to visitors; then 503 (or 404 if it never existed).
   */
  /**
   * The page for a tunnel with no live session: 503 "tunnel offline" when it was online
   * lately or is a reserved named tunnel (its client is just not running), else 404.
   */
  const goneOrOffline = async (
    label: string,
    hostname: string,
    known: boolean,
  ): Promise<ErrorPage> =>
    known || (await named.isReserved(label))
      ? pages.tunnelOffline(hostname)
      : pages.noSuchTunnel(hostname);

  const withSession = (
    req: http.IncomingMessage,
    label: string,
    hostname: string,
    then: Then,
  ): void => {
    const tunnel = registry.lookup(label);
    // In cluster mode, only while this relay's lease on the hostname is valid.
    const localSession = (): MuxSession | undefined =>
      cluster === undefined || cluster.servesLocally(label)
        ? registry.lookup(label)?.pickSession()
        : undefined;
    const session = localSession();
    if (session !== undefined) {
      admitted(req, label, hostname, session, then);
      return;
    }
    if (cluster !== undefined) {
      // Another relay may hold it; while it moves between relays, wait up to the hold.
      cluster.resolve(label, registry.holdMs, localSession).then(
        (r) => {
          if (shuttingDown) then(undefined, pages.shuttingDown(), false);
          else if (r.kind === 'local') admitted(req, label, hostname, r.session, then);
          else if (r.kind === 'remote') admitted(req, label, hostname, r.session, then, r);
          else {
            then(
              undefined,
              r.unavailable
                ? clusterUnavailablePage(hostname)
                : r.known || tunnel !== undefined || registry.wasRecentlyOnline(label)
                  ? pages.tunnelOffline(hostname)
                  : pages.noSuchTunnel(hostname),
              false,
            );
          }
        },
        () => then(undefined, clusterUnavailablePage(hostname), false),
      );
      return;
    }
    const budget = registry.holdBudgetMs(label);
    const known = tunnel !== undefined || registry.wasRecentlyOnline(label);
    if (budget <= 0) {
      goneOrOffline(label, hostname, known).then(
        (page) => then(undefined, page, false),
        () => then(undefined, pages.tunnelOffline(hostname), false),
      );
      return;
    }
    registry.waitForSession(label, budget).then(
      (held) => {
        if (held !== undefined && !shuttingDown) {
          admitted(req, label, hostname, held, then);
          return;
        }
        const stillKnown =
          registry.lookup(label) !== undefined || registry.wasRecentlyOnline(label) || known;
        if (shuttingDown) {
          then(undefined, pages.shuttingDown(), false);
          return;
        }
        goneOrOffline(label, hostname, stillKnown).then(
          (page) => then(undefined, page, false),
          () => then(undefined, pages.tunnelOffline(hostname), false),
        );
      },
      () => then(undefined, pages.tunnelOffline(hostname), false),
    );
  };

  /**
   * The tunnel's own rules, checked at the relay before anything reaches the laptop:
   * its access policy (basic auth, IP allowlist) and the relay's per-tunnel rate limit.
   * They read the same tunnel the request is routed to.
   */
  const admitted = (
    req: http.IncomingMessage,
    label: string,
    hostname: string,
    session: MuxSession,
    then: Then,
    remote?: RemoteRoute,
  ): void => {
    const tunnel = registry.lookup(label);
    // A tunnel held by another relay: its rules came with the route (from its HELLO there).
    const access = remote !== undefined ? remote.access : tunnel?.access;
    if (access !== undefined) {
      const refused = checkAccess(req, access, hostname);
      if (refused !== undefined) {
        then(undefined, refused, false);
        return;
      }
    }
    if (rateLimiter !== undefined) {
      const waitS = rateLimiter.take(label);
      if (waitS > 0) {
        then(undefined, pages.rateLimited(hostname, waitS), false);
        return;
      }
    }
    if (tunnel !== undefined && remote === undefined) tunnel.requests++;
    then(session, undefined, access?.basicAuth !== undefined, remote);
  };

  /** ForwardContext fields for a request carried to another relay of the cluster. */
  const viaPeer = (
    label: string,
    remote: RemoteRoute | undefined,
    done: (r: ForwardResult) => void,
  ): {
    onDone: (r: ForwardResult) => void;
    wrapHead?: NonNullable<ForwardContext['wrapHead']>;
    retrySession: () => MuxSession | undefined;
  } => {
    if (remote === undefined || cluster === undefined) {
      return { onDone: done, retrySession: () => registry.lookup(label)?.pickSession() };
    }
    return {
      onDone: (r) => {
        cluster.forwarded(remote.node, r);
        done(r);
      },
      wrapHead: (head) => ({ ...head, qtForward: { label, epoch: remote.epoch } }),
      retrySession: () => {
        const next = cluster.retryTarget(label, remote.node);
        return next?.kind === 'remote' ? next.session : undefined;
      },
    };
  };

  // Responses not yet finished, per visitor connection, oldest first (Node writes them
  // in order). A parse error on that connection must not write a raw error response
  // into the middle of one that has already started (see 'clientError' below).
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

  // Connections that got an error answer close after it (edge/connections.ts), and
  // nothing more read from them is acted on. Node's parser goes on to requests
  // pipelined behind the refused one (it has already parsed them), and a request
  // refused for its framing is exactly where a smuggled one hides.
  const makeHandler =
    (scheme: 'http' | 'https') =>
    (req: http.IncomingMessage, res: http.ServerResponse): void => {
      if (isClosing(req.socket)) {
        req.resume();
        res.shouldKeepAlive = false;
        return; // never answered: the connection ends after the refusal
      }
      track(req, res);
      // One parsed Host value decides routing and every check after it.
      const guarded = guardRequest(req, guardLimits);
      if ('page' in guarded) {
        res.shouldKeepAlive = false;
        sendError(res, req.headers, guarded.page);
        return;
      }
      const route = routeFor(guarded.host);
      if (route.kind === 'apex') {
        adminApp().then(
          (app) => app.routing(req, res),
          (err: unknown) => {
            log.error({ err }, 'admin app failed to load');
            res.statusCode = 500;
            res.end();
          },
        );
        return;
      }
      if (route.kind === 'unknown') {
        sendError(res, req.headers, pages.unknownHost(route.host, domain));
        return;
      }
      if (shuttingDown) {
        sendError(res, req.headers, pages.shuttingDown());
        return;
      }
      withSession(req, route.label, route.hostname, (session, page, strip, remote) => {
        if (session === undefined) {
          const offline = page ?? pages.noSuchTunnel(route.hostname);
          // No client connected (not a refusal by the tunnel's rules): a named tunnel
          // that opted in keeps the request (relay/queue/).
          if (
            queue !== undefined &&
            !shuttingDown &&
            registry.lookup(route.label)?.pickSession() === undefined
          ) {
            queue.offer(req, h1Responder(req, res), route.label, route.hostname, scheme).then(
              (handled) => {
                if (!handled) sendError(res, req.headers, offline);
              },
              (err: unknown) => {
                log.error({ err }, 'queue failed to take a request');
                sendError(res, req.headers, offline);
              },
            );
            return;
          }
          sendError(res, req.headers, offline);
          return;
        }
        forwarding();
        forwardRequest(req, res, session, {
          stripAuthorization: strip,
          hostname: route.hostname,
          scheme,
          responseTimeoutMs,
          // A connection that is going away refuses requests it has not read: they go
          // to another connection or replica of the same tunnel (retrySession).
          ...viaPeer(route.label, remote, onDone(scheme, route.hostname)),
        });
      });
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

  const makeUpgradeHandler =
    (scheme: 'http' | 'https') =>
    (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
      socket.on('error', destroySocket);
      if (unfinished.get(socket)?.length) {
        afterEarlierResponses(socket, () => {
          if (!socket.destroyed) handleUpgrade(scheme, req, socket, head);
        });
        return;
      }
      handleUpgrade(scheme, req, socket, head);
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
    const guarded = guardRequest(req, guardLimits);
    if ('page' in guarded) {
      sendRawError(socket, req.headers, guarded.page);
      return;
    }
    const route = routeFor(guarded.host);
    if (route.kind === 'apex') {
      const pathname = (req.url ?? '').split('?')[0];
      if (pathname === TUNNEL_ENDPOINT_PATH && !shuttingDown) {
        endpoint.handleUpgrade(req, socket, head);
      } else if (pathname === PEER_ENDPOINT_PATH && cluster !== undefined) {
        cluster.handlePeerUpgrade(req, socket, head);
      } else {
        sendRawError(socket, req.headers, pages.unknownHost(route.kind, domain));
      }
      return;
    }
    if (route.kind === 'unknown') {
      sendRawError(socket, req.headers, pages.unknownHost(route.host, domain));
      return;
    }
    if (shuttingDown) {
      sendRawError(socket, req.headers, pages.shuttingDown());
      return;
    }
    withSession(req, route.label, route.hostname, (session, page, strip, remote) => {
      if (session === undefined) {
        sendRawError(socket, req.headers, page ?? pages.noSuchTunnel(route.hostname));
        return;
      }
      forwarding();
      const via = viaPeer(route.label, remote, onDone(scheme, route.hostname));
      forwardUpgrade(req, socket, head, session, {
        stripAuthorization: strip,
        hostname: route.hostname,
        scheme,
        responseTimeoutMs,
        onDone: via.onDone,
        ...(via.wrapHead !== undefined ? { wrapHead: via.wrapHead } : {}),
      });
    });
  };

  // HTTP/2 visitors (HTTPS only): the same guard, routing, access checks and limits
  // as makeHandler, on the stream's h1-shaped view (relay/edge/h2.ts).
  const handleH2 = (req: H2Request): void => {
    const { stream, message } = req;
    const guarded =
      req.problem !== undefined ? { page: req.problem } : guardRequest(message, guardLimits);
    if ('page' in guarded) {
      sendH2Error(stream, message.headers, guarded.page);
      return;
    }
    const route = routeFor(guarded.host);
    if (route.kind === 'apex') {
      adminApp()
        .then((app) => serveApexH2(req, app))
        .catch((err: unknown) => {
          log.error({ err }, 'admin request over h2 failed');
          if (!stream.destroyed) stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR);
        });
      return;
    }
    if (route.kind === 'unknown') {
      sendH2Error(stream, message.headers, pages.unknownHost(route.host, domain));
      return;
    }
    if (shuttingDown) {
      sendH2Error(stream, message.headers, pages.shuttingDown());
      return;
    }
    withSession(message, route.label, route.hostname, (session, page, strip, remote) => {
      if (session === undefined) {
        const offline = page ?? pages.noSuchTunnel(route.hostname);
        // As over HTTP/1.1: a named tunnel that opted in keeps the request (relay/queue/).
        if (
          queue !== undefined &&
          !shuttingDown &&
          registry.lookup(route.label)?.pickSession() === undefined
        ) {
          queue
            .offer(message, h2Responder(stream, message), route.label, route.hostname, 'https')
            .then(
              (handled) => {
                if (!handled) sendH2Error(stream, message.headers, offline);
              },
              (err: unknown) => {
                log.error({ err }, 'queue failed to take a request');
                sendH2Error(stream, message.headers, offline);
              },
            );
          return;
        }
        sendH2Error(stream, message.headers, offline);
        return;
      }
      if (stream.destroyed) return; // the visitor cancelled while the tunnel was held
      forwarding();
      forwardH2Request(req, session, {
        stripAuthorization: strip,
        hostname: route.hostname,
        scheme: 'https',
        responseTimeoutMs,
        ...viaPeer(route.label, remote, onDone('https', route.hostname)),
      });
    });
  };
  let h2Edge: H2Edge | undefined;

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

  const visitors = new VisitorConnections(config.visitorConnections, log);
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
    server.maxHeadersCount = guardLimits.maxHeaders + 1;
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
  try {
    if (config.httpsPort !== null) {
      // ACME mode: no certificate until the manager has one (handshakes fail meanwhile).
      const server = https.createServer(
        {
          ...serverOptions,
          ...(certificate === undefined ? {} : { cert: certificate.cert, key: certificate.key }),
          minVersion: 'TLSv1.2',
          // A client that connects and never finishes the TLS handshake is dropped.
          handshakeTimeout: 10_000,
          ALPNProtocols: config.http2 === false ? ['http/1.1'] : HTTPS_ALPN_PROTOCOLS,
        },
        makeHandler('https'),
      );
      if (config.http2 !== false) {
        h2Edge = createH2Edge({
          limits: config.http2,
          onRequest: handleH2,
          onSessionError: (err) => log.debug({ err }, 'h2 visitor session'),
        });
        routeAlpn(server, h2Edge);
      }
      server.on('upgrade', makeUpgradeHandler('https'));
      server.on('tlsClientError', () => {}); // handshake failures are the client's problem
      ports.https = await listen(server, config.httpsPort);
      httpsServer = server;
    }
    if (config.httpPort !== null) {
      const server = http.createServer(serverOptions, makeHandler('http'));
      server.on('upgrade', makeUpgradeHandler('http'));
      ports.http = await listen(server, config.httpPort);
      for (const host of config.extraHttpHosts) {
        const extra = http.createServer(serverOptions, makeHandler('http'));
        extra.on('upgrade', makeUpgradeHandler('http'));
        await listen(extra, ports.http, host);
      }
    }
  } catch (err) {
    for (const s of servers) s.close();
    await cluster?.close();
    throw err;
  }
  for (const s of servers) {
    // CONNECT: never an open proxy (without a listener Node just drops the connection).
    s.on('connect', (req: http.IncomingMessage, socket: Duplex) => {
      socket.on('error', destroySocket);
      sendRawError(socket, req.headers, pages.connectRefused());
    });
    s.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (!socket.writable) return socket.destroy();
      // Only an HTTP error gets an HTTP answer. The HTTPS server also routes TLS
      // handshake failures here (handshake timeout included): an answer written to a
      // TLS socket that never finished its handshake waits for it forever, and the
      // connection was never closed.
      const code = err.code ?? '';
      if (!code.startsWith('HPE_') && code !== 'ERR_HTTP_REQUEST_TIMEOUT') {
        return socket.destroy();
      }
      // A request body that turns out malformed (bad chunk) after its response began:
      // an error response now would land inside that body. Drop the connection instead,
      // so the response is visibly truncated, as Node's own default handler does.
      if (unfinished.get(socket)?.[0]?.headersSent === true) return socket.destroy();
      const status =
        err.code === 'HPE_HEADER_OVERFLOW'
          ? 431
          : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? 408
            : 400;
      socket.end(
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
      );
      closeSoon(socket);
    });
  }

  if (config.acme !== undefined) {
    const { startRelayAcme } = await import('./acme/relay-tls.js');
    acme = await startRelayAcme({
      // Cluster mode: one relay renews (a Redis lock), all share the certificate.
      settings: { cluster: cluster?.state, ...config.acme },
      domain,
      dataDir: config.dataDir,
      log,
      server: httpsServer,
      tls: { minVersion: 'TLSv1.2' },
    }).catch((err: unknown) => {
      for (const s of servers) s.close();
      throw err;
    });
  }

  const tunnelUrl =
    ports.https !== undefined ? `wss://${domain}:${ports.https}${TUNNEL_ENDPOINT_PATH}` : undefined;

  if (cluster !== undefined) {
    const scheme = ports.https !== undefined ? 'https' : 'http';
    const port = ports.https ?? ports.http;
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    cluster.start({
      nodeUrl: config.cluster?.nodeUrl ?? `${scheme}://${host}:${port}`,
      registry,
      cert: certificate?.cert,
      fingerprint256: certificate?.fingerprint256,
    });
  }

  log.info(
    {
      event: 'listening',
      domain,
      host: config.host,
      httpsPort: ports.https,
      httpPort: ports.http,
      certificate: certificate?.certPath ?? acme?.certificatePath,
      fingerprint256: certificate?.fingerprint256,
      open: config.tokens.length === 0,
      namedTunnels: (await store.list()).length,
      version: VERSION,
    },
    'relay listening',
  );

  let closing: Promise<void> | undefined;
  return {
    domain,
    httpsPort: ports.https,
    httpPort: ports.http,
    certificate,
    acme,
    registry,
    named,
    stats,
    log,
    tunnelUrl,
    urlsFor,
    get connections() {
      return endpoint.sessions.size;
    },
    get visitorConnections() {
      return visitors.size;
    },
    cluster,
    attach: (transport) => endpoint.attach(transport, 'in-process'),
    close(graceMs = RELAY_DEFAULTS.closeGraceMs) {
      closing ??= (async () => {
        shuttingDown = true;
        await acme?.close();
        for (const s of servers) s.close();
        for (const s of servers) s.closeIdleConnections();
        h2Edge?.close();
        registry.releaseAll();
        // In a cluster, clients move to the other relays: spread the GOAWAYs over up to
        // half the grace time (at most 5 s), so they do not all arrive there at once.
        const spreadMs = cluster === undefined ? 0 : Math.min(graceMs / 2, 5_000);
        const drained = Promise.all([endpoint.drain(spreadMs), whenNoInflight()]);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([drained, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
        inflightIdle = [];
        clearTimeout(timer);
        endpoint.close();
        await queue?.close();
        await cluster?.close();
        for (const s of servers) s.closeAllConnections();
        h2Edge?.destroyAll();
        if (admin !== undefined) await (await admin).close();
        await store.close();
        await lock?.release();
        log.info({ event: 'stopped' }, 'relay stopped');
      })();
      return closing;
    },
  };
}

/** A tunnel held by another relay of the cluster, as withSession found it. */
type RemoteRoute = Extract<Resolution, { kind: 'remote' }>;

/** How withSession answers: a session to forward over, or the page to answer with. */
type Then = (
  session: MuxSession | undefined,
  page: ErrorPage | undefined,
  strip: boolean,
  remote?: RemoteRoute,
) => void;

/**
 * 'error' listener for a raw socket (upgrades, CONNECT): drop the connection. One shared
 * function, not a closure: a closure in the upgrade handler keeps that handler's whole
 * scope (the upgrade request, its headers, the head buffer) alive as long as the socket,
 * which for a tunnel connection is its lifetime (about 1 KiB per idle tunnel).
 */
function destroySocket(this: Duplex): void {
  this.destroy();
}

async function loadOrCreateKey(dataDir: string): Promise<{ key: Buffer; existed: boolean }> {
  const file = path.join(dataDir, 'resume.key');
  try {
    const key = await readFile(file);
    if (key.length >= 32) return { key, existed: true };
  } catch {
    // first start: create it below
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, key, { mode: 0o600 });
  await rename(tmp, file);
  return { key, existed: false };
}
