/**
 * Dials the relay's tunnel endpoint over a TLS WebSocket, runs the HELLO handshake
 * and returns the session with the relay's assignment. Every failure becomes a
 * QuickTunnelError whose message says what to do, and whose `retryable` says whether
 * trying again can help.
 */
import dns from 'node:dns';
import type { Agent, IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import {
  AuthError,
  ConfigError,
  ConnectionError,
  QuickTunnelError,
  errnoCode,
} from '../../shared/errors.js';
import { MuxSession, type MuxOptions } from '../../shared/mux/session.js';
import {
  tunnelClientWsOptions,
  wsTransport,
  type FrameTransport,
} from '../../shared/mux/transport.js';
import {
  TUNNEL_ENDPOINT_PATH,
  type TunnelAssignment,
  type TunnelRequest,
} from '../../shared/protocol/tunnel.js';

export interface DialOptions {
  /** Relay base URL (https://relay.example.com[:port]). */
  relay: URL;
  request: TunnelRequest;
  /** Extra CA / the relay's self-signed certificate (PEM). */
  ca?: string | undefined;
  /** Skip verification of the relay's certificate (dangerous; explicit flag only). */
  insecure?: boolean;
  /**
   * Trust exactly the relay certificate with this SHA-256 fingerprint (normalized, see
   * normalizeFingerprint), whoever signed it: checked before anything is sent on the
   * connection.
   */
  fingerprint256?: string | undefined;
  /** An http.Agent that goes through an HTTP proxy (HTTPS_PROXY), if any. */
  agent?: Agent | undefined;
  connectTimeoutMs?: number;
  mux?: MuxOptions;
}

export interface TunnelConnection {
  session: MuxSession;
  assignment: TunnelAssignment;
  /**
   * Resolves once the connection underneath is fully closed (the WebSocket close
   * handshake is done, so every byte queued before it reached the relay). Absent for
   * in-memory transports.
   */
  closed?: Promise<void>;
}

const TLS_TRUST_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
]);

/**
 * dns.lookup, except that `localhost` and `*.localhost` always mean loopback (RFC 6761),
 * as browsers and curl treat them, even where the system resolver doesn't.
 */
export const localhostAwareLookup: typeof dns.lookup = ((
  hostname: string,
  options: dns.LookupOptions,
  cb: (
    err: NodeJS.ErrnoException | null,
    address: string | dns.LookupAddress[],
    family?: number,
  ) => void,
) => {
  const h = hostname.toLowerCase().replace(/\.$/, '');
  if (h === 'localhost' || h.endsWith('.localhost')) {
    if (options.all === true) cb(null, [{ address: '127.0.0.1', family: 4 }]);
    else cb(null, '127.0.0.1', 4);
    return;
  }
  (dns.lookup as (h: string, o: dns.LookupOptions, c: typeof cb) => void)(hostname, options, cb);
}) as typeof dns.lookup;

/**
 * The warning for a relay reached over plain HTTP (ws://) anywhere but loopback: the
 * relay token, named-tunnel credentials and all traffic then travel in clear, exactly
 * as with --relay-insecure. Undefined for https:// and for loopback relays.
 */
export function plainRelayWarning(relay: URL): string | undefined {
  if (relay.protocol !== 'http:') return undefined;
  const host = relay.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const loopback =
    host === 'localhost' ||
    host.endsWith('.localhost') ||
    host === '::1' ||
    /^127\.\d+\.\d+\.\d+$/.test(host);
  if (loopback) return undefined;
  return `warning: --relay ${relay.origin} is plain HTTP: the relay token, tunnel credentials and all traffic travel in clear; anyone on the network path can read and change them. Use https://.`;
}

/** ws options for the tunnel client. */
function clientOptions(opts: DialOptions): WebSocket.ClientOptions {
  const o: WebSocket.ClientOptions = {
    // No deflate, maxPayload from the mux limits, and over wss:// a zero masking key
    // (see tunnelClientWsOptions for why that is safe and what it saves).
    ...tunnelClientWsOptions(endpointUrl(opts.relay), opts.mux),
    handshakeTimeout: opts.connectTimeoutMs ?? 10_000,
    lookup: localhostAwareLookup,
    // Small frames (request heads, acks) must not wait for Nagle.
    noDelay: true,
  } as WebSocket.ClientOptions;
  if (opts.ca !== undefined) o.ca = opts.ca;
  // A pinned fingerprint replaces the CA check (a self-signed relay has no CA); it is
  // checked on the upgrade response, before the hello carries any credential.
  if (opts.insecure === true || opts.fingerprint256 !== undefined) o.rejectUnauthorized = false;
  if (opts.agent !== undefined) o.agent = opts.agent;
  return o;
}

/**
 * A SHA-256 fingerprint in canonical form (64 lower-case hex digits) from how people
 * write it: `AB:CD:…` (openssl, browsers, the relay's banner), bare hex, with an optional
 * `SHA256:` prefix, or SSH-style base64 after `SHA256:`.
 */
export function normalizeFingerprint(input: string): string {
  let text = input.trim();
  const prefixed = /^sha-?256:/i.test(text);
  if (prefixed) text = text.replace(/^sha-?256:/i, '');
  const hex = text.replace(/:/g, '').toLowerCase();
  if (/^[0-9a-f]{64}$/.test(hex)) return hex;
  if (prefixed && /^[A-Za-z0-9+/]{43}=?$/.test(text)) {
    const bytes = Buffer.from(text, 'base64');
    if (bytes.length === 32) return bytes.toString('hex');
  }
  throw new ConfigError(`'${input}' is not a SHA-256 fingerprint`, {
    hint: 'use the fingerprint the relay prints at start, e.g. SHA256:AB:CD:…:EF (32 bytes in hex)',
  });
}

export function endpointUrl(relay: URL): string {
  const scheme = relay.protocol === 'http:' ? 'ws:' : 'wss:';
  const base = relay.pathname.replace(/\/+$/, '');
  return `${scheme}//${relay.host}${base}${TUNNEL_ENDPOINT_PATH}`;
}

/** Opens the WebSocket; resolves once it is open. */
function openSocket(opts: DialOptions): Promise<WebSocket> {
  const url = endpointUrl(opts.relay);
  const where = opts.relay.host;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, clientOptions(opts));
    const fail = (err: QuickTunnelError): void => {
      ws.removeAllListeners();
      ws.on('error', () => {});
      ws.terminate();
      reject(err);
    };
    ws.once('open', () => {
      ws.removeAllListeners('unexpected-response');
      resolve(ws);
    });
    const pinned = opts.fingerprint256;
    if (pinned !== undefined) {
      ws.once('upgrade', (res: IncomingMessage) => {
        const socket = res.socket as TLSSocket;
        const seen =
          typeof socket.getPeerCertificate === 'function'
            ? socket.getPeerCertificate().fingerprint256
            : undefined;
        if (seen === undefined || normalizeFingerprint(seen) !== pinned) {
          fail(
            new QuickTunnelError(
              'QT_ERR_TLS',
              seen === undefined
                ? `the relay at ${where} has no TLS certificate to check against the pinned fingerprint (use https://)`
                : `the relay at ${where} presented a certificate with fingerprint ${seen}, not the pinned one`,
              {
                retryable: false,
                hint: 'check the fingerprint the relay printed at start (its certificate may have been replaced), or someone is intercepting the connection',
              },
            ),
          );
        }
      });
    }
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      res.resume();
      const status = res.statusCode ?? 0;
      fail(
        new ConnectionError(
          status === 503
            ? `the relay at ${where} is restarting or overloaded (HTTP 503)`
            : `${where} answered HTTP ${status} on ${TUNNEL_ENDPOINT_PATH}: is it a quick-tunnel relay, and is --relay right?`,
          { code: 'QT_ERR_NOT_A_RELAY', retryable: status >= 500 },
        ),
      );
    });
    ws.once('error', (err) => fail(describeDialError(err, where)));
  });
}

/** Turns a socket/TLS error into a message a person can act on. */
export function describeDialError(err: Error, where: string): QuickTunnelError {
  // Already said (the proxy agent's QT_ERR_PROXY).
  if (err instanceof QuickTunnelError) return err;
  const code = errnoCode(err) ?? '';
  if (TLS_TRUST_CODES.has(code)) {
    return new QuickTunnelError(
      'QT_ERR_TLS',
      `the relay's TLS certificate is not trusted (${code}: ${err.message}). ` +
        `If ${where} is a self-hosted relay with a self-signed certificate, pin it with ` +
        `--ca-fingerprint SHA256:… (the fingerprint the relay printed at start), or pass --ca <file> ` +
        `with the certificate file it printed.`,
      { cause: err, retryable: false },
    );
  }
  const reasons: Record<string, string> = {
    ECONNREFUSED: 'connection refused: is the relay running on that port?',
    ENOTFOUND: 'the host name does not resolve: check --relay',
    EAI_AGAIN: 'DNS lookup failed: check your network',
    ETIMEDOUT: 'the connection timed out',
    ECONNRESET: 'the connection was reset',
    EHOSTUNREACH: 'the host is unreachable',
    ENETUNREACH: 'the network is unreachable',
  };
  const reason = reasons[code] ?? err.message;
  return new ConnectionError(`cannot reach the relay at ${where}: ${reason}`, {
    cause: err,
    code: 'QT_ERR_RELAY_UNREACHABLE',
    retryable: true,
  });
}

/** Dials, handshakes and returns a ready session. */
export async function dialRelay(opts: DialOptions): Promise<TunnelConnection> {
  const ws = await openSocket(opts);
  ws.on('error', () => {}); // reported through the transport's close
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  const conn = await handshake(wsTransport(ws), opts.request, opts.mux);
  return { ...conn, closed };
}

/** Runs the HELLO exchange over any transport (the embedded relay uses memory). */
export async function handshake(
  transport: FrameTransport,
  request: TunnelRequest,
  mux: MuxOptions = {},
): Promise<TunnelConnection> {
  const session = new MuxSession(transport, 'client', mux);
  try {
    const answer = await session.connect(request);
    return { session, assignment: parseAssignment(answer) };
  } catch (err) {
    session.close();
    if (
      err instanceof QuickTunnelError &&
      err.code === 'QT_ERR_AUTH' &&
      !(err instanceof AuthError)
    ) {
      throw new AuthError(err.message, { cause: err });
    }
    throw err;
  }
}

function parseAssignment(answer: unknown): TunnelAssignment {
  const v = (typeof answer === 'object' && answer !== null ? answer : {}) as Record<
    string,
    unknown
  >;
  if (
    typeof v['tunnelId'] !== 'string' ||
    typeof v['label'] !== 'string' ||
    typeof v['hostname'] !== 'string' ||
    !Array.isArray(v['urls']) ||
    !v['urls'].every((u) => typeof u === 'string')
  ) {
    throw new QuickTunnelError('QT_ERR_PROTOCOL', 'the relay sent an invalid tunnel assignment');
  }
  return v as unknown as TunnelAssignment;
}
