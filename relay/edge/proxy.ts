/**
 * HTTP/1.1 visitors: the request head sent to the tunnel client (forwarding headers),
 * a request/response exchange (through relay/edge/forward.ts, shared with HTTP/2) and
 * a WebSocket upgrade, whose stream carries raw bytes after the origin's 101.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { realClock } from '../../shared/clock.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import {
  endToEndHeaders,
  flattenHeaders,
  isResponseHead,
  type HeaderPairs,
  type RequestHead,
  type ResponseHead,
} from '../../shared/protocol/tunnel.js';
import type { MuxSession } from '../../shared/mux/session.js';
import { closeSoon } from './connections.js';
import {
  forwardExchange,
  openStreamFor,
  pageForStreamError,
  responseHeadProblem,
  type ForwardContext,
  type VisitorSide,
} from './forward.js';
import { originForm } from './guard.js';
import { pages, sendError, sendRawError, type ErrorPage } from './pages.js';

export type { ForwardContext, ForwardResult } from './forward.js';

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

/** Whether a request carries a body (RFC 9112 §6.3: only with a length or a transfer coding). */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * The HTTP/1.1 side of an exchange. A class, not an object literal: V8 builds an object
 * literal with getters in dictionary mode (slow properties: a hash table and an accessor
 * pair per object, every read a lookup), and the literal cost ~10 closures per request.
 * As a literal it cost +40% relay CPU per small GET and +55 MiB relay RSS (bench e2e,
 * A/B of builds; /work/notes/r3/regress.md).
 */
class H1Visitor implements VisitorSide {
  readonly method: string | undefined;
  readonly closedReason = 'visitor closed the connection';
  /** Body writes of this turn are corked (uncorked on nextTick). */
  private bodyCorked = false;
  constructor(
    readonly body: IncomingMessage,
    private readonly res: ServerResponse,
  ) {
    this.method = body.method;
  }
  // HTTP/1.1 frames a request body only with Content-Length or Transfer-Encoding.
  noBody(): boolean {
    return this.body.readableEnded || !hasBody(this.body);
  }
  get headersSent(): boolean {
    return this.res.headersSent;
  }
  get finished(): boolean {
    return this.res.writableFinished;
  }
  respond(meta: ResponseHead): boolean {
    writeResponseHead(this.res, meta);
    return true;
  }
  // The frames of one tunnel message arrive in one go: their body writes leave as one
  // (uncorked before anything else runs, so a lone chunk is not held back).
  write(chunk: Buffer): boolean {
    if (!this.bodyCorked) {
      this.bodyCorked = true;
      this.res.cork();
      process.nextTick(uncorkBody, this);
    }
    return this.res.write(chunk);
  }
  end(): void {
    this.res.end();
  }
  sendPage(page: ErrorPage): void {
    sendError(this.res, this.body.headers, page);
  }
  abort(): void {
    this.res.destroy();
  }
  on(event: 'drain' | 'finish' | 'close', listener: () => void): void {
    if (event === 'drain') this.res.on('drain', listener);
    else this.res.once(event, listener);
  }
  /** @internal */
  uncork(): void {
    this.bodyCorked = false;
    this.res.uncork();
  }
}

function uncorkBody(visitor: H1Visitor): void {
  visitor.uncork();
}

/** Forwards a plain HTTP request/response pair over `session` (relay/edge/forward.ts). */
export function forwardRequest(
  req: IncomingMessage,
  res: ServerResponse,
  session: MuxSession,
  ctx: ForwardContext,
): void {
  const head = buildRequestHead(req, ctx.scheme, false, ctx.stripAuthorization === true);
  forwardExchange(new H1Visitor(req, res), head, session, ctx);
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
