/**
 * Checks on a visitor request before it is routed: the one Host value that routing and
 * access control both read, and the limits and ambiguities that must be refused
 * (duplicated or missing Host, an absolute-form target naming another host, SNI that
 * disagrees with Host, too many headers, over-long URLs, framing ambiguities).
 * Node's parser already rejects most smuggling shapes (CL+TE, duplicate or invalid
 * Content-Length, obs-fold, bad chunks); these are the rest.
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { ErrorPage } from './pages.js';
import { RELAY_DEFAULTS } from '../config.js';
import { normalizeHost } from './host.js';

export interface GuardLimits {
  /** Longest request target accepted (414 beyond). Default 8 KiB. */
  maxUrlBytes: number;
  /** Most header lines accepted (431 beyond). Default 100. */
  maxHeaders: number;
}

/** Defaults: relay/config.ts. */
export const DEFAULT_GUARD_LIMITS: Readonly<GuardLimits> = {
  maxUrlBytes: RELAY_DEFAULTS.maxUrlBytes,
  maxHeaders: RELAY_DEFAULTS.maxHeaders,
};

function refuse(
  status: number,
  title: string,
  detail: string,
  headers?: Record<string, string>,
): ErrorPage {
  const page: ErrorPage = {
    status,
    title,
    detail,
    hint: 'This request was refused by the relay before reaching any tunnel.',
  };
  if (headers !== undefined) page.headers = headers;
  return page;
}

export type GuardResult = { host: string | undefined } | { page: ErrorPage };

/**
 * Validates `req` and returns the single normalised host to route on, or the page to
 * answer with. `maxHeaders` must be below the server's maxHeadersCount so that a
 * request with too many headers is seen (Node drops headers beyond that count).
 */
export function guardRequest(
  req: IncomingMessage,
  limits: Readonly<GuardLimits> = DEFAULT_GUARD_LIMITS,
): GuardResult {
  const raw = req.rawHeaders;
  if (raw.length / 2 > limits.maxHeaders) {
    return {
      page: refuse(
        431,
        'Request Header Fields Too Large',
        `more than ${limits.maxHeaders} header lines`,
      ),
    };
  }
  const url = req.url ?? '';
  if (Buffer.byteLength(url) > limits.maxUrlBytes) {
    return {
      page: refuse(
        414,
        'URI Too Long',
        `the request target is longer than ${limits.maxUrlBytes} bytes`,
      ),
    };
  }
  // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing (1.0
  // has no chunked coding, and a 1.0 hop before us may have read the body differently).
  if (req.httpVersion === '1.0' && req.headers['transfer-encoding'] !== undefined) {
    return { page: refuse(400, 'Bad Request', 'Transfer-Encoding in an HTTP/1.0 request') };
  }
  // The relay decodes only `chunked` (Node's parser has already refused a coding list
  // that does not end in it). Any other coding (`gzip, chunked`) would reach the app
  // still encoded and without a Transfer-Encoding header to say so: 501, as nginx does.
  const te = req.headers['transfer-encoding'];
  if (te !== undefined && te.trim().toLowerCase() !== 'chunked') {
    return {
      page: refuse(501, 'Not Implemented', `unsupported Transfer-Encoding '${te.slice(0, 64)}'`),
    };
  }
  // An upgrade's body would only follow the 101 as raw bytes, but its Content-Length
  // would travel on in the head: a length without its bytes, which an origin that
  // discards unread bodies reads from the next request on that connection (smuggling).
  // No upgrade (WebSocket, h2c) carries a request body: refuse the ambiguity.
  if (
    (req as IncomingMessage & { upgrade?: boolean }).upgrade === true &&
    upgradeCarriesBody(req)
  ) {
    return {
      page: refuse(400, 'Bad Request', 'an upgrade request cannot carry a body'),
    };
  }
  let hostCount = 0;
  let hostValue: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name === 'host') {
      hostCount++;
      hostValue = raw[i + 1];
    }
  }
  if (hostCount > 1) return { page: refuse(400, 'Bad Request', 'more than one Host header') };
  if (hostCount === 0) {
    if (req.httpVersion === '1.0') return { host: undefined };
    return { page: refuse(400, 'Bad Request', 'HTTP/1.1 requests need a Host header') };
  }
  const host = normalizeHost(hostValue);
  if (host === undefined)
    return { page: refuse(400, 'Bad Request', 'the Host header is malformed') };
  // Absolute-form target (GET http://other/ HTTP/1.1): its authority must agree with
  // Host, or a downstream server could route on a different name than we did.
  if (!url.startsWith('/') && url !== '*') {
    let authority: string | undefined;
    try {
      const parsed = new URL(url);
      authority = normalizeHost(parsed.host);
    } catch {
      return { page: refuse(400, 'Bad Request', 'the request target is malformed') };
    }
    if (authority !== host) {
      return {
        page: refuse(
          400,
          'Bad Request',
          'the request target names another host than the Host header',
        ),
      };
    }
  }
  // TLS: the name the visitor's TLS handshake asked for must be the one it sends as
  // Host, else a certificate for one tunnel could be used to reach another.
  const servername = (req.socket as TLSSocket).servername;
  if (typeof servername === 'string' && servername !== '' && normalizeHost(servername) !== host) {
    return {
      page: refuse(
        421,
        'Misdirected Request',
        'the TLS server name (SNI) and the Host header name different hosts',
      ),
    };
  }
  return { host };
}

/** Turns an absolute-form target into origin-form (path + query) for forwarding. */
export function originForm(url: string): string {
  if (url.startsWith('/') || url === '*') return url;
  try {
    const parsed = new URL(url);
    return `${parsed.pathname}${parsed.search}`;
  } catch {
    return '/';
  }
}

/** True if an upgrade request announces a body (a non-zero length or any transfer coding). */
function upgradeCarriesBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}
