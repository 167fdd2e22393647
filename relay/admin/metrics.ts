/**
 * `GET /metrics`: Prometheus text format (admin token required). Gauges are read from
 * the registry and the store at scrape time; counters come from RelayStats. prom-client
 * is imported here, inside the lazily-built admin app, and each relay gets its own
 * Registry (several relays can live in one process: tests, embedded mode).
 */
import type { FastifyPluginAsync } from 'fastify';
import type { AdminDeps } from './app.js';
import { requireAdmin } from './auth.js';
import { clusterMetrics } from './cluster.js';

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];
const KINDS = ['ephemeral', 'named'] as const;

export const metricsRoutes: FastifyPluginAsync<{ deps: AdminDeps }> = async (app, { deps }) => {
  const { Registry, Counter, Gauge } = await import('prom-client');
  const register = new Registry();
  const { registry, stats, named } = deps;

  const byKind = (count: (t: { sessions: readonly unknown[] }) => number) => {
    const out = { ephemeral: 0, named: 0 };
    for (const t of registry.tunnels()) out[t.kind] += count(t);
    return out;
  };

  new Gauge({
    name: 'quick_tunnel_relay_info',
    help: 'Always 1; the version label says which quick-tunnel relay this is.',
    labelNames: ['version'],
    registers: [register],
    collect() {
      this.set({ version: deps.relayVersion }, 1);
    },
  });
  new Gauge({
    name: 'quick_tunnel_tunnels_connected',
    help: 'Tunnels with at least one live connection, by kind.',
    labelNames: ['kind'],
    registers: [register],
    collect() {
      const n = byKind((t) => (t.sessions.length > 0 ? 1 : 0));
      for (const kind of KINDS) this.set({ kind }, n[kind]);
    },
  });
  new Gauge({
    name: 'quick_tunnel_connections',
    help: 'Live tunnel connections (WebSockets from clients), by tunnel kind.',
    labelNames: ['kind'],
    registers: [register],
    collect() {
      const n = byKind((t) => t.sessions.length);
      for (const kind of KINDS) this.set({ kind }, n[kind]);
    },
  });
  new Gauge({
    name: 'quick_tunnel_named_tunnels',
    help: 'Named tunnels reserved in the store, connected or not.',
    registers: [register],
    async collect() {
      this.set((await named.store.list()).length);
    },
  });
  new Gauge({
    name: 'quick_tunnel_streams_open',
    help: 'Mux streams open: visitor requests and WebSockets in flight.',
    registers: [register],
    collect() {
      let n = 0;
      for (const t of registry.tunnels()) for (const s of t.sessions) n += s.streamCount;
      this.set(n);
    },
  });
  new Counter({
    name: 'quick_tunnel_requests_total',
    help: 'Visitor requests forwarded to tunnels, by response status class.',
    labelNames: ['status_class'],
    registers: [register],
    collect() {
      this.reset();
      for (const cls of STATUS_CLASSES) {
        this.inc({ status_class: cls }, stats.requestsByClass.get(cls) ?? 0);
      }
      const other = stats.requestsByClass.get('other');
      if (other !== undefined) this.inc({ status_class: 'other' }, other);
    },
  });
  new Counter({
    name: 'quick_tunnel_bytes_in_total',
    help: 'Body bytes from visitors into tunnels.',
    registers: [register],
    collect() {
      this.reset();
      this.inc(stats.bytesIn);
    },
  });
  new Counter({
    name: 'quick_tunnel_bytes_out_total',
    help: 'Body bytes from tunnels out to visitors.',
    registers: [register],
    collect() {
      this.reset();
      this.inc(stats.bytesOut);
    },
  });
  new Counter({
    name: 'quick_tunnel_connection_events_total',
    help: 'Tunnel connection events: registered, unregistered, rejected (handshake refused).',
    labelNames: ['event'],
    registers: [register],
    collect() {
      this.reset();
      for (const [event, n] of Object.entries(stats.connectionEvents)) this.inc({ event }, n);
    },
  });

  if (deps.queue !== undefined) {
    const queue = deps.queue;
    new Gauge({
      name: 'quick_tunnel_queue_requests',
      help: 'Store-and-forward: requests kept for offline tunnels, by state (waiting, failed).',
      labelNames: ['state'],
      registers: [register],
      collect() {
        const { waiting, failed } = queue.totals();
        this.set({ state: 'waiting' }, waiting);
        this.set({ state: 'failed' }, failed);
      },
    });
    new Gauge({
      name: 'quick_tunnel_queue_bytes',
      help: 'Store-and-forward: bytes the queues take on disk (against --queue-disk-cap).',
      registers: [register],
      collect() {
        this.set(queue.usedBytes);
      },
    });
  }

  if (deps.certificateStatus !== undefined) {
    const cert = deps.certificateStatus;
    new Gauge({
      name: 'quick_tunnel_certificate_expiry_timestamp_seconds',
      help: 'ACME mode: notAfter of the certificate served (Unix time; absent until there is one).',
      registers: [register],
      collect() {
        this.reset();
        const notAfter = cert()?.notAfter;
        if (notAfter !== undefined) this.set(Date.parse(notAfter) / 1000);
      },
    });
    new Gauge({
      name: 'quick_tunnel_certificate_renewal_failing',
      help: 'ACME mode: 1 while the last attempt to obtain or renew the certificate failed, by error code.',
      labelNames: ['code'],
      registers: [register],
      collect() {
        this.reset();
        const last = cert()?.lastError;
        if (last !== undefined) this.set({ code: last.code }, 1);
        else this.set({ code: '' }, 0);
      },
    });
    new Counter({
      name: 'quick_tunnel_certificate_renewal_failures_total',
      help: 'ACME mode: failed attempts to obtain or renew the certificate.',
      registers: [register],
      collect() {
        this.reset();
        this.inc(cert()?.failures ?? 0);
      },
    });
  }
  if (deps.cluster !== undefined) clusterMetrics(register, deps.cluster, Gauge, Counter);

  app.get('/metrics', async (req, reply) => {
    if (!requireAdmin(req, reply, deps.adminTokens)) return reply;
    const text = await register.metrics();
    return reply.header('cache-control', 'no-store').type(register.contentType).send(text);
  });
};
