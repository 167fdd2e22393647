/**
 * Error types shared by the CLI and the relay. Every error carries a stable `code`
 * (`QT_ERR_*`) and says whether retrying can help, so supervisors decide between
 * backoff and giving up without parsing messages.
 */
export class QuickTunnelError extends Error {
    code;
    /** True when the same operation may succeed later (network, goaway, timeouts). */
    retryable;
    constructor(code, message, options = {}) {
        super(message, options.cause === undefined ? undefined : { cause: options.cause });
        this.name = new.target.name;
        this.code = code;
        this.retryable = options.retryable ?? false;
    }
}
/** The peer broke the mux protocol (bad frame, window overrun, unknown stream...). */
export class ProtocolError extends QuickTunnelError {
    constructor(message, options = {}) {
        super(options.code ?? 'QT_ERR_PROTOCOL', message, { cause: options.cause, retryable: false });
    }
}
/** The relay refused our credential, or a visitor/client presented a bad one. */
export class AuthError extends QuickTunnelError {
    constructor(message, options = {}) {
        super('QT_ERR_AUTH', message, { cause: options.cause, retryable: false });
    }
}
/** Invalid flags, config file or environment. */
export class ConfigError extends QuickTunnelError {
    constructor(message, options = {}) {
        super('QT_ERR_CONFIG', message, { cause: options.cause, retryable: false });
    }
}
/** The local origin could not be reached or failed mid-response. */
export class OriginError extends QuickTunnelError {
    constructor(message, options = {}) {
        super(options.code ?? 'QT_ERR_ORIGIN', message, { cause: options.cause, retryable: true });
    }
}
/** A transport-level failure: socket closed, heartbeat missed, relay went away. */
export class ConnectionError extends QuickTunnelError {
    constructor(message, options = {}) {
        super(options.code ?? 'QT_ERR_CONNECTION', message, {
            cause: options.cause,
            retryable: options.retryable ?? true,
        });
    }
}
/** A mux stream was reset by the peer or by us; `resetCode` is the wire code. */
export class StreamResetError extends QuickTunnelError {
    resetCode;
    constructor(resetCode, message, options = {}) {
        super('QT_ERR_STREAM_RESET', message, { cause: options.cause, retryable: false });
        this.resetCode = resetCode;
    }
}
/** Node system errors carry a string `code` (ECONNREFUSED...); read it safely. */
export function errnoCode(err) {
    if (typeof err === 'object' && err !== null && 'code' in err) {
        const code = err.code;
        return typeof code === 'string' ? code : undefined;
    }
    return undefined;
}
//# sourceMappingURL=errors.js.map