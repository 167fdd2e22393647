/**
 * Errors of automatic certificates. Each message names what failed and what to fix;
 * `retryAfterMs` carries a CA's Retry-After so the renewal schedule honours it.
 */
import { QuickTunnelError } from '../../shared/errors.js';

export type AcmeErrorCode =
  | 'QT_ERR_ACME_DNS' // the DNS provider (hook, RFC 2136 server, acme-dns) failed
  | 'QT_ERR_ACME_PROPAGATION' // the TXT record never showed up at the servers asked
  | 'QT_ERR_ACME_CA_UNREACHABLE' // network / TLS failure talking to the CA
  | 'QT_ERR_ACME_CA_ERROR' // the CA answered 5xx
  | 'QT_ERR_ACME_RATE_LIMITED' // the CA answered 429
  | 'QT_ERR_ACME_ORDER' // the CA refused: account, EAB, validation, finalize
  | 'QT_ERR_ACME_CLUSTER'; // cluster mode: Redis unavailable, or another relay renews

export class AcmeError extends QuickTunnelError {
  readonly retryAfterMs: number | undefined;
  constructor(
    code: AcmeErrorCode,
    message: string,
    options: { cause?: unknown; retryable?: boolean; retryAfterMs?: number } = {},
  ) {
    super(code, message, { cause: options.cause, retryable: options.retryable ?? true });
    this.retryAfterMs = options.retryAfterMs;
  }
}
