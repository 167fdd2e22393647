/**
 * Errors of automatic certificates. Each message names what failed and what to fix;
 * `retryAfterMs` carries a CA's Retry-After so the renewal schedule honours it.
 */
import { QuickTunnelError, type QtErrorCode } from '../../shared/errors.js';

/** The `QT_ERR_ACME_*` codes of the table in shared/errors.ts (what each means is there). */
export type AcmeErrorCode = Extract<QtErrorCode, `QT_ERR_ACME_${string}`>;

/** RFC 8555 §6.7 problem types the relay acts on. */
export const ACME_PROBLEM = {
  externalAccountRequired: 'urn:ietf:params:acme:error:externalAccountRequired',
} as const;

export class AcmeError extends QuickTunnelError {
  readonly retryAfterMs: number | undefined;
  /** The CA's RFC 8555 problem type, when the relay acts on it (see ACME_PROBLEM). */
  readonly problemType: string | undefined;
  constructor(
    code: AcmeErrorCode,
    message: string,
    options: {
      cause?: unknown;
      retryable?: boolean;
      retryAfterMs?: number;
      problemType?: string;
    } = {},
  ) {
    super(code, message, { cause: options.cause, retryable: options.retryable ?? true });
    this.retryAfterMs = options.retryAfterMs;
    this.problemType = options.problemType;
  }
}
