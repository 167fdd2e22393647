/**
 * One visitor request/response exchange over one tunnel stream, the same for HTTP/1.1
 * (relay/edge/proxy.ts) and HTTP/2 (relay/edge/h2.ts): open the stream, stream the
 * request body with backpressure, send a refused stream to another session of the
 * tunnel, wait for the response head (504 after the response timeout), check it, hold
 * the body to its Content-Length, and turn any failure into the visitor's error page
 * (or an abort once the response has begun). Each transport only says how to write to
 * its visitor (`VisitorSide`). Upgrades (raw sockets, HTTP/1.1 only) stay in proxy.ts.
 */
import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { Readable } from 'node:stream';
import { realClock, type Clock } from '../../shared/clock.js';
import { StreamResetError, errnoCode } from '../../shared/errors.js';
import type { MuxSession } from '../../shared/mux/session.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import {
  isResponseHead,
  type RequestHead,
  type ResponseHead,
} from '../../shared/protocol/tunnel.js';
import { pages, type ErrorPage } from './pages.js';

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

/** How the exchange reads from and writes to its visitor, per transport. */
export interface VisitorSide {
  /** The request body as it arrives (piped into the tunnel stream). */
  readonly body: Readable;
  /** True when there is no body to send: the tunnel stream ends with its OPEN. */
  noBody(): boolean;
  /** The request method (HEAD responses announce a length they do not carry). */
  readonly method: string | undefined;
  /** Whether the response head has gone out. */
  readonly headersSent: boolean;
  /** Whether the response was written to its end (nothing left to cancel). */
  readonly finished: boolean;
  /**
   * Writes the (checked) response head. False when the transport refuses it (h2 forbids
   * some fields); nothing was written then.
   */
  respond(head: ResponseHead): boolean;
  /** Writes body bytes; false = wait for 'drain'. */
  write(chunk: Buffer): boolean;
  end(): void;
  /** Answers with an error page (the response has not begun). */
  sendPage(page: ErrorPage): void;
  /** Ends the response visibly truncated (connection destroyed / stream reset). */
  abort(): void;
  /** 'drain', 'finish' (response written) and 'close' (visitor gone or done) of the visitor. */
  on(event: 'drain' | 'finish' | 'close', listener: () => void): void;
  /** Why a visitor that goes away early failed the exchange (for logs and metrics). */
  readonly closedReason: string;
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

/** Opens a stream for the request; the page to answer when the tunnel can't take one. */
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

/** True for a stream the client refused before reading it (safe to send elsewhere). */
function refused(err: unknown): boolean {
  return err instanceof StreamResetError && err.resetCode === ErrorCode.REFUSED_STREAM;
}

/** Sessions tried for one request before answering 503 (refusals only). */
const MAX_ATTEMPTS = 4;

/** Forwards one request/response exchange of `visitor` over `session`. */
export function forwardExchange(
  visitor: VisitorSide,
  head: RequestHead,
  session: MuxSession,
  ctx: ForwardContext,
): void {
  const clock = ctx.clock ?? realClock;
  let stream: MuxStream | undefined;
  let attempts = 0;
  let replied = false;
  let finished = false;
  let status = 0;
  let bytesIn = 0;
  let bytesOut = 0;

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

  const done = (code: number, error?: string): void => {
    if (finished) return;
    finished = true;
    clock.clearTimeout(timer);
    ctx.onDone?.(
      error === undefined
        ? { status: code, bytesIn, bytesOut }
        : { status: code, bytesIn, bytesOut, error },
    );
  };

  const fail = (page: ErrorPage): void => {
    if (visitor.headersSent) {
      // A response already started: abort it so a truncated body never looks complete.
      visitor.abort();
      done(status, page.detail);
      return;
    }
    visitor.sendPage(page);
    done(page.status, page.detail);
  };

  visitor.body.on('data', (chunk: Buffer) => {
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
    // Visitor → CLI: the request body, with backpressure (pipe pauses the visitor when
    // the stream's window is exhausted). Most requests have none: their stream ends
    // with the OPEN, and the visitor's side is drained without pipe's listeners.
    if (visitor.noBody()) {
      s.end();
      visitor.body.resume();
    } else visitor.body.pipe(s);

    // The tunnel client's side: a response head (REPLY), then the body. The stream is
    // read from the start, so a client that sends body bytes before a head, or ends
    // the stream without one, gets its visitor a 502 at once instead of a wait for
    // the response timeout. The body is held to the announced Content-Length: one that
    // is longer or shorter ends in an abort, so the visitor's connection (perhaps a
    // front proxy's, reused for other visitors) never reads one response's bytes as
    // the start of the next.
    let length: number | undefined;
    const lied = (): void => {
      s.destroy();
      visitor.abort();
      done(status, 'the response body did not match its Content-Length');
    };
    s.once('reply', (meta: unknown) => {
      if (s !== stream || finished) return;
      const problem = responseHeadProblem(meta, false);
      if (problem !== undefined || !isResponseHead(meta) || !visitor.respond(meta)) {
        s.reset(ErrorCode.PROTOCOL_ERROR, 'invalid response head');
        fail(
          pages.originFailed(
            ctx.hostname,
            `the tunnel client sent an invalid response head (${problem ?? 'refused by HTTP/2'})`,
          ),
        );
        return;
      }
      replied = true;
      clock.clearTimeout(timer);
      length = announcedLength(meta, visitor.method);
      status = meta.status;
      visitor.on('finish', () => done(meta.status));
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
      if (!visitor.write(chunk)) s.pause();
    });
    visitor.on('drain', () => s.resume());
    s.once('end', () => {
      if (s !== stream || finished) return;
      if (!replied) {
        fail(pages.originFailed(ctx.hostname, 'the tunnel client ended it without a response'));
        return;
      }
      if (length !== undefined && bytesOut !== length) lied();
      else visitor.end();
    });

    s.on('error', (err) => {
      if (s !== stream || finished) return;
      // Refused unread (that connection is going away: a replica stopping, a client
      // reconnecting): nothing reached the local app, so another connection of the
      // same tunnel can take it, as long as none of the body was consumed.
      if (!replied && refused(err) && bytesIn === 0 && attempts < MAX_ATTEMPTS) {
        const next = ctx.retrySession?.();
        if (next !== undefined && next !== target) {
          visitor.body.unpipe(s);
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

  // The visitor went away before its response was complete (a closed connection, an h2
  // RST_STREAM): cancel the stream so the CLI stops the origin request.
  visitor.on('close', () => {
    if (visitor.finished) return;
    stream?.destroy();
    done(visitor.headersSent ? status : 499, visitor.closedReason);
  });
  visitor.body.once('error', () => stream?.destroy());

  start(session);
}
