/**
 * The CLI's own HTTP/1.1 client for plain-http origins, used for requests without a
 * body (most of a page load: documents, assets, API GETs). Node's http.request costs
 * a ClientRequest, an agent lookup, an IncomingMessage stream and a dozen listeners
 * added and removed per request; here a pooled connection keeps its listeners for
 * life and a request is one write and a parser callback per read. Measured on the
 * 2-core VM: see the commit that added it.
 *
 * Everything else (request bodies, upgrades, https origins, the one-off connection of
 * a retry) still goes through http.request in proxy.ts.
 *
 * Pooling follows Node's agent: idle connections are reused most recent first, closed
 * after `idleTimeoutMs` or the server's `Keep-Alive: timeout=N` hint less a second,
 * and at most `maxIdle` are kept.
 */
import net, { type LookupFunction, type Socket } from 'node:net';
import type { HeaderPairs } from '../../shared/protocol/tunnel.js';
import { ResponseParseError, ResponseParser, type ParsedResponseHead } from './response-parser.js';

/** What one request reports back, in order: [onConnect], onHead, onBody*, onComplete | onError. */
export interface Http1Sink {
  /** A new connection was made for this request and is now connected. */
  onConnect(socket: Socket): void;
  onHead(head: ParsedResponseHead): void;
  onBody(chunk: Buffer): void;
  onComplete(): void;
  /** `responseStarted`: some response bytes had arrived. Not called after `destroy()`. */
  onError(err: Error, responseStarted: boolean): void;
}

export interface Http1PoolOptions {
  host: string;
  port: number;
  lookup?: LookupFunction;
  autoSelectFamily?: boolean;
  idleTimeoutMs: number;
  /** Idle connections kept; more are closed. Default 256 (Node's agent default). */
  maxIdle?: number;
  maxHeaderBytes: number;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** What Node refuses in a request path (ERR_UNESCAPED_CHARACTERS). */
const BAD_PATH = /[^\u0021-\u00ff]/;
/** What Node refuses in a header value (ERR_INVALID_CHAR). */
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

class InvalidRequestError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

/** The request head as written, validated as Node's ClientRequest would. */
function requestHead(method: string, path: string, headers: HeaderPairs): string {
  if (!TOKEN.test(method)) {
    throw new InvalidRequestError(
      'ERR_INVALID_HTTP_TOKEN',
      `Method must be a valid HTTP token ["${method}"]`,
    );
  }
  if (BAD_PATH.test(path)) {
    throw new InvalidRequestError(
      'ERR_UNESCAPED_CHARACTERS',
      'Request path contains unescaped characters',
    );
  }
  let head = `${method} ${path} HTTP/1.1\r\n`;
  for (const [name, value] of headers) {
    if (!TOKEN.test(name)) {
      throw new InvalidRequestError(
        'ERR_INVALID_HTTP_TOKEN',
        `Header name must be a valid HTTP token ["${name}"]`,
      );
    }
    if (BAD_VALUE.test(value)) {
      throw new InvalidRequestError(
        'ERR_INVALID_CHAR',
        `Invalid character in header content ["${name}"]`,
      );
    }
    head += `${name}: ${value}\r\n`;
  }
  // As Node's keep-alive agent sends it: HTTP/1.0-minded servers need it to keep the socket.
  return `${head}Connection: keep-alive\r\n\r\n`;
}

function hangUp(): Error {
  return Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
}

/** One request on one connection. */
export class Http1Request {
  /** The connection served a request before this one. */
  readonly reused: boolean;
  private readonly connection: Http1Connection;
  /** @internal */ readonly sink: Http1Sink;
  private done = false;

  /** @internal */
  constructor(connection: Http1Connection, sink: Http1Sink, reused: boolean) {
    this.connection = connection;
    this.sink = sink;
    this.reused = reused;
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
  end(): void {
    this.done = true;
  }
}

/** @internal One keep-alive connection, running one request at a time. */
class Http1Connection {
  readonly socket: Socket;
  readonly parser: ResponseParser;
  private readonly pool: Http1Pool;
  private current: Http1Request | undefined;
  private keepAlive = false;
  private idleMs = 0;
  /** The current response completed inside the `execute` now running. */
  private completedInExecute = false;

  constructor(pool: Http1Pool, socket: Socket, maxHeaderBytes: number) {
    this.pool = pool;
    this.socket = socket;
    this.parser = new ResponseParser(
      {
        onHead: (head) => {
          this.keepAlive = head.keepAlive;
          this.idleMs = pool.idleTimeoutFor(head.keepAliveTimeoutMs);
          this.current?.sink.onHead(head);
        },
        onBody: (chunk) => this.current?.sink.onBody(chunk),
        onComplete: () => {
          this.completedInExecute = true;
        },
      },
      { maxHeaderBytes },
    );
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', (err) => this.onClosed(err));
    socket.on('close', () => this.onClosed(undefined));
    socket.on('timeout', () => {
      if (this.current === undefined) socket.destroy();
    });
  }

  assign(request: Http1Request, method: string, head: string): void {
    this.current = request;
    this.keepAlive = false;
    this.parser.expect(method);
    this.socket.write(head, 'latin1');
  }

  /** The request this connection runs now reports to `sink`. */
  serving(sink: Http1Sink): boolean {
    return this.current?.sink === sink;
  }

  abandon(request: Http1Request): void {
    if (this.current !== request) return;
    this.current = undefined;
    request.end();
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
      this.fail(request, err as Error);
      return;
    }
    if (!this.completedInExecute || this.current !== request) return;
    // Bytes after the end of the response: the server is out of step with us.
    this.complete(request, used === chunk.length);
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
    request.end();
    if (reusable && this.keepAlive && this.idleMs > 0 && !this.socket.destroyed) {
      // The request may have paused the socket for backpressure and will not resume it.
      if (this.socket.isPaused()) this.socket.resume();
      this.pool.release(this, this.idleMs);
    } else {
      this.socket.destroy();
    }
    request.sink.onComplete();
  }

  private fail(request: Http1Request, err: Error): void {
    const started = !this.parser.untouched;
    this.current = undefined;
    request.end();
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
  private readonly all = new Set<Http1Connection>();
  private closed = false;

  constructor(options: Http1PoolOptions) {
    this.options = options;
    this.maxIdle = options.maxIdle ?? 256;
  }

  /**
   * Sends a body-less request. Throws (before any I/O) when the method, path or a
   * header is not valid HTTP; everything later is reported to `sink`.
   */
  request(method: string, path: string, headers: HeaderPairs, sink: Http1Sink): Http1Request {
    const head = requestHead(method, path, headers);
    let connection = this.idle.pop();
    while (connection !== undefined && connection.socket.destroyed) connection = this.idle.pop();
    const reused = connection !== undefined;
    if (connection === undefined) connection = this.connect(sink);
    else connection.socket.setTimeout(0).ref();
    const request = new Http1Request(connection, sink, reused);
    connection.assign(request, method, head);
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
    for (const connection of this.all) connection.socket.destroy();
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
    this.all.delete(connection);
    const at = this.idle.indexOf(connection);
    if (at >= 0) this.idle.splice(at, 1);
  }

  private connect(sink: Http1Sink): Http1Connection {
    const { host, port, lookup, autoSelectFamily } = this.options;
    const socket = net.connect({
      host,
      port,
      noDelay: true,
      ...(lookup !== undefined ? { lookup } : {}),
      ...(autoSelectFamily !== undefined ? { autoSelectFamily } : {}),
    });
    const connection = new Http1Connection(this, socket, this.options.maxHeaderBytes);
    this.all.add(connection);
    if (this.closed) socket.destroy();
    socket.once('connect', () => {
      if (connection.serving(sink)) sink.onConnect(socket);
    });
    return connection;
  }
}
