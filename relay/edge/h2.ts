/**
 * HTTP/2 for visitors on the relay's HTTPS listener. The TLS server offers `h2` and
 * `http/1.1` by ALPN; h1 connections go on to the HTTPS server's own HTTP/1.1 handling
 * untouched, h2 connections become sessions here. Each h2 stream is one tunnel stream,
 * carried as the same RequestHead as an h1 request (the CLI talks HTTP/1.1 to the
 * local app as before). Routing, the guard, access checks and the forwarded headers run
 * through the h1 code on an IncomingMessage-shaped view of the stream, so a rule added
 * there holds here too.
 *
 * WebSockets stay on HTTP/1.1: the relay does not advertise RFC 8441 extended CONNECT,
 * so browsers open a separate h1 connection for them, as they do with most servers.
 *
 * h2-specific abuse is bounded here: streams the visitor cancels (rapid reset,
 * CVE-2023-44487), PING and SETTINGS floods (token buckets per session), concurrent
 * streams and header lists (SETTINGS the peer must obey; nghttp2 refuses the rest,
 * CONTINUATION floods included), a session that never sends a request, an idle
 * session, and a stream whose visitor stops reading.
 */
import http2, {
  constants,
  type Http2Server,
  type IncomingHttpHeaders as H2Headers,
  type OutgoingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import { RELAY_DEFAULTS } from '../config.js';
import {
  endToEndHeaders,
  flattenHeaders,
  type ResponseHead,
} from '../../shared/protocol/tunnel.js';
import type { MuxSession } from '../../shared/mux/session.js';
import { realClock, type Clock, type ClockTimer } from '../../shared/clock.js';
import { normalizeHost } from './host.js';
import { pages, renderErrorBody, type ErrorPage } from './pages.js';
import { forwardExchange, type ForwardContext, type VisitorSide } from './forward.js';
import { buildRequestHead } from './proxy.js';

/** ALPN protocols the HTTPS listener offers, most preferred first. */
export const HTTPS_ALPN_PROTOCOLS = ['h2', 'http/1.1'];

export interface H2Limits {
  /** Streams one visitor connection may have open at once (SETTINGS). Default 100. */
  maxConcurrentStreams: number;
  /** Bytes of one request's header list, HPACK-decoded (SETTINGS). Default 16 KiB. */
  maxHeaderListBytes: number;
  /** Header fields one request may carry, pseudo-headers included. */
  maxHeaderPairs: number;
  /** A session that has not completed a request's headers this long after it began is closed. */
  firstRequestTimeoutMs: number;
  /** A session without open streams this long is closed (GOAWAY). */
  idleTimeoutMs: number;
  /**
   * A stream with response bytes queued that the visitor has not read for this long
   * is reset (slow read): its window stays shut while the tunnel stream waits.
   */
  stalledStreamTimeoutMs: number;
  /** Streams the visitor may cancel before a response completes: burst, then per second. */
  cancelBurst: number;
  cancelPerSecond: number;
  /** PING and SETTINGS frames a visitor may send: burst, then per second (each kind). */
  controlBurst: number;
  controlPerSecond: number;
}

/** Defaults: relay/config.ts (RELAY_DEFAULTS.http2). */
export const DEFAULT_H2_LIMITS: Readonly<H2Limits> = RELAY_DEFAULTS.http2;

/** Per-stream receive window the relay grants visitors (uploads), like the mux window. */
const STREAM_WINDOW_BYTES = 256 * 1024;
/** Connection receive window: bounds what one visitor connection can have buffered here. */
const SESSION_WINDOW_BYTES = 4 * 1024 * 1024;
/** Largest request body the apex (admin API) takes over h2. */
const APEX_BODY_LIMIT_BYTES = 1024 * 1024;

/** One visitor request on an h2 stream, with an IncomingMessage-shaped view of it. */
export interface H2Request {
  stream: ServerHttp2Stream;
  /** The visitor's TLS socket (its address, its SNI). */
  socket: TLSSocket;
  /** The request as the h1 code reads it: `Host` from :authority, cookies joined. */
  message: IncomingMessage;
  /** Set when the request is malformed in a way only h2 can be (checked before the guard). */
  problem: ErrorPage | undefined;
}

/** A token bucket: `take()` is false once the burst is spent faster than the refill. */
class Budget {
  private tokens: number;
  private at: number;
  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
    private readonly clock: Clock,
  ) {
    this.tokens = burst;
    this.at = clock.now();
  }
  take(): boolean {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.perSecond);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}

export interface H2Edge {
  /** Takes over a TLS socket whose ALPN chose h2. */
  attach(socket: TLSSocket): void;
  /** Sessions open now. */
  readonly sessions: ReadonlySet<ServerHttp2Session>;
  /** GOAWAY to every session: no new streams, running ones finish. */
  close(): void;
  /** Ends every session now. */
  destroyAll(): void;
}

/**
 * Makes the h2 side of the HTTPS listener. `onRequest` gets each stream once its
 * headers are complete; it answers with sendH2Error / forwardH2Request / serveApexH2.
 */
export function createH2Edge(options: {
  limits?: Partial<H2Limits>;
  onRequest: (req: H2Request) => void;
  onSessionError?: (err: Error) => void;
  /**
   * Time for the sessions' first-request and idle timeouts and the flood budgets.
   * Default the real clock.
   */
  clock?: Clock;
}): H2Edge {
  const limits: H2Limits = { ...DEFAULT_H2_LIMITS, ...options.limits };
  const clock = options.clock ?? realClock;
  const sessions = new Set<ServerHttp2Session>();
  // The TLS socket under each session (session.socket is a proxy that refuses end()).
  const sockets = new WeakMap<ServerHttp2Session, TLSSocket>();
  let pendingSocket: TLSSocket | undefined;
  const server: Http2Server = http2.createServer({
    settings: {
      enablePush: false,
      maxConcurrentStreams: limits.maxConcurrentStreams,
      maxHeaderListSize: limits.maxHeaderListBytes,
      initialWindowSize: STREAM_WINDOW_BYTES,
    },
    maxHeaderListPairs: limits.maxHeaderPairs,
    // At most this many PINGs and SETTINGS of ours unacknowledged; nghttp2 also ends
    // a session whose peer lets our ACKs pile up (it never reads).
    maxOutstandingPings: 10,
    maxSettings: 32,
    // Memory nghttp2 may hold per session (header tables, queued frames) before it
    // refuses new streams with ENHANCE_YOUR_CALM.
    maxSessionMemory: 16,
  });

  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    if (pendingSocket !== undefined) sockets.set(session, pendingSocket);
    const socket = session.socket as TLSSocket;
    session.setLocalWindowSize(SESSION_WINDOW_BYTES);
    let calmed = false;
    const calm = (why: string): void => {
      if (calmed) return;
      calmed = true;
      options.onSessionError?.(new Error(`h2 visitor connection closed: ${why}`));
      if (!session.destroyed) {
        // GOAWAY, then the connection ends once that frame is flushed (destroy() at once
        // would drop it from the TLS socket's queue).
        session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
        const socket = sockets.get(session);
        if (socket !== undefined) setImmediate(() => socket.end());
        clock.setTimeout(() => session.destroy(), 1_000).unref();
      }
    };
    const cancels = new Budget(limits.cancelBurst, limits.cancelPerSecond, clock);
    const pings = new Budget(limits.controlBurst, limits.controlPerSecond, clock);
    const settings = new Budget(limits.controlBurst, limits.controlPerSecond, clock);
    session.on('ping', () => {
      if (!pings.take()) calm('PING flood');
    });
    session.on('remoteSettings', () => {
      if (!settings.take()) calm('SETTINGS flood');
    });

    // A session must produce a request soon after it began, and goes once idle.
    let open = 0;
    let timer: ClockTimer | undefined = clock
      .setTimeout(() => session.destroy(), limits.firstRequestTimeoutMs)
      .unref();
    const idle = (): void => {
      clock.clearTimeout(timer);
      timer = clock.setTimeout(() => session.close(), limits.idleTimeoutMs).unref();
    };

    session.on(
      'stream',
      (stream: ServerHttp2Stream, headers: H2Headers, _flags: number, raw: unknown) => {
        stream.on('error', () => {}); // a reset or a broken socket: 'close' does the rest
        open++;
        clock.clearTimeout(timer);
        timer = undefined;
        stream.once('close', () => {
          // Reset before our response head went out (rapid reset costs us a tunnel
          // stream each time): budgeted per session. ('finish' is no sign of an answer:
          // a reset ends the writable side too.)
          if (
            !stream.headersSent &&
            stream.rstCode !== constants.NGHTTP2_NO_ERROR &&
            !cancels.take()
          ) {
            calm('too many cancelled streams');
          }
          if (--open === 0 && !session.destroyed) idle();
        });
        // Slow read: response bytes wait for a visitor that does not open its window.
        stream.setTimeout(limits.stalledStreamTimeoutMs, () => {
          if (stream.bufferSize > 0 || stream.writableLength > 0) {
            stream.close(constants.NGHTTP2_CANCEL);
          }
        });
        options.onRequest(h2Request(stream, headers, raw as unknown as string[], socket));
      },
    );
    session.on('error', (err) => options.onSessionError?.(err));
    session.once('close', () => {
      clock.clearTimeout(timer);
      sessions.delete(session);
    });
  });

  return {
    attach(socket) {
      pendingSocket = socket;
      server.emit('connection', socket);
      pendingSocket = undefined;
    },
    sessions,
    close() {
      for (const s of sessions) if (!s.closed) s.close();
    },
    destroyAll() {
      for (const s of sessions) s.destroy();
    },
  };
}

/**
 * Routes the HTTPS listener's connections by ALPN: h2 to `edge`, everything else to
 * the HTTPS server's own HTTP/1.1 handling (its 'secureConnection' listener).
 */
export function routeAlpn(server: TlsServer, edge: H2Edge): void {
  const listeners = server.listeners('secureConnection') as ((socket: TLSSocket) => void)[];
  const h1 = listeners[0];
  if (h1 === undefined) throw new Error('the HTTPS server has no HTTP/1.1 connection listener');
  server.removeListener('secureConnection', h1);
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    if (socket.alpnProtocol === 'h2') edge.attach(socket);
    else h1.call(server, socket);
  });
}

/** Builds the h1-shaped view of a stream and spots what is malformed only in h2. */
function h2Request(
  stream: ServerHttp2Stream,
  headers: H2Headers,
  raw: string[],
  socket: TLSSocket,
): H2Request {
  const authority = headers[':authority'];
  let problem: ErrorPage | undefined;
  const bad = (detail: string): ErrorPage => ({
    status: 400,
    title: 'Bad Request',
    detail,
    hint: 'This request was refused by the relay before reaching any tunnel.',
  });
  // RFC 9113 §8.3.1: with both, Host must name what :authority names. One value, the
  // authority, decides routing from here on; the h1 guard then sees exactly one Host.
  const rawHeaders: string[] = [];
  let host: string | undefined = typeof authority === 'string' ? authority : undefined;
  let hosts = 0;
  const cookies: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (name.startsWith(':')) continue;
    if (name === 'host') {
      hosts++;
      if (host === undefined) host = value;
      else if (normalizeHost(value) !== normalizeHost(host)) {
        problem ??= bad('the Host header names another host than :authority');
      }
      continue;
    }
    // RFC 9113 §8.2.3: cookie crumbs become one field again for HTTP/1.1.
    if (name === 'cookie') {
      cookies.push(value);
      continue;
    }
    rawHeaders.push(name, value);
  }
  if (hosts > 1) problem ??= bad('more than one Host header');
  if (host === undefined) problem ??= bad('the request names no :authority');
  if (headers[':method'] === 'CONNECT') problem ??= pages.connectRefused();
  if (cookies.length > 0) rawHeaders.push('cookie', cookies.join('; '));
  if (host !== undefined) rawHeaders.unshift('host', host);
  const object: IncomingHttpHeaders = {};
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const prev = object[name];
    if (name === 'set-cookie') continue; // never in a request
    object[name] =
      prev === undefined ? rawHeaders[i + 1]! : `${String(prev)}, ${rawHeaders[i + 1]!}`;
  }
  const path = headers[':path'];
  const message = {
    method: headers[':method'] ?? 'GET',
    url: typeof path === 'string' ? path : '',
    httpVersion: '2.0',
    httpVersionMajor: 2,
    httpVersionMinor: 0,
    headers: object,
    rawHeaders,
    socket,
  } as unknown as IncomingMessage;
  return { stream, socket, message, problem };
}

/** Writes an error page on an h2 stream (or resets it if a response already began). */
export function sendH2Error(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  page: ErrorPage,
): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  const { type, body } = renderErrorBody(page, (headers.accept ?? '').includes('text/html'));
  const out: OutgoingHttpHeaders = {
    ':status': page.status,
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-quick-tunnel-error': String(page.status),
  };
  for (const [k, v] of Object.entries(page.headers ?? {})) {
    if (k.toLowerCase() !== 'connection') out[k.toLowerCase()] = v;
  }
  stream.respond(out);
  stream.end(body);
  // Whatever body the visitor still sends is read and dropped, as h1 does.
  stream.resume();
}

/**
 * Response headers for h2: lowercase names, repeated fields as arrays, hop-by-hop and
 * connection-specific fields gone (h2 forbids them). Throws on what h2 refuses.
 */
function h2ResponseHeaders(head: ResponseHead): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':status': head.status };
  for (const [name, value] of endToEndHeaders(flattenHeaders(head.headers))) {
    const lower = name.toLowerCase();
    const prev = out[lower];
    if (prev === undefined) out[lower] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[lower] = [String(prev), value];
  }
  return out;
}

/**
 * The HTTP/2 side of an exchange. A class for the same reason as H1Visitor in proxy.ts:
 * no per-request getters and closures (an object literal with getters is built in
 * dictionary mode).
 */
class H2Visitor implements VisitorSide {
  readonly method: string | undefined;
  readonly closedReason = 'visitor closed the stream';
  constructor(
    readonly body: ServerHttp2Stream,
    private readonly message: H2Request['message'],
  ) {
    this.method = message.method;
  }
  noBody(): boolean {
    return this.body.readableEnded || this.body.endAfterHeaders;
  }
  get headersSent(): boolean {
    return this.body.headersSent;
  }
  get finished(): boolean {
    return this.body.writableFinished;
  }
  respond(meta: ResponseHead): boolean {
    try {
      this.body.respond(h2ResponseHeaders(meta));
      return true;
    } catch {
      return false; // a field h2 refuses
    }
  }
  // A HEAD response announces its length but carries no bytes.
  write(chunk: Buffer): boolean {
    return this.method === 'HEAD' || this.body.write(chunk);
  }
  end(): void {
    this.body.end();
  }
  sendPage(page: ErrorPage): void {
    sendH2Error(this.body, this.message.headers, page);
  }
  // Mid-response: a reset, so a truncated body never looks complete.
  abort(): void {
    this.body.close(constants.NGHTTP2_INTERNAL_ERROR);
  }
  on(event: 'drain' | 'finish' | 'close', listener: () => void): void {
    if (event === 'drain') this.body.on('drain', listener);
    else this.body.once(event, listener);
  }
}

/**
 * Forwards one h2 stream over a tunnel stream (relay/edge/forward.ts): the request body
 * with the visitor's window opened only as the tunnel stream drains (pipe pauses the h2
 * stream, and Node credits the visitor only for bytes read), the response with the
 * tunnel stream paused while the visitor's window is shut.
 */
export function forwardH2Request(req: H2Request, session: MuxSession, ctx: ForwardContext): void {
  const { stream, message } = req;
  const head = buildRequestHead(message, ctx.scheme, false, ctx.stripAuthorization === true);
  forwardExchange(new H2Visitor(stream, message), head, session, ctx);
}

/**
 * The apex (admin API, /healthz) over h2: the request is collected (up to 1 MiB) and
 * run through the admin app with `inject`, whose answers are small and not streamed.
 */
export async function serveApexH2(req: H2Request, app: FastifyInstance): Promise<void> {
  const { stream, message } = req;
  const chunks: Buffer[] = [];
  let size = 0;
  if (!stream.endAfterHeaders) {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > APEX_BODY_LIMIT_BYTES) {
        sendH2Error(stream, message.headers, {
          status: 413,
          title: 'Content Too Large',
          detail: 'The relay API takes request bodies of at most 1 MiB.',
          hint: 'Send a smaller request.',
        });
        return;
      }
      chunks.push(chunk);
    }
  }
  const res = await app.inject({
    method: message.method as 'GET',
    url: message.url ?? '/',
    headers: message.headers as Record<string, string>,
    payload: Buffer.concat(chunks),
    remoteAddress: req.socket.remoteAddress ?? '',
  });
  if (stream.destroyed || stream.closed) return;
  const out: OutgoingHttpHeaders = { ':status': res.statusCode };
  for (const [name, value] of Object.entries(res.headers)) {
    const lower = name.toLowerCase();
    if (value === undefined || lower === 'connection' || lower === 'keep-alive') continue;
    if (lower === 'transfer-encoding') continue;
    out[lower] = value;
  }
  stream.respond(out);
  stream.end(res.rawPayload);
}
