/**
 * Error types shared by the CLI and the relay. Every error carries a stable `code`
 * (`QT_ERR_*`) and says whether retrying can help, so supervisors decide between
 * backoff and giving up without parsing messages.
 */
export class QuickTunnelError extends Error {
  readonly code: string;
  /** True when the same operation may succeed later (network, goaway, timeouts). */
  readonly retryable: boolean;
  /** What to try, when the message alone does not say it (absent otherwise). */
  readonly hint: string | undefined;

  constructor(
    code: string,
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
  constructor(message: string, options: { cause?: unknown; code?: string } = {}) {
    super(options.code ?? 'QT_ERR_PROTOCOL', message, { cause: options.cause, retryable: false });
  }
}

/** The relay refused our credential, or a visitor/client presented a bad one. */
export class AuthError extends QuickTunnelError {
  constructor(message: string, options: { cause?: unknown; hint?: string | undefined } = {}) {
    super('QT_ERR_AUTH', message, { cause: options.cause, retryable: false, hint: options.hint });
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
  constructor(message: string, options: { cause?: unknown; code?: string } = {}) {
    super(options.code ?? 'QT_ERR_ORIGIN', message, { cause: options.cause, retryable: true });
  }
}

/** A transport-level failure: socket closed, heartbeat missed, relay went away. */
export class ConnectionError extends QuickTunnelError {
  constructor(
    message: string,
    options: { cause?: unknown; code?: string; retryable?: boolean } = {},
  ) {
    super(options.code ?? 'QT_ERR_CONNECTION', message, {
      cause: options.cause,
      retryable: options.retryable ?? true,
    });
  }
}

/** A mux stream was reset by the peer or by us; `resetCode` is the wire code. */
export class StreamResetError extends QuickTunnelError {
  readonly resetCode: number;
  constructor(resetCode: number, message: string, options: { cause?: unknown } = {}) {
    super('QT_ERR_STREAM_RESET', message, { cause: options.cause, retryable: false });
    this.resetCode = resetCode;
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
