/**
 * The tunnel endpoint: a client's WebSocket (or an in-process transport) becomes a
 * server-side MuxSession, and its HELLO decides which hostname it serves.
 */
import { createHmac, randomUUID, timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { Logger } from 'pino';
import { HelloRejection, MuxSession, type MuxOptions } from '../../shared/mux/session.js';
import { wsTransport, type FrameTransport } from '../../shared/mux/transport.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import type { TunnelAssignment, TunnelRequest } from '../../shared/protocol/tunnel.js';
import { randomLabel } from '../tunnels/labels.js';
import type { TunnelRegistry } from '../tunnels/registry.js';

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
}

/** Constant-time membership test of a presented token. */
export function tokenAccepted(presented: string | undefined, tokens: readonly string[]): boolean {
  if (tokens.length === 0) return true;
  if (presented === undefined) return false;
  const p = createHash('sha256').update(presented).digest();
  let ok = false;
  for (const t of tokens) {
    // Hash both sides so lengths match and timing reveals nothing about the token.
    if (timingSafeEqual(p, createHash('sha256').update(t).digest())) ok = true;
  }
  return ok;
}

export class TunnelEndpoint {
  private readonly opts: EndpointOptions;
  private readonly wss: WebSocketServer;
  readonly sessions = new Set<MuxSession>();

  constructor(opts: EndpointOptions) {
    this.opts = opts;
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
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => {}); // errors surface as 'close' through the transport
      this.attach(wsTransport(ws), req.socket.remoteAddress ?? '');
    });
  }

  /** Serves a client over any frame transport (the embedded relay uses memory). */
  attach(transport: FrameTransport, remoteAddress: string): MuxSession {
    const log = this.opts.log.child({ remoteAddress });
    const session = new MuxSession(transport, 'server', {
      ...this.opts.mux,
      log: { warn: (obj, msg) => log.warn(obj, msg) },
    });
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
    session
      .accept((app) => this.onHello(app, session, log))
      .catch((err: unknown) => {
        log.info(
          { err: err instanceof Error ? err.message : String(err) },
          'tunnel handshake failed',
        );
      });
    return session;
  }

  private onHello(app: unknown, session: MuxSession, log: Logger): TunnelAssignment {
    const request = parseTunnelRequest(app);
    if (!tokenAccepted(request.token, this.opts.tokens)) {
      throw new HelloRejection(
        ErrorCode.AUTH_FAILED,
        request.token === undefined
          ? 'this relay requires an access token: pass --token TOKEN (or set QUICK_TUNNEL_TOKEN)'
          : 'the relay rejected the access token: check --token / QUICK_TUNNEL_TOKEN',
        'QT_ERR_AUTH',
      );
    }
    if (request.name !== undefined) {
      throw new HelloRejection(
        ErrorCode.REJECTED,
        'named tunnels are not available on this relay yet',
      );
    }
    const label = this.claimLabel(request.resume);
    const hostname = `${label}.${this.opts.domain}`;
    const tunnelId = randomUUID();
    const tunnel = this.opts.registry.attach(label, tunnelId, 'ephemeral', session);
    log.info(
      { event: 'registered', tunnelId: tunnel.id, hostname, kind: 'ephemeral' },
      'tunnel registered',
    );
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
   * A valid resume token gets its label back (also joining a live tunnel with that
   * label: that is the same client's second connection). Otherwise a fresh random
   * label, never one that is live.
   */
  private claimLabel(resume: string | undefined): string {
    if (resume !== undefined) {
      const label = this.verifyResume(resume);
      if (label !== undefined) return label;
    }
    for (;;) {
      const label = randomLabel();
      if (!this.opts.registry.has(label)) return label;
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

  /** Sends GOAWAY on every session (no new streams) and resolves once all are idle. */
  async drain(): Promise<void> {
    for (const s of this.sessions) s.goAway(ErrorCode.SHUTDOWN, 'relay is shutting down');
    await Promise.all([...this.sessions].map((s) => s.whenIdle()));
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
  const token = str('token');
  if (token !== undefined) request.token = token;
  const name = str('name');
  if (name !== undefined) request.name = name;
  const credential = str('credential');
  if (credential !== undefined) request.credential = credential;
  const resume = str('resume');
  if (resume !== undefined) request.resume = resume;
  return request;
}
