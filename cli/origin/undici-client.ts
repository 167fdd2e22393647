/**
 * The OriginClient (client.ts) on undici 7: its HTTP/1.1 client (llhttp, request
 * validation, body framing and backpressure, keep-alive hints, 101 hand-over).
 *
 * Pooling is ours, on one undici `Client` per connection, because the proxy must know
 * whether a failed request ran on a reused connection (then the origin likely closed
 * it as we reused it, and the request is retried once on a fresh one) and which
 * loopback address answered: undici's Pool says neither. Idle connections are reused
 * most recent first, closed after `idleTimeoutMs` or the server's `Keep-Alive:
 * timeout=N` less a second (undici's keep-alive timer), at most `maxIdle` are kept,
 * and an idle connection does not keep the process alive.
 */
import { isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Client, buildConnector, type Dispatcher } from 'undici';
import { errnoCode } from '../../shared/errors.js';
import type { HeaderPairs } from '../../shared/protocol/tunnel.js';
import { connectOrigin, type OriginSocketOptions } from './early-answer-socket.js';
import type {
  AttemptInfo,
  OriginCall,
  OriginClient,
  OriginRequest,
  OriginResponseHead,
  ResponseSink,
  UpgradeSink,
} from './client.js';

export interface UndiciOriginClientOptions extends OriginSocketOptions {
  protocol: 'http' | 'https';
  /** https origins: verify the certificate (default true), against these CAs. */
  rejectUnauthorized?: boolean;
  ca?: (string | Buffer)[] | undefined;
  idleTimeoutMs: number;
  /** Idle connections kept; more are closed. Default 256 (Node's agent default). */
  maxIdle?: number;
  /** Every new connection, once connected. */
  onConnected?: (socket: Socket) => void;
}

/** Headers undici writes itself and refuses from callers (Expect: the relay answered it). */
const HOP_BY_HOP = new Set(['connection', 'upgrade', 'keep-alive', 'transfer-encoding', 'expect']);

/** One connection: an undici Client that runs one request at a time. */
interface Connection {
  readonly client: Client;
  /** Requests started on the current socket. */
  served: number;
  busy: boolean;
  /** The socket is open (undici's connect/disconnect events). */
  connected: boolean;
}

export class UndiciOriginClient implements OriginClient {
  private readonly options: UndiciOriginClientOptions;
  private readonly origin: string;
  private readonly servername: string;
  private readonly connector: buildConnector.connector;
  private readonly maxIdle: number;
  /** Idle connections, most recently used last. */
  private readonly idle: Connection[] = [];
  private readonly all = new Set<Connection>();
  private closed = false;

  constructor(options: UndiciOriginClientOptions) {
    this.options = options;
    this.maxIdle = options.maxIdle ?? 256;
    const host = options.hostname.includes(':') ? `[${options.hostname}]` : options.hostname;
    this.origin = `${options.protocol}://${host}:${options.port}`;
    this.servername = isIP(options.hostname) === 0 ? options.hostname : '';
    const { lookup, autoSelectFamilyAttemptTimeoutMs: attemptMs, ca } = options;
    this.connector =
      options.protocol === 'https'
        ? buildConnector({
            timeout: options.connectTimeoutMs,
            ...(lookup !== undefined ? { lookup } : {}),
            ...(attemptMs !== undefined
              ? { autoSelectFamily: true, autoSelectFamilyAttemptTimeout: attemptMs }
              : {}),
            rejectUnauthorized: options.rejectUnauthorized ?? true,
            ...(ca ? { ca } : {}),
          })
        : (_opts, callback) => {
            const socket = connectOrigin(options);
            const settle = (err: Error | null): void => {
              socket.off('error', settle);
              if (err === null) callback(null, socket);
              else callback(err, null);
            };
            return socket.once('connect', () => settle(null)).once('error', settle);
          };
  }

  request(request: OriginRequest, sink: ResponseSink): OriginCall {
    let connection = request.fresh === true ? undefined : this.idle.pop();
    while (connection !== undefined && !connection.connected) {
      this.drop(connection);
      connection = this.idle.pop();
    }
    return this.dispatch(connection ?? this.open(), request, undefined, sink);
  }

  upgrade(request: OriginRequest, protocol: string, sink: UpgradeSink): OriginCall {
    return this.dispatch(this.open(), request, protocol, sink);
  }

  dropIdle(): void {
    for (const connection of this.idle.splice(0)) this.drop(connection);
  }

  close(): void {
    this.closed = true;
    this.idle.length = 0;
    for (const connection of this.all) this.drop(connection);
  }

  private open(): Connection {
    const { idleTimeoutMs } = this.options;
    const connection: Connection = {
      client: new Client(this.origin, {
        connect: (opts, callback) =>
          this.connector(opts, (err, socket) => {
            if (err == null && socket != null) {
              connection.served = 0;
              this.options.onConnected?.(socket as Socket);
            }
            (callback as (err: Error | null, socket: Socket | null) => void)(err, socket as Socket);
          }),
        pipelining: 1,
        keepAliveTimeout: idleTimeoutMs,
        keepAliveMaxTimeout: idleTimeoutMs,
        // Node's agent keeps a socket 1 s less than the server says it will.
        keepAliveTimeoutThreshold: 1000,
        // Our own timers cover the response head; a body may idle (SSE, long polling).
        headersTimeout: 0,
        bodyTimeout: 0,
        maxHeaderSize: 16 * 1024,
      }),
      served: 0,
      busy: false,
      connected: false,
    };
    connection.client.on('connect', () => {
      connection.connected = true;
    });
    connection.client.on('disconnect', () => {
      connection.connected = false;
      if (!connection.busy) this.drop(connection);
    });
    // Errors reach the request's handler; the client's own are for the dispatcher.
    connection.client.on('connectionError', () => {});
    this.all.add(connection);
    return connection;
  }

  private drop(connection: Connection): void {
    this.all.delete(connection);
    const at = this.idle.indexOf(connection);
    if (at >= 0) this.idle.splice(at, 1);
    connection.client.destroy(() => {});
  }

  /** @internal the request ended: keep its connection for the next one, or close it. */
  release(connection: Connection, reusable: boolean): void {
    connection.busy = false;
    if (this.closed || !reusable || !connection.connected || this.idle.length >= this.maxIdle) {
      this.drop(connection);
    } else {
      this.idle.push(connection);
    }
  }

  private dispatch(
    connection: Connection,
    request: OriginRequest,
    upgrade: string | undefined,
    sink: ResponseSink | UpgradeSink,
  ): OriginCall {
    const headers: string[] = [];
    for (const [name, value] of request.headers) {
      // undici frames the body and writes these itself (and refuses them from callers).
      if (!HOP_BY_HOP.has(name.toLowerCase())) headers.push(name, value);
    }
    connection.busy = true;
    const call = new UndiciCall(this, connection, sink);
    const options: Dispatcher.DispatchOptions & { servername: string } = {
      origin: this.origin,
      // TLS SNI: the target's name (none for an IP), never the visitor's Host.
      servername: this.servername,
      method: request.method,
      path: request.path,
      headers,
      body: request.body ?? null,
      ...(upgrade !== undefined ? { upgrade } : {}),
    };
    call.dispatching = true;
    try {
      connection.client.dispatch(options, call);
    } finally {
      call.dispatching = false;
    }
    // undici reports a request it refuses to send as an error at once: throw it instead.
    if (call.refused !== undefined) throw call.refused;
    if (this.closed) call.abort();
    return call;
  }
}

/** undici's handler for one request (its native callback API, the cheapest). */
class UndiciCall implements OriginCall, Dispatcher.DispatchHandler {
  /** Set while undici's dispatch() runs; an error then is a refused request. */
  dispatching = false;
  refused: Error | undefined;
  private readonly owner: UndiciOriginClient;
  private readonly connection: Connection;
  private readonly sink: ResponseSink | UpgradeSink;
  private done = false;
  private reused = false;
  private started = false;
  private status = 0;
  private resumeResponse: (() => void) | undefined;

  constructor(owner: UndiciOriginClient, connection: Connection, sink: ResponseSink | UpgradeSink) {
    this.owner = owner;
    this.connection = connection;
    this.sink = sink;
  }

  resume(): void {
    this.resumeResponse?.();
  }

  abort(err?: Error): void {
    if (this.done) return;
    this.finish(false);
    if (err !== undefined) this.sink.onError(err, this.info());
  }

  // ---- undici callbacks ---------------------------------------------------------------

  onConnect(): void {
    this.reused = this.connection.served++ > 0;
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    this.started = true;
    // Interim responses (102, 103) are skipped, as Node's client does.
    if (this.done || status < 200) return true;
    this.resumeResponse = resume;
    this.status = status;
    this.sink.onHead({ status, statusMessage: statusText, headers: pairs(rawHeaders) });
    return !this.done;
  }

  onData(chunk: Buffer): boolean {
    if (this.done) return true;
    return this.sink.onData(chunk);
  }

  onComplete(): void {
    if (this.done) return;
    this.finish(true);
    this.sink.onEnd();
  }

  onError(err: Error): void {
    if (this.done) return;
    this.finish(false);
    if (this.dispatching) {
      this.refused = err;
      return;
    }
    // undici holds a 204 or 304 to its Content-Length (that of the resource, for a
    // 304): the response is complete at its head, as Node's client reads it.
    if (this.status === 204 || this.status === 304) {
      if (errnoCode(err) === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') return this.sink.onEnd();
    }
    this.sink.onError(err, this.info());
  }

  onUpgrade(status: number, rawHeaders: Buffer[] | string[] | null, socket: Duplex): void {
    if (this.done) {
      socket.destroy();
      return;
    }
    this.started = true;
    this.finish(false);
    const sink = this.sink as UpgradeSink;
    const head = (socket as Socket & { statusMessage?: string }).statusMessage;
    sink.onUpgrade({ status, statusMessage: head ?? '', headers: pairs(rawHeaders ?? []) }, socket);
  }

  private info(): AttemptInfo {
    return { reused: this.reused, responseStarted: this.started };
  }

  /** The call is over; `reusable`: its connection may serve another request. */
  private finish(reusable: boolean): void {
    this.done = true;
    this.resumeResponse = undefined;
    if (!reusable) this.connection.client.destroy(() => {});
    this.owner.release(this.connection, reusable);
  }
}

/** undici's raw header list as pairs, values without trailing whitespace (as Node's). */
function pairs(raw: (Buffer | string)[]): HeaderPairs {
  const out: HeaderPairs = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const value = raw[i + 1]!.toString('latin1');
    let end = value.length;
    while (end > 0 && (value[end - 1] === ' ' || value[end - 1] === '\t')) end--;
    out.push([raw[i]!.toString('latin1'), end === value.length ? value : value.slice(0, end)]);
  }
  return out;
}
