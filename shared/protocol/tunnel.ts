/**
 * The tunnel layer on top of the mux: what the CLI asks for in its HELLO, what the
 * relay answers, and the metadata carried by OPEN (relay → CLI, one stream per visitor
 * request) and REPLY (CLI → relay, the origin's response head).
 *
 * Headers travel as [name, value] pairs in their original order and case, so repeated
 * headers (several Set-Cookie) and header value bytes survive: Node gives header values
 * as latin1 strings, JSON keeps every char, and Node writes them back as latin1.
 */

/** Path on the relay's apex host where clients open the tunnel WebSocket. */
export const TUNNEL_ENDPOINT_PATH = '/_qt/tunnel';

/** The CLI's HELLO app payload. */
export interface TunnelRequest {
  /** quick-tunnel version of the client, for the relay's logs. */
  clientVersion: string;
  /** Relay access token (required when the relay was started with --token). */
  token?: string;
  /** Named tunnel to serve (issue: named tunnels); absent for an ephemeral tunnel. */
  name?: string;
  /** Secret credential of the named tunnel. */
  credential?: string;
  /** Resume token from an earlier assignment: ask for the same hostname back. */
  resume?: string;
  /**
   * Random id of one CLI process, and which of its HA connections this is. A new
   * connection with the same (clientId, connection) replaces the old one at once:
   * the old socket may be half-open (stalled network) and must not keep getting
   * requests until its heartbeat times out.
   */
  clientId?: string;
  connection?: number;
  /** Visitor access control the relay enforces for this tunnel (see relay/edge/access). */
  access?: AccessPolicy;
}

/** What a tunnel asks the relay to enforce on its visitors. */
export interface AccessPolicy {
  /** hex SHA-256 of `user:password` (`--basic-auth`): the relay never sees the password. */
  basicAuthSha256?: string;
  /** CIDRs or addresses allowed to visit (`--allow-ip`); absent = everyone. */
  allowIps?: string[];
}

/** The relay's HELLO app answer: the tunnel is registered and routable. */
export interface TunnelAssignment {
  tunnelId: string;
  /** The DNS label under the relay's domain (`label.domain`). */
  label: string;
  hostname: string;
  /** Public URLs visitors can use, https first. */
  urls: string[];
  kind: 'ephemeral' | 'named';
  relayVersion: string;
  /** Opaque token the client presents to get the same hostname after a reconnect. */
  resumeToken?: string;
  /**
   * Cluster mode: the URLs of the relays of the cluster that are alive, this one first.
   * A client with several connections spreads them over these.
   */
  relays?: string[];
}

export type HeaderPairs = [string, string][];

/** OPEN metadata for one visitor request (or WebSocket upgrade). */
export interface RequestHead {
  method: string;
  /** Request target exactly as the visitor sent it (origin-form path + query). */
  url: string;
  httpVersion: string;
  /** End-to-end headers, hop-by-hop removed, X-Forwarded-* set by the relay. */
  headers: HeaderPairs;
  /** True for an Upgrade request (WebSocket): after a 101 the stream carries raw bytes. */
  upgrade: boolean;
  /** Visitor's address as the relay saw it. */
  remoteAddress: string;
  /** Scheme the visitor used to reach the relay. */
  scheme: 'http' | 'https';
  /**
   * Set when the relay delivers a request it kept while the tunnel was offline
   * (store-and-forward); the same values are in the X-Quick-Tunnel-Delivery-Id and
   * X-Quick-Tunnel-Queued-At headers. Absent on live requests.
   */
  queued?: { deliveryId: string; queuedAt: string };
}

/** REPLY metadata: the origin's response head. */
export interface ResponseHead {
  status: number;
  statusMessage?: string;
  headers: HeaderPairs;
}

/**
 * Hop-by-hop headers that a proxy never forwards (RFC 9110 §7.6.1), plus the ones
 * named in Connection. `upgrade` and `connection` are kept for upgrades by the caller.
 */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Turns Node's `rawHeaders` ([k, v, k, v...]) into pairs without hop-by-hop headers.
 * With `keepUpgrade`, `Connection: upgrade` and `Upgrade` pass (WebSocket handshakes).
 */
export function endToEndHeaders(rawHeaders: string[], keepUpgrade = false): HeaderPairs {
  const named = new Set<string>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'connection') {
      for (const token of rawHeaders[i + 1]!.split(',')) {
        const t = token.trim().toLowerCase();
        if (t) named.add(t);
      }
    }
  }
  const out: HeaderPairs = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (keepUpgrade && lower === 'upgrade') {
      out.push([name, rawHeaders[i + 1]!]);
      continue;
    }
    // Host is never hop-by-hop, whatever `Connection` names (`Connection: close, host`
    // would otherwise let a visitor remove it and have the CLI fill in its own).
    if (lower === 'host') {
      out.push([name, rawHeaders[i + 1]!]);
      continue;
    }
    if (HOP_BY_HOP.has(lower) || named.has(lower) || lower.startsWith('proxy-')) continue;
    out.push([name, rawHeaders[i + 1]!]);
  }
  if (keepUpgrade) out.push(['Connection', 'Upgrade']);
  return out;
}

/** Validates an OPEN payload as a RequestHead (the CLI must not trust the wire). */
export function isRequestHead(value: unknown): value is RequestHead {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v['method'] === 'string' &&
    typeof v['url'] === 'string' &&
    typeof v['httpVersion'] === 'string' &&
    typeof v['upgrade'] === 'boolean' &&
    isHeaderPairs(v['headers'])
  );
}

export function isResponseHead(value: unknown): value is ResponseHead {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    Number.isInteger(v['status']) &&
    (v['status'] as number) >= 100 &&
    (v['status'] as number) <= 999 &&
    (v['statusMessage'] === undefined || typeof v['statusMessage'] === 'string') &&
    isHeaderPairs(v['headers'])
  );
}

function isHeaderPairs(value: unknown): value is HeaderPairs {
  return (
    Array.isArray(value) &&
    value.every(
      (p) =>
        Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && typeof p[1] === 'string',
    )
  );
}

/** Flattens pairs for `res.writeHead(status, flat)` / `http.request({ headers: flat })`. */
export function flattenHeaders(pairs: HeaderPairs): string[] {
  const flat: string[] = [];
  for (const [k, v] of pairs) flat.push(k, v);
  return flat;
}

/** A named tunnel's status, as the relay's control API reports it (`GET /api/tunnels/:name`). */
export interface NamedTunnelStatus {
  id: string;
  name: string;
  hostname: string;
  urls: string[];
  createdAt: string;
  lastSeenAt: string | null;
  /** True while at least one connection serves the hostname. */
  connected: boolean;
  /** Live WebSocket connections (each client keeps several for HA). */
  connections: number;
  /** Distinct client processes (replicas) among those connections. */
  replicas: number;
  /** Store-and-forward: whether the relay keeps requests while the tunnel is offline. */
  queue: boolean;
}
