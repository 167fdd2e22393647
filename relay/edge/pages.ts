/**
 * Visitor-facing error responses: HTML for browsers, plain text otherwise. Each tells
 * "no such tunnel", "tunnel offline" and "the local app is not answering" apart and
 * carries a hint for the tunnel's owner.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
import { closeSoon } from './connections.js';

export interface ErrorPage {
  status: number;
  title: string;
  detail: string;
  hint: string;
  headers?: Record<string, string>;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function wantsHtml(headers: IncomingHttpHeaders): boolean {
  const accept = headers.accept ?? '';
  return accept.includes('text/html');
}

export function renderErrorBody(page: ErrorPage, html: boolean): { type: string; body: string } {
  if (!html) {
    return {
      type: 'text/plain; charset=utf-8',
      body: `${page.status} ${page.title}\n\n${page.detail}\n\n${page.hint}\n`,
    };
  }
  const body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${page.status} ${escapeHtml(page.title)} · quick-tunnel</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}code,.hint{background:#f4f4f4;padding:.75rem;display:block;border-radius:6px}
small{color:#777}</style></head>
<body><h1>${page.status} · ${escapeHtml(page.title)}</h1>
<p>${escapeHtml(page.detail)}</p>
<p class="hint">${escapeHtml(page.hint)}</p>
<small>served by the quick-tunnel relay</small></body></html>
`;
  return { type: 'text/html; charset=utf-8', body };
}

/**
 * Writes an error page on a normal response (if headers were not sent yet). The
 * connection ends with it (`Connection: close`, destroyed a short linger later), and
 * nothing read from it afterwards is acted on.
 */
export function sendError(
  res: ServerResponse,
  headers: IncomingHttpHeaders,
  page: ErrorPage,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.shouldKeepAlive = false;
  closeSoon(res.req.socket);
  const { type, body } = renderErrorBody(page, wantsHtml(headers));
  // The status message is given explicitly: never one left behind on `res` by an
  // earlier, failed writeHead.
  res.writeHead(page.status, STATUS_CODES[page.status] ?? '', {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-quick-tunnel-error': String(page.status),
    ...page.headers,
  });
  res.end(body);
}

/** Writes an error page straight onto a raw socket (failed upgrade) and closes it. */
export function sendRawError(socket: Duplex, headers: IncomingHttpHeaders, page: ErrorPage): void {
  if (socket.destroyed) return;
  closeSoon(socket);
  const { type, body } = renderErrorBody(page, wantsHtml(headers));
  const extra = Object.entries(page.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.end(
    `HTTP/1.1 ${page.status} ${STATUS_CODES[page.status] ?? ''}\r\n` +
      `Content-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Cache-Control: no-store\r\nX-Quick-Tunnel-Error: ${page.status}\r\n${extra}Connection: close\r\n\r\n${body}`,
  );
}

export const pages = {
  unknownHost(host: string, domain: string): ErrorPage {
    return {
      status: 404,
      title: 'Unknown host',
      detail: `This relay serves tunnels under ${domain}, and '${host}' is not one of them.`,
      hint: 'Check the address: tunnel URLs look like https://<name>.' + domain,
    };
  },
  noSuchTunnel(hostname: string): ErrorPage {
    return {
      status: 404,
      title: 'No such tunnel',
      detail: `There is no tunnel at ${hostname}. It may have been stopped, or the address is mistyped.`,
      hint: 'If this is your tunnel: start it again with `quick-tunnel <port>` and use the URL it prints.',
    };
  },
  tunnelOffline(hostname: string): ErrorPage {
    return {
      status: 503,
      title: 'Tunnel offline',
      detail: `The tunnel ${hostname} exists but its client is not connected right now.`,
      hint: 'If this is your tunnel: check that `quick-tunnel` is still running and can reach the relay.',
      headers: { 'retry-after': '5' },
    };
  },
  tunnelBusy(hostname: string, reason: string): ErrorPage {
    return {
      status: 503,
      title: 'Tunnel busy',
      detail: `The tunnel ${hostname} cannot take another request right now (${reason}).`,
      hint: 'Try again in a moment. If this is your tunnel: fewer concurrent requests, or a faster local app.',
      headers: { 'retry-after': '1' },
    };
  },
  originUnreachable(hostname: string, message: string): ErrorPage {
    return {
      status: 502,
      title: 'The local app is not answering',
      detail: `The tunnel ${hostname} is connected, but its client could not reach the local app: ${message}.`,
      hint: 'If this is your tunnel: start your local server (or check the port you gave quick-tunnel).',
    };
  },
  originFailed(hostname: string, message: string): ErrorPage {
    return {
      status: 502,
      title: 'Bad gateway',
      detail: `The request to ${hostname} failed between the relay and the local app: ${message}.`,
      hint: 'If this is your tunnel: look at the quick-tunnel output and your local server logs.',
    };
  },
  originTimeout(hostname: string, message: string): ErrorPage {
    return {
      status: 504,
      title: 'The local app timed out',
      detail: `The local app behind ${hostname} did not answer in time${message ? ` (${message})` : ''}.`,
      hint: 'If this is your tunnel: check that your local server responds; slow endpoints may need a longer timeout.',
    };
  },
  rateLimited(hostname: string, retryAfterSeconds: number): ErrorPage {
    return {
      status: 429,
      title: 'Too many requests',
      detail: `${hostname} is receiving more requests than this relay allows per tunnel.`,
      hint: `Try again in ${retryAfterSeconds} s.`,
      headers: { 'retry-after': String(retryAfterSeconds) },
    };
  },
  /** CONNECT: the relay is not a forward proxy. */
  connectRefused(): ErrorPage {
    return {
      status: 405,
      title: 'Method Not Allowed',
      detail: 'This relay serves tunnels; it is not a proxy and does not accept CONNECT.',
      hint: 'Send requests to a tunnel URL (https://<name>.<domain>) instead.',
      headers: { allow: 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS' },
    };
  },
  shuttingDown(): ErrorPage {
    return {
      status: 503,
      title: 'Relay restarting',
      detail: 'This relay is shutting down and takes no new requests.',
      hint: 'Try again in a few seconds.',
      headers: { 'retry-after': '5', connection: 'close' },
    };
  },
};
