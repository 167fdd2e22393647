/**
 * The CLI's own HTTP/1.1 client to the origin (http or https), for every request and
 * upgrade. Node's http.request costs a ClientRequest, an agent lookup, an
 * IncomingMessage stream and a dozen listeners added and removed per request; here a
 * pooled connection keeps its listeners for life and a body-less request is one write
 * and a parser callback per read. Measured on the 2-core VM: see the commits that
 * added it and request bodies.
 *
 * Request bodies are framed as Node frames them: by the Content-Length header when
 * there is one, else chunked (a `Transfer-Encoding: chunked` header is added unless the
 * method is one Node sends without a body by default). A connection is reused only
 * when both the request and the response went through in full; a response that ends
 * before the request body does closes the connection.
 *
 * An upgrade runs on a new connection: a 101 hands the socket over (the bytes after its
 * head first), any other answer is read as usual and the connection closed after it.
 * http1-client.ts puts this client behind the OriginClient interface. Over 500 lines:
 * one connection, one request and the pool share their state closely; split, each
 * would expose the others'.
 *
 * Pooling follows Node's agent: idle connections are reused most recent first, closed
 * after `idleTimeoutMs` or the server's `Keep-Alive: timeout=N` hint less a second,
 * and at most `maxIdle` are kept.
 */
import { IdTable } from '../../shared/id-table.js';
import type { HeaderPairs } from '../../shared/protocol/tunnel.js';
import {
  connectOrigin,
  type OriginSocket,
  type OriginSocketOptions,
} from './early-answer-socket.js';
import { ResponseParseError, ResponseParser, type ParsedResponseHead } from './response-parser.js';

/**
 * What one request reports back, in order: [onConnect], then onHead, onBody*,
 * onComplete | onError, or (an upgrade) onUpgrade.
 */
export interface Http1Sink {
  /** A new connection was made for this request and is now connected (and secured). */
  onConnect(socket: OriginSocket): void;
  onHead(head: ParsedResponseHead): void;
  /** The origin switched protocols (101): `socket` is the caller's now. */
  onUpgrade?(head: ParsedResponseHead, socket: OriginSocket): void;
  onBody(chunk: Buffer): void;
  onComplete(): void;
  /** `responseStarted`: some response bytes had arrived. Not called after `destroy()`. */
  onError(err: Error, responseStarted: boolean): void;
}

export interface Http1PoolOptions extends OriginSocketOptions {
  idleTimeoutMs: number;
  /** Idle connections kept; more are closed. Default 256 (Node's agent default). */
  maxIdle?: number;
  maxHeaderBytes: number;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/**
 * Body slices of one socket read below this size on average are passed on as one buffer
 * (Http1Connection.passBody); the tunnel stream frames writes below it together anyway
 * (shared/mux/stream.ts gathers slices under 16 KiB into one DATA frame).
 */
const SMALL_SLICE_BYTES = 16 * 1024;
/** What Node refuses in a request path (ERR_UNESCAPED_CHARACTERS). */
const BAD_PATH = /[^\u0021-\u00ff]/;
/** What Node refuses in a header value (ERR_INVALID_CHAR). */
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
/** Methods Node sends without a body (no chunked encoding) unless a header frames one. */
const NO_BODY_BY_DEFAULT = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);

/** How the request body is delimited: not at all, by Content-Length, or chunked. */
type BodyFraming = { kind: 'none' } | { kind: 'length'; bytes: number } | { kind: 'chunked' };

const CHUNK_END = Buffer.from('\r\n', 'latin1');
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

/** A request Node's ClientRequest would refuse: `code` is Node's for it. */
function invalid(code: string, message: string): never {
  throw Object.assign(new Error(message), { code });
}

/**
 * The request head as written, validated as Node's ClientRequest would, and how the
 * body that follows it is framed (an upgrade, `upgrade` being its protocol: none).
 */
function requestHead(
  method: string,
  path: string,
  headers: HeaderPairs,
  upgrade: string | undefined,
): { head: string; framing: BodyFraming } {
  if (!TOKEN.test(method)) {
    invalid('ERR_INVALID_HTTP_TOKEN', `Method must be a valid HTTP token ["${method}"]`);
  }
  if (BAD_PATH.test(path)) {
    invalid('ERR_UNESCAPED_CHARACTERS', 'Request path contains unescaped characters');
  }
  let head = `${method} ${path} HTTP/1.1\r\n`;
  let length: string | undefined;
  let chunked = false;
  let encoded = false;
  for (const [name, value] of headers) {
    if (!TOKEN.test(name)) {
      invalid('ERR_INVALID_HTTP_TOKEN', `Header name must be a valid HTTP token ["${name}"]`);
    }
    if (BAD_VALUE.test(value)) {
      invalid('ERR_INVALID_CHAR', `Invalid character in header content ["${name}"]`);
    }
    const lower = name.toLowerCase();
    // An upgrade's Connection and Upgrade headers are written below, once.
    if (upgrade !== undefined && (lower === 'connection' || lower === 'upgrade')) continue;
    head += `${name}: ${value}\r\n`;
    if (lower === 'content-length') length = value;
    else if (lower === 'transfer-encoding') {
      encoded = true;
      chunked = /(?:^|,)[ \t]*chunked[ \t]*$/i.test(value);
    }
  }
  let framing: BodyFraming;
  if (chunked) framing = { kind: 'chunked' };
  else if (length !== undefined && !encoded) {
    const bytes = /^[ \t]*\d{1,15}[ \t]*$/.test(length) ? Number(length) : NaN;
    if (Number.isNaN(bytes)) {
      invalid('ERR_INVALID_CONTENT_LENGTH', `Invalid Content-Length ["${length}"]`);
    }
    framing = bytes === 0 ? { kind: 'none' } : { kind: 'length', bytes };
  } else if (encoded || upgrade !== undefined || NO_BODY_BY_DEFAULT.has(method.toUpperCase())) {
    framing = { kind: 'none' };
  } else {
    head += 'Transfer-Encoding: chunked\r\n';
    framing = { kind: 'chunked' };
  }
  if (upgrade === undefined) {
    // As Node's keep-alive agent sends it: HTTP/1.0-minded servers need it to keep the socket.
    return { head: `${head}Connection: keep-alive\r\n\r\n`, framing };
  }
  if (BAD_VALUE.test(upgrade)) {
    invalid('ERR_INVALID_CHAR', 'Invalid character in header content ["Upgrade"]');
  }
  return { head: `${head}Connection: Upgrade\r\nUpgrade: ${upgrade}\r\n\r\n`, framing };
}

function hangUp(): Error {
  return Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
}

/**
 * One request on one connection. Its body is written with `write()` and `end()` (the
 * part of a Writable that http1-client.ts's pipeBody uses, 'drain' included); a request
 * without a body is complete once sent.
 */
export class Http1Request {
  /** The connection served a request before this one. */
  readonly reused: boolean;
  private readonly connection: Http1Connection;
  /** @internal */ readonly sink: Http1Sink;
  private readonly framing: BodyFraming;
  private done = false;
  /** Body bytes written so far. */
  private bodyBytes = 0;
  private bodyEnded: boolean;
  private drainListener: (() => void) | undefined;

  /** @internal */
  constructor(connection: Http1Connection, sink: Http1Sink, reused: boolean, framing: BodyFraming) {
    this.connection = connection;
    this.sink = sink;
    this.reused = reused;
    this.framing = framing;
    this.bodyEnded = framing.kind === 'none';
  }

  /**
   * The whole request, body included, has been handed to the socket (for a
   * Content-Length body: all its bytes, whether or not `end()` came yet).
   */
  get sent(): boolean {
    return this.framing.kind === 'length' ? this.bodyBytes === this.framing.bytes : this.bodyEnded;
  }

  /**
   * Writes body bytes; false when the socket is full ('drain' follows). Bytes for a
   * request that already ended (answered, failed, abandoned) are dropped.
   */
  write(chunk: Buffer): boolean {
    const { connection } = this;
    if (this.done || this.bodyEnded || chunk.length === 0 || connection.writeFailed) return true;
    const { socket } = connection;
    if (this.framing.kind === 'length') {
      if (this.bodyBytes + chunk.length > this.framing.bytes) {
        this.destroy(new Error('the request body is longer than its Content-Length'));
        return true;
      }
      this.bodyBytes += chunk.length;
      return socket.write(chunk);
    }
    if (this.framing.kind === 'none') return true;
    this.bodyBytes += chunk.length;
    socket.cork();
    socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
    socket.write(chunk);
    const ok = socket.write(CHUNK_END);
    socket.uncork();
    return ok;
  }

  /** A write of this request failed (the origin closed); what is sent since is dropped. */
  get writeFailed(): boolean {
    return this.connection.writeFailed;
  }

  /** The body is complete. */
  end(): void {
    if (this.done || this.bodyEnded) return;
    this.bodyEnded = true;
    if (this.framing.kind === 'chunked' && !this.connection.writeFailed) {
      this.connection.socket.write(LAST_CHUNK);
    }
  }

  once(event: 'drain', listener: () => void): this {
    this.drainListener = listener;
    return this;
  }

  /** @internal the socket drained. */
  drained(): void {
    const listener = this.drainListener;
    this.drainListener = undefined;
    listener?.();
  }

  /** Still waiting for the TCP connection. */
  get connecting(): boolean {
    return this.connection.socket.connecting;
  }

  /** The response arrived in full (or the request ended otherwise). */
  get finished(): boolean {
    return this.done;
  }

  pause(): void {
    if (!this.done) this.connection.socket.pause();
  }

  resume(): void {
    if (!this.done) this.connection.socket.resume();
  }

  /** Abandons the request and its connection; with `err`, reports it to the sink first. */
  destroy(err?: Error): void {
    if (this.done) return;
    const started = !this.connection.parser.untouched;
    this.connection.abandon(this);
    if (err !== undefined) this.sink.onError(err, started);
  }

  /** @internal the connection is done with this request. */
  close(): void {
    this.done = true;
    this.drainListener = undefined;
  }
}

/**
 * @internal One keep-alive connection, running one request at a time.
 *
 * A write error does not end it at once (early-answer-socket.ts): an origin that
 * answers before it has read the request body (a 413 for an upload) and closes still
 * gets its answer read; the end of the connection or a read error is handled as usual.
 */
class Http1Connection {
  /** Unique within its pool. */
  readonly id: number;
  readonly socket: OriginSocket;
  readonly parser: ResponseParser;
  private readonly pool: Http1Pool;
  private current: Http1Request | undefined;
  private keepAlive = false;
  private idleMs = 0;
  /** The current response completed inside the `execute` now running. */
  private completedInExecute = false;
  /** The 101 an upgrade got, inside the `execute` now running. */
  private switched: ParsedResponseHead | undefined;
  /** Body slices of the `execute` now running, passed on when it returns (passBody). */
  private slices: Buffer[] = [];
  private sliceBytes = 0;
  /** Ours on the socket, removed when an upgrade hands it over. */
  private readonly listeners: [string, (arg: unknown) => void][] = [
    ['data', (chunk) => this.onData(chunk as Buffer)],
    ['end', () => this.onEnd()],
    ['error', (err) => this.onClosed(err as Error)],
    ['close', () => this.onClosed(undefined)],
    [
      'timeout',
      () => {
        if (this.current === undefined) this.socket.destroy();
      },
    ],
    ['drain', () => this.current?.drained()],
  ];

  constructor(pool: Http1Pool, socket: OriginSocket, maxHeaderBytes: number, id: number) {
    this.id = id;
    this.pool = pool;
    this.socket = socket;
    this.parser = new ResponseParser(
      {
        onHead: (head) => {
          if (head.status === 101) {
            this.switched = head;
            return;
          }
          this.keepAlive = head.keepAlive;
          this.idleMs = pool.idleTimeoutFor(head.keepAliveTimeoutMs);
          this.current?.sink.onHead(head);
        },
        onBody: (chunk) => {
          this.slices.push(chunk);
          this.sliceBytes += chunk.length;
        },
        onComplete: () => {
          this.completedInExecute = true;
        },
      },
      { maxHeaderBytes },
    );
    for (const [event, listener] of this.listeners) socket.on(event, listener);
  }

  assign(request: Http1Request, method: string, head: string, upgrade: boolean): void {
    this.current = request;
    this.keepAlive = false;
    this.parser.expect(method, upgrade);
    this.socket.write(head, 'latin1');
  }

  get writeFailed(): boolean {
    return this.socket.writeFailed === true;
  }

  /** The request this connection runs now reports to `sink`. */
  serving(sink: Http1Sink): boolean {
    return this.current?.sink === sink;
  }

  abandon(request: Http1Request): void {
    if (this.current !== request) return;
    this.current = undefined;
    request.close();
    this.parser.reset();
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    const request = this.current;
    if (request === undefined) {
      // Bytes nobody asked for on an idle connection: it cannot be trusted any more.
      this.socket.destroy();
      return;
    }
    this.completedInExecute = false;
    let used: number;
    try {
      used = this.parser.execute(chunk);
    } catch (err) {
      this.passBody(request);
      if (this.current === request) this.fail(request, err as Error);
      return;
    }
    this.passBody(request);
    if (this.switched !== undefined) {
      this.handOver(request, this.switched, chunk.subarray(used));
      return;
    }
    if (!this.completedInExecute || this.current !== request) return;
    // Bytes after the end of the response: the server is out of step with us.
    this.complete(request, used === chunk.length);
  }

  /**
   * Hands `request`'s sink the body slices of one `execute` (one socket read). Small
   * ones go as one buffer: an origin that writes 1 KiB chunks puts ~60 in a read, and
   * each would be a write into the tunnel stream of its own (CLI CPU per GiB of such a
   * download: see the commit that added this). One slice, or large ones, go as they are,
   * uncopied.
   */
  private passBody(request: Http1Request): void {
    const slices = this.slices;
    const n = slices.length;
    if (n === 0) return;
    const bytes = this.sliceBytes;
    this.sliceBytes = 0;
    if (n === 1 || bytes < n * SMALL_SLICE_BYTES) {
      const body = n === 1 ? slices[0]! : Buffer.concat(slices, bytes);
      slices.length = 0;
      if (this.current === request) request.sink.onBody(body);
      return;
    }
    this.slices = [];
    for (const slice of slices) {
      if (this.current !== request) return;
      request.sink.onBody(slice);
    }
  }

  private onEnd(): void {
    const request = this.current;
    if (request === undefined) {
      this.socket.destroy();
      return;
    }
    this.completedInExecute = false;
    try {
      this.parser.finish();
    } catch (err) {
      this.fail(request, err as Error);
      return;
    }
    if (this.completedInExecute) this.complete(request, false);
    else this.socket.destroy();
  }

  private onClosed(err: Error | undefined): void {
    this.pool.forget(this);
    const request = this.current;
    if (request === undefined) return;
    this.fail(request, err ?? (this.parser.untouched ? hangUp() : prematureClose()));
  }

  private complete(request: Http1Request, reusable: boolean): void {
    this.current = undefined;
    request.close();
    // A response that ended before the request body did: the rest of the body is not
    // wanted, and the connection cannot carry another request after half a body.
    const sent = request.sent && !this.socket.writeFailed;
    if (reusable && sent && this.keepAlive && this.idleMs > 0 && !this.socket.destroyed) {
      // The request may have paused the socket for backpressure and will not resume it.
      if (this.socket.isPaused()) this.socket.resume();
      this.pool.release(this, this.idleMs);
    } else {
      this.socket.destroy();
    }
    request.sink.onComplete();
  }

  /** An upgrade was accepted: the socket, with what followed the 101, is the caller's. */
  private handOver(request: Http1Request, head: ParsedResponseHead, rest: Buffer): void {
    const { socket } = this;
    this.current = undefined;
    request.close();
    this.pool.forget(this);
    for (const [event, listener] of this.listeners) socket.off(event, listener);
    socket.pause();
    if (rest.length > 0) socket.unshift(rest);
    request.sink.onUpgrade!(head, socket);
  }

  private fail(request: Http1Request, err: Error): void {
    const started = !this.parser.untouched;
    this.current = undefined;
    request.close();
    this.parser.reset();
    this.socket.destroy();
    request.sink.onError(err, started);
  }
}

function prematureClose(): Error {
  return new ResponseParseError('ECONNRESET', 'the connection closed before the body was complete');
}

export class Http1Pool {
  private readonly options: Http1PoolOptions;
  private readonly maxIdle: number;
  /** Idle connections, most recently used last. */
  private readonly idle: Http1Connection[] = [];
  /** Every open connection: one per request for an origin that closes after each. */
  private readonly all = new IdTable<Http1Connection>();
  private nextConnectionId = 1;
  private closed = false;

  constructor(options: Http1PoolOptions) {
    this.options = options;
    this.maxIdle = options.maxIdle ?? 256;
  }

  /**
   * Sends a request head; its body, if the headers frame one, follows with the returned
   * request's `write()` and `end()`. Throws (before any I/O) when the method, path or a
   * header is not valid HTTP; everything later is reported to `sink`. `fresh`: on a
   * new connection, not a pooled one (the retry after a pooled one failed), as is
   * every `upgrade` (the protocol asked for; the sink must take `onUpgrade`).
   */
  request(
    method: string,
    path: string,
    headers: HeaderPairs,
    sink: Http1Sink,
    options: { fresh?: boolean; upgrade?: string | undefined } = {},
  ): Http1Request {
    const { upgrade } = options;
    const { head, framing } = requestHead(method, path, headers, upgrade);
    let connection = options.fresh === true || upgrade !== undefined ? undefined : this.idle.pop();
    while (connection !== undefined && connection.socket.destroyed) connection = this.idle.pop();
    const reused = connection !== undefined;
    if (connection === undefined) connection = this.connect(sink);
    else connection.socket.setTimeout(0).ref();
    const request = new Http1Request(connection, sink, reused, framing);
    connection.assign(request, method, head, upgrade !== undefined);
    return request;
  }

  /** Closes every idle connection (one was found dead: its siblings likely are too). */
  dropIdle(): void {
    for (const connection of this.idle.splice(0)) connection.socket.destroy();
  }

  /** Closes every connection, idle or not. */
  close(): void {
    this.closed = true;
    this.idle.length = 0;
    for (const connection of this.all.values()) connection.socket.destroy();
    this.all.clear();
  }

  /** Connections open now (idle or busy). */
  get size(): number {
    return this.all.size;
  }

  /** @internal how long a connection may idle, given the server's hint. */
  idleTimeoutFor(hintMs: number | undefined): number {
    const ms = this.options.idleTimeoutMs;
    // Node's agent keeps a socket 1 s less than the server says it will.
    return hintMs === undefined ? ms : Math.min(ms, hintMs - 1000);
  }

  /** @internal */
  release(connection: Http1Connection, idleMs: number): void {
    if (this.closed || this.idle.length >= this.maxIdle) {
      connection.socket.destroy();
      return;
    }
    // As Node's agent: an idle connection does not keep the process alive.
    connection.socket.setTimeout(idleMs);
    connection.socket.unref();
    this.idle.push(connection);
  }

  /** @internal */
  forget(connection: Http1Connection): void {
    this.all.delete(connection.id);
    const at = this.idle.indexOf(connection);
    if (at >= 0) this.idle.splice(at, 1);
  }

  private connect(sink: Http1Sink): Http1Connection {
    const socket = connectOrigin(this.options);
    const connection = new Http1Connection(
      this,
      socket,
      this.options.maxHeaderBytes,
      this.nextConnectionId++,
    );
    this.all.set(connection.id, connection);
    if (this.closed) socket.destroy();
    socket.once(this.options.tls === undefined ? 'connect' : 'secureConnect', () => {
      if (connection.serving(sink)) sink.onConnect(socket);
    });
    return connection;
  }
}
