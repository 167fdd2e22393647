/**
 * Which tunnel serves which hostname label, and over which sessions. A tunnel has one
 * or more live sessions (HA connections of one CLI, or replicas of a named tunnel);
 * new requests go round-robin over the ones not going away (sticky within a loop turn).
 */
import { realClock, type Clock } from '../../shared/clock.js';
import type { MuxSession } from '../../shared/mux/session.js';
import { currentTurn } from '../../shared/speed.js';
import { RELAY_DEFAULTS } from '../config.js';
import type { CompiledAccess } from '../edge/access.js';

export type TunnelKind = 'ephemeral' | 'named';

export class Tunnel {
  readonly id: string;
  readonly label: string;
  readonly kind: TunnelKind;
  readonly sessions: MuxSession[] = [];
  readonly createdAt = Date.now();
  private next = 0;
  /** Requests forwarded, for logs and metrics. */
  requests = 0;
  /** Visitor access control, from the latest connection's HELLO (undefined = open). */
  access: CompiledAccess | undefined;

  constructor(id: string, label: string, kind: TunnelKind) {
    this.id = id;
    this.label = label;
    this.kind = kind;
  }

  /**
   * A live session for a new stream; undefined when none can take one. Round-robin,
   * but sticky within one turn of the event loop: the requests that arrive together go
   * over one connection, so their frames leave in one TLS write and the client reads
   * them in one go (each session corks its socket per turn). Spreading every request
   * over the HA connections cost ~20% of small-GET throughput (`npm run bench -- e2e`:
   * 7.7k req/s with one connection, 6.4k with two). The turn count is shared/speed.ts's
   * `sticky-session` trick: off, this is plain round-robin.
   */
  pickSession(): MuxSession | undefined {
    const turn = currentTurn();
    const sticky = this.sticky;
    if (sticky !== undefined && this.stickyTurn === turn && usable(sticky)) return sticky;
    const n = this.sessions.length;
    for (let i = 0; i < n; i++) {
      const s = this.sessions[(this.next + i) % n]!;
      if (usable(s)) {
        this.next = (this.next + i + 1) % n;
        this.sticky = s;
        this.stickyTurn = turn;
        return s;
      }
    }
    this.sticky = undefined;
    return undefined;
  }

  /** Drops a session that closed; false if it was not one of this tunnel's. */
  removeSession(session: MuxSession): boolean {
    const i = this.sessions.indexOf(session);
    if (i === -1) return false;
    this.sessions.splice(i, 1);
    if (this.sticky === session) this.sticky = undefined;
    return true;
  }

  private sticky: MuxSession | undefined;
  private stickyTurn = -1;
}

function usable(s: MuxSession): boolean {
  return !s.closed && !s.goingAway && !s.receivedGoAway;
}

export interface RegistryEvents {
  onRegistered?: (tunnel: Tunnel, session: MuxSession) => void;
  onUnregistered?: (tunnel: Tunnel, session: MuxSession) => void;
}

export interface RegistryOptions extends RegistryEvents {
  /**
   * How long visitor requests for a tunnel without a live connection are held, waiting
   * for its client to (re)connect, before they get a 503. Applies to tunnels that just
   * lost their last connection, and to any label in the first `holdMs` after the relay
   * started (its clients are reconnecting after a restart). Default 10 s; 0 = off.
   */
  holdMs?: number;
  /** Requests held at once, relay-wide; beyond it they are answered at once. Default 10,000. */
  maxHeldRequests?: number;
  /**
   * Hold requests for unknown labels during the first `holdMs` after start: set when
   * the relay restarted on an existing data dir, so its tunnels are reconnecting.
   */
  restarted?: boolean;
  /** Time for the hold windows and the held requests' timeouts. Default the real clock. */
  clock?: Clock;
}

type Waiter = (session: MuxSession | undefined) => void;

export class TunnelRegistry {
  private readonly byLabel = new Map<string, Tunnel>();
  private readonly hooks: RegistryEvents;
  readonly holdMs: number;
  private readonly maxHeld: number;
  private readonly clock: Clock;
  private readonly startedAt: number;
  /** Labels whose last connection dropped recently → when their hold window ends. */
  private readonly recentlyOffline = new Map<string, number>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private heldCount = 0;

  constructor(options: RegistryOptions = {}) {
    this.hooks = options;
    this.holdMs = options.holdMs ?? RELAY_DEFAULTS.holdMs;
    this.maxHeld = options.maxHeldRequests ?? RELAY_DEFAULTS.maxHeldRequests;
    this.clock = options.clock ?? realClock;
    this.startedAt = options.restarted === true ? this.clock.now() : -Infinity;
  }

  /** Requests currently waiting for a tunnel to come back. */
  get held(): number {
    return this.heldCount;
  }

  /**
   * How long a request for `label` may wait for a connection: the rest of the label's
   * hold window (it just went offline) or of the relay's post-start window; 0 = don't.
   */
  holdBudgetMs(label: string): number {
    if (this.holdMs <= 0) return 0;
    const now = this.clock.now();
    let until = this.startedAt + this.holdMs;
    const offline = this.recentlyOffline.get(label);
    if (offline !== undefined) {
      if (offline <= now) this.recentlyOffline.delete(label);
      else until = Math.max(until, offline);
    }
    return Math.max(0, until - now);
  }

  /** True if `label` lost its last connection within the hold window. */
  wasRecentlyOnline(label: string): boolean {
    const offline = this.recentlyOffline.get(label);
    return offline !== undefined && offline > this.clock.now();
  }

  /**
   * Resolves with a live session for `label` as soon as one registers, or undefined
   * after `timeoutMs` (or at once when too many requests are already held).
   */
  waitForSession(label: string, timeoutMs: number): Promise<MuxSession | undefined> {
    const live = this.byLabel.get(label)?.pickSession();
    if (live !== undefined) return Promise.resolve(live);
    if (timeoutMs <= 0 || this.heldCount >= this.maxHeld) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      let set = this.waiters.get(label);
      if (set === undefined) {
        set = new Set();
        this.waiters.set(label, set);
      }
      const waiters = set;
      this.heldCount++;
      const waiter: Waiter = (session) => {
        this.clock.clearTimeout(timer);
        waiters.delete(waiter);
        if (waiters.size === 0 && this.waiters.get(label) === waiters) this.waiters.delete(label);
        this.heldCount--;
        resolve(session);
      };
      const timer = this.clock.setTimeout(() => waiter(undefined), timeoutMs).unref();
      waiters.add(waiter);
    });
  }

  private wakeWaiters(label: string, tunnel: Tunnel): void {
    const set = this.waiters.get(label);
    if (set === undefined) return;
    for (const waiter of [...set]) {
      const session = tunnel.pickSession();
      if (session === undefined) return;
      waiter(session);
    }
  }

  get size(): number {
    return this.byLabel.size;
  }

  has(label: string): boolean {
    return this.byLabel.has(label);
  }

  lookup(label: string): Tunnel | undefined {
    return this.byLabel.get(label);
  }

  tunnels(): IterableIterator<Tunnel> {
    return this.byLabel.values();
  }

  /**
   * Adds `session` to the tunnel for `label`, creating it if needed. The session is
   * removed again when it closes; the tunnel disappears with its last session.
   */
  attach(label: string, id: string, kind: TunnelKind, session: MuxSession): Tunnel {
    let tunnel = this.byLabel.get(label);
    if (tunnel === undefined) {
      tunnel = new Tunnel(id, label, kind);
      this.byLabel.set(label, tunnel);
    }
    const t = tunnel;
    t.sessions.push(session);
    this.recentlyOffline.delete(label);
    this.hooks.onRegistered?.(t, session);
    // A session emits 'close' once: `on` saves `once`'s wrapper for the session's life.
    session.on('close', () => this.detach(t, session));
    this.wakeWaiters(label, t);
    return t;
  }

  private detach(tunnel: Tunnel, session: MuxSession): void {
    if (!tunnel.removeSession(session)) return;
    if (tunnel.sessions.length === 0 && this.byLabel.get(tunnel.label) === tunnel) {
      this.byLabel.delete(tunnel.label);
      if (this.holdMs > 0) {
        this.recentlyOffline.set(tunnel.label, this.clock.now() + this.holdMs);
        // Bound the map: drop expired entries now and then.
        if (this.recentlyOffline.size > 1024) this.pruneOffline();
      }
    }
    this.hooks.onUnregistered?.(tunnel, session);
  }

  private pruneOffline(): void {
    const now = this.clock.now();
    for (const [label, until] of this.recentlyOffline)
      if (until <= now) this.recentlyOffline.delete(label);
  }

  /** Answers every held request with `undefined` (relay shutting down). */
  releaseAll(): void {
    for (const set of [...this.waiters.values()]) for (const waiter of [...set]) waiter(undefined);
  }
}
