/**
 * Forwards one visitor request (or WebSocket upgrade) over one mux stream of the
 * tunnel's session, streaming bodies both ways with backpressure.
 */
import {
  validateHeaderName,
  validateHeaderValue,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import type { Duplex } from 'node:stream';
import { realClock, type Clock } from '../../shared/clock.js';
import { StreamResetError, errnoCode } from '../../shared/errors.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import {
  endToEndHeaders,
  flattenHeaders,
  isResponseHead,
  type HeaderPairs,
  type RequestHead,
  type ResponseHead,
} from '../../shared/protocol/tunnel.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import type { MuxSession } from '../../shared/mux/session.js';
import { closeSoon } from './connections.js';
import { originForm } from './guard.js';
import { pages, sendError, sendRawError, type ErrorPage } from './pages.js';

export interface ForwardContext {
  hostname: string;
  scheme: 'http' | 'https';
  /** How long to wait for the response head before answering 504. */
  responseTimeoutMs: number;
  /** Time for the response timeout. Default the real clock. */
  clock?: Clock;
  /** Called once per finished request, for logs and metrics. */
  onDone?: (info: ForwardResult) => void;
  /**
   * Another live session of the same tunnel, for a request that the client refused
   * unread (REFUSED_STREAM: its connection is going away or full). Absent = no retry.
   */
  retrySession?: () => MuxSession | undefined;
  /** The relay checked the visitor's Authorization itself: don't pass it on. */
  stripAuthorization?: boolean;
  /**
   * OPEN metadata for the head, when the stream goes to another relay of the cluster
   * rather than to a tunnel client (it adds which hostname it is for).
   */
  wrapHead?: (head: RequestHead) => Record<string, unknown>;
}

export interface ForwardResult {
  status: number;
  bytesIn: number;
  bytesOut: number;
  error?: string;
}

/** Headers a visitor must not set: the relay replaces them with what it saw. */
const FORWARDING_HEADERS = new Set([
  'forwarded',
  'x-real-ip',
  'true-client-ip',
  'client-ip',
  'x-client-ip',
  'x-cluster-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-original-forwarded-for',
  'x-url-scheme',
]);

/** True for X-Forwarded-*, Forwarded, X-Real-IP and the like, also with underscores. */
function isForwardingHeader(lower: string): boolean {
  const name = lower.replaceAll('_', '-');
  return FORWARDING_HEADERS.has(name) || name.startsWith('x-forwarded-');
}

/** Builds the request head sent to the CLI: end-to-end headers plus X-Forwarded-*. */
export function buildRequestHead(
  req: IncomingMessage,
  scheme: 'http' | 'https',
  upgrade: boolean,
  stripAuthorization = false,
): RequestHead {
  const headers: HeaderPairs = [];
  // The relay is the edge: visitor-supplied forwarding headers can't be trusted. Every
  // header an app might read a client address, scheme, host or prefix from goes (also
  // spelled with underscores, which some servers map to the same variable), and the
  // relay sets what it knows.
  for (const pair of endToEndHeaders(req.rawHeaders, upgrade)) {
    const lower = pair[0].toLowerCase();
    if (
      isForwardingHeader(lower) ||
      // Only the relay's store-and-forward sets these (relay/queue/): an app may trust them.
      lower === 'x-quick-tunnel-delivery-id' ||
      lower === 'x-quick-tunnel-queued-at'
    )
      continue;
    // The tunnel's own password (--basic-auth) never reaches the app, its logs or the TUI.
    if (stripAuthorization && lower === 'authorization') continue;
    // An upgrade carries no body (the guard refused one that announced any): no length
    // goes on without its bytes.
    if (upgrade && (lower === 'content-length' || lower === 'transfer-encoding')) continue;
    headers.push(pair);
  }
  const remoteAddress = req.socket.remoteAddress ?? '';
  headers.push([
    'X-Forwarded-For',
    remoteAddress.startsWith('::ffff:') ? remoteAddress.slice(7) : remoteAddress,
  ]);
  headers.push(['X-Forwarded-Proto', scheme]);
  if (req.headers.host !== undefined) headers.push(['X-Forwarded-Host', req.headers.host]);
  const client = remoteAddress.startsWith('::ffff:') ? remoteAddress.slice(7) : remoteAddress;
  headers.push(['X-Real-IP', client]);
  // RFC 7239: an IPv6 address is bracketed and quoted; host is a quoted-string.
  const forNode = client.includes(':') ? `"[${client}]"` : client;
  const hostPart =
    req.headers.host !== undefined ? `;host="${req.headers.host.replace(/["\\]/g, '')}"` : '';
  headers.push(['Forwarded', `for=${forNode};proto=${scheme}${hostPart}`]);
  return {
    method: req.method ?? 'GET',
    // Absolute-form targets (checked against Host by the guard) go on as origin-form.
    url: originForm(req.url ?? '/'),
    httpVersion: req.httpVersion,
    headers,
    upgrade,
    remoteAddress,
    scheme,
  };
}

/** Maps a stream failure that happened before the response head to a visitor page. */
export function pageForStreamError(hostname: string, err: unknown): ErrorPage {
  if (err instanceof StreamResetError) {
    const message = err.reason;
    switch (err.resetCode) {
      case ErrorCode.CONNECT_ERROR:
        return pages.originUnreachable(hostname, message);
      case ErrorCode.TIMEOUT:
        return pages.originTimeout(hostname, message);
      case ErrorCode.REFUSED_STREAM:
        return pages.tunnelBusy(hostname, message || 'too many concurrent requests');
      default:
        return pages.originFailed(hostname, message || 'the tunnel client reset the request');
    }
  }
  const code = errnoCode(err);
  if (
    code === 'QT_ERR_SESSION_CLOSED' ||
    code === 'QT_ERR_CONNECTION' ||
    code === 'QT_ERR_HEARTBEAT'
  ) {
    return pages.originFailed(hostname, 'the tunnel connection was lost during the request');
  }
  return pages.originFailed(hostname, err instanceof Error ? err.message : String(err));
}

/** Opens a stream for the request; answers 503 itself when the tunnel can't take one. */
export function openStreamFor(
  session: MuxSession,
  head: RequestHead,
  hostname: string,
  wrapHead?: (head: RequestHead) => Record<string, unknown>,
): { stream: MuxStream } | { page: ErrorPage } {
  try {
    const meta = wrapHead !== undefined ? wrapHead(head) : head;
    return { stream: session.openStream(meta as unknown as Record<string, unknown>) };
  } catch (err) {
    if (err instanceof StreamResetError) return { page: pages.tunnelBusy(hostname, err.reason) };
    return { page: pages.tunnelOffline(hostname) };
  }
}

/**
 * What is wrong with a tunnel client's response head, if anything. The client is not
 * trusted: a status message or header that Node would refuse to write (CR, LF, NUL...)
 * must become a 502 here, before anything is written (a throw from writeHead in an
 * event handler would take the whole relay down), and on the raw upgrade path it would
 * let the client inject headers. Content-Length must be one plain number, because the
 * relay holds the body to it.
 */
export function responseHeadProblem(meta: unknown, upgrade: boolean): string | undefined {
  if (!isResponseHead(meta)) return 'not a response head';
  if (meta.status < 200 && !(upgrade && meta.status === 101)) return `status ${meta.status}`;
  if (meta.statusMessage !== undefined && /[^\t\x20-\x7e\x80-\xff]/.test(meta.statusMessage)) {
    return 'invalid character in the status message';
  }
  let lengths = 0;
  for (const [name, value] of meta.headers) {
    try {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    } catch {
      return `invalid header ${JSON.stringify(name.slice(0, 64))}`;
    }
    if (name.toLowerCase() === 'content-length') {
      if (++lengths > 1) return 'more than one Content-Length';
      if (!/^\d{1,15}$/.test(value)) return `invalid Content-Length ${JSON.stringify(value)}`;
    }
  }
  return undefined;
}

/** The body length a response announces, where the visitor will hold us to it. */
function announcedLength(meta: ResponseHead, method: string | undefined): number | undefined {
  if (method === 'HEAD' || meta.status === 204 || meta.status === 304) return undefined;
  const header = meta.headers.find(([name]) => name.toLowerCase() === 'content-length');
  return header === undefined ? undefined : Number(header[1]);
}

/** Whether a request carries a body (RFC 9112 §6.3: only with a length or a transfer coding). */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** True for a stream the client refused before reading it (safe to send elsewhere). */
function refused(err: unknown): boolean {
  return err instanceof StreamResetError && err.resetCode === ErrorCode.REFUSED_STREAM;
}

/** Sessions tried for one request before answering 503 (refusals only). */
const MAX_ATTEMPTS = 4;

/** Forwards a plain HTTP request/response pair over `session`. */
export function forwardRequest(
  req: IncomingMessage,
  res: ServerResponse,
  session: MuxSession,
  ctx: ForwardContext,
): void {
  const head = buildRequestHead(req, ctx.scheme, false, ctx.stripAuthorization === true);
  let stream: MuxStream | undefined;
  let attempts = 0;
  let replied = false;
  let finished = false;
  let bytesIn = 0;
  let bytesOut = 0;
  const clock = ctx.clock ?? realClock;

  const timer = clock.setTimeout(() => {
    if (replied) return;
    stream?.reset(ErrorCode.TIMEOUT, 'relay response timeout');
    fail(
      pages.originTimeout(
        ctx.hostname,
        `no response within ${Math.round(ctx.responseTimeoutMs / 1000)} s`,
      ),
    );
  }, ctx.responseTimeoutMs);
  timer.unref();

  const done = (status: number, error?: string): void => {
    if (finished) return;
    finished = true;
    clock.clearTimeout(timer);
    ctx.onDone?.(
      error === undefined ? { status, bytesIn, bytesOut } : { status, bytesIn, bytesOut, error },
    );
  };

  const fail = (page: ErrorPage): void => {
    if (res.headersSent) {
      // A response already started: abort the connection so a truncated body never
      // looks complete to the visitor.
      res.destroy();
      done(res.statusCode, page.detail);
      return;
    }
    sendError(res, req.headers, page);
    done(page.status, page.detail);
  };

  req.on('data', (chunk: Buffer) => {
    bytesIn += chunk.length;
  });

  const start = (target: MuxSession): void => {
    attempts++;
    const opened = openStreamFor(target, head, ctx.hostname, ctx.wrapHead);
    if ('page' in opened) {
      fail(opened.page);
      return;
    }
    const s = opened.stream;
    stream = s;
    // Visitor → CLI: the request body, with backpressure (pipe pauses req when the
    // stream's window is exhausted). Most requests have none (HTTP/1.1 frames a request
    // body only with Content-Length or Transfer-Encoding): their stream ends with the
    // OPEN, and the visitor's request is drained without pipe's per-request listeners.
    if (req.readableEnded) s.end();
    else if (hasBody(req)) req.pipe(s);
    else {
      s.end();
      req.resume();
    }

    // The tunnel client's side: a response head (REPLY), then the body. The stream is
    // read from the start, so a client that sends body bytes before a head, or ends
    // the stream without one, gets its visitor a 502 at once instead of a wait for
    // the response timeout. The body is held to the announced Content-Length: one that
    // is longer or shorter ends in an abort, so the visitor's connection (perhaps a
    // front proxy's, reused for other visitors) never reads one response's bytes as
    // the start of the next.
    let length: number | undefined;
    let status = 0;
    const lied = (): void => {
      s.destroy();
      res.destroy();
      done(status, 'the response body did not match its Content-Length');
    };
    s.once('reply', (meta: unknown) => {
      if (s !== stream || finished) return;
      const problem = responseHeadProblem(meta, false);
      if (problem !== undefined || !isResponseHead(meta)) {
        s.reset(ErrorCode.PROTOCOL_ERROR, 'invalid response head');
        fail(
          pages.originFailed(
            ctx.hostname,
            `the tunnel client sent an invalid response head (${problem ?? ''})`,
          ),
        );
        return;
      }
      replied = true;
      clock.clearTimeout(timer);
      writeResponseHead(res, meta);
      length = announcedLength(meta, req.method);
      status = meta.status;
      res.once('finish', () => done(meta.status));
    });
    s.on('data', (chunk: Buffer) => {
      if (s !== stream || finished) return;
      if (!replied) {
        s.reset(ErrorCode.PROTOCOL_ERROR, 'response body before its head');
        fail(pages.originFailed(ctx.hostname, 'the tunnel client sent a body before a head'));
        return;
      }
      bytesOut += chunk.length;
      if (length !== undefined && bytesOut > length) return lied();
      if (!res.write(chunk)) s.pause();
    });
    res.on('drain', () => s.resume());
    s.once('end', () => {
      if (s !== stream || finished) return;
      if (!replied) {
        fail(pages.originFailed(ctx.hostname, 'the tunnel client ended it without a response'));
        return;
      }
      if (length !== undefined && bytesOut !== length) lied();
      else res.end();
    });

    s.on('error', (err) => {
      if (s !== stream || finished) return;
      // Refused unread (that connection is going away: a replica stopping, a client
      // reconnecting): nothing reached the local app, so another connection of the
      // same tunnel can take it, as long as none of the body was consumed.
      if (!replied && refused(err) && bytesIn === 0 && attempts < MAX_ATTEMPTS) {
        const next = ctx.retrySession?.();
        if (next !== undefined && next !== target) {
          req.unpipe(s);
          start(next);
          return;
        }
      }
      fail(
        replied
          ? pages.originFailed(ctx.hostname, err.message)
          : pageForStreamError(ctx.hostname, err),
      );
    });
  };

  // Visitor went away before the response completed: cancel the stream so the CLI
  // stops the origin request.
  res.once('close', () => {
    if (!res.writableFinished) {
      stream?.destroy();
      done(res.headersSent ? res.statusCode : 499, 'visitor closed the connection');
    }
  });
  req.once('error', () => stream?.destroy());

  start(session);
}

function writeResponseHead(res: ServerResponse, head: ResponseHead): void {
  // Hop-by-hop headers were removed by the CLI; Node re-frames the body itself
  // (Content-Length as given, else chunked), so no raw framing bytes pass through.
  const flat = flattenHeaders(endToEndHeaders(flattenHeaders(head.headers)));
  if (head.statusMessage !== undefined) res.writeHead(head.status, head.statusMessage, flat);
  else res.writeHead(head.status, flat);
  // The head leaves within this turn of the event loop even if no body follows (SSE
  // and long polls rely on seeing it at once); a body and end that arrive in the same
  // turn (the usual small response) go out with it in one write.
  res.cork();
  res.flushHeaders();
  setImmediate(() => res.uncork());
}

/** Forwards an Upgrade request: after the origin's 101 the stream carries raw bytes. */
export function forwardUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  headBytes: Buffer,
  session: MuxSession,
  ctx: ForwardContext,
): void {
  const head = buildRequestHead(req, ctx.scheme, true, ctx.stripAuthorization === true);
  const opened = openStreamFor(session, head, ctx.hostname, ctx.wrapHead);
  if ('page' in opened) {
    sendRawError(socket, req.headers, opened.page);
    ctx.onDone?.({ status: opened.page.status, bytesIn: 0, bytesOut: 0, error: opened.page.title });
    return;
  }
  const stream = opened.stream;
  let replied = false;
  let finished = false;
  let bytesIn = headBytes.length;
  let bytesOut = 0;
  let status = 0;
  const clock = ctx.clock ?? realClock;
  const done = (error?: string): void => {
    if (finished) return;
    finished = true;
    clock.clearTimeout(timer);
    ctx.onDone?.(
      error === undefined ? { status, bytesIn, bytesOut } : { status, bytesIn, bytesOut, error },
    );
  };
  const timer = clock.setTimeout(() => {
    if (replied) return;
    stream.reset(ErrorCode.TIMEOUT, 'relay response timeout');
    const page = pages.originTimeout(ctx.hostname, '');
    status = page.status;
    sendRawError(socket, req.headers, page);
    done(page.detail);
  }, ctx.responseTimeoutMs);
  timer.unref();

  if (headBytes.length > 0) stream.write(headBytes);
  socket.on('data', (chunk: Buffer) => {
    bytesIn += chunk.length;
  });
  socket.on('error', () => stream.destroy());
  socket.once('close', () => {
    if (!stream.destroyed) stream.destroy();
    done();
  });
  stream.once('reply', (meta: unknown) => {
    if (responseHeadProblem(meta, true) !== undefined || !isResponseHead(meta)) {
      stream.reset(ErrorCode.PROTOCOL_ERROR, 'invalid response head');
      const page = pages.originFailed(
        ctx.hostname,
        'the tunnel client sent an invalid response head',
      );
      status = page.status;
      sendRawError(socket, req.headers, page);
      return;
    }
    replied = true;
    clock.clearTimeout(timer);
    status = meta.status;
    const upgraded = meta.status === 101;
    const headers = upgraded ? meta.headers : endToEndHeaders(flattenHeaders(meta.headers));
    let text = `HTTP/1.1 ${meta.status} ${meta.statusMessage ?? (upgraded ? 'Switching Protocols' : '')}\r\n`;
    for (const [k, v] of headers) text += `${k}: ${v}\r\n`;
    if (!upgraded) text += 'Connection: close\r\n';
    socket.write(`${text}\r\n`, 'latin1');
    stream.on('data', (chunk: Buffer) => {
      bytesOut += chunk.length;
    });
    // Raw two-way bytes from here on; each direction ends on its own (half-close).
    stream.pipe(socket);
    if (upgraded) socket.pipe(stream);
    else {
      // A refused upgrade is an error answer: nothing more goes to the origin (our half
      // of the tunnel stream ends now), and the connection closes after the answer,
      // whether or not the visitor reads it or stops sending.
      socket.resume();
      stream.end();
      closeSoon(socket);
    }
  });
  stream.on('error', (err) => {
    if (!replied) {
      const page = pageForStreamError(ctx.hostname, err);
      status = page.status;
      sendRawError(socket, req.headers, page);
      done(page.detail);
      return;
    }
    socket.destroy();
    done(err.message);
  });
  stream.once('end', () => {
    if (!replied) socket.destroy();
  });
}
