/** What every inspector answer shares: its security headers, and the error for a non-2xx answer. */
import { QuickTunnelError } from '../../shared/errors.js';

/** On every answer: no caching, no sniffing, no framing, scripts and styles from the page only. */
export const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

/** An API answer other than 2xx: `status` and a message for the caller. */
export class HttpError extends QuickTunnelError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super('QT_ERR_INSPECTOR_REQUEST', message);
  }
}
