/**
 * The tunnel endpoint: a client's WebSocket (or an in-process transport) becomes a
 * server-side MuxSession, and its HELLO decides which hostname it serves.
 */
import { createHash, createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { Logger } from 'pino';
import { ConnectionError } from '../../shared/errors.js';
import { HelloRejection, MuxSession, type MuxOptions } from '../../shared/mux/session.js';
import { wsTransport, type FrameTransport } from '../../shared/mux/transport.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import type {
  AccessPolicy,
  TunnelAssignment,
  TunnelRequest,
} from '../../shared/protocol/tunnel.js';
import { closeSoon } from '../edge/connections.js';
import { compileAccess, isOpenAccess, type CompiledAccess } from '../edge/access.js';
import { ConcurrencyCounter, RateLimiter, type FailedAuthThrottle } from '../edge/limits.js';
import type { Cluster } from '../cluster/cluster.js';
import { RELAY_DEFAULTS } from '../config.js';
import type { RelayStats } from '../stats.js';
import { tokenAccepted } from '../tunnels/auth.js';
import { randomLabel } from '../tunnels/labels.js';
import { NamedTunnelError, type NamedTunnels } from '../tunnels/named.js';
import type { TunnelRegistry } from '../tunnels/registry.js';

export { tokenAccepted };

export interface EndpointOptions {
  registry: TunnelRegistry;
  /** Accepted relay tokens; empty = open relay. */
  tokens: readonly string[];
  /** Secret used to sign resume tokens (kept in the data dir so it survives restarts). */
  resumeKey: Buffer;
  relayVersion: string;
  urlsFor: (hostname: string) => string[];
  domain: string;
  mux: MuxOptions;
  log: Logger;
  /** Named tunnels (store + credentials); a name in a HELLO is checked against it. */
  named: NamedTunnels;
  /** Traffic counters for /metrics. */
  stats?: RelayStats | undefined;
  /** Failed-authentication throttle per client IP (shared with the control API). */
  authThrottle?: FailedAuthThrottle | undefined;
  /** Tunnel WebSocket connections one client IP may hold at once. Default 100; 0 = no limit. */
  maxConnectionsPerIp?: number;
  /** New tunnels (fresh hostnames) one client may get per minute: per token, else per IP. Default 30. */
  creationsPerMinute?: number;
  /** Cluster mode: hostnames are claimed cluster-wide before they are registered here. */
  cluster?: Cluster | undefined;
}

/** Codes of errors that mean "the cluster's shared state (Redis) is away right now". */
const CLUSTER_DOWN_CODES = new Set(['QT_ERR_CLUSTER_UNAVAILABLE', 'QT_ERR_STORE']);

export class TunnelEndpoint {
  private readonly opts: EndpointOptions;
  private readonly wss: WebSocketServer;
  readonly sessions = new Set<MuxSession>();
  private readonly perIp: ConcurrencyCounter;
  private readonly creations: RateLimiter | undefined;

  constructor(opts: EndpointOptions) {
    this.opts = opts;
    this.perIp = new ConcurrencyCounter(
      opts.maxConnectionsPerIp ?? RELAY_DEFAULTS.maxConnectionsPerIp,
    );
    const perMinute = opts.creationsPerMinute ?? RELAY_DEFAULTS.creationsPerMinute;
    this.creations =
      perMinute > 0
        ? new RateLimiter({ ratePerSecond: perMinute / 60, burst: perMinute })
        : undefined;
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: MuxSession.maxMessageBytes(opts.mux),
      // A client's handshake is small; refuse absurd upgrade requests early.
      maxHeaders: 100,
    } as ConstructorParameters<typeof WebSocketServer>[0]);
  }

  /** Handles an HTTP upgrade on the apex host's tunnel path. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const ip = req.socket.remoteAddress ?? '';
    const release = this.perIp.acquire(ip);
    if (release === undefined) {
      socket.end(
        'HTTP/1.1 429 Too Many Requests\r\nRetry-After: 60\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n' +
          `too many tunnel connections from ${ip} (limit ${this.perIp.limit})\n`,
      );
      closeSoon(socket);
      this.opts.log.warn(
        { remoteAddress: ip, limit: this.perIp.limit },
        'tunnel connection limit per IP reached',
      );
      return;
    }
    // `on`, not `once`: 'close' comes once anyway, and `once` adds a wrapper and a bound
    // function per listener, held for the connection's whole life (every idle tunnel).
    socket.on('close', release);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => {}); // errors surface as 'close' through the transport
      this.attach(wsTransport(ws), ip);
    });
  }

  /**
   * Counts one new tunnel (a fresh hostname) against the client's per-minute budget:
   * per relay token when the relay has tokens, else per IP.
   */
  private chargeCreation(request: TunnelRequest, remoteAddress: string): void {
    if (this.creations === undefined) return;
    const key =
      request.token !== undefined && this.opts.tokens.length > 0
        ? `token:${createHash('sha256').update(request.token).digest('hex').slice(0, 16)}`
        : `ip:${remoteAddress}`;
    const waitS = this.creations.take(key);
    if (waitS > 0) {
      throw new HelloRejection(
        ErrorCode.REJECTED,
        `too many new tunnels from this client; try again in ${waitS} s`,
        'QT_ERR_RATE_LIMITED',
      );
    }
  }

  /** Serves a client over any frame transport (the embedded relay uses memory). */
  attach(transport: FrameTransport, remoteAddress: string): MuxSession {
    // No child logger kept per connection (it would live as long as the tunnel, ~300 B
    // each): lines carry `remoteAddress` themselves, and the handshake gets a child that
    // is garbage once it is done. The JSON lines are the same.
    const base = this.opts.log;
    const session = new MuxSession(transport, 'server', {
      // Clients PING every few seconds; answering is enough (see keepAlivePassive).
      keepAlivePassive: true,
      ...this.opts.mux,
      log: { warn: (obj, msg) => base.warn({ remoteAddress, ...obj }, msg) },
    });
    this.sessions.add(session);
    session.on('close', () => this.sessions.delete(session)); // emitted once (see above)
    session
      .accept((app) => this.onHello(app, session, base.child({ remoteAddress }), remoteAddress))
      .catch((err: unknown) => {
        if (err instanceof HelloRejection) this.opts.stats?.connection('rejected');
        base.info(
          { remoteAddress, err: err instanceof Error ? err.message : String(err) },
          'tunnel handshake failed',
        );
      });
    return session;
  }

  private async onHello(
    app: unknown,
    session: MuxSession,
    log: Logger,
    remoteAddress: string,
  ): Promise<TunnelAssignment> {
    try {
      const assignment = await this.admit(app, session, log, remoteAddress);
      const relays = this.opts.cluster?.relays();
      return relays === undefined ? assignment : { ...assignment, relays };
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (
        this.opts.cluster !== undefined &&
        typeof code === 'string' &&
        CLUSTER_DOWN_CODES.has(code)
      ) {
        // Retryable for the client (SHUTDOWN): it tries again, here or at another relay.
        throw new HelloRejection(
          ErrorCode.SHUTDOWN,
          "this relay cannot reach its cluster's shared state (Redis) and cannot register tunnels right now; try again in a few seconds",
          'QT_ERR_CLUSTER_UNAVAILABLE',
        );
      }
      throw err;
    }
  }

  /** Claims `label` cluster-wide (cluster mode); false if another owner holds it. */
  private async clusterClaim(
    label: string,
    owner: string,
    kind: 'ephemeral' | 'named',
    mode: 'new' | 'resume' | 'named',
    access: AccessPolicy | undefined,
  ): Promise<boolean> {
    const cluster = this.opts.cluster;
    if (cluster === undefined) return true;
    return cluster.claim(label, owner, kind, mode, access);
  }

  private async admit(
    app: unknown,
    session: MuxSession,
    log: Logger,
    remoteAddress: string,
  ): Promise<TunnelAssignment> {
    const request = parseTunnelRequest(app);
    const throttle = this.opts.authThrottle;
    const waitS = throttle?.blockedFor(remoteAddress) ?? 0;
    if (waitS > 0) {
      throw new HelloRejection(
        ErrorCode.REJECTED,
        `too many failed authentication attempts from this address; try again in ${waitS} s`,
        'QT_ERR_RATE_LIMITED',
      );
    }
    if (!tokenAccepted(request.token, this.opts.tokens)) {
      if (request.token !== undefined) throttle?.fail(remoteAddress, 'relay token');
      throw new HelloRejection(
        ErrorCode.TOKEN_REJECTED,
        request.token === undefined
          ? 'this relay requires an access token: pass --token TOKEN (or set QUICK_TUNNEL_TOKEN)'
          : 'the relay rejected the access token: check --token / QUICK_TUNNEL_TOKEN',
        'QT_ERR_AUTH',
      );
    }
    let access: CompiledAccess | undefined;
    try {
      const compiled = compileAccess(request.access);
      access = isOpenAccess(compiled) ? undefined : compiled;
    } catch (err) {
      throw new HelloRejection(
        ErrorCode.REJECTED,
        `invalid access rules: ${(err as Error).message}`,
      );
    }
    if (request.name !== undefined) {
      return this.admitNamed(request, request.name, session, log, access, remoteAddress);
    }
    const label = await this.claimLabel(
      request.resume,
      () => this.chargeCreation(request, remoteAddress),
      request.access,
    );
    if (session.closed) throw new Error('the client left during the handshake');
    const hostname = `${label}.${this.opts.domain}`;
    const tunnelId = randomUUID();
    this.replacePrevious(label, request);
    const tunnel = this.opts.registry.attach(label, tunnelId, 'ephemeral', session);
    tunnel.access = access;
    this.counted(session);
    // One `registered` line per tunnel: its further (HA) connections are not new tunnels.
    if (tunnel.sessions.length === 1) {
      log.info(
        { event: 'registered', tunnelId: tunnel.id, hostname, kind: 'ephemeral' },
        'tunnel registered',
      );
    } else {
      log.debug(
        { event: 'connection-added', tunnelId: tunnel.id, connections: tunnel.sessions.length },
        'tunnel connection added',
      );
    }
    return {
      tunnelId: tunnel.id,
      label,
      hostname,
      urls: this.opts.urlsFor(hostname),
      kind: 'ephemeral',
      relayVersion: this.opts.relayVersion,
      resumeToken: this.signResume(label),
    };
  }

  /**
   * A named tunnel: the credential must match the stored hash. Every connection that
   * presents it joins the same tunnel (HA connections and replicas alike), so requests
   * spread over all of them.
   */
  private async admitNamed(
    request: TunnelRequest,
    name: string,
    session: MuxSession,
    log: Logger,
    access: CompiledAccess | undefined,
    remoteAddress: string,
  ): Promise<TunnelAssignment> {
    let record;
    try {
      record = await this.opts.named.authenticate(name, request.credential);
    } catch (err) {
      if (err instanceof NamedTunnelError) {
        if (err.status === 401 && request.credential !== undefined) {
          this.opts.authThrottle?.fail(remoteAddress, 'tunnel credential');
        }
        throw new HelloRejection(
          err.status === 401 ? ErrorCode.AUTH_FAILED : ErrorCode.REJECTED,
          err.message,
          err.code,
        );
      }
      throw err;
    }
    const live = this.opts.registry.lookup(record.name);
    if (live !== undefined && (live.kind !== 'named' || live.id !== record.id)) {
      throw new HelloRejection(
        ErrorCode.REJECTED,
        `the hostname ${record.name}.${this.opts.domain} is still held by an earlier tunnel; try again in a moment`,
      );
    }
    if (
      !(await this.clusterClaim(record.name, `n:${record.id}`, 'named', 'named', request.access))
    ) {
      throw new HelloRejection(
        ErrorCode.REJECTED,
        `the hostname ${record.name}.${this.opts.domain} is held by another tunnel in the cluster; try again in a moment`,
      );
    }
    if (session.closed) throw new Error('the client left during the handshake');
    const hostname = `${record.name}.${this.opts.domain}`;
    this.replacePrevious(record.name, request);
    const tunnel = this.opts.registry.attach(record.name, record.id, 'named', session);
    tunnel.access = access;
    this.counted(session);
    this.opts.named.noteClient(session, request.clientId);
    this.opts.named.seen(record.name);
    session.on('close', () => this.opts.named.seen(record.name));
    log.info(
      {
        event: 'registered',
        tunnelId: record.id,
        name: record.name,
        hostname,
        kind: 'named',
        connections: tunnel.sessions.length,
      },
      'tunnel registered',
    );
    return {
      tunnelId: record.id,
      label: record.name,
      hostname,
      urls: this.opts.urlsFor(hostname),
      kind: 'named',
      relayVersion: this.opts.relayVersion,
    };
  }

  /** Counts a registration now and its unregistration when the session closes. */
  private counted(session: MuxSession): void {
    const stats = this.opts.stats;
    if (stats === undefined) return;
    stats.connection('registered');
    session.on('close', () => stats.connection('unregistered'));
  }

  /**
   * A valid resume token gets its label back (also joining a live tunnel with that
   * label: that is the same client's second connection). Otherwise a fresh random
   * label, never one that is live or reserved by a named tunnel.
   */
  private async claimLabel(
    resume: string | undefined,
    chargeNew: () => void,
    access: AccessPolicy | undefined,
  ): Promise<string> {
    if (resume !== undefined) {
      const label = this.verifyResume(resume);
      if (
        label !== undefined &&
        !(await this.opts.named.isReserved(label)) &&
        (await this.clusterClaim(label, `e:${label}`, 'ephemeral', 'resume', access))
      ) {
        return label;
      }
    }
    chargeNew();
    for (let attempt = 0; ; attempt++) {
      const label = randomLabel();
      if (
        !this.opts.registry.has(label) &&
        !(await this.opts.named.isReserved(label)) &&
        (await this.clusterClaim(label, `e:${label}`, 'ephemeral', 'new', access))
      ) {
        return label;
      }
      if (attempt >= 100) throw new Error('no free random hostname after 100 tries');
    }
  }

  private signResume(label: string): string {
    const mac = createHmac('sha256', this.opts.resumeKey)
      .update(`resume:${label}`)
      .digest('base64url');
    return `${label}.${mac}`;
  }

  private verifyResume(token: string): string | undefined {
    const dot = token.indexOf('.');
    if (dot <= 0) return undefined;
    const label = token.slice(0, dot);
    const expected = Buffer.from(this.signResume(label));
    const given = Buffer.from(token);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
    const live = this.opts.registry.lookup(label);
    if (live !== undefined && live.kind !== 'ephemeral') return undefined;
    return label;
  }

  /**
   * Closes the sessions this client's new connection replaces (same clientId and
   * connection index): after a stall the old socket is often still half-open and must
   * not keep getting requests until its heartbeat times out.
   */
  private replacePrevious(label: string, request: TunnelRequest): void {
    if (request.clientId === undefined) return;
    const tunnel = this.opts.registry.lookup(label);
    if (tunnel === undefined) return;
    for (const old of [...tunnel.sessions]) {
      const app = old.peerApp as TunnelRequest | undefined;
      if (app?.clientId === request.clientId && app.connection === request.connection) {
        old.close(new ConnectionError('replaced by a new connection from the same client'));
      }
    }
  }

  /**
   * Sends GOAWAY on every session (no new streams) and resolves once all are idle. With
   * `spreadMs`, each session gets its GOAWAY at a random moment within that time, so the
   * clients reconnecting elsewhere (other relays of a cluster) do not all arrive at once.
   */
  async drain(spreadMs = 0): Promise<void> {
    const timers: NodeJS.Timeout[] = [];
    const sessions = [...this.sessions];
    await Promise.all(
      sessions.map(async (s) => {
        if (spreadMs > 0) {
          await new Promise((r) => timers.push(setTimeout(r, Math.random() * spreadMs)));
        }
        s.goAway(ErrorCode.SHUTDOWN, 'relay is shutting down');
        await s.whenIdle();
      }),
    );
    for (const t of timers) clearTimeout(t);
  }

  close(): void {
    for (const s of this.sessions) s.close();
    this.wss.close();
  }
}

function parseTunnelRequest(app: unknown): TunnelRequest {
  const v = (typeof app === 'object' && app !== null ? app : {}) as Record<string, unknown>;
  const str = (key: string): string | undefined => {
    const x = v[key];
    return typeof x === 'string' && x.length <= 4096 ? x : undefined;
  };
  const request: TunnelRequest = { clientVersion: str('clientVersion') ?? 'unknown' };
  const clientId = str('clientId');
  if (clientId !== undefined) request.clientId = clientId;
  const connection = v['connection'];
  if (
    typeof connection === 'number' &&
    Number.isInteger(connection) &&
    connection >= 0 &&
    connection < 64
  ) {
    request.connection = connection;
  }
  const token = str('token');
  if (token !== undefined) request.token = token;
  const name = str('name');
  if (name !== undefined) request.name = name;
  const credential = str('credential');
  if (credential !== undefined) request.credential = credential;
  const resume = str('resume');
  if (resume !== undefined) request.resume = resume;
  const access = v['access'];
  if (typeof access === 'object' && access !== null) request.access = access as AccessPolicy;
  return request;
}
