/**
 * How a tunnel reaches its relay: a remote relay over a TLS WebSocket, or the relay
 * embedded in this process (no relay configured). Every tunnel of one process that has
 * no relay shares one embedded relay, started with the first and stopped with the last,
 * so a config with several tunnels (or a test opening several) serves them all on one
 * local port.
 */
import type { Agent } from 'node:http';
import { memoryTransportPair } from '../../shared/mux/transport.js';
import type { TunnelRequest } from '../../shared/protocol/tunnel.js';
import type { Relay } from '../../relay/index.js';
import { dialRelay, handshake, type TunnelConnection } from './client.js';

export interface RelayConnector {
  /** How messages name the relay: `tunnel.example.com`, `local relay on 127.0.0.1:PORT`. */
  readonly label: string;
  /** True for the embedded relay: its URLs work on this machine only. */
  readonly local: boolean;
  /** Sessions each tunnel keeps open (HA); 1 for the embedded relay (nothing to fail over to). */
  readonly connections: number;
  /**
   * Embedded relay: `http://127.0.0.1:PORT`, where a process's only tunnel is also served
   * for clients that cannot resolve `*.localhost` (Node's fetch, Python, wget).
   */
  readonly directUrl?: string;
  /** Embedded relay with `--lan`: the same on this machine's LAN address. */
  readonly lanUrl?: string;
  /**
   * Relays of one cluster (`--relay A,B`): the tunnel's connections spread over them.
   * Absent: one relay (a cluster still lists its relays in the HELLO answer).
   */
  readonly relays?: string[];
  /** Dials `relay` (one of `relays`, or one a cluster listed), else the configured relay. */
  connect(request: TunnelRequest, relay?: string): Promise<TunnelConnection>;
  /** Done with it (the embedded relay stops once its last user released it). Idempotent. */
  release(): Promise<void>;
}

export interface RemoteRelayOptions {
  relay: URL;
  /** Extra CA / the relay's self-signed certificate (PEM). */
  ca?: string | undefined;
  insecure?: boolean | undefined;
  /** Pinned certificate fingerprint (normalized). */
  fingerprint256?: string | undefined;
  agent?: Agent | undefined;
  connections: number;
  /** More relays of the same cluster (`--relay A,B,C`: A is `relay`). */
  more?: URL[] | undefined;
  /**
   * The agent for another relay of the cluster (HTTPS_PROXY / NO_PROXY per host);
   * undefined from it means a direct connection. Without it, `agent` serves them all.
   */
  agentFor?: ((url: URL) => Promise<Agent | undefined>) | undefined;
}

export function remoteRelay(opts: RemoteRelayOptions): RelayConnector {
  const more = opts.more ?? [];
  return {
    label: [opts.relay, ...more].map((u) => u.host).join(','),
    local: false,
    connections: opts.connections,
    ...(more.length > 0 ? { relays: [opts.relay, ...more].map((u) => u.toString()) } : {}),
    connect: async (request, relay) => {
      const url = relay === undefined ? opts.relay : new URL(relay);
      return dialRelay({
        relay: url,
        request,
        ca: opts.ca,
        insecure: opts.insecure === true,
        fingerprint256: opts.fingerprint256,
        agent:
          relay === undefined || opts.agentFor === undefined
            ? opts.agent
            : await opts.agentFor(url),
      });
    },
    release: () => Promise.resolve(),
  };
}

/** The embedded relay, shared by this process's tunnels; created on first use. */
let shared: { relay: Promise<Relay>; users: number } | undefined;
/** The previous embedded relay's close, which a new one waits for. */
let closing: Promise<void> = Promise.resolve();

/**
 * The embedded default: a relay in this process, plain HTTP on 127.0.0.1, domain
 * `localhost` (browsers and curl resolve *.localhost to loopback). Tunnels talk to it
 * in memory: no socket, no TLS between the two.
 */
export async function embeddedRelay(
  options: {
    /** Also listen on this LAN address (`--lan`); applies when this call starts the relay. */
    lanHost?: string | undefined;
  } = {},
): Promise<RelayConnector> {
  if (shared === undefined) {
    const starting = closing.then(async () => {
      const { startRelay } = await import('../../relay/index.js');
      return startRelay({
        domain: 'localhost',
        host: '127.0.0.1',
        httpsPort: null,
        httpPort: 0,
        dataDir: null,
        tokens: [],
        soleTunnelOnIpHosts: true,
        extraHttpHosts: options.lanHost === undefined ? [] : [options.lanHost],
      });
    });
    shared = { relay: starting, users: 0 };
  }
  const entry = shared;
  entry.users++;
  let relay: Relay;
  try {
    relay = await entry.relay;
  } catch (err) {
    if (shared === entry) shared = undefined;
    throw err;
  }
  let released = false;
  return {
    label: `local relay on 127.0.0.1:${relay.httpPort}`,
    local: true,
    connections: 1,
    directUrl: `http://127.0.0.1:${relay.httpPort}`,
    ...(options.lanHost === undefined
      ? {}
      : { lanUrl: `http://${hostForUrl(options.lanHost)}:${relay.httpPort}` }),
    connect: (request) => {
      const [clientSide, relaySide] = memoryTransportPair();
      relay.attach(relaySide);
      return handshake(clientSide, request);
    },
    release: async () => {
      if (released) return;
      released = true;
      entry.users--;
      if (entry.users > 0 || shared !== entry) return;
      shared = undefined;
      closing = relay.close(2_000);
      await closing;
    },
  };
}

function hostForUrl(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}
