/**
 * Named tunnels: the persistent objects (name, id, credential hash, in the store) and
 * their view over the live connections (the registry). The tunnel endpoint uses it to
 * admit a client that asks for a name; the control API uses it to create, inspect and
 * delete tunnels. Every create/delete leaves an audit line on the relay's log (never
 * the credential).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { QuickTunnelError, type QtErrorCode } from '../../shared/errors.js';
import type { MuxSession } from '../../shared/mux/session.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import type { NamedTunnelStatus } from '../../shared/protocol/tunnel.js';
import { RELAY_DEFAULTS } from '../config.js';
import { RateLimiter } from '../edge/limits.js';
import { credentialMatches, generateCredential, hashCredential } from './auth.js';
import { invalidNameReason } from './labels.js';
import type { TunnelRegistry } from './registry.js';
import { NameTakenError, type TunnelRecord, type TunnelStore } from './store.js';

/** A refusal with the HTTP status the control API answers with. */
export class NamedTunnelError extends QuickTunnelError {
  readonly status: number;
  /** Seconds to wait before trying again (429), sent as Retry-After. */
  readonly retryAfterS: number | undefined;
  constructor(status: number, code: QtErrorCode, message: string, retryAfterS?: number) {
    super(code, message);
    this.status = status;
    this.retryAfterS = retryAfterS;
  }
}

export type { NamedTunnelStatus };

export interface NamedTunnelsOptions {
  store: TunnelStore;
  registry: TunnelRegistry;
  domain: string;
  urlsFor: (hostname: string) => string[];
  log: Logger;
  now?: () => Date;
  /** Named tunnels one client (relay token, else IP) may hold. Default 100; 0 = no limit. */
  maxPerClient?: number;
  /** Named tunnels one client may create per hour (429 beyond). Default 120; 0 = no limit. */
  creationsPerHour?: number;
}

/** Defaults of the per-client limits on named tunnels. */
export const NAMED_TUNNEL_LIMITS = {
  maxPerClient: RELAY_DEFAULTS.maxNamedTunnelsPerClient,
  creationsPerHour: RELAY_DEFAULTS.namedTunnelCreationsPerHour,
} as const;

/** Lowercases and trims a name typed by a user (DNS names are case-insensitive). */
export function normalizeName(name: string): string {
  return name.trim().toLowerCase();
}

export class NamedTunnels {
  private readonly opts: NamedTunnelsOptions;
  private readonly now: () => Date;
  /** Client process id per session, to count replicas (a client's HA connections share one). */
  private readonly clientIds = new WeakMap<MuxSession, string>();
  private readonly creations: RateLimiter | undefined;
  private readonly maxPerClient: number;

  constructor(opts: NamedTunnelsOptions) {
    this.opts = opts;
    this.now = opts.now ?? (() => new Date());
    this.maxPerClient = opts.maxPerClient ?? NAMED_TUNNEL_LIMITS.maxPerClient;
    const perHour = opts.creationsPerHour ?? NAMED_TUNNEL_LIMITS.creationsPerHour;
    // A burst of a fifth of the hour's budget (at least 5), then the steady rate.
    this.creations =
      perHour > 0
        ? new RateLimiter({
            ratePerSecond: perHour / 3600,
            burst: Math.max(5, Math.ceil(perHour / 5)),
            now: () => this.now().getTime(),
          })
        : undefined;
  }

  get store(): TunnelStore {
    return this.opts.store;
  }

  /** True if `label` is reserved by a named tunnel (ephemeral labels must avoid it). */
  async isReserved(label: string): Promise<boolean> {
    return (await this.opts.store.get(label)) !== undefined;
  }

  /**
   * Reserves `name`: returns the record and the credential, which exists only in this
   * answer (the store keeps its hash). `owner` (`token:…` / `ip:…`; undefined for an
   * admin) is charged against the creation rate and the per-client quota.
   */
  async create(
    rawName: string,
    options: { queue?: boolean; owner?: string } = {},
  ): Promise<{ record: TunnelRecord; credential: string }> {
    const { owner } = options;
    if (owner !== undefined && this.creations !== undefined) {
      const waitS = this.creations.take(owner);
      if (waitS > 0) {
        throw new NamedTunnelError(
          429,
          'QT_ERR_RATE_LIMITED',
          `too many named tunnels created from this client; try again in ${waitS} s`,
          waitS,
        );
      }
    }
    const name = normalizeName(rawName);
    const reason = invalidNameReason(name);
    if (reason !== undefined) {
      throw new NamedTunnelError(
        400,
        'QT_ERR_BAD_NAME',
        `'${rawName}' is not a valid tunnel name: ${reason}`,
      );
    }
    // A live ephemeral tunnel may hold the label right now (random labels can collide).
    if (this.opts.registry.has(name) || (await this.opts.store.get(name)) !== undefined) {
      throw this.taken(name);
    }
    if (
      owner !== undefined &&
      this.maxPerClient > 0 &&
      (await this.opts.store.countOwned(owner)) >= this.maxPerClient
    ) {
      throw new NamedTunnelError(
        403,
        'QT_ERR_QUOTA',
        `this client already holds ${this.maxPerClient} named tunnels on this relay (its limit): delete one with \`quick-tunnel tunnel delete NAME\` first`,
      );
    }
    const credential = generateCredential();
    const record: TunnelRecord = {
      id: randomUUID(),
      name,
      credentialHash: hashCredential(credential),
      createdAt: this.now().toISOString(),
      lastSeenAt: null,
      ...(options.queue === true ? { queue: { enabled: true } } : {}),
      ...(owner !== undefined ? { owner } : {}),
    };
    try {
      await this.opts.store.create(record);
    } catch (err) {
      if (err instanceof NameTakenError) throw this.taken(name);
      throw err;
    }
    this.opts.log.info(
      { event: 'created', tunnelId: record.id, name, hostname: this.hostname(name) },
      'named tunnel created',
    );
    return { record, credential };
  }

  private taken(name: string): NamedTunnelError {
    return new NamedTunnelError(
      409,
      'QT_ERR_NAME_TAKEN',
      `the name '${name}' is already taken on this relay: pick another name`,
    );
  }

  /** The record for `name` if `credential` is its credential; else a clear refusal. */
  async authenticate(rawName: string, credential: string | undefined): Promise<TunnelRecord> {
    const name = normalizeName(rawName);
    const record = await this.opts.store.get(name);
    if (record === undefined) {
      throw new NamedTunnelError(
        404,
        'QT_ERR_NO_SUCH_TUNNEL',
        `there is no tunnel named '${name}' on this relay (it was deleted, or never created here): create it with \`quick-tunnel tunnel create ${name}\``,
      );
    }
    if (credential === undefined) {
      throw new NamedTunnelError(
        401,
        'QT_ERR_CREDENTIAL',
        `tunnel '${name}' is owned by a credential, and none was presented`,
      );
    }
    if (!credentialMatches(credential, record.credentialHash)) {
      throw new NamedTunnelError(
        401,
        'QT_ERR_CREDENTIAL',
        `the credential for tunnel '${name}' was refused: it is not the one this relay issued for '${name}' (was the tunnel deleted and created again?)`,
      );
    }
    return record;
  }

  /** Turns store-and-forward on or off for `record` (kept in its reservation). */
  async setQueue(record: TunnelRecord, enabled: boolean): Promise<TunnelRecord> {
    const store = this.opts.store;
    if (store.setQueue === undefined) {
      throw new NamedTunnelError(
        501,
        'QT_ERR_NOT_SUPPORTED',
        "this relay's tunnel store cannot change a tunnel's queue setting",
      );
    }
    const next = await store.setQueue(record.name, { enabled });
    if (next === undefined) {
      throw new NamedTunnelError(404, 'QT_ERR_NO_SUCH_TUNNEL', `tunnel '${record.name}' is gone`);
    }
    this.opts.log.info(
      {
        event: enabled ? 'queue-enabled' : 'queue-disabled',
        tunnelId: record.id,
        name: record.name,
      },
      enabled ? 'store-and-forward enabled' : 'store-and-forward disabled',
    );
    return next;
  }

  async get(rawName: string): Promise<TunnelRecord | undefined> {
    return this.opts.store.get(normalizeName(rawName));
  }

  /** Records the client process id (HELLO `clientId`) of a session, for the replica count. */
  noteClient(session: MuxSession, clientId: string | undefined): void {
    if (clientId !== undefined) this.clientIds.set(session, clientId);
  }

  /** Updates lastSeenAt (on every registration and unregistration). */
  seen(name: string): void {
    this.opts.store.touch(name, this.now()).catch((err: unknown) => {
      this.opts.log.warn(
        { err: err instanceof Error ? err.message : String(err), name },
        'could not record last-seen time',
      );
    });
  }

  status(record: TunnelRecord): NamedTunnelStatus {
    const tunnel = this.opts.registry.lookup(record.name);
    const sessions = tunnel?.kind === 'named' ? tunnel.sessions.filter((s) => !s.closed) : [];
    const replicas = new Set<string>();
    sessions.forEach((s, i) => replicas.add(this.clientIds.get(s) ?? `session-${i}`));
    const hostname = this.hostname(record.name);
    return {
      id: record.id,
      name: record.name,
      hostname,
      urls: this.opts.urlsFor(hostname),
      createdAt: record.createdAt,
      lastSeenAt: record.lastSeenAt,
      connected: sessions.length > 0,
      connections: sessions.length,
      replicas: replicas.size,
      queue: record.queue?.enabled === true,
    };
  }

  async list(): Promise<NamedTunnelStatus[]> {
    return (await this.opts.store.list()).map((r) => this.status(r));
  }

  /**
   * Deletes `name`. While connections serve it, refuses unless `force`; with `force`
   * those connections get GOAWAY(REJECTED) and are closed, so their clients stop
   * instead of reconnecting.
   */
  async delete(record: TunnelRecord, force: boolean): Promise<{ connectionsClosed: number }> {
    const status = this.status(record);
    if (status.connected && !force) {
      throw new NamedTunnelError(
        409,
        'QT_ERR_TUNNEL_CONNECTED',
        `tunnel '${record.name}' is connected (${status.replicas} replica(s), ${status.connections} connection(s)): stop it first, or force the deletion`,
      );
    }
    await this.opts.store.delete(record.name);
    const tunnel = this.opts.registry.lookup(record.name);
    const sessions = tunnel?.kind === 'named' ? [...tunnel.sessions] : [];
    for (const s of sessions) {
      s.goAway(ErrorCode.REJECTED, `tunnel '${record.name}' was deleted`);
      s.close();
    }
    this.opts.log.info(
      {
        event: 'deleted',
        tunnelId: record.id,
        name: record.name,
        forced: force,
        connectionsClosed: sessions.length,
      },
      'named tunnel deleted',
    );
    return { connectionsClosed: sessions.length };
  }

  hostname(name: string): string {
    return `${name}.${this.opts.domain}`;
  }
}
