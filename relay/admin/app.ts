/**
 * The relay's own HTTP app on the apex host: landing page, health check, the control
 * API for named tunnels and Prometheus metrics. Loaded lazily on the first apex
 * request so a tunnel's time-to-URL does not pay for it.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { WebhookQueue } from '../queue/webhook-queue.js';
import type { CertificateStatus } from '../acme/manager.js';
import type { Cluster } from '../cluster/cluster.js';
import type { FailedAuthThrottle } from '../edge/limits.js';
import type { RelayStats } from '../stats.js';
import type { NamedTunnels } from '../tunnels/named.js';
import type { TunnelRegistry } from '../tunnels/registry.js';
import { sendApiError } from './auth.js';
import { clusterRoutes } from './cluster.js';
import { metricsRoutes } from './metrics.js';
import { queueRoutes } from './queue.js';
import { tunnelRoutes } from './tunnels.js';

export interface AdminDeps {
  /** Failed-authentication throttle per client IP (shared with the tunnel endpoint). */
  authThrottle?: FailedAuthThrottle | undefined;
  domain: string;
  registry: TunnelRegistry;
  relayVersion: string;
  open: boolean;
  startedAt: number;
  named: NamedTunnels;
  stats: RelayStats;
  /** Relay access tokens (create needs one when the list is not empty). */
  tokens: readonly string[];
  /** Admin tokens; empty = the admin endpoints answer 403. */
  adminTokens: readonly string[];
  /** Store-and-forward; undefined on a relay without a data dir. */
  queue?: WebhookQueue | undefined;
  /** ACME mode: the certificate's expiry and last renewal error (else undefined). */
  certificateStatus?: () => CertificateStatus | undefined;
  /** The relay's URL as clients pass it to --relay (https://DOMAIN[:PORT]), for the home page. */
  publicUrl?: string | undefined;
  /** True when the certificate is self-signed: clients need to pin it. */
  selfSigned?: boolean;
  /** Cluster mode: this relay's node. */
  cluster?: Cluster | undefined;
}

/** API request bodies are tiny ({ name }); refuse anything large early. */
const BODY_LIMIT_BYTES = 16 * 1024;

export async function buildAdminApp(deps: AdminDeps): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, trustProxy: false, bodyLimit: BODY_LIMIT_BYTES });

  // Every error, ours or fastify's (validation, body too large, bad JSON), has one
  // JSON shape: { statusCode, code, error, message }.
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    const status = err.statusCode !== undefined && err.statusCode >= 400 ? err.statusCode : 500;
    sendApiError(
      reply,
      status,
      status === 500 ? 'QT_ERR_INTERNAL' : (err.code ?? 'QT_ERR_BAD_REQUEST'),
      status === 500 ? 'internal error' : err.message,
    );
  });
  app.setNotFoundHandler((req, reply) => {
    sendApiError(reply, 404, 'QT_ERR_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`);
  });

  // Guessing secrets: an address with too many refused secrets is refused before any
  // check, and every 401 for a presented secret counts against it.
  const throttle = deps.authThrottle;
  if (throttle !== undefined) {
    app.addHook('onRequest', async (req, reply) => {
      if (req.headers.authorization === undefined) return;
      const waitS = throttle.blockedFor(req.socket.remoteAddress ?? '');
      if (waitS > 0) {
        reply.header('retry-after', String(waitS));
        sendApiError(
          reply,
          429,
          'QT_ERR_RATE_LIMITED',
          `too many failed authentication attempts from this address; try again in ${waitS} s`,
        );
        return reply;
      }
    });
    app.addHook('onResponse', async (req, reply) => {
      if (reply.statusCode === 401 && req.headers.authorization !== undefined) {
        throttle.fail(req.socket.remoteAddress ?? '', `control API ${req.method}`);
      }
    });
  }

  app.get('/healthz', async () => ({
    ok: true,
    version: deps.relayVersion,
    tunnels: deps.registry.size,
    uptimeSeconds: Math.round((Date.now() - deps.startedAt) / 1000),
    ...certificateHealth(deps),
    // Cluster mode: whether Redis answers and how many other relays are reachable.
    ...(deps.cluster !== undefined ? { cluster: deps.cluster.health() } : {}),
  }));

  app.get('/', async (_req, reply) => {
    reply.type('text/html; charset=utf-8');
    return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>quick-tunnel relay</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem}
code{background:#f4f4f4;padding:.1rem .3rem;border-radius:4px}</style></head><body>
<h1>quick-tunnel relay · ${escape(deps.domain)}</h1>
<p>This relay exposes local ports as <code>https://&lt;name&gt;.${escape(deps.domain)}</code>.</p>
<p>Connect with <code>quick-tunnel login --relay ${escape(deps.publicUrl ?? `https://${deps.domain}`)}${deps.selfSigned === true ? ' --ca-fingerprint SHA256:…' : ''}${deps.open ? '' : ' --token TOKEN'}</code>, then <code>quick-tunnel 3000</code>.</p>
${deps.selfSigned === true ? "<p>This relay has a self-signed certificate: get its SHA-256 fingerprint from the relay's operator (the relay prints it at start), not from this page.</p>\n" : ''}
<p>${deps.registry.size} tunnel(s) online.</p></body></html>`;
  });

  await app.register(tunnelRoutes, { deps });
  await app.register(metricsRoutes, { deps });
  await app.register(queueRoutes, { deps });
  if (deps.cluster !== undefined) await app.register(clusterRoutes, { deps });

  await app.ready();
  return app;
}

/** `/healthz` in ACME mode: when the certificate expires, and why the last renewal failed. */
function certificateHealth(deps: AdminDeps): { certificate?: object } {
  const c = deps.certificateStatus?.();
  if (c === undefined) return {};
  return {
    certificate: {
      state: c.state,
      notAfter: c.notAfter ?? null,
      expiresInSeconds: c.expiresInSeconds ?? null,
      renewAt: c.renewAt ?? null,
      issuer: c.issuer ?? null,
      lastRenewalAt: c.lastRenewalAt ?? null,
      lastError: c.lastError ?? null,
      nextAttemptAt: c.nextAttemptAt ?? null,
    },
  };
}

function escape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
