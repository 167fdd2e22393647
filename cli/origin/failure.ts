/**
 * Turns an origin request's failure before the response head into what the relay and
 * the user see: a reset code, words naming the local target and what to try, the
 * status the visitor gets instead, and whether it is worth the one-time "origin
 * unreachable" warning. Decided on error classes and codes, never on message text.
 */
import { QtErrorCode, errnoCode } from '../../shared/errors.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import type { OriginTarget } from './target.js';

/** A failure before the reply, as the relay and the user should see it. */
export interface Failure {
  wireCode: number;
  message: string;
  /** What the visitor gets instead of an origin answer (for the request event). */
  status: number;
  /** Worth the one-time "origin unreachable" warning. */
  warning?: string;
}

/** Error codes of a connection that closed before any answer (a stale pooled one, often). */
export const CLOSED_UNANSWERED = new Set(['ECONNRESET', 'EPIPE']);

/**
 * `reusedSocket`: the attempt ran on a pooled connection. `timeoutMs`: the connect
 * timeout, for its message.
 */
export function describeFailure(
  err: Error,
  target: OriginTarget,
  reusedSocket: boolean,
  connectTimeoutMs: number,
): Failure {
  const label = target.label;
  const code = errnoCode(err) ?? 'unknown error';
  if (code === QtErrorCode.ORIGIN_TIMEOUT) {
    return { wireCode: ErrorCode.TIMEOUT, message: err.message, status: 504 };
  }
  const failed = (message: string): Failure => {
    return { wireCode: ErrorCode.CONNECT_ERROR, message, status: 502 };
  };
  const unreachable = (message: string, warning: string): Failure => {
    return { ...failed(message), warning };
  };
  switch (code) {
    case QtErrorCode.ORIGIN_CONNECT_TIMEOUT: {
      const message = `${label} did not accept the connection within ${seconds(connectTimeoutMs)} (connect timeout)`;
      return {
        wireCode: ErrorCode.TIMEOUT,
        message,
        status: 504,
        warning: `${message}; visitors get 504 until it answers`,
      };
    }
    case 'ECONNREFUSED':
      return unreachable(
        `nothing is listening on ${label} (ECONNREFUSED)`,
        `nothing is listening on ${label}: start your server; visitors get 502 until then`,
      );
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
    case 'EAI_NONAME': {
      const m = `cannot resolve ${target.hostname} (${code})`;
      return unreachable(m, `${m}: check the target; visitors get 502 until then`);
    }
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EHOSTDOWN':
    case 'ENETDOWN':
    case 'EADDRNOTAVAIL':
    case 'ETIMEDOUT': {
      const m = `${label} is unreachable (${code})`;
      return unreachable(m, `${m}: visitors get 502 until it answers`);
    }
    case 'ECONNRESET':
    case 'EPIPE': {
      const message = `${label} closed the connection before answering (${code})`;
      if (reusedSocket || target.protocol === 'https') return failed(message);
      // A new connection dropped unanswered: typically an HTTPS server reached over http://.
      return failed(`${message}; if it serves HTTPS, use https://${label}`);
    }
  }
  if (
    /^(ERR_TLS_|CERT_|DEPTH_ZERO_|SELF_SIGNED_|UNABLE_TO_|ERR_SSL_(?!WRONG_VERSION))/.test(code)
  ) {
    const m =
      `TLS verification of ${label} failed: ${messageOf(err)} (${code}); trust its ` +
      `certificate with --origin-ca FILE or skip the check with --origin-insecure`;
    return unreachable(m, m);
  }
  if (code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER') {
    const m = `${label} did not answer in TLS (${code}): is it a plain http:// server?`;
    return unreachable(m, m);
  }
  if (code.startsWith('HPE_')) {
    return failed(`${label} sent an invalid HTTP response (${code}: ${messageOf(err)})`);
  }
  return failed(`request to ${label} failed: ${messageOf(err)} (${code})`);
}

export function messageOf(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) {
    return err.errors.map((e) => messageOf(e)).join('; ');
  }
  return err instanceof Error ? err.message || String(errnoCode(err) ?? err.name) : String(err);
}

export function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
