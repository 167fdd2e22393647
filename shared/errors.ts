/**
 * Error types shared by the CLI and the relay. Every error carries a stable `code`
 * (`QT_ERR_*`, one of the table below) and says whether retrying can help, so
 * supervisors decide between backoff and giving up without parsing messages.
 *
 * Every error class derives from QuickTunnelError: the general ones are here, the ones
 * of one module live next to it (AcmeError, NamedTunnelError, RelayApiError…).
 */

/**
 * Every `QT_ERR_*` code, in one table. The codes are a contract: `--log json` prints them
 * in its `error` event, the control API answers with them, the library's rejections carry
 * them. Add a code here (with a line saying what it means) before throwing it.
 */
export const QtErrorCode = {
  // ---- general ---------------------------------------------------------------------------
  /** A bug: something threw that is not a QuickTunnelError. */
  INTERNAL: 'QT_ERR_INTERNAL',
  /** Unknown flag or bad arguments on the command line. */
  USAGE: 'QT_ERR_USAGE',
  /** Invalid flags, config file or environment (ConfigError). */
  CONFIG: 'QT_ERR_CONFIG',
  /** openTunnel() was aborted through its signal. */
  ABORTED: 'QT_ERR_ABORTED',
  /** A tunnel stopped for a reason that has no code of its own. */
  TUNNEL: 'QT_ERR_TUNNEL',
  /** The tunnel was stopped before it was online. */
  STOPPED: 'QT_ERR_STOPPED',

  // ---- mux protocol and connection (shared/mux) ---------------------------------------------
  /** The peer broke the mux protocol (ProtocolError). */
  PROTOCOL: 'QT_ERR_PROTOCOL',
  /** The two sides speak incompatible protocol versions. */
  VERSION_MISMATCH: 'QT_ERR_VERSION_MISMATCH',
  /** The peer overran a stream's flow-control window. */
  FLOW_CONTROL: 'QT_ERR_FLOW_CONTROL',
  /** A transport failure without a more specific code (ConnectionError). */
  CONNECTION: 'QT_ERR_CONNECTION',
  /** The session is closed. */
  SESSION_CLOSED: 'QT_ERR_SESSION_CLOSED',
  /** The session's handshake is not complete yet. */
  NOT_READY: 'QT_ERR_NOT_READY',
  /** The session is going away (GOAWAY sent or received). */
  GOING_AWAY: 'QT_ERR_GOING_AWAY',
  /** The HELLO exchange did not finish in time. */
  HANDSHAKE_TIMEOUT: 'QT_ERR_HANDSHAKE_TIMEOUT',
  /** The peer stopped answering pings. */
  HEARTBEAT: 'QT_ERR_HEARTBEAT',
  /** The peer stopped reading: too many bytes queued for it. */
  PEER_STALLED: 'QT_ERR_PEER_STALLED',
  /** Stream-open metadata (a request head) is larger than the limit. */
  METADATA_TOO_LARGE: 'QT_ERR_METADATA_TOO_LARGE',
  /** A mux stream was reset (StreamResetError). */
  STREAM_RESET: 'QT_ERR_STREAM_RESET',
  /** The relay refused the HELLO for another reason than auth or version. */
  REJECTED: 'QT_ERR_REJECTED',

  // ---- the tunnel client (cli/tunnel) -------------------------------------------------------
  /** The relay cannot be reached (DNS, refused, timeout). */
  RELAY_UNREACHABLE: 'QT_ERR_RELAY_UNREACHABLE',
  /** The relay's certificate is not trusted, or TLS failed. */
  TLS: 'QT_ERR_TLS',
  /** The address answers, but it is not a quick-tunnel relay. */
  NOT_A_RELAY: 'QT_ERR_NOT_A_RELAY',
  /** The HTTPS proxy (HTTPS_PROXY) refused or failed the CONNECT. */
  PROXY: 'QT_ERR_PROXY',
  /** The relay's control API refused with a code this client does not know. */
  API: 'QT_ERR_API',

  // ---- the local origin (cli/origin) --------------------------------------------------------
  /** The local origin could not be reached or failed mid-response (OriginError). */
  ORIGIN: 'QT_ERR_ORIGIN',
  /** The local origin did not answer in time. */
  ORIGIN_TIMEOUT: 'QT_ERR_ORIGIN_TIMEOUT',
  /** The local origin did not accept the connection (or finish TLS) in time. */
  ORIGIN_CONNECT_TIMEOUT: 'QT_ERR_ORIGIN_CONNECT_TIMEOUT',
  /** The web inspector could not start. */
  INSPECTOR: 'QT_ERR_INSPECTOR',
  /** A bad request to the web inspector's API. */
  INSPECTOR_REQUEST: 'QT_ERR_INSPECTOR_REQUEST',

  // ---- auth, named tunnels and the control API (relay) --------------------------------------
  /** A token or credential was refused (AuthError). */
  AUTH: 'QT_ERR_AUTH',
  /** A named tunnel's credential is wrong or missing. */
  CREDENTIAL: 'QT_ERR_CREDENTIAL',
  /** The name is not a valid tunnel label. */
  BAD_NAME: 'QT_ERR_BAD_NAME',
  /** The name is reserved already. */
  NAME_TAKEN: 'QT_ERR_NAME_TAKEN',
  /** No tunnel of that name. */
  NO_SUCH_TUNNEL: 'QT_ERR_NO_SUCH_TUNNEL',
  /** The tunnel is connected (delete it with --force). */
  TUNNEL_CONNECTED: 'QT_ERR_TUNNEL_CONNECTED',
  /** Too many named tunnels for this token. */
  QUOTA: 'QT_ERR_QUOTA',
  /** Too many attempts: wait (Retry-After) and try again. */
  RATE_LIMITED: 'QT_ERR_RATE_LIMITED',
  /** A malformed request to the control API. */
  BAD_REQUEST: 'QT_ERR_BAD_REQUEST',
  /** No such route on the control API. */
  NOT_FOUND: 'QT_ERR_NOT_FOUND',
  /** The feature is not available on this relay. */
  NOT_SUPPORTED: 'QT_ERR_NOT_SUPPORTED',
  /** Admin endpoints need --admin-token, which this relay has not set. */
  ADMIN_DISABLED: 'QT_ERR_ADMIN_DISABLED',
  /** The named-tunnel store failed (disk or Redis). */
  STORE: 'QT_ERR_STORE',

  // ---- store-and-forward queue and cluster (relay) ------------------------------------------
  /** The tunnel has no queue, or the queue is not available. */
  QUEUE_UNAVAILABLE: 'QT_ERR_QUEUE_UNAVAILABLE',
  /** The queue's storage failed. */
  QUEUE_STORAGE: 'QT_ERR_QUEUE_STORAGE',
  /** The queue's storage is full. */
  QUEUE_STORAGE_FULL: 'QT_ERR_QUEUE_STORAGE_FULL',
  /** Cluster mode: Redis or the other relays are not available. */
  CLUSTER_UNAVAILABLE: 'QT_ERR_CLUSTER_UNAVAILABLE',

  // ---- automatic certificates (relay/acme, AcmeError) ---------------------------------------
  /** The DNS provider (hook, RFC 2136 server, acme-dns) failed. */
  ACME_DNS: 'QT_ERR_ACME_DNS',
  /** The TXT record never showed up at the servers asked. */
  ACME_PROPAGATION: 'QT_ERR_ACME_PROPAGATION',
  /** Network or TLS failure talking to the CA. */
  ACME_CA_UNREACHABLE: 'QT_ERR_ACME_CA_UNREACHABLE',
  /** The CA answered 5xx. */
  ACME_CA_ERROR: 'QT_ERR_ACME_CA_ERROR',
  /** The CA answered 429. */
  ACME_RATE_LIMITED: 'QT_ERR_ACME_RATE_LIMITED',
  /** The CA refused: account, EAB, validation, finalize. */
  ACME_ORDER: 'QT_ERR_ACME_ORDER',
  /** Cluster mode: Redis unavailable, or another relay renews. */
  ACME_CLUSTER: 'QT_ERR_ACME_CLUSTER',
} as const;

/** One of the `QT_ERR_*` codes of the table. */
export type QtErrorCode = (typeof QtErrorCode)[keyof typeof QtErrorCode];

const KNOWN_CODES: ReadonlySet<string> = new Set(Object.values(QtErrorCode));

/** True if `code` is in the table (for codes read off the wire, e.g. an API answer). */
export function isQtErrorCode(code: string): code is QtErrorCode {
  return KNOWN_CODES.has(code);
}

export class QuickTunnelError extends Error {
  readonly code: QtErrorCode;
  /** True when the same operation may succeed later (network, goaway, timeouts). */
  readonly retryable: boolean;
  /** What to try, when the message alone does not say it (absent otherwise). */
  readonly hint: string | undefined;

  constructor(
    code: QtErrorCode,
    message: string,
    options: { cause?: unknown; retryable?: boolean; hint?: string | undefined } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.hint = options.hint;
  }
}

/** The peer broke the mux protocol (bad frame, window overrun, unknown stream...). */
export class ProtocolError extends QuickTunnelError {
  constructor(message: string, options: { cause?: unknown; code?: QtErrorCode } = {}) {
    super(options.code ?? 'QT_ERR_PROTOCOL', message, { cause: options.cause, retryable: false });
  }
}

/** The relay refused our credential, or a visitor/client presented a bad one. */
export class AuthError extends QuickTunnelError {
  /**
   * True when what was refused is the relay access token (`--token`), as the relay said
   * with its wire code (TOKEN_REJECTED), not a named tunnel's credential.
   */
  readonly relayTokenRefused: boolean;
  constructor(
    message: string,
    options: { cause?: unknown; hint?: string | undefined; relayTokenRefused?: boolean } = {},
  ) {
    super('QT_ERR_AUTH', message, { cause: options.cause, retryable: false, hint: options.hint });
    this.relayTokenRefused = options.relayTokenRefused ?? false;
  }
}

/** Invalid flags, config file or environment. */
export class ConfigError extends QuickTunnelError {
  constructor(message: string, options: { cause?: unknown; hint?: string | undefined } = {}) {
    super('QT_ERR_CONFIG', message, { cause: options.cause, retryable: false, hint: options.hint });
  }
}

/** The local origin could not be reached or failed mid-response. */
export class OriginError extends QuickTunnelError {
  constructor(message: string, options: { cause?: unknown; code?: QtErrorCode } = {}) {
    super(options.code ?? 'QT_ERR_ORIGIN', message, { cause: options.cause, retryable: true });
  }
}

/** A transport-level failure: socket closed, heartbeat missed, relay went away. */
export class ConnectionError extends QuickTunnelError {
  constructor(
    message: string,
    options: { cause?: unknown; code?: QtErrorCode; retryable?: boolean } = {},
  ) {
    super(options.code ?? 'QT_ERR_CONNECTION', message, {
      cause: options.cause,
      retryable: options.retryable ?? true,
    });
  }
}

/**
 * A mux stream was reset by the peer or by us; `resetCode` is the wire code and `reason`
 * the text the RESET carried (the peer's own words, '' for none), so code that shows or
 * passes it on never takes the message apart.
 */
export class StreamResetError extends QuickTunnelError {
  readonly resetCode: number;
  readonly reason: string;
  constructor(
    resetCode: number,
    message: string,
    options: { cause?: unknown; reason?: string } = {},
  ) {
    super('QT_ERR_STREAM_RESET', message, { cause: options.cause, retryable: false });
    this.resetCode = resetCode;
    this.reason = options.reason ?? message;
  }
}

/** Node system errors carry a string `code` (ECONNREFUSED...); read it safely. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}
