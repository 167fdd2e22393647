/**
 * Which tunnel serves which hostname label, and over which sessions. A tunnel has one
 * or more live sessions (HA connections of one CLI, or replicas of a named tunnel);
 * new requests go round-robin over the ones not going away.
 */
import type { MuxSession } from '../../shared/mux/session.js';

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

  constructor(id: string, label: string, kind: TunnelKind) {
    this.id = id;
    this.label = label;
    this.kind = kind;
  }

  /** A live session for a new stream, round-robin; undefined when none can take one. */
  pickSession(): MuxSession | undefined {
    const n = this.sessions.length;
    for (let i = 0; i < n; i++) {
      const s = this.sessions[(this.next + i) % n]!;
      if (!s.closed && !s.goingAway && !s.receivedGoAway) {
        this.next = (this.next + i + 1) % n;
        return s;
      }
    }
    return undefined;
  }
}

export interface RegistryEvents {
  onRegistered?: (tunnel: Tunnel, session: MuxSession) => void;
  onUnregistered?: (tunnel: Tunnel, session: MuxSession) => void;
}

export class TunnelRegistry {
  private readonly byLabel = new Map<string, Tunnel>();
  private readonly hooks: RegistryEvents;

  constructor(hooks: RegistryEvents = {}) {
    this.hooks = hooks;
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
    this.hooks.onRegistered?.(t, session);
    session.once('close', () => this.detach(t, session));
    return t;
  }

  private detach(tunnel: Tunnel, session: MuxSession): void {
    const i = tunnel.sessions.indexOf(session);
    if (i === -1) return;
    tunnel.sessions.splice(i, 1);
    if (tunnel.sessions.length === 0 && this.byLabel.get(tunnel.label) === tunnel) {
      this.byLabel.delete(tunnel.label);
    }
    this.hooks.onUnregistered?.(tunnel, session);
  }
}
