/**
 * startRelay(config): wires the visitor edge, the tunnel endpoint, the registry and
 * the admin app, and listens. Used by `quick-tunnel relay` and by the CLI's embedded
 * local relay.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { ClockTimer } from '../shared/clock.js';
import type { MuxSession } from '../shared/mux/session.js';
import type { FrameTransport } from '../shared/mux/transport.js';
import { TUNNEL_ENDPOINT_PATH } from '../shared/protocol/tunnel.js';
import { VERSION } from '../shared/version.js';
import type { AcmeManager } from './acme/manager.js';
import { Cluster } from './cluster/cluster.js';
import {
  RELAY_DEFAULTS,
  resolveRelayConfig,
  type RelayConfig,
  type ResolvedRelayConfig,
} from './config.js';
import { TunnelEndpoint } from './control/endpoint.js';
import { loadOrCreateKey, lockDataDir, type DataDirLock } from './data-dir.js';
import { loadRelayCertificate, type RelayCertificate } from './edge/certificate.js';
import { VisitorConnections } from './edge/connections.js';
import { FailedAuthThrottle, RateLimiter } from './edge/limits.js';
import { listenForVisitors, type Listeners } from './edge/listeners.js';
import { pages } from './edge/pages.js';
import { createTunnelResolver } from './edge/resolve.js';
import { createEdgeServer } from './edge/server.js';
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

  const rateLimiter =
    config.rateLimitPerTunnel > 0
      ? new RateLimiter({
          ratePerSecond: config.rateLimitPerTunnel,
          burst: config.rateLimitPerTunnel * 2,
          now: () => config.clock.now(),
        })
      : undefined;

  // Set once the queue is open; a client that registers gets its queue delivered.
  let queue: WebhookQueue | undefined;
  const registry = new TunnelRegistry({
    holdMs: config.holdMs,
    clock: config.clock,
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
    mux: { clock: config.clock, ...config.mux },
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

  const edge = createEdgeServer({
    domain,
    responseTimeoutMs: config.responseTimeoutMs,
    clock: config.clock,
    resolver: createTunnelResolver({
      domain,
      guard: config.guard,
      soleTunnelOnIpHosts: config.soleTunnelOnIpHosts,
      registry,
      named,
      cluster,
      rateLimiter,
      shuttingDown: () => edge.shuttingDown,
    }),
    registry,
    cluster,
    endpoint,
    adminApp,
    queue,
    stats,
    log,
  });
  const visitors = new VisitorConnections(config.visitorConnections, log);
  let listeners: Listeners;
  try {
    listeners = await listenForVisitors(config, { edge, visitors, certificate, log });
  } catch (err) {
    await cluster?.close();
    throw err;
  }
  const { servers, httpsServer, h2Edge } = listeners;
  ports.https = listeners.httpsPort;
  ports.http = listeners.httpPort;

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
        edge.shutDown();
        await acme?.close();
        for (const s of servers) s.close();
        for (const s of servers) s.closeIdleConnections();
        h2Edge?.close();
        registry.releaseAll();
        // In a cluster, clients move to the other relays: spread the GOAWAYs over up to
        // half the grace time (at most 5 s), so they do not all arrive there at once.
        const spreadMs = cluster === undefined ? 0 : Math.min(graceMs / 2, 5_000);
        const drained = Promise.all([endpoint.drain(spreadMs), edge.whenIdle()]);
        let timer: ClockTimer | undefined;
        await Promise.race([
          drained,
          new Promise((r) => (timer = config.clock.setTimeout(() => r(undefined), graceMs))),
        ]);
        edge.forgetIdleWaiters();
        config.clock.clearTimeout(timer);
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
