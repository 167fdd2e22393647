/**
 * Cluster mode's admin views: `GET /api/cluster` (admin token) lists this relay, its
 * peers and every tunnel of the cluster with the relays that hold it; `/metrics` gains
 * per-peer forwarded requests and bytes, peer reachability and Redis errors.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Counter as CounterT, Gauge as GaugeT, Registry } from 'prom-client';
import type { Cluster } from '../cluster/cluster.js';
import type { AdminDeps } from './app.js';
import { requireAdmin, sendApiError } from './auth.js';

export const clusterRoutes: FastifyPluginAsync<{ deps: AdminDeps }> = async (app, { deps }) => {
  const cluster = deps.cluster;
  if (cluster === undefined) return;
  app.get('/api/cluster', async (req, reply) => {
    if (!requireAdmin(req, reply, deps.adminTokens)) return reply;
    try {
      return {
        ...cluster.health(),
        relays: cluster.relays(),
        peers: cluster.peers(),
        tunnels: await cluster.tunnels(),
      };
    } catch (err) {
      return sendApiError(
        reply,
        503,
        'QT_ERR_CLUSTER_UNAVAILABLE',
        `the cluster's shared state (Redis) is unavailable: ${(err as Error).message}`,
      );
    }
  });
};

export function clusterMetrics(
  register: Registry,
  cluster: Cluster,
  Gauge: typeof GaugeT,
  Counter: typeof CounterT,
): void {
  new Gauge({
    name: 'quick_tunnel_cluster_redis_up',
    help: '1 while this relay is connected to Redis.',
    registers: [register],
    collect() {
      this.set(cluster.health().redis ? 1 : 0);
    },
  });
  new Gauge({
    name: 'quick_tunnel_cluster_peers',
    help: 'Other relays of the cluster, by state (known from Redis, reachable over a peer link).',
    labelNames: ['state'],
    registers: [register],
    collect() {
      const h = cluster.health();
      this.set({ state: 'known' }, h.peers);
      this.set({ state: 'reachable' }, h.peersReachable);
    },
  });
  new Counter({
    name: 'quick_tunnel_cluster_redis_errors_total',
    help: 'Redis commands or connection attempts that failed.',
    registers: [register],
    collect() {
      this.reset();
      this.inc(cluster.redis.errors);
    },
  });
  new Counter({
    name: 'quick_tunnel_cluster_leases_lost_total',
    help: 'Hostnames this relay stopped serving because another relay took them over.',
    registers: [register],
    collect() {
      this.reset();
      this.inc(cluster.fenced);
    },
  });
  const perPeer = (name: string, help: string, pick: (s: PeerCounters) => number): void => {
    new Counter({
      name,
      help,
      labelNames: ['peer'],
      registers: [register],
      collect() {
        this.reset();
        for (const [peer, s] of cluster.peerStats()) this.inc({ peer }, pick(s));
      },
    });
  };
  perPeer(
    'quick_tunnel_cluster_forwarded_requests_total',
    'Visitor requests this relay forwarded to another relay, by peer node.',
    (s) => s.requests,
  );
  perPeer(
    'quick_tunnel_cluster_forwarded_bytes_in_total',
    'Body bytes from visitors forwarded to another relay, by peer node.',
    (s) => s.bytesIn,
  );
  perPeer(
    'quick_tunnel_cluster_forwarded_bytes_out_total',
    'Body bytes from another relay back to visitors, by peer node.',
    (s) => s.bytesOut,
  );
  perPeer(
    'quick_tunnel_cluster_peer_failures_total',
    'Failed connection attempts to another relay, by peer node.',
    (s) => s.failures,
  );
}

interface PeerCounters {
  requests: number;
  bytesIn: number;
  bytesOut: number;
  failures: number;
}
