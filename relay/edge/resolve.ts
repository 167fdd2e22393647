/**
 * Which tunnel session a visitor request goes to, or the page that answers it instead.
 * One function, `resolveTunnel`, for every kind of visitor request: HTTP/1.1 requests
 * and upgrades (relay/edge/server.ts) and HTTP/2 streams (relay/edge/h2.ts, through its
 * IncomingMessage-shaped view). In order: the guard (one parsed Host), Host routing,
 * a relay shutting down, a live session (here, on another relay of the cluster, or
 * after holding for a reconnecting tunnel), then the tunnel's own rules (access policy,
 * per-tunnel rate limit).
 */
import type { IncomingMessage } from 'node:http';
import type { MuxSession } from '../../shared/mux/session.js';
import { clusterUnavailablePage, type Cluster, type Resolution } from '../cluster/cluster.js';
import type { NamedTunnels } from '../tunnels/named.js';
import type { TunnelRegistry } from '../tunnels/registry.js';
import { checkAccess } from './access.js';
import { guardRequest, type GuardLimits } from './guard.js';
import { routeHost, soleTunnelRoute, type Route } from './host.js';
import type { RateLimiter } from './limits.js';
import { pages, type ErrorPage } from './pages.js';
import type { ForwardContext, ForwardResult } from './forward.js';

/** A tunnel held by another relay of the cluster, as the cluster resolved it. */
export type RemoteRoute = Extract<Resolution, { kind: 'remote' }>;

/** The tunnel a request names: its label and its full hostname. */
export interface TunnelRoute {
  label: string;
  hostname: string;
}

/** Where a visitor request goes. */
export type TunnelResolution =
  /** The relay's own host: admin app, tunnel endpoint, cluster peers. */
  | { kind: 'apex'; route: Extract<Route, { kind: 'apex' }> }
  /**
   * Answer with `page`. `tunnel` is set when the request named a tunnel that has no
   * client connected right now (or whose rules refused it): store-and-forward may keep it.
   */
  | { kind: 'refused'; page: ErrorPage; tunnel: TunnelRoute | undefined }
  /** Forward over `session`; `remote` when it is another relay's connection to the tunnel. */
  | {
      kind: 'tunnel';
      tunnel: TunnelRoute;
      session: MuxSession;
      /** The relay checked the visitor's Authorization itself (basic auth): don't pass it on. */
      stripAuthorization: boolean;
      remote: RemoteRoute | undefined;
    };

export interface TunnelResolverOptions {
  domain: string;
  guard: Readonly<GuardLimits>;
  /** Embedded relay: an IP-literal Host reaches the one tunnel (see soleTunnelRoute). */
  soleTunnelOnIpHosts: boolean;
  registry: TunnelRegistry;
  named: NamedTunnels;
  cluster: Cluster | undefined;
  /** Per-tunnel requests per second; undefined = no limit. */
  rateLimiter: RateLimiter | undefined;
  /** True once the relay stops: new requests get the "shutting down" page. */
  shuttingDown: () => boolean;
}

export interface TunnelResolver {
  /**
   * Resolves a visitor request. Synchronous when the answer is known at once (a local
   * session, a refusal); a promise (never rejecting) when it waits for a reconnecting
   * tunnel or asks the cluster. `problem`: a refusal found before the guard (h2 only).
   */
  resolveTunnel(
    req: IncomingMessage,
    problem?: ErrorPage,
  ): TunnelResolution | Promise<TunnelResolution>;
  /**
   * The ForwardContext fields that depend on where the session is: the retry target
   * for a refused stream, and for another relay's session the wrapped head and its
   * per-peer counters.
   */
  via(
    resolved: Extract<TunnelResolution, { kind: 'tunnel' }>,
    done: (r: ForwardResult) => void,
  ): {
    onDone: (r: ForwardResult) => void;
    wrapHead?: NonNullable<ForwardContext['wrapHead']>;
    retrySession: () => MuxSession | undefined;
  };
}

/** Calls `then` with the resolution, now if it is known, else once it is. */
export function whenResolved(
  r: TunnelResolution | Promise<TunnelResolution>,
  then: (r: TunnelResolution) => void,
): void {
  if (r instanceof Promise) void r.then(then);
  else then(r);
}

export function createTunnelResolver(opts: TunnelResolverOptions): TunnelResolver {
  const { domain, registry, named, cluster, rateLimiter, shuttingDown } = opts;

  const routeFor = (host: string | undefined): Route => {
    const route = routeHost(host, domain);
    return opts.soleTunnelOnIpHosts ? soleTunnelRoute(host, route, domain, registry) : route;
  };

  const refused = (page: ErrorPage, tunnel?: TunnelRoute): TunnelResolution => ({
    kind: 'refused',
    page,
    tunnel,
  });

  /**
   * The page for a tunnel with no live session: 503 "tunnel offline" when it was online
   * lately or is a reserved named tunnel (its client is just not running), else 404.
   */
  const goneOrOffline = async (tunnel: TunnelRoute, known: boolean): Promise<TunnelResolution> => {
    try {
      return refused(
        known || (await named.isReserved(tunnel.label))
          ? pages.tunnelOffline(tunnel.hostname)
          : pages.noSuchTunnel(tunnel.hostname),
        tunnel,
      );
    } catch {
      return refused(pages.tunnelOffline(tunnel.hostname), tunnel);
    }
  };

  /**
   * The tunnel's own rules, checked at the relay before anything reaches the laptop:
   * its access policy (basic auth, IP allowlist) and the relay's per-tunnel rate limit.
   * They read the same tunnel the request is routed to.
   */
  const admitted = (
    req: IncomingMessage,
    tunnel: TunnelRoute,
    session: MuxSession,
    remote?: RemoteRoute,
  ): TunnelResolution => {
    const local = registry.lookup(tunnel.label);
    // A tunnel held by another relay: its rules came with the route (from its HELLO there).
    const access = remote !== undefined ? remote.access : local?.access;
    if (access !== undefined) {
      const page = checkAccess(req, access, tunnel.hostname);
      if (page !== undefined) return refused(page, tunnel);
    }
    if (rateLimiter !== undefined) {
      const waitS = rateLimiter.take(tunnel.label);
      if (waitS > 0) return refused(pages.rateLimited(tunnel.hostname, waitS), tunnel);
    }
    if (local !== undefined && remote === undefined) local.requests++;
    return {
      kind: 'tunnel',
      tunnel,
      session,
      stripAuthorization: access?.basicAuth !== undefined,
      remote,
    };
  };

  /**
   * Finds a live session for the tunnel. A tunnel that is reconnecting (it just lost its
   * last connection, or the relay just restarted) is waited for up to the hold window,
   * so a quick reconnect is invisible to visitors; then 503 (or 404 if it never existed).
   */
  const withSession = (
    req: IncomingMessage,
    tunnel: TunnelRoute,
  ): TunnelResolution | Promise<TunnelResolution> => {
    const { label, hostname } = tunnel;
    const known = registry.lookup(label);
    // In cluster mode, only while this relay's lease on the hostname is valid.
    const localSession = (): MuxSession | undefined =>
      cluster === undefined || cluster.servesLocally(label)
        ? registry.lookup(label)?.pickSession()
        : undefined;
    const session = localSession();
    if (session !== undefined) return admitted(req, tunnel, session);
    if (cluster !== undefined) {
      // Another relay may hold it; while it moves between relays, wait up to the hold.
      return cluster.resolve(label, registry.holdMs, localSession).then(
        (r) => {
          if (shuttingDown()) return refused(pages.shuttingDown(), tunnel);
          if (r.kind === 'local') return admitted(req, tunnel, r.session);
          if (r.kind === 'remote') return admitted(req, tunnel, r.session, r);
          return refused(
            r.unavailable
              ? clusterUnavailablePage(hostname)
              : r.known || known !== undefined || registry.wasRecentlyOnline(label)
                ? pages.tunnelOffline(hostname)
                : pages.noSuchTunnel(hostname),
            tunnel,
          );
        },
        () => refused(clusterUnavailablePage(hostname), tunnel),
      );
    }
    const budget = registry.holdBudgetMs(label);
    const wasKnown = known !== undefined || registry.wasRecentlyOnline(label);
    if (budget <= 0) return goneOrOffline(tunnel, wasKnown);
    return registry.waitForSession(label, budget).then(
      (held) => {
        if (held !== undefined && !shuttingDown()) return admitted(req, tunnel, held);
        if (shuttingDown()) return refused(pages.shuttingDown(), tunnel);
        const stillKnown =
          registry.lookup(label) !== undefined || registry.wasRecentlyOnline(label) || wasKnown;
        return goneOrOffline(tunnel, stillKnown);
      },
      () => refused(pages.tunnelOffline(hostname), tunnel),
    );
  };

  return {
    resolveTunnel(req, problem) {
      // One parsed Host value decides routing and every check after it.
      const guarded = problem !== undefined ? { page: problem } : guardRequest(req, opts.guard);
      if ('page' in guarded) return refused(guarded.page);
      const route = routeFor(guarded.host);
      if (route.kind === 'apex') return { kind: 'apex', route };
      if (route.kind === 'unknown') return refused(pages.unknownHost(route.host, domain));
      if (shuttingDown()) return refused(pages.shuttingDown());
      return withSession(req, { label: route.label, hostname: route.hostname });
    },

    via({ tunnel, remote }, done) {
      const { label } = tunnel;
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
    },
  };
}
