/**
 * Keeps a tunnel online: holds `connections` sessions to the relay, replaces any that
 * drops with jittered exponential backoff (forever once the tunnel has been online),
 * resumes the same hostname with the relay's resume token, and drains on stop.
 */
import { randomUUID } from 'node:crypto';
import { realClock, type Clock, type ClockTimer } from '../../shared/clock.js';
import { QuickTunnelError } from '../../shared/errors.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import type { MuxSession } from '../../shared/mux/session.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import type { TunnelAssignment, TunnelRequest } from '../../shared/protocol/tunnel.js';
import type { EventSink } from '../events.js';
import type { TunnelConnection } from './client.js';

export interface BackoffPolicy {
  /** First delay cap. Default 500 ms. */
  baseMs: number;
  /** Largest delay. Default 30 s. */
  capMs: number;
  /** Attempts kept in the fast phase (delay ≤ fastCapMs). Default 10. */
  fastAttempts: number;
  fastCapMs: number;
  /** A connection up this long resets the attempt count. Default 60 s. */
  stableMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = {
  baseMs: 500,
  capMs: 30_000,
  fastAttempts: 10,
  fastCapMs: 2_000,
  stableMs: 60_000,
};

/**
 * Full-jitter delay for `attempt` (0-based): uniform in [0, ceiling], where the
 * ceiling doubles from baseMs, stays ≤ fastCapMs for the first attempts (a relay that
 * restarts in a few seconds is found again within seconds), then grows to capMs.
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number): number {
  const exp = policy.baseMs * 2 ** Math.min(attempt, 20);
  const ceiling = Math.min(attempt < policy.fastAttempts ? policy.fastCapMs : policy.capMs, exp);
  return Math.max(100, Math.round(random() * ceiling));
}

export interface SupervisorOptions {
  /**
   * Dials the relay and handshakes (remote WebSocket or the embedded relay). `relay` is
   * one of `relays` (or of the relays a cluster lists in its HELLO answer); undefined =
   * the one relay configured.
   */
  connect: (request: TunnelRequest, relay?: string) => Promise<TunnelConnection>;
  /**
   * Relay URLs of one cluster (`--relay A,B`). The connections are kept on different
   * relays whenever several are alive; the relays' HELLO answers add the others.
   */
  relays?: string[];
  request: TunnelRequest;
  /** Sessions to keep open (HA). Default 2. */
  connections?: number;
  onStream: (stream: MuxStream) => void;
  emit: EventSink;
  relay: string;
  target: string;
  local: boolean;
  /** First connection: give up after this many failed tries. Default 3. */
  firstConnectAttempts?: number;
  backoff?: BackoffPolicy;
  random?: () => number;
  /** Time for the backoff delays, the stable-connection reset and stop's grace period. */
  clock?: Clock;
}

/** Waits `ms` on `clock` (a ref'd timer: the process stays up to reconnect), or until `signal`. */
function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = clock.setTimeout(done, ms);
    function done(): void {
      clock.clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

export class TunnelSupervisor {
  private readonly opts: SupervisorOptions;
  private readonly policy: BackoffPolicy;
  private readonly clock: Clock;
  private readonly stopController = new AbortController();
  private readonly sessions = new Set<MuxSession>();
  /** When each session's connection is fully closed (see TunnelConnection.closed). */
  private readonly transportClosed = new WeakMap<MuxSession, Promise<void>>();
  private assignment: TunnelAssignment | undefined;
  private resumeToken: string | undefined;
  private slots: Promise<void>[] = [];
  private stopped = false;
  /** Known relays of the cluster (normalised URLs); empty = the one configured relay. */
  private relays: string[] = [];
  /** The relay each slot is connected to (or dialling). */
  private readonly slotRelay = new Map<number, string>();
  /** When a relay last failed us: it is avoided for a few seconds. */
  private readonly failedAt = new Map<string, number>();
  /** Identifies this process's connections to the relay (see TunnelRequest.clientId). */
  private readonly clientId = randomUUID();
  /** Resolves when the supervisor gives up for good (permanent error after online). */
  readonly done: Promise<Error | undefined>;
  private resolveDone!: (err: Error | undefined) => void;

  constructor(opts: SupervisorOptions) {
    this.opts = opts;
    this.policy = opts.backoff ?? DEFAULT_BACKOFF;
    this.clock = opts.clock ?? realClock;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.learnRelays(opts.relays ?? []);
  }

  private learnRelays(urls: readonly string[]): void {
    for (const u of urls) {
      const url = u.replace(/\/+$/, '');
      if (url !== '' && !this.relays.includes(url) && this.relays.length < 64)
        this.relays.push(url);
    }
  }

  /**
   * The relay slot `index` should dial: one no other slot uses and that did not fail in
   * the last few seconds, if there is one; undefined when only one relay is configured.
   */
  private relayFor(index: number, attempt: number): string | undefined {
    if (this.relays.length === 0) return undefined;
    const now = this.clock.now();
    const healthy = this.relays.filter((r) => now - (this.failedAt.get(r) ?? -Infinity) > 5_000);
    const used = new Set<string>();
    for (const [i, r] of this.slotRelay) if (i !== index) used.add(r);
    const free = healthy.filter((r) => !used.has(r));
    const pool = free.length > 0 ? free : healthy.length > 0 ? healthy : this.relays;
    return pool[(index + attempt) % pool.length];
  }

  get liveConnections(): number {
    let n = 0;
    for (const s of this.sessions) if (!s.closed && !s.receivedGoAway) n++;
    return n;
  }

  /** The current assignment (hostname, URLs), once online. */
  get current(): TunnelAssignment | undefined {
    return this.assignment;
  }

  /** Latest RTT to the relay over any live session. */
  get rttMs(): number | undefined {
    for (const s of this.sessions) if (s.rttMs !== undefined) return s.rttMs;
    return undefined;
  }

  /**
   * Connects the first session. Resolves with the assignment once the relay has
   * confirmed the route (so the printed URL works at the first click); rejects when
   * the first connection fails permanently or after `firstConnectAttempts` tries.
   */
  async start(): Promise<TunnelAssignment> {
    const attempts = this.opts.firstConnectAttempts ?? 3;
    const random = this.opts.random ?? Math.random;
    let lastErr: unknown;
    for (let attempt = 0; attempt < attempts && !this.stopped; attempt++) {
      this.opts.emit({ event: 'connecting', relay: this.opts.relay, attempt: attempt + 1 });
      const relay = this.relayFor(0, attempt);
      try {
        const conn = await this.opts.connect(
          {
            ...this.opts.request,
            clientId: this.clientId,
            connection: 0,
          },
          relay,
        );
        this.slotRelay.set(0, relay ?? '');
        this.adopt(conn, 0);
        this.opts.emit({
          event: 'ready',
          url: conn.assignment.urls[0] ?? `https://${conn.assignment.hostname}`,
          urls: conn.assignment.urls,
          hostname: conn.assignment.hostname,
          kind: conn.assignment.kind,
          relay: this.opts.relay,
          target: this.opts.target,
          local: this.opts.local,
          connections: this.opts.connections ?? 2,
        });
        this.slots.push(this.runSlot(0, conn));
        for (let i = 1; i < (this.opts.connections ?? 2); i++)
          this.slots.push(this.runSlot(i, undefined));
        return conn.assignment;
      } catch (err) {
        lastErr = err;
        if (relay !== undefined) this.failedAt.set(relay, this.clock.now());
        if (err instanceof QuickTunnelError && !err.retryable) throw err;
        if (attempt + 1 < attempts) {
          const delayMs = backoffDelay(attempt, this.policy, random);
          await sleep(this.clock, delayMs, this.stopController.signal);
        }
      }
    }
    if (lastErr instanceof Error) {
      throw new QuickTunnelError(
        'QT_ERR_RELAY_UNREACHABLE',
        `${lastErr.message} (gave up after ${attempts} attempts)`,
        { cause: lastErr, retryable: true },
      );
    }
    throw new QuickTunnelError('QT_ERR_STOPPED', 'stopped before the tunnel was online');
  }

  private adopt(conn: TunnelConnection, index: number): void {
    const session = conn.session;
    this.sessions.add(session);
    session.on('stream', (stream) => this.opts.onStream(stream));
    session.on('rtt', (ms) => this.opts.emit({ event: 'rtt', ms }));
    session.once('close', () => this.sessions.delete(session));
    if (conn.closed !== undefined) this.transportClosed.set(session, conn.closed);
    if (conn.assignment.resumeToken !== undefined) this.resumeToken = conn.assignment.resumeToken;
    // A cluster lists its live relays: the connections spread over them. A relay given
    // alone (--relay URL) keeps every connection on that URL unless it is a cluster.
    if (Array.isArray(conn.assignment.relays)) {
      if (this.relays.length === 0 && this.opts.relays === undefined) {
        // The configured URL comes first (it may be a load balancer's name).
        this.relays.push('');
      }
      const listed = conn.assignment.relays.filter((r) => typeof r === 'string');
      this.learnRelays(listed);
      // The relay answering is listed first: when this slot dialled the configured URL,
      // it now knows which relay that is, and the other slots avoid it.
      if (this.slotRelay.get(index) === '' && listed[0] !== undefined) {
        this.slotRelay.set(index, listed[0].replace(/\/+$/, ''));
      }
    }
    this.assignment = conn.assignment;
  }

  /** One HA slot: hold a session; when it drops, reconnect with backoff. */
  private async runSlot(index: number, initial: TunnelConnection | undefined): Promise<void> {
    const random = this.opts.random ?? Math.random;
    const now = (): number => this.clock.now();
    let attempt = 0;
    let conn = initial;
    while (!this.stopped) {
      if (conn === undefined) {
        const relay = this.relayFor(index, attempt);
        this.slotRelay.set(index, relay ?? '');
        try {
          const request: TunnelRequest = {
            ...this.opts.request,
            clientId: this.clientId,
            connection: index,
          };
          if (this.resumeToken !== undefined) request.resume = this.resumeToken;
          const previous = this.assignment?.hostname;
          conn = await this.opts.connect(request, relay === '' ? undefined : relay);
          if (this.stopped) {
            conn.session.close();
            return;
          }
          this.adopt(conn, index);
          if (attempt > 0 || previous !== conn.assignment.hostname) {
            this.opts.emit({
              event: 'reconnected',
              url: conn.assignment.urls[0] ?? conn.assignment.hostname,
              sameHostname: previous === conn.assignment.hostname,
            });
          }
        } catch (err) {
          if (this.stopped) return;
          if (relay !== undefined) this.failedAt.set(relay, now());
          if (err instanceof QuickTunnelError && !err.retryable) {
            // Token revoked, name deleted...: retrying can't help. Stop and report.
            this.giveUp(err);
            return;
          }
          const delayMs = backoffDelay(attempt, this.policy, random);
          attempt++;
          this.opts.emit({
            event: 'reconnecting',
            attempt,
            delayMs,
            error: err instanceof Error ? err.message : String(err),
          });
          await sleep(this.clock, delayMs, this.stopController.signal);
          continue;
        }
      }
      const session = conn.session;
      const upAt = now();
      const reason = await new Promise<string>((resolve) => {
        session.once('close', (err) => resolve(err?.message ?? 'connection closed'));
        // A relay going away (redeploy) gets replaced at once, without backoff; the old
        // session finishes its in-flight streams meanwhile.
        session.once('goaway', (_code, message) =>
          resolve(`relay going away${message ? `: ${message}` : ''}`),
        );
      });
      conn = undefined;
      if (this.stopped) return;
      const lostRelay = this.slotRelay.get(index);
      // Lost or going away (draining): dial the other relays first for a few seconds.
      if (lostRelay !== undefined && lostRelay !== '') this.failedAt.set(lostRelay, now());
      if (now() - upAt >= this.policy.stableMs) attempt = 0;
      this.opts.emit({
        event: 'connection-lost',
        error: reason,
        connectionsLeft: this.liveConnections,
      });
      if (!session.receivedGoAway) {
        const delayMs = backoffDelay(attempt, this.policy, random);
        attempt++;
        this.opts.emit({ event: 'reconnecting', attempt, delayMs, error: reason });
        await sleep(this.clock, delayMs, this.stopController.signal);
      }
    }
  }

  private giveUp(err: Error): void {
    this.resolveDone(err);
  }

  /**
   * Stops: GOAWAY on every session (the relay sends no new streams), waits for
   * in-flight streams up to `graceMs`, then closes.
   */
  async stop(graceMs = 5_000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.stopController.abort();
    const sessions = [...this.sessions];
    for (const s of sessions) s.goAway(ErrorCode.NO_ERROR, 'client stopping');
    let timer: ClockTimer | undefined;
    // After the GOAWAY, one PING round trip: the PONG comes back after the relay has
    // seen the GOAWAY, so every request it routed here before that has arrived (and
    // was refused, for the relay to retry on another connection or replica). Closing
    // any earlier would lose those requests. Then wait for the in-flight streams.
    await Promise.race([
      Promise.all(sessions.map(goAwaySeen)).then(() =>
        Promise.all(sessions.map((s) => s.whenIdle())),
      ),
      new Promise((r) => (timer = this.clock.setTimeout(() => r(undefined), graceMs))),
    ]);
    this.clock.clearTimeout(timer);
    for (const s of sessions) s.close();
    // Let each WebSocket finish its close handshake before the process may exit:
    // exiting earlier can reset the TCP connection and lose the last response bytes.
    await Promise.race([
      Promise.all(sessions.map((s) => this.transportClosed.get(s))),
      new Promise((r) => (timer = this.clock.setTimeout(() => r(undefined), 1_000))),
    ]);
    this.clock.clearTimeout(timer);
    await Promise.all(this.slots);
    this.opts.emit({ event: 'closed' });
    this.resolveDone(undefined);
  }
}

/** Resolves once the peer answered a PING sent after our GOAWAY (or the session closed). */
function goAwaySeen(session: MuxSession): Promise<void> {
  return new Promise((resolve) => {
    if (session.closed) return resolve();
    const done = (): void => {
      session.off('rtt', done);
      session.off('close', done);
      resolve();
    };
    session.on('rtt', done);
    session.on('close', done);
    session.ping();
  });
}
