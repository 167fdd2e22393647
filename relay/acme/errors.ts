/**
 * Errors of automatic certificates. Each message names what failed and what to fix;
 * `retryAfterMs` carries a CA's Retry-After so the renewal schedule honours it.
 */
import { QuickTunnelError, type QtErrorCode } from '../../shared/errors.js';

/** The `QT_ERR_ACME_*` codes of the table in shared/errors.ts (what each means is there). */
export type AcmeErrorCode = Extract<QtErrorCode, `QT_ERR_ACME_${string}`>;

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
