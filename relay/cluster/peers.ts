/**
 * Relay-to-relay links: every relay of a cluster keeps one persistent mux connection
 * (a TLS WebSocket to the peer's `/_qt/peer`) to each other live relay, and forwards a
 * visitor's request over it as one stream (one hop). Both sides prove they know the
 * cluster secret in the HELLO (HMAC over a fresh nonce), so a relay without it can
 * neither join the mesh nor be sent visitors' traffic. The peer's TLS certificate must be
 * ours (all relays of a cluster serve the same one) or valid for its node URL.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import WebSocket, { WebSocketServer } from 'ws';
import type { Logger } from 'pino';
import { ConnectionError } from '../../shared/errors.js';
import { HelloRejection, MuxSession, type MuxOptions } from '../../shared/mux/session.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import {
  tunnelClientWsOptions,
  tunnelServerWsOptions,
  wsTransport,
} from '../../shared/mux/transport.js';
import { ErrorCode } from '../../shared/protocol/frame.js';

/** Path on the apex host where relays of a cluster connect to each other. */
export const PEER_ENDPOINT_PATH = '/_qt/peer';

/** How far a peer's HELLO timestamp may be from our clock. */
const MAX_CLOCK_SKEW_MS = 60_000;

/** Mux options of relay-to-relay links: many streams, and a dead peer is found in ~3 s. */
export const PEER_MUX: MuxOptions = {
  maxStreams: 10_000,
  keepAliveIntervalMs: 1_000,
  keepAliveTimeoutMs: 3_000,
};

export interface PeerNode {
  id: string;
  url: string;
}

export interface PeerStats {
  /** Visitor requests this relay forwarded to the peer. */
  requests: number;
  /** Body bytes visitor → peer, and peer → visitor. */
  bytesIn: number;
  bytesOut: number;
  /** Dials that failed (unreachable, refused, wrong secret). */
  failures: number;
}

export interface PeerMeshOptions {
  node: PeerNode;
  secret: string;
  /** Our certificate (PEM) and fingerprint: a peer presenting the same one is trusted. */
  cert: string | undefined;
  fingerprint256: string | undefined;
  log: Logger;
  /** A forwarded visitor request arrived from a peer. */
  onStream: (stream: MuxStream, from: string) => void;
}

function proof(secret: string, ...parts: string[]): string {
  return createHmac('sha256', secret).update(parts.join('\n')).digest('base64url');
}

function sameProof(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

interface Link {
  node: PeerNode;
  session: MuxSession | undefined;
  dialing: boolean;
  /** Set when the peer proved the wrong secret: not dialled again until its URL changes. */
  refused: boolean;
}

export class PeerMesh {
  private readonly opts: PeerMeshOptions;
  private readonly links = new Map<string, Link>();
  readonly stats = new Map<string, PeerStats>();
  /** Sessions peers opened to us. */
  private readonly incoming = new Set<MuxSession>();
  private readonly wss: WebSocketServer;
  private closed = false;

  constructor(opts: PeerMeshOptions) {
    this.opts = opts;
    this.wss = new WebSocketServer({
      noServer: true,
      ...tunnelServerWsOptions(PEER_MUX),
      maxHeaders: 100,
    } as ConstructorParameters<typeof WebSocketServer>[0]);
  }

  statsFor(node: string): PeerStats {
    let s = this.stats.get(node);
    if (s === undefined) {
      s = { requests: 0, bytesIn: 0, bytesOut: 0, failures: 0 };
      this.stats.set(node, s);
    }
    return s;
  }

  /** The live peers (other relays): dial the new ones, drop the gone ones. */
  update(nodes: PeerNode[]): void {
    if (this.closed) return;
    const seen = new Set<string>();
    for (const n of nodes) {
      if (n.id === this.opts.node.id) continue;
      seen.add(n.id);
      let link = this.links.get(n.id);
      if (link === undefined || link.node.url !== n.url) {
        link?.session?.close();
        link = { node: n, session: undefined, dialing: false, refused: false };
        this.links.set(n.id, link);
      }
      if (link.session === undefined && !link.dialing && !link.refused) this.dial(link);
    }
    for (const [id, link] of this.links) {
      if (seen.has(id)) continue;
      this.links.delete(id);
      link.session?.close(new ConnectionError(`relay ${id} left the cluster`));
    }
  }

  /** The ready link to `node`, if there is one. */
  session(node: string): MuxSession | undefined {
    const s = this.links.get(node)?.session;
    return s !== undefined && s.ready && !s.closed && !s.receivedGoAway ? s : undefined;
  }

  /** Peers we hold a ready link to. */
  get reachable(): number {
    let n = 0;
    for (const id of this.links.keys()) if (this.session(id) !== undefined) n++;
    return n;
  }

  /** Peers we know of (from Redis). */
  get known(): number {
    return this.links.size;
  }

  peers(): { id: string; url: string; connected: boolean }[] {
    return [...this.links.values()].map((l) => ({
      id: l.node.id,
      url: l.node.url,
      connected: this.session(l.node.id) !== undefined,
    }));
  }

  private dial(link: Link): void {
    link.dialing = true;
    const { node } = link;
    const url = `${node.url.replace(/^http/, 'ws').replace(/\/+$/, '')}${PEER_ENDPOINT_PATH}`;
    const options: WebSocket.ClientOptions = {
      ...tunnelClientWsOptions(url, PEER_MUX),
      handshakeTimeout: 5_000,
      noDelay: true,
    } as WebSocket.ClientOptions;
    if (this.opts.cert !== undefined) {
      options.ca = [...tls.rootCertificates, this.opts.cert];
      const ours = this.opts.fingerprint256;
      (options as unknown as tls.ConnectionOptions).checkServerIdentity = (host, cert) =>
        ours !== undefined && cert.fingerprint256 === ours
          ? undefined
          : tls.checkServerIdentity(host, cert);
    }
    const ws = new WebSocket(url, options);
    const fail = (why: string): void => {
      link.dialing = false;
      this.statsFor(node.id).failures++;
      this.opts.log.warn(
        { event: 'peer-unreachable', peer: node.id, url: node.url, why },
        'cannot reach peer relay',
      );
    };
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      res.resume();
      ws.terminate();
      fail(`HTTP ${res.statusCode ?? 0}`);
    });
    ws.once('error', (err) => fail(err.message));
    ws.once('open', () => {
      ws.removeAllListeners('error');
      ws.on('error', () => {});
      const session = new MuxSession(wsTransport(ws), 'client', PEER_MUX);
      const nonce = randomBytes(16).toString('base64url');
      const ts = String(Date.now());
      session
        .connect({
          peer: this.opts.node.id,
          url: this.opts.node.url,
          ts,
          nonce,
          proof: proof(this.opts.secret, 'qt-peer-hello', this.opts.node.id, node.id, ts, nonce),
        })
        .then(
          (answer) => {
            link.dialing = false;
            const a = (typeof answer === 'object' && answer !== null ? answer : {}) as Record<
              string,
              unknown
            >;
            const expected = proof(this.opts.secret, 'qt-peer-ack', String(a['peer']), nonce);
            if (
              a['peer'] !== node.id ||
              typeof a['proof'] !== 'string' ||
              !sameProof(a['proof'], expected)
            ) {
              link.refused = true;
              this.statsFor(node.id).failures++;
              session.close(new ConnectionError('the peer does not know the cluster secret'));
              this.opts.log.error(
                { event: 'peer-refused', peer: node.id, url: node.url },
                'a relay in the cluster list failed the cluster-secret check: not forwarding to it',
              );
              return;
            }
            if (this.closed || this.links.get(node.id) !== link) {
              session.close();
              return;
            }
            link.session = session;
            // Streams only go from the dialler to the acceptor on a link.
            session.on('close', () => {
              if (link.session === session) link.session = undefined;
              if (!this.closed) {
                this.opts.log.info({ event: 'peer-down', peer: node.id }, 'peer link closed');
              }
            });
            this.opts.log.info({ event: 'peer-up', peer: node.id, url: node.url }, 'peer link up');
          },
          (err: unknown) => {
            const refused = (err as { code?: string }).code === 'QT_ERR_AUTH';
            if (refused) link.refused = true;
            fail(err instanceof Error ? err.message : String(err));
          },
        );
    });
  }

  /** A peer dials us (upgrade on the apex host's /_qt/peer). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => {});
      const session = new MuxSession(wsTransport(ws), 'server', {
        ...PEER_MUX,
        keepAlivePassive: true,
      });
      this.incoming.add(session);
      session.on('close', () => this.incoming.delete(session));
      session.on('stream', (stream) => {
        const from = (session.peerApp as { peer?: string } | undefined)?.peer ?? '?';
        this.opts.onStream(stream, from);
      });
      session
        .accept((app) => this.verifyHello(app))
        .catch((err: unknown) => {
          this.opts.log.warn(
            {
              event: 'peer-rejected',
              remoteAddress: req.socket.remoteAddress,
              err: err instanceof Error ? err.message : String(err),
            },
            'refused a relay-to-relay connection',
          );
        });
    });
  }

  private verifyHello(app: unknown): unknown {
    const v = (typeof app === 'object' && app !== null ? app : {}) as Record<string, unknown>;
    const str = (k: string): string => (typeof v[k] === 'string' ? (v[k] as string) : '');
    const ts = Number(str('ts'));
    const expected = proof(
      this.opts.secret,
      'qt-peer-hello',
      str('peer'),
      this.opts.node.id,
      str('ts'),
      str('nonce'),
    );
    if (
      str('peer') === '' ||
      str('nonce') === '' ||
      !Number.isFinite(ts) ||
      Math.abs(Date.now() - ts) > MAX_CLOCK_SKEW_MS ||
      !sameProof(str('proof'), expected)
    ) {
      throw new HelloRejection(
        ErrorCode.AUTH_FAILED,
        'relay-to-relay connection refused: wrong --cluster-secret (or clocks more than 60 s apart)',
        'QT_ERR_AUTH',
      );
    }
    return {
      peer: this.opts.node.id,
      proof: proof(this.opts.secret, 'qt-peer-ack', this.opts.node.id, str('nonce')),
    };
  }

  /** GOAWAY on our links (no new forwarded requests), then close everything. */
  close(): void {
    this.closed = true;
    for (const link of this.links.values()) link.session?.close();
    for (const s of this.incoming) s.close();
    this.links.clear();
    this.wss.close();
  }
}
