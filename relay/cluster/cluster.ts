/**
 * Cluster mode (`--redis`): several relays share one set of tunnels. This module ties the
 * parts together for one relay (a "node"):
 * - its node record in Redis (`<prefix>node:<id>`, TTL), refreshed every second, which is
 *   also how it learns the other live relays and keeps a link to each (peers.ts);
 * - the leases of the hostnames it holds (routes.ts), claimed atomically when a tunnel
 *   registers, renewed in batches, and dropped at once when Redis says that another relay
 *   now holds a newer epoch (fencing: a relay that was paused or cut off never keeps
 *   serving a hostname that moved);
 * - finding the relay that holds a hostname for a visitor who landed here, with a short
 *   cache, and carrying the request there over the peer link (one stream, one hop);
 * - serving requests other relays forward to us (forwarded.ts).
 *
 * Redis down: local tunnels and cached routes keep working, new claims are refused (the
 * uniqueness of hostnames fails closed), and everything resumes when Redis is back.
 *
 * Over 500 lines on purpose: the node's heartbeat, its leases with their fencing and the
 * route cache share one state; what stands alone is in peers.ts, routes.ts, redis*.ts,
 * state.ts and forwarded.ts (serving requests other relays forward to us).
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { MuxSession } from '../../shared/mux/session.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import type { AccessPolicy } from '../../shared/protocol/tunnel.js';
import { compileAccess, isOpenAccess, type CompiledAccess } from '../edge/access.js';
import type { ErrorPage } from '../edge/pages.js';
import type { TunnelRegistry } from '../tunnels/registry.js';
import { ConfigError } from '../../shared/errors.js';
import { PeerMesh, type PeerNode } from './peers.js';
import { ClusterUnavailableError, luaScript, RedisConnection, redactRedisUrl } from './redis.js';
import { RedisTunnelStore } from './redis-store.js';
import { RouteTable, type ClaimMode, type HeldRoute, type RouteInfo } from './routes.js';
import { RedisClusterState } from './state.js';
import { serveForwarded } from './forwarded.js';

export interface ClusterConfig {
  /** redis://[user:password@]host:port[/db] or rediss://… */
  redisUrl: string;
  /** Shared by all relays of the cluster; they authenticate each other with it. */
  secret: string;
  /** How other relays reach this one (https://addr:port); default from --host/--port. */
  nodeUrl?: string | undefined;
  /** Lease of a held hostname. Default 4 s (renewed every third of it). */
  leaseMs?: number;
  /** How often the node record is refreshed and peers are looked up. Default 1 s. */
  heartbeatMs?: number;
}

/** The visitor page when the relay cannot find out where a tunnel is (Redis away). */
export function clusterUnavailablePage(hostname: string): ErrorPage {
  return {
    status: 503,
    title: 'Relay cannot route right now',
    detail: `This relay cannot reach its cluster's shared state, so it cannot find the tunnel ${hostname} at the moment.`,
    hint: 'Try again in a few seconds.',
    headers: { 'retry-after': '5' },
  };
}

/** Where a visitor's request goes when no local connection serves its hostname. */
export type Resolution =
  | {
      kind: 'remote';
      node: string;
      session: MuxSession;
      epoch: number;
      access: CompiledAccess | undefined;
    }
  | { kind: 'local'; session: MuxSession }
  | { kind: 'none'; known: boolean; unavailable: boolean };

interface Held extends HeldRoute {
  /** Local clock: until when our lease is surely valid. */
  leaseUntil: number;
  claimedAt: number;
}

interface CachedRoute {
  info: RouteInfo | undefined;
  access: CompiledAccess | undefined;
  at: number;
}

/** Routes cached per relay (bounded). */
const MAX_CACHED_ROUTES = 10_000;
/** How long a looked-up route is used without asking Redis again. */
const ROUTE_CACHE_MS = 1_000;
/** With Redis away, cached routes are used up to this old. */
const STALE_ROUTE_MS = 300_000;
/** Poll interval while a visitor waits for a tunnel that is moving. */
const HOLD_POLL_MS = 200;

const HEARTBEAT = luaScript(`
local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
redis.call('SET', KEYS[3], ARGV[4], 'NX')
redis.call('SET', KEYS[4], ARGV[5], 'NX')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ids = redis.call('ZRANGE', KEYS[1], 0, 999)
local out = {}
for i = 1, #ids do
  local v = redis.call('GET', ARGV[6] .. ids[i])
  if v then out[#out + 1] = v end
end
return out
`);

export interface ClusterStartOptions {
  nodeUrl: string;
  registry: TunnelRegistry;
  cert: string | undefined;
  fingerprint256: string | undefined;
}

export class Cluster {
  readonly nodeId: string;
  readonly store: RedisTunnelStore;
  readonly state: RedisClusterState;
  readonly resumeKey: Buffer;
  readonly redis: RedisConnection;
  private readonly routes: RouteTable;
  private readonly config: ClusterConfig;
  private readonly prefix: string;
  private readonly secretCheck: string;
  private readonly leaseMs: number;
  private log: Logger;
  private readonly held = new Map<string, Held>();
  private readonly cache = new Map<string, CachedRoute>();
  private readonly lookups = new Map<string, Promise<CachedRoute>>();
  private mesh: PeerMesh | undefined;
  private registry: TunnelRegistry | undefined;
  private nodeUrl = '';
  private nodes: PeerNode[] = [];
  private timers: NodeJS.Timeout[] = [];
  /** False while renewals fail (Redis away): local tunnels are served regardless. */
  private renewOk = true;
  private closed = false;
  /** Claims refused because Redis was away, lost leases: for logs and metrics. */
  fenced = 0;

  private constructor(
    config: ClusterConfig,
    redis: RedisConnection,
    prefix: string,
    nodeId: string,
    resumeKey: Buffer,
    secretCheck: string,
    log: Logger,
  ) {
    this.config = config;
    this.redis = redis;
    this.prefix = prefix;
    this.nodeId = nodeId;
    this.resumeKey = resumeKey;
    this.secretCheck = secretCheck;
    this.log = log;
    this.leaseMs = config.leaseMs ?? 4_000;
    this.store = new RedisTunnelStore(redis, prefix);
    this.state = new RedisClusterState(redis, prefix);
    this.routes = new RouteTable({ redis, prefix, node: nodeId, leaseMs: this.leaseMs });
  }

  /**
   * Connects to Redis, checks that this Redis serves a cluster with the same secret (or
   * none yet), and loads the shared resume-token key. Throws a ConfigError a person can
   * act on.
   */
  static async connect(config: ClusterConfig, domain: string, log: Logger): Promise<Cluster> {
    if (config.secret.length < 16) {
      throw new ConfigError(
        '--cluster-secret must be at least 16 characters (the relays of a cluster authenticate each other with it)',
      );
    }
    const nodeId = `n-${randomBytes(4).toString('hex')}`;
    const nodeLog = log.child({ node: nodeId });
    let errorLogged = 0;
    const redis = new RedisConnection({
      url: config.redisUrl,
      onError: (message) => {
        // At most one line per 5 s: a Redis outage retries many times a second.
        if (Date.now() - errorLogged < 5_000) return;
        errorLogged = Date.now();
        nodeLog.warn({ event: 'redis-error', err: message }, 'Redis connection error');
      },
      onReady: () => nodeLog.info({ event: 'redis-ready' }, 'connected to Redis'),
    });
    try {
      await redis.connect();
    } catch (err) {
      throw new ConfigError(
        `${(err as Error).message}; check --redis (QUICK_TUNNEL_REDIS) and that Redis is running`,
        { cause: err },
      );
    }
    const prefix = `qt:${domain}:`;
    const secretCheck = createHmac('sha256', config.secret)
      .update('quick-tunnel cluster secret check')
      .digest('hex');
    await redis.command(['SET', `${prefix}secret-check`, secretCheck, 'NX']);
    const stored = await redis.command(['GET', `${prefix}secret-check`]);
    if (stored !== secretCheck) {
      await redis.close();
      throw new ConfigError(
        `the Redis at ${redactRedisUrl(config.redisUrl)} already serves a cluster for ${domain} with another --cluster-secret: give this relay the same secret as the others`,
      );
    }
    await redis.command(['SET', `${prefix}resume-key`, randomBytes(32).toString('base64'), 'NX']);
    const key = await redis.command(['GET', `${prefix}resume-key`]);
    const resumeKey = Buffer.from(String(key), 'base64');
    return new Cluster(config, redis, prefix, nodeId, resumeKey, secretCheck, nodeLog);
  }

  /** The relay's logger with the node id on every line. */
  get logger(): Logger {
    return this.log;
  }

  /** Starts the heartbeat, the peer links and lease renewal (once the relay listens). */
  start(opts: ClusterStartOptions): void {
    this.nodeUrl = opts.nodeUrl.replace(/\/+$/, '');
    this.registry = opts.registry;
    this.log = this.log.child({ nodeUrl: this.nodeUrl });
    this.mesh = new PeerMesh({
      node: { id: this.nodeId, url: this.nodeUrl },
      secret: this.config.secret,
      cert: opts.cert,
      fingerprint256: opts.fingerprint256,
      log: this.log,
      onStream: (stream, from) =>
        serveForwarded(stream, from, {
          nodeId: this.nodeId,
          log: this.log,
          localTunnel: (label) =>
            this.servesLocally(label) ? this.registry?.lookup(label) : undefined,
          forgetRoute: (label) => this.cache.delete(label),
        }),
    });
    const heartbeatMs = this.config.heartbeatMs ?? 1_000;
    void this.heartbeat();
    this.timers.push(setInterval(() => void this.heartbeat(), heartbeatMs));
    this.timers.push(setInterval(() => void this.renew(), Math.max(100, this.leaseMs / 3)));
    for (const t of this.timers) t.unref();
    this.log.info(
      { event: 'cluster-joined', redis: redactRedisUrl(this.config.redisUrl) },
      'relay joined the cluster',
    );
  }

  private async heartbeat(): Promise<void> {
    if (this.closed) return;
    const ttl = Math.max(3 * (this.config.heartbeatMs ?? 1_000), this.leaseMs);
    try {
      const reply = await this.redis.script(
        HEARTBEAT,
        [
          `${this.prefix}nodes`,
          `${this.prefix}node:${this.nodeId}`,
          `${this.prefix}resume-key`,
          `${this.prefix}secret-check`,
        ],
        [
          this.nodeId,
          JSON.stringify({ id: this.nodeId, url: this.nodeUrl }),
          ttl,
          this.resumeKey.toString('base64'),
          this.secretCheck,
          `${this.prefix}node:`,
        ],
      );
      const nodes: PeerNode[] = [];
      for (const item of Array.isArray(reply) ? reply : []) {
        try {
          const n = JSON.parse(String(item)) as PeerNode;
          if (typeof n.id === 'string' && typeof n.url === 'string') nodes.push(n);
        } catch {
          // a foreign value: ignore it
        }
      }
      this.nodes = nodes;
      this.mesh?.update(nodes);
    } catch {
      // Redis away: keep the peers we have (counted in redis.errors).
    }
  }

  /** Renews every lease held here; drops (fences) the ones another relay took over. */
  private async renew(): Promise<void> {
    if (this.closed || this.registry === undefined) return;
    const started = Date.now();
    const list: Held[] = [];
    for (const [label, h] of this.held) {
      const live = (this.registry.lookup(label)?.sessions.length ?? 0) > 0;
      if (live) list.push(h);
      else if (started - h.claimedAt > 5_000) {
        // Claimed, but no connection registered (handshake failed) or all left.
        this.held.delete(label);
        this.routes.release(label, h.epoch).catch(() => {});
      }
    }
    if (list.length === 0) {
      this.renewOk = this.redis.healthy;
      return;
    }
    let flags: boolean[];
    try {
      flags = await this.routes.renew(list);
    } catch (err) {
      if (this.renewOk) {
        this.log.warn(
          { event: 'lease-renewal-failed', err: (err as Error).message, tunnels: list.length },
          'cannot renew leases (Redis away): serving the tunnels held here until it is back',
        );
      }
      this.renewOk = false;
      return;
    }
    if (!this.renewOk) this.log.info({ event: 'leases-renewed' }, 'Redis is back: leases renewed');
    this.renewOk = true;
    list.forEach((h, i) => {
      if (this.held.get(h.label) !== h) return;
      if (flags[i] === true) h.leaseUntil = started + this.leaseMs;
      else this.fence(h);
    });
  }

  /** Another relay holds `h.label` with a newer epoch: stop serving it here at once. */
  private fence(h: Held): void {
    this.held.delete(h.label);
    this.fenced++;
    const tunnel = this.registry?.lookup(h.label);
    const sessions = tunnel === undefined ? [] : [...tunnel.sessions];
    this.log.warn(
      { event: 'lease-lost', label: h.label, epoch: h.epoch, connectionsClosed: sessions.length },
      'another relay holds this hostname now (newer epoch): closing its connections here',
    );
    for (const s of sessions) {
      s.goAway(ErrorCode.SHUTDOWN, 'this hostname moved to another relay of the cluster');
      s.close();
    }
  }

  /**
   * Claims `label` for a connection registering here. False if another owner holds it
   * (or, for a new label, if it is in use or reserved); throws ClusterUnavailableError
   * when Redis cannot be asked (fail closed).
   */
  async claim(
    label: string,
    owner: string,
    kind: 'ephemeral' | 'named',
    mode: ClaimMode,
    access: AccessPolicy | undefined,
  ): Promise<boolean> {
    const started = Date.now();
    const result = await this.routes.claim({ label, owner, kind, mode, access });
    if ('refused' in result) return false;
    const prev = this.held.get(label);
    if (prev !== undefined && prev.epoch !== result.epoch) this.fence(prev);
    this.held.set(label, {
      label,
      owner,
      kind,
      access,
      epoch: result.epoch,
      leaseUntil: started + this.leaseMs,
      claimedAt: started,
    });
    this.cache.delete(label);
    return true;
  }

  /** The last local connection of `label` left: drop our lease so others stop forwarding. */
  released(label: string): void {
    const h = this.held.get(label);
    if (h === undefined) return;
    this.held.delete(label);
    this.routes.release(label, h.epoch).catch(() => {});
  }

  /**
   * Whether this relay may serve `label` from its own connections: it holds a lease that
   * is still valid, or Redis is away (then the connections it holds are the best truth).
   */
  servesLocally(label: string): boolean {
    const h = this.held.get(label);
    if (h === undefined) return false;
    return Date.now() < h.leaseUntil || !this.renewOk;
  }

  /** Node URLs of the live relays, this one first (for the client's HELLO answer). */
  relays(): string[] {
    const urls = [this.nodeUrl];
    for (const n of this.nodes) if (n.id !== this.nodeId) urls.push(n.url);
    return urls;
  }

  private async lookup(label: string, fresh: boolean): Promise<CachedRoute> {
    const cached = this.cache.get(label);
    if (!fresh && cached !== undefined && Date.now() - cached.at < ROUTE_CACHE_MS) return cached;
    let pending = this.lookups.get(label);
    if (pending === undefined) {
      pending = this.routes.lookup(label).then(
        (info) => {
          let access: CompiledAccess | undefined;
          try {
            const compiled = compileAccess(info?.access);
            access = isOpenAccess(compiled) ? undefined : compiled;
          } catch {
            access = undefined;
          }
          const entry = { info, access, at: Date.now() };
          this.cache.delete(label);
          this.cache.set(label, entry);
          if (this.cache.size > MAX_CACHED_ROUTES) {
            const oldest = this.cache.keys().next().value;
            if (oldest !== undefined) this.cache.delete(oldest);
          }
          return entry;
        },
        (err: unknown) => {
          if (cached !== undefined && Date.now() - cached.at < STALE_ROUTE_MS) return cached;
          throw err;
        },
      );
      const p = pending;
      this.lookups.set(label, p);
      void p.then(
        () => this.lookups.delete(label),
        () => this.lookups.delete(label),
      );
    }
    return pending;
  }

  private pick(entry: CachedRoute): Resolution | undefined {
    const holders = (entry.info?.holders ?? []).filter((h) => h !== this.nodeId);
    const n = holders.length;
    const start = n > 1 ? Math.floor(Math.random() * n) : 0;
    for (let i = 0; i < n; i++) {
      const node = holders[(start + i) % n]!;
      const session = this.mesh?.session(node);
      if (session !== undefined) {
        return {
          kind: 'remote',
          node,
          session,
          epoch: entry.info?.epoch ?? 0,
          access: entry.access,
        };
      }
    }
    return undefined;
  }

  /**
   * Where a visitor's request for `label` goes when no local connection may serve it:
   * another relay holding it, or (while it moves between relays, for up to `holdMs`) a
   * local or remote connection that appears meanwhile; otherwise why not.
   */
  async resolve(
    label: string,
    holdMs: number,
    local: () => MuxSession | undefined,
  ): Promise<Resolution> {
    const deadline = Date.now() + holdMs;
    let fresh = false;
    let known = false;
    for (;;) {
      let entry: CachedRoute;
      try {
        entry = await this.lookup(label, fresh);
      } catch (err) {
        if (!(err instanceof ClusterUnavailableError)) throw err;
        return { kind: 'none', known, unavailable: true };
      }
      const picked = this.pick(entry);
      if (picked !== undefined) return picked;
      known ||= entry.info !== undefined;
      if (!known || Date.now() + HOLD_POLL_MS > deadline || this.closed) {
        return { kind: 'none', known, unavailable: false };
      }
      await new Promise((r) => setTimeout(r, HOLD_POLL_MS).unref());
      const session = this.servesLocally(label) ? local() : undefined;
      if (session !== undefined) return { kind: 'local', session };
      fresh = true;
    }
  }

  /** Another remote holder of `label` than `exclude`, from the cache (a refused forward). */
  retryTarget(label: string, exclude: string): Resolution | undefined {
    const entry = this.cache.get(label);
    if (entry === undefined) return undefined;
    const others = {
      ...entry,
      info:
        entry.info === undefined
          ? undefined
          : { ...entry.info, holders: entry.info.holders.filter((h) => h !== exclude) },
    };
    return this.pick(others);
  }

  /** Counts a forwarded request's bytes for `/metrics`. */
  forwarded(node: string, r: { bytesIn: number; bytesOut: number }): void {
    const s = this.mesh?.statsFor(node);
    if (s === undefined) return;
    s.requests++;
    s.bytesIn += r.bytesIn;
    s.bytesOut += r.bytesOut;
  }

  /** A relay of the cluster dials us (upgrade on the apex host's /_qt/peer). */
  handlePeerUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.mesh === undefined) {
      socket.destroy();
      return;
    }
    this.mesh.handleUpgrade(req, socket, head);
  }

  /** For /healthz and the admin API. */
  health(): { redis: boolean; peers: number; peersReachable: number; node: string } {
    return {
      node: this.nodeId,
      redis: this.redis.healthy,
      peers: this.mesh?.known ?? 0,
      peersReachable: this.mesh?.reachable ?? 0,
    };
  }

  peers(): { id: string; url: string; connected: boolean }[] {
    return this.mesh?.peers() ?? [];
  }

  peerStats(): Map<
    string,
    { requests: number; bytesIn: number; bytesOut: number; failures: number }
  > {
    return this.mesh?.stats ?? new Map();
  }

  /** The cluster's tunnels and which relays hold them (admin API). */
  async tunnels(): Promise<
    {
      label: string;
      kind: string;
      epoch: number;
      holders: { id: string; url: string | undefined }[];
    }[]
  > {
    const urls = new Map(this.nodes.map((n) => [n.id, n.url]));
    urls.set(this.nodeId, this.nodeUrl);
    return (await this.routes.list()).map(({ label, route }) => ({
      label,
      kind: route.kind,
      epoch: route.epoch,
      holders: route.holders.map((id) => ({ id, url: urls.get(id) })),
    }));
  }

  /** Leaves the cluster: releases our leases and node record, closes the links and Redis. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    const held = [...this.held.values()];
    this.held.clear();
    await Promise.all(held.map((h) => this.routes.release(h.label, h.epoch).catch(() => {})));
    await this.redis
      .command(['ZREM', `${this.prefix}nodes`, this.nodeId])
      .then(() => this.redis.command(['DEL', `${this.prefix}node:${this.nodeId}`]))
      .catch(() => {});
    this.mesh?.close();
    await this.redis.close();
  }
}
