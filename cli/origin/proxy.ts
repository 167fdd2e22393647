/**
 * Serves each mux stream the relay opens (one visitor request or WebSocket) against the
 * local origin: the OPEN metadata becomes an origin request, the body streams both ways
 * with backpressure, and the origin's response head goes back with `stream.reply()`.
 * Requests to an http origin, with or without a body, go over our own HTTP/1.1 client
 * (http1.ts: a fraction of the CPU per request); upgrades and https origins use
 * http(s).request.
 *
 * Failure contract with the relay (it turns resets into visitor-facing answers):
 * - before the reply: RESET CONNECT_ERROR (origin refused, unreachable, TLS or HTTP
 *   failure) or TIMEOUT, with a message naming the local target;
 * - after the reply: RESET INTERNAL_ERROR when the origin breaks mid-response, so a
 *   truncated body never looks complete to the visitor;
 * - a visitor that goes away (stream reset or session closed) aborts the origin request.
 *
 * Keep-alive: requests share a pool of origin connections (http1.ts's for an http origin,
 * Node's agent for https and for upgrades). Idle pooled sockets are
 * dropped after `idleSocketTimeoutMs`, before common servers close them (Node also
 * honours a `Keep-Alive: timeout=N` hint, keeping sockets at most N-1 s), and a request
 * that fails with ECONNRESET/EPIPE on a reused socket before any response byte is
 * retried once on a fresh connection, replaying the request body bytes already sent
 * (kept up to `REPLAY_LIMIT_BYTES`; beyond that the request is not retried).
 */
import http from 'node:http';
import https from 'node:https';
import { isIPv6, type LookupFunction, type Socket } from 'node:net';
import { pipeline, type Duplex, type Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { OriginError, StreamResetError, errnoCode } from '../../shared/errors.js';
import { IdTable } from '../../shared/id-table.js';
import { realClock, type Clock, type ClockTimer } from '../../shared/clock.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import {
  endToEndHeaders,
  flattenHeaders,
  isRequestHead,
  type HeaderPairs,
  type RequestHead,
  type ResponseHead,
} from '../../shared/protocol/tunnel.js';
import { CAPTURE_BODY_LIMIT_BYTES, ExchangeCapture, WebSocketFrameCounter } from './capture.js';
import type { OriginEvent, QueuedDelivery } from '../events.js';
import { Http1Pool, type Http1Request } from './http1.js';
import type { ParsedResponseHead } from './response-parser.js';
import { LOCALHOST_ADDRESSES, type OriginTarget } from './target.js';

/**
 * What the origin sees as Host: the visitor's (`preserve`, default: apps build links
 * from it), the target's `host:port` (`rewrite`, for dev servers that reject foreign
 * hosts), or a fixed value.
 */
export type HostHeaderMode = 'preserve' | 'rewrite' | { value: string };

export type ProxyTimers = Pick<Clock, 'setTimeout' | 'clearTimeout' | 'now'>;

export interface OriginProxyOptions {
  target: OriginTarget;
  /** Default `preserve`. */
  hostHeader?: HostHeaderMode;
  /**
   * Skip TLS certificate verification of an https origin (CLI: `--origin-insecure`).
   * Only the hop from this machine to its own origin is affected, never the tunnel.
   * Default false.
   */
  insecure?: boolean;
  /**
   * Extra CA certificate(s), PEM, trusted for an https origin in addition to Node's
   * bundled roots, e.g. the dev server's self-signed certificate (CLI: `--origin-ca FILE`).
   */
  ca?: string | Buffer | readonly (string | Buffer)[];
  /** How long the origin may take to accept a TCP connection. Default 10 s. 0 = no limit. */
  connectTimeoutMs?: number;
  /**
   * How long the origin may stay silent before its response head arrives: counted from
   * the request start and from each request body chunk it takes, so a long upload is
   * fine while bytes move. Default 60 s (a dev server's first compile can be slow).
   * 0 = no limit. A response body may then be idle for any time (SSE, long polling).
   */
  responseHeadTimeoutMs?: number;
  /**
   * Idle pooled connections are closed after this long. Default 1.5 s: below the
   * keep-alive timeouts of common dev servers (gunicorn 2 s, Node/Vite/uvicorn 5 s).
   */
  idleSocketTimeoutMs?: number;
  onEvent?: (event: OriginEvent) => void;
  /**
   * Keep each exchange's heads and the first `bodyLimitBytes` (default 64 KiB) of each
   * body for inspection: events then carry an `ExchangeCapture` (see capture.ts). The
   * copy is taken as bytes pass; the stream is never held back. Default off (the line
   * views need none of it).
   */
  capture?: boolean | { bodyLimitBytes?: number };
  /**
   * Numbers requests (`id` in events). Default: 1, 2, 3… per proxy; proxies that serve
   * one tunnel (path routes) share one counter so ids stay unique in its views.
   */
  nextId?: () => number;
  /** Clock and timers (tests). Default: real, unref'd timers. */
  timers?: ProxyTimers;
}

export const ORIGIN_PROXY_DEFAULTS = Object.freeze({
  connectTimeoutMs: 10_000,
  responseHeadTimeoutMs: 60_000,
  idleSocketTimeoutMs: 1_500,
});

/** Happy-eyeballs attempt timeout for a `localhost` origin (Node's default: 250 ms). */
const LOCALHOST_ATTEMPT_TIMEOUT_MS = 2_000;

/** Request body bytes kept so a request can be replayed on a fresh connection. */
export const REPLAY_LIMIT_BYTES = 64 * 1024;

/** Methods Node sends without chunked framing unless told: they need a body check. */
const BODYLESS_BY_DEFAULT = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE']);

/** How many first response body bytes are inspected for a dev server's host check. */
const SNIFF_BYTES = 64;

export class OriginProxy {
  readonly target: OriginTarget;
  /** @internal */ readonly hostHeaderMode: HostHeaderMode;
  /** @internal */ readonly connectTimeoutMs: number;
  /** @internal */ readonly responseHeadTimeoutMs: number;
  /** @internal */ readonly timers: ProxyTimers;
  /** @internal pooled keep-alive connections */ readonly pooledAgent: http.Agent;
  /** @internal one-off connections for retries */ readonly freshAgent: http.Agent;
  /** @internal our own pooled client for requests (not upgrades) to an http origin */
  readonly pool: Http1Pool | undefined;
  /** @internal sockets handed over by an upgrade, outside the agent */
  readonly upgradedSockets = new Set<Duplex>();
  /** @internal body bytes captured per body; undefined = no capture */
  readonly captureBodyBytes: number | undefined;

  private readonly onEvent: (event: OriginEvent) => void;
  private readonly exchanges = new IdTable<Exchange>();
  private preferredAddress: string | undefined;
  private unreachableWarned = false;
  private hostHintSent = false;
  private readonly nextId: () => number;
  private closed = false;

  constructor(options: OriginProxyOptions) {
    this.target = options.target;
    this.hostHeaderMode = options.hostHeader ?? 'preserve';
    this.connectTimeoutMs = options.connectTimeoutMs ?? ORIGIN_PROXY_DEFAULTS.connectTimeoutMs;
    this.responseHeadTimeoutMs =
      options.responseHeadTimeoutMs ?? ORIGIN_PROXY_DEFAULTS.responseHeadTimeoutMs;
    this.timers = options.timers ?? realClock;
    this.onEvent = options.onEvent ?? (() => {});
    let id = 1;
    this.nextId = options.nextId ?? (() => id++);
    this.captureBodyBytes =
      options.capture === undefined || options.capture === false
        ? undefined
        : options.capture === true
          ? CAPTURE_BODY_LIMIT_BYTES
          : (options.capture.bodyLimitBytes ?? CAPTURE_BODY_LIMIT_BYTES);

    const connect: https.AgentOptions = {};
    if (this.target.localhost) {
      // Both loopback addresses, the one that answered last first; Node's happy
      // eyeballs (autoSelectFamily) moves to the next on refusal or after 250 ms.
      connect.lookup = this.lookupLocalhost;
      connect.autoSelectFamily = true;
      // On loopback a missing listener refuses at once; an attempt that takes longer
      // than Node's 250 ms is an event loop busy elsewhere (an HTTP/2 visitor's burst
      // of 100 requests), not a dead address: giving up then failed every pending
      // request with ETIMEDOUT (502) at the same instant.
      connect.autoSelectFamilyAttemptTimeout = LOCALHOST_ATTEMPT_TIMEOUT_MS;
    }
    const Agent = this.target.protocol === 'https' ? https.Agent : http.Agent;
    if (this.target.protocol === 'https') {
      connect.rejectUnauthorized = options.insecure !== true;
      if (options.ca !== undefined) {
        const extra = Array.isArray(options.ca) ? options.ca : [options.ca as string | Buffer];
        connect.ca = [...rootCertificates, ...extra];
      }
    }
    this.pooledAgent = new Agent({
      ...connect,
      keepAlive: true,
      timeout: options.idleSocketTimeoutMs ?? ORIGIN_PROXY_DEFAULTS.idleSocketTimeoutMs,
    });
    this.freshAgent = new Agent({ ...connect, keepAlive: false });
    this.pool =
      this.target.protocol === 'http'
        ? new Http1Pool({
            host: this.target.hostname,
            port: this.target.port,
            ...(connect.lookup !== undefined ? { lookup: connect.lookup } : {}),
            ...(connect.autoSelectFamily !== undefined
              ? {
                  autoSelectFamily: connect.autoSelectFamily,
                  autoSelectFamilyAttemptTimeout: LOCALHOST_ATTEMPT_TIMEOUT_MS,
                }
              : {}),
            idleTimeoutMs: options.idleSocketTimeoutMs ?? ORIGIN_PROXY_DEFAULTS.idleSocketTimeoutMs,
            maxHeaderBytes: http.maxHeaderSize,
          })
        : undefined;
  }

  /** The loopback address (127.0.0.1 or ::1) where `localhost` last answered, if any. */
  get localhostAddress(): string | undefined {
    return this.preferredAddress;
  }

  /** Serves one stream opened by the relay. Never throws; failures become resets. */
  handle(stream: MuxStream): void {
    // Our own resets destroy the stream with an error; the exchange records why.
    stream.on('error', () => {});
    if (this.closed) {
      stream.reset(ErrorCode.REFUSED_STREAM, 'the tunnel client is shutting down');
      return;
    }
    const head = stream.meta;
    if (!isRequestHead(head)) {
      stream.reset(ErrorCode.PROTOCOL_ERROR, 'stream metadata is not a request head');
      return;
    }
    const exchange = new Exchange(this, stream, head, this.nextId());
    this.exchanges.set(exchange.id, exchange);
    exchange.start();
  }

  /** Aborts open requests and WebSockets and closes every origin connection. */
  close(): void {
    this.closed = true;
    for (const exchange of this.exchanges.values()) {
      exchange.abort('the tunnel client is shutting down');
    }
    for (const socket of this.upgradedSockets) socket.destroy();
    this.upgradedSockets.clear();
    this.pooledAgent.destroy();
    this.freshAgent.destroy();
    this.pool?.close();
  }

  // ---- called by exchanges ----------------------------------------------------------

  /** @internal */
  emit(event: OriginEvent): void {
    this.onEvent(event);
  }

  /** @internal */
  forget(exchange: Exchange): void {
    this.exchanges.delete(exchange.id);
  }

  /** @internal a socket to the origin connected: remember which loopback answered. */
  noteConnected(socket: Socket): void {
    const address = socket.remoteAddress;
    if (this.target.localhost && address !== undefined && LOCALHOST_ADDRESSES.includes(address)) {
      this.preferredAddress = address;
    }
  }

  /** @internal the origin answered: a later outage is worth a new warning. */
  noteReachable(): void {
    this.unreachableWarned = false;
  }

  /**
   * The caller already told the user nothing is listening (the startup check): the first
   * failed request does not say it again.
   */
  unreachableAlreadyWarned(): void {
    this.unreachableWarned = true;
  }

  /** @internal */
  noteUnreachable(message: string): void {
    if (this.unreachableWarned) return;
    this.unreachableWarned = true;
    this.emit({ event: 'warning', code: 'origin-unreachable', message });
  }

  /** @internal a reused socket was dead: its idle siblings likely are too. */
  dropIdleSockets(): void {
    for (const sockets of Object.values(this.pooledAgent.freeSockets)) {
      for (const socket of sockets ?? []) socket.destroy();
    }
    this.pool?.dropIdle();
  }

  /** @internal */
  hostHintPending(): boolean {
    return !this.hostHintSent;
  }

  /** @internal */
  hostRejected(server: 'vite' | 'webpack', hostname: string): void {
    if (this.hostHintSent) return;
    this.hostHintSent = true;
    // The tunnel's hostname changes every run: allow the whole relay domain (a leading
    // dot matches every subdomain in both Vite and webpack), or rewrite Host.
    const wildcard = `.${hostname.split('.').slice(1).join('.')}`;
    const message =
      server === 'vite'
        ? `the dev server at ${this.target.label} (Vite) refused the public host name ${hostname} ` +
          `("Blocked request. This host is not allowed"). Fix: allow every tunnel host in ` +
          `vite.config.js: server: { allowedHosts: ['${wildcard}'] } (the name changes every ` +
          `run), or run quick-tunnel with --host-header rewrite`
        : `the dev server at ${this.target.label} (webpack-dev-server) refused the public host ` +
          `name ${hostname} ("Invalid Host header"). Fix: allow every tunnel host in ` +
          `webpack.config.js: devServer: { allowedHosts: ['${wildcard}'] } (the name changes ` +
          `every run), or run quick-tunnel with --host-header rewrite`;
    this.emit({ event: 'hint', code: 'host-rejected', hostname, message });
  }

  private readonly lookupLocalhost: LookupFunction = (_hostname, options, callback) => {
    const first = this.preferredAddress ?? LOCALHOST_ADDRESSES[0]!;
    const order = [first, ...LOCALHOST_ADDRESSES.filter((a) => a !== first)];
    const all = order.map((address) => ({ address, family: isIPv6(address) ? 6 : 4 }));
    process.nextTick(() => {
      if (options.all === true) callback(null, all);
      else callback(null, all[0]!.address, all[0]!.family);
    });
  };
}

/** A failure before the reply, as the relay and the user should see it. */
interface Failure {
  wireCode: number;
  message: string;
  /** What the visitor gets instead of an origin answer (for the request event). */
  status: number;
  /** Worth the one-time "origin unreachable" warning. */
  warning?: string;
}

class OriginTimeoutError extends OriginError {
  constructor(message: string) {
    super(message, { code: 'QT_ERR_ORIGIN_TIMEOUT' });
  }
}

type Phase = 'waiting' | 'streaming' | 'upgraded' | 'done';

/** Where a response body comes from: an IncomingMessage or our own client's request. */
interface ResponseSource {
  pause(): void;
  resume(): void;
  complete(): boolean;
  destroy(): void;
}

/** The body handlers `beginResponse` returns. */
interface ResponseBody {
  data(chunk: Buffer): void;
  end(): void;
}

/** One visitor request: its stream, the origin request (and its retry), the response. */
class Exchange {
  private readonly proxy: OriginProxy;
  private readonly stream: MuxStream;
  private readonly head: RequestHead;
  readonly id: number;
  private readonly startedAt: number;
  private readonly label: string;
  private readonly capture: ExchangeCapture | undefined;
  private headers: HeaderPairs = [];
  private pump: BodyPump | undefined;
  private req: http.ClientRequest | undefined;
  private res: http.IncomingMessage | undefined;
  /** The attempt when it runs on our own client (http origin, not an upgrade). */
  private lean: Http1Request | undefined;
  private socket: Duplex | undefined;
  private phase: Phase = 'waiting';
  private status: number | undefined;
  private error: string | undefined;
  private retried = false;
  private requestDone = false;
  private responseComplete = false;
  private streamError: Error | undefined;
  private finished = false;
  private connectTimer: ClockTimer | undefined;
  private headTimer: ClockTimer | undefined;
  private lastProgressAt = 0;

  constructor(proxy: OriginProxy, stream: MuxStream, head: RequestHead, id: number) {
    this.proxy = proxy;
    this.stream = stream;
    this.head = head;
    this.id = id;
    this.startedAt = proxy.timers.now();
    this.label = proxy.target.label;
    if (proxy.captureBodyBytes !== undefined) {
      this.capture = new ExchangeCapture(
        {
          method: head.method,
          url: head.url,
          httpVersion: head.httpVersion,
          headers: head.headers.map(([k, v]) => [k, v]),
          remoteAddress: head.remoteAddress,
          scheme: head.scheme,
        },
        proxy.captureBodyBytes,
      );
    }
  }

  start(): void {
    const { head, stream, capture } = this;
    const queued = queuedDelivery(head);
    this.proxy.emit({
      event: 'request-start',
      id: this.id,
      method: head.method,
      path: head.url,
      upgrade: head.upgrade,
      ...(queued !== undefined ? { queued } : {}),
      ...(capture !== undefined ? { capture } : {}),
    });
    stream.on('error', (err) => {
      this.streamError = err;
    });
    stream.once('close', () => this.onStreamClose());
    if (head.method.toUpperCase() === 'CONNECT') {
      this.fail({
        wireCode: ErrorCode.PROTOCOL_ERROR,
        message: 'CONNECT is not supported',
        status: 502,
      });
      return;
    }
    if (head.upgrade && !head.headers.some(([k]) => k.toLowerCase() === 'upgrade')) {
      this.fail({
        wireCode: ErrorCode.PROTOCOL_ERROR,
        message: 'upgrade request without an Upgrade header',
        status: 502,
      });
      return;
    }
    this.headers = this.buildHeaders();
    // What the origin gets (Transfer-Encoding may still be added below).
    if (capture !== undefined) capture.request.headers = this.headers;
    if (head.upgrade) {
      // The stream carries raw bytes only after the 101; a GET upgrade has no body.
      this.requestDone = true;
      this.dispatch(false);
      return;
    }
    const pump = new BodyPump(
      stream,
      REPLAY_LIMIT_BYTES,
      () => {
        this.lastProgressAt = this.proxy.timers.now();
      },
      capture?.requestBody,
    );
    this.pump = pump;
    stream.once('end', () => {
      this.requestDone = true;
    });
    const hasLength = this.headers.some(([k]) => k.toLowerCase() === 'content-length');
    if (!hasLength && BODYLESS_BY_DEFAULT.has(head.method.toUpperCase())) {
      // Node frames these methods' bodies only with a length or an explicit chunked
      // encoding, and the relay removed Transfer-Encoding (hop-by-hop): wait for the
      // first body byte or the end (immediate for a body-less request) to choose.
      pump.start((hasBody) => {
        if (hasBody) this.headers.push(['Transfer-Encoding', 'chunked']);
        this.dispatch(false);
      });
    } else {
      pump.start();
      this.dispatch(false);
    }
  }

  /** Ends the exchange from outside (proxy closing). */
  abort(reason: string): void {
    if (!this.stream.destroyed) {
      this.error ??= reason;
      this.stream.reset(ErrorCode.CANCEL, reason);
    }
    this.destroyOrigin();
  }

  private buildHeaders(): HeaderPairs {
    const { head, proxy } = this;
    // The relay already removed hop-by-hop headers; do it again rather than trust the wire.
    let pairs = endToEndHeaders(flattenHeaders(head.headers), head.upgrade);
    if (head.upgrade) {
      // An upgrade is sent without a body (the stream carries bytes only after a 101):
      // never a length without its bytes, whatever a relay sends.
      pairs = pairs.filter(([k]) => {
        const lower = k.toLowerCase();
        return lower !== 'content-length' && lower !== 'transfer-encoding';
      });
    }
    const mode = proxy.hostHeaderMode;
    const value =
      mode === 'preserve' ? undefined : mode === 'rewrite' ? proxy.target.hostHeader : mode.value;
    const at = pairs.findIndex(([k]) => k.toLowerCase() === 'host');
    if (value === undefined) {
      if (at < 0) pairs.unshift(['Host', proxy.target.hostHeader]);
      return pairs;
    }
    const out: HeaderPairs = [];
    for (const [i, pair] of pairs.entries()) {
      if (i === at) out.push([pair[0], value]);
      else if (pair[0].toLowerCase() !== 'host') out.push(pair);
    }
    if (at < 0) out.unshift(['Host', value]);
    return out;
  }

  private dispatch(fresh: boolean): void {
    if (this.stream.destroyed) return;
    const { proxy, head } = this;
    if (!head.upgrade && proxy.pool !== undefined) {
      this.dispatchLean(proxy.pool, fresh);
      return;
    }
    const options: https.RequestOptions = {
      // An upgrade's connection is never pooled, whatever the answer: after a refusal
      // (non-101) the origin may still be waiting for bytes the exchange never sent.
      agent: fresh || head.upgrade ? proxy.freshAgent : proxy.pooledAgent,
      host: proxy.target.hostname,
      port: proxy.target.port,
      method: head.method,
      path: head.url,
      headers: flattenHeaders(this.headers),
      setHost: false,
      // No socket timeout while a request is active (the agent's idle timeout applies
      // to pooled sockets only); our own timers cover connect and response head.
      timeout: 0,
    };
    let req: http.ClientRequest;
    try {
      req = proxy.target.protocol === 'https' ? https.request(options) : http.request(options);
    } catch (err) {
      this.refuseUnsendable(err);
      return;
    }
    this.req = req;
    req.on('error', (err) => this.onRequestError(req, err));
    req.on('socket', (socket: Socket) => this.onSocket(req, socket));
    req.on('response', (res) => this.onResponse(req, res));
    req.on('upgrade', (res, socket, bytes) => this.onUpgrade(req, res, socket, bytes));
    this.armHeadTimer();
    if (this.pump === undefined) req.end();
    else this.pump.attach(req, fresh);
  }

  /** Sends the request on our own pooled client (see http1.ts). */
  private dispatchLean(pool: Http1Pool, fresh: boolean): void {
    let body: ResponseBody | undefined;
    let lean: Http1Request;
    try {
      lean = pool.request(
        this.head.method,
        this.head.url,
        this.headers,
        {
          onConnect: (socket) => {
            if (this.lean === lean) this.onConnected(socket);
          },
          onHead: (res: ParsedResponseHead) => {
            if (this.lean !== lean) return;
            body = this.beginResponse(
              res.status,
              res.statusMessage,
              res.rawHeaders,
              res.contentEncoding,
              {
                pause: () => lean.pause(),
                resume: () => lean.resume(),
                complete: () => lean.finished,
                destroy: () => lean.destroy(),
              },
            );
            // The visitor is gone: stop reading (the body may never end, e.g. SSE).
            if (body === undefined) lean.destroy();
          },
          onBody: (chunk) => {
            if (this.lean === lean) body?.data(chunk);
          },
          onComplete: () => {
            if (this.lean !== lean) return;
            body?.end();
            // Answered before the whole body was sent (e.g. a 413): the client closed the
            // connection; let the rest of the visitor's body drain into nothing.
            if (!lean.sent) this.pump?.discard();
          },
          onError: (err, responseStarted) => {
            // Once response bytes came, the origin processed the request: never resent.
            if (this.lean === lean) this.onAttemptError(err, lean.reused && !responseStarted);
          },
        },
        { fresh },
      );
    } catch (err) {
      this.refuseUnsendable(err);
      return;
    }
    this.lean = lean;
    if (lean.connecting) this.armConnectTimer();
    this.armHeadTimer();
    this.pump?.attach(lean, fresh);
  }

  /** Both clients check method, path and header bytes before sending anything. */
  private refuseUnsendable(err: unknown): void {
    this.fail({
      wireCode: ErrorCode.PROTOCOL_ERROR,
      message: `cannot forward the request to ${this.label}: ${messageOf(err)}`,
      status: 502,
    });
  }

  // ---- timers -----------------------------------------------------------------------

  private onSocket(req: http.ClientRequest, socket: Socket): void {
    if (!socket.connecting) return; // reused from the pool
    this.armConnectTimer();
    socket.once('connect', () => this.onConnected(socket));
  }

  private armConnectTimer(): void {
    const ms = this.proxy.connectTimeoutMs;
    if (ms <= 0) return;
    const timer = this.proxy.timers.setTimeout(() => {
      this.abortAttempt(
        new OriginTimeoutError(
          `${this.label} did not accept the connection within ${seconds(ms)} (connect timeout)`,
        ),
      );
    }, ms);
    this.connectTimer = timer.unref();
  }

  private onConnected(socket: Socket): void {
    this.proxy.timers.clearTimeout(this.connectTimer);
    this.proxy.noteConnected(socket);
  }

  /** Ends the attempt under way with `err` (reported as the attempt's own error). */
  private abortAttempt(err: Error): void {
    if (this.lean !== undefined) this.lean.destroy(err);
    else this.req?.destroy(err);
  }

  private armHeadTimer(): void {
    const ms = this.proxy.responseHeadTimeoutMs;
    const timers = this.proxy.timers;
    timers.clearTimeout(this.headTimer);
    this.lastProgressAt = timers.now();
    if (ms <= 0) return;
    const check = (): void => {
      if (this.phase !== 'waiting') return;
      const idleMs = timers.now() - this.lastProgressAt;
      if (idleMs < ms) {
        this.headTimer = timers.setTimeout(check, ms - idleMs).unref();
        return;
      }
      this.abortAttempt(
        new OriginTimeoutError(
          `${this.label} did not answer within ${seconds(ms)} (response timeout)`,
        ),
      );
    };
    this.headTimer = timers.setTimeout(check, ms).unref();
  }

  private clearTimers(): void {
    this.proxy.timers.clearTimeout(this.connectTimer);
    this.proxy.timers.clearTimeout(this.headTimer);
  }

  // ---- origin events ----------------------------------------------------------------

  private onRequestError(req: http.ClientRequest, err: Error): void {
    // An abandoned attempt, or the exchange already ended and this is the echo.
    if (req !== this.req) return;
    this.onAttemptError(err, req.reusedSocket);
  }

  /**
   * The attempt under way failed. `reusedSocket`: it ran on a pooled connection and
   * no response byte had arrived, so the origin may have closed it as we reused it.
   */
  private onAttemptError(err: Error, reusedSocket: boolean): void {
    if (this.error !== undefined) return;
    this.clearTimers();
    switch (this.phase) {
      case 'streaming':
        this.failMidResponse(err);
        return;
      case 'done':
        // The origin answered in full without taking the whole request body (e.g. 413)
        // and closed: let the rest of the visitor's body drain into nothing.
        if (this.responseComplete && !this.requestDone) this.pump?.discard();
        return;
      case 'upgraded':
        return; // the socket reports its own errors
    }
    if (this.stream.destroyed) return;
    const code = errnoCode(err);
    if (
      !this.retried &&
      reusedSocket &&
      (code === 'ECONNRESET' || code === 'EPIPE') &&
      (this.pump === undefined || this.pump.replayable)
    ) {
      // The origin closed an idle keep-alive connection as we reused it: nothing was
      // processed, so send the request again on a connection of its own.
      this.retried = true;
      this.lean = undefined;
      this.pump?.detach();
      this.proxy.dropIdleSockets();
      this.dispatch(true);
      return;
    }
    const failure = this.describe(err, reusedSocket);
    if (failure.warning !== undefined) this.proxy.noteUnreachable(failure.warning);
    this.fail(failure);
  }

  private onResponse(req: http.ClientRequest, res: http.IncomingMessage): void {
    if (req !== this.req) {
      res.destroy();
      return;
    }
    this.res = res;
    // A refused upgrade: its connection ends with the answer (see dispatch()).
    if (this.head.upgrade) res.once('end', () => res.socket?.destroy());
    const body = this.beginResponse(
      res.statusCode ?? 502,
      res.statusMessage,
      res.rawHeaders,
      res.headers['content-encoding'],
      {
        pause: () => res.pause(),
        resume: () => res.resume(),
        complete: () => res.complete,
        destroy: () => res.destroy(),
      },
    );
    if (body === undefined) {
      res.destroy();
      return;
    }
    // Neither pipeline() (an AbortController and a DOMException per call, ~8% of the
    // CLI's CPU on small requests) nor pipe(): errors, a premature close of either side
    // and the flow are spelled out.
    res.on('error', (err) => this.failMidResponse(err));
    res.once('close', () => {
      // An origin that closes before the body is complete must never look like a
      // clean (short) response to the visitor.
      if (!res.complete)
        this.failMidResponse(new Error('the connection closed before the body was complete'));
    });
    res.on('data', body.data);
    res.once('end', body.end);
  }

  /**
   * The origin's response head arrived: reply on the stream and return the body's
   * handlers (undefined when the visitor is already gone). The body moves with
   * backpressure, what pipe() does without its per-call listeners; the same handler
   * checks the first body bytes for a dev server's host rejection, which runs on nearly
   * every response until a hint has been shown.
   */
  private beginResponse(
    status: number,
    statusMessage: string | undefined,
    rawHeaders: string[],
    contentEncoding: string | undefined,
    source: ResponseSource,
  ): ResponseBody | undefined {
    this.clearTimers();
    this.phase = 'streaming';
    this.status = status;
    this.proxy.noteReachable();
    this.pump?.stopReplay();
    const { stream } = this;
    if (stream.destroyed) return undefined;
    const reply: ResponseHead = { status, headers: endToEndHeaders(rawHeaders) };
    if (statusMessage) reply.statusMessage = statusMessage;
    stream.reply({ ...reply });
    const { capture } = this;
    if (capture !== undefined) capture.response = { ...reply, headers: [...reply.headers] };
    stream.once('close', () => {
      if (!source.complete()) source.destroy();
    });
    stream.once('finish', () => {
      if (this.phase === 'done') return;
      this.phase = 'done';
      this.responseComplete = true;
      // A refused upgrade answered normally: the stream may still get the visitor's
      // FIN; consume it so the stream can close.
      if (this.head.upgrade) stream.resume();
    });
    let sniffing = this.proxy.hostHintPending() && status < 500 && !contentEncoding;
    let seen: Buffer | undefined;
    const sniff = (chunk: Buffer | undefined): void => {
      if (chunk !== undefined) {
        seen = seen === undefined ? chunk : Buffer.concat([seen, chunk.subarray(0, SNIFF_BYTES)]);
      }
      const verdict = hostRejection(seen ?? NO_BYTES, chunk === undefined);
      if (verdict === 'undecided') return;
      sniffing = false;
      seen = undefined;
      if (verdict !== 'none') this.proxy.hostRejected(verdict, hostnameOf(this.sentHost()));
    };
    const resume = (): void => source.resume();
    return {
      data: (chunk: Buffer) => {
        capture?.responseBody.add(chunk);
        if (sniffing) sniff(chunk);
        if (!stream.write(chunk)) {
          source.pause();
          stream.once('drain', resume);
        }
      },
      end: () => {
        if (sniffing) sniff(undefined);
        stream.end();
      },
    };
  }

  private onUpgrade(
    req: http.ClientRequest,
    res: http.IncomingMessage,
    socket: Duplex,
    bytes: Buffer,
  ): void {
    if (req !== this.req) {
      socket.destroy();
      return;
    }
    this.clearTimers();
    this.phase = 'upgraded';
    this.status = res.statusCode ?? 101;
    this.proxy.noteReachable();
    const { stream, proxy } = this;
    if (stream.destroyed) {
      socket.destroy();
      return;
    }
    this.socket = socket;
    proxy.upgradedSockets.add(socket);
    socket.once('close', () => proxy.upgradedSockets.delete(socket));
    // Mirror TCP half-close: the origin's FIN becomes the stream's FIN and vice versa,
    // instead of Node ending our side as soon as the origin ends its own.
    socket.allowHalfOpen = true;
    const reply: ResponseHead = {
      status: this.status,
      headers: endToEndHeaders(res.rawHeaders, true),
    };
    if (res.statusMessage) reply.statusMessage = res.statusMessage;
    stream.reply({ ...reply });
    const { capture } = this;
    let toVisitor: WebSocketFrameCounter | undefined;
    if (capture !== undefined) {
      capture.response = { ...reply, headers: [...reply.headers] };
      const toOrigin = new WebSocketFrameCounter();
      toVisitor = new WebSocketFrameCounter();
      capture.upgraded = { toOrigin, toVisitor };
      if (bytes.length > 0) toVisitor.push(bytes);
    }
    socket.on('error', (err) => this.failTunnel(err));
    if (bytes.length > 0) stream.write(bytes);
    pipeline(socket, stream, (err) => {
      if (err) this.failTunnel(err);
    });
    pipeline(stream, socket, (err) => {
      if (err) this.failTunnel(err);
    });
    if (capture?.upgraded !== undefined && toVisitor !== undefined) {
      // Watchers only, added after the pipes: they never change the flow.
      const { toOrigin } = capture.upgraded;
      const counter = toVisitor;
      socket.on('data', (chunk: Buffer) => counter.push(chunk));
      stream.on('data', (chunk: Buffer) => toOrigin.push(chunk));
    }
  }

  private sentHost(): string {
    return this.headers.find(([k]) => k.toLowerCase() === 'host')?.[1] ?? '';
  }

  // ---- endings ----------------------------------------------------------------------

  /** Fails before the reply: reset the stream with a reason the relay can show. */
  private fail(failure: Failure): void {
    this.clearTimers();
    this.phase = 'done';
    this.error ??= failure.message;
    this.status ??= failure.status;
    this.pump?.stop();
    this.destroyOrigin();
    this.stream.reset(failure.wireCode, failure.message);
  }

  /** The origin broke after the reply: abort, so the visitor never sees a clean end. */
  private failMidResponse(err: Error): void {
    if (this.phase === 'done' && this.error !== undefined) return;
    this.phase = 'done';
    this.pump?.stop();
    if (this.stream.destroyed) {
      // The visitor went away first; onStreamClose records that.
      this.destroyOrigin();
      return;
    }
    const message = `${this.label} failed mid-response: ${messageOf(err)}`;
    this.error ??= message;
    this.destroyOrigin();
    this.stream.reset(ErrorCode.INTERNAL_ERROR, message);
  }

  private failTunnel(err: Error): void {
    if (!this.stream.destroyed) {
      const message = `WebSocket connection to ${this.label} failed: ${messageOf(err)}`;
      this.error ??= message;
      this.stream.reset(ErrorCode.INTERNAL_ERROR, message);
    }
    this.socket?.destroy();
  }

  private destroyOrigin(): void {
    this.clearTimers();
    this.lean?.destroy();
    this.res?.destroy();
    this.req?.destroy();
    this.socket?.destroy();
  }

  private onStreamClose(): void {
    const { stream } = this;
    const clean = stream.readableEnded && stream.writableFinished;
    if (!clean) {
      if (this.error === undefined) {
        const err = this.streamError;
        if (err !== undefined && !(err instanceof StreamResetError)) {
          this.error = `the tunnel connection closed (${err.message})`;
        } else {
          this.error = this.responseComplete
            ? 'the visitor went away before the end of the request body'
            : 'the visitor went away';
        }
        this.status ??= 499;
      }
      this.pump?.stop();
      if (!this.responseComplete || !this.requestDone) this.destroyOrigin();
    }
    this.clearTimers();
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.proxy.forget(this);
    const event: OriginEvent = {
      event: 'request',
      id: this.id,
      method: this.head.method,
      path: this.head.url,
      status: this.status ?? 502,
      durationMs: Math.max(0, Math.round(this.proxy.timers.now() - this.startedAt)),
      bytesIn: this.stream.bytesReceived,
      bytesOut: this.stream.bytesSent,
      upgrade: this.head.upgrade,
    };
    if (this.error !== undefined) event.error = this.error;
    const queued = queuedDelivery(this.head);
    if (queued !== undefined) event.queued = queued;
    if (this.capture !== undefined) {
      this.capture.finishedAt = Date.now();
      event.capture = this.capture;
    }
    this.proxy.emit(event);
  }

  /** Turns an error before the response head into a reset code and words. */
  private describe(err: Error, reusedSocket: boolean): Failure {
    const label = this.label;
    if (err instanceof OriginTimeoutError) {
      const connect = err.message.includes('connect timeout');
      return {
        wireCode: ErrorCode.TIMEOUT,
        message: err.message,
        status: 504,
        ...(connect ? { warning: `${err.message}; visitors get 504 until it answers` } : {}),
      };
    }
    const code = errnoCode(err) ?? 'unknown error';
    const unreachable = (message: string, warning: string): Failure => ({
      wireCode: ErrorCode.CONNECT_ERROR,
      message,
      status: 502,
      warning,
    });
    switch (code) {
      case 'ECONNREFUSED':
        return unreachable(
          `nothing is listening on ${label} (ECONNREFUSED)`,
          `nothing is listening on ${label}: start your server; visitors get 502 until then`,
        );
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
      case 'EAI_FAIL':
      case 'EAI_NONAME': {
        const m = `cannot resolve ${this.proxy.target.hostname} (${code})`;
        return unreachable(m, `${m}: check the target; visitors get 502 until then`);
      }
      case 'EHOSTUNREACH':
      case 'ENETUNREACH':
      case 'EHOSTDOWN':
      case 'ENETDOWN':
      case 'EADDRNOTAVAIL':
      case 'ETIMEDOUT': {
        const m = `${label} is unreachable (${code})`;
        return unreachable(m, `${m}: visitors get 502 until it answers`);
      }
      case 'ECONNRESET':
      case 'EPIPE': {
        const message = `${label} closed the connection before answering (${code})`;
        if (reusedSocket || this.proxy.target.protocol === 'https') {
          return { wireCode: ErrorCode.CONNECT_ERROR, message, status: 502 };
        }
        // A new connection dropped unanswered: typically an HTTPS server reached
        // over http://.
        return {
          wireCode: ErrorCode.CONNECT_ERROR,
          message: `${message}; if it serves HTTPS, use https://${label}`,
          status: 502,
        };
      }
    }
    if (
      /^(ERR_TLS_|CERT_|DEPTH_ZERO_|SELF_SIGNED_|UNABLE_TO_|ERR_SSL_(?!WRONG_VERSION))/.test(code)
    ) {
      const m =
        `TLS verification of ${label} failed: ${messageOf(err)} (${code}); trust its ` +
        `certificate with --origin-ca FILE or skip the check with --origin-insecure`;
      return unreachable(m, m);
    }
    if (code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER') {
      const m = `${label} did not answer in TLS (${code}): is it a plain http:// server?`;
      return unreachable(m, m);
    }
    if (code.startsWith('HPE_')) {
      return {
        wireCode: ErrorCode.CONNECT_ERROR,
        message: `${label} sent an invalid HTTP response (${code}: ${messageOf(err)})`,
        status: 502,
      };
    }
    return {
      wireCode: ErrorCode.CONNECT_ERROR,
      message: `request to ${label} failed: ${messageOf(err)} (${code})`,
      status: 502,
    };
  }
}

/** What BodyPump writes into: an http.ClientRequest or our client's Http1Request. */
interface BodyDestination {
  write(chunk: Buffer): boolean;
  end(): void;
  once(event: 'drain', listener: () => void): unknown;
  off(event: 'drain', listener: () => void): unknown;
}

/**
 * Moves the request body from the mux stream into the origin request with
 * backpressure (read only what the origin takes; the stream grants the relay credit
 * as we read), and keeps the bytes already sent, up to a limit, so the request can be
 * replayed on a fresh connection.
 */
class BodyPump {
  private readonly source: Readable;
  private readonly replayLimit: number;
  private readonly onProgress: () => void;
  /** Every chunk read so far while their total fits the limit; undefined after. */
  private replay: Buffer[] | undefined = [];
  private replayBytes = 0;
  /** Chunks read before a destination was attached (the framing peek). */
  private held: Buffer[] = [];
  private dest: BodyDestination | undefined;
  private waitingDrain = false;
  private ended = false;
  private stopped = false;
  private onFirst: ((hasBody: boolean) => void) | undefined;
  /** Sees every chunk once as it is read (inspection capture). */
  private readonly preview: { add(chunk: Buffer): void } | undefined;

  constructor(
    source: Readable,
    replayLimit: number,
    onProgress: () => void,
    preview?: { add(chunk: Buffer): void },
  ) {
    this.source = source;
    this.replayLimit = replayLimit;
    this.onProgress = onProgress;
    this.preview = preview;
  }

  /** With `onFirst`, reads ahead until the first chunk or the end and reports which. */
  start(onFirst?: (hasBody: boolean) => void): void {
    this.onFirst = onFirst;
    this.source.on('readable', this.pull);
    this.source.once('end', this.onEnd);
    if (onFirst !== undefined) this.pull();
  }

  get replayable(): boolean {
    return this.replay !== undefined;
  }

  /** The origin answered: no retry any more, free the copy. */
  stopReplay(): void {
    this.replay = undefined;
    this.replayBytes = 0;
  }

  /** Sends what was read so far (everything when `replay`) into `dest`, then follows on. */
  attach(dest: BodyDestination, replay: boolean): void {
    const chunks = replay ? (this.replay ?? []) : this.held;
    this.held = [];
    this.dest = dest;
    this.waitingDrain = false;
    let ok = true;
    for (const chunk of chunks) ok = dest.write(chunk);
    if (this.ended) {
      dest.end();
      return;
    }
    if (!ok) this.waitForDrain(dest);
    else this.pull();
  }

  detach(): void {
    this.dest?.off('drain', this.onDrain);
    this.dest = undefined;
    this.waitingDrain = false;
  }

  stop(): void {
    this.stopped = true;
    this.detach();
    this.source.off('readable', this.pull);
  }

  /** Reads the rest of the body into nothing (the origin no longer wants it). */
  discard(): void {
    this.stop();
    this.source.resume();
  }

  private readonly pull = (): void => {
    if (this.stopped || this.waitingDrain) return;
    const dest = this.dest;
    if (dest === undefined) {
      if (this.onFirst === undefined) return;
      const chunk = this.source.read() as Buffer | null;
      if (chunk !== null) {
        this.record(chunk);
        this.held.push(chunk);
        this.fireFirst(true);
      }
      return;
    }
    let chunk: Buffer | null;
    while ((chunk = this.source.read() as Buffer | null) !== null) {
      this.record(chunk);
      this.onProgress();
      if (!dest.write(chunk)) {
        this.waitForDrain(dest);
        return;
      }
    }
  };

  private waitForDrain(dest: BodyDestination): void {
    this.waitingDrain = true;
    dest.once('drain', this.onDrain);
  }

  private readonly onDrain = (): void => {
    this.waitingDrain = false;
    this.onProgress();
    this.pull();
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    this.fireFirst(false);
    if (this.dest !== undefined && !this.stopped) this.dest.end();
  };

  private fireFirst(hasBody: boolean): void {
    const cb = this.onFirst;
    this.onFirst = undefined;
    cb?.(hasBody);
  }

  private record(chunk: Buffer): void {
    this.preview?.add(chunk);
    if (this.replay === undefined) return;
    this.replayBytes += chunk.length;
    if (this.replayBytes > this.replayLimit) this.stopReplay();
    else this.replay.push(chunk);
  }
}

const NO_BYTES = Buffer.alloc(0);

const HOST_REJECTIONS = [
  { server: 'vite', text: 'Blocked request. This host' },
  { server: 'webpack', text: 'Invalid Host header' },
] as const;

/**
 * Whether a response body starts like a dev server's refusal of a foreign Host, from its
 * first bytes (`final`: the body ended there). Most bodies are told apart by their first
 * non-blank byte, without decoding any text.
 */
function hostRejection(body: Buffer, final: boolean): 'vite' | 'webpack' | 'none' | 'undecided' {
  let start = 0;
  while (start < body.length && start < SNIFF_BYTES && isBlank(body[start]!)) start++;
  if (start === body.length) return final || start >= SNIFF_BYTES ? 'none' : 'undecided';
  const first = body[start]!;
  if (first !== 0x42 /* B */ && first !== 0x49 /* I */) return 'none';
  const text = body.toString('latin1', start, start + SNIFF_BYTES);
  for (const { server, text: refusal } of HOST_REJECTIONS) {
    if (text.startsWith(refusal)) return server;
    if (refusal.startsWith(text) && !final) return 'undecided';
  }
  return 'none';
}

function isBlank(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
}

function messageOf(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) {
    return err.errors.map((e) => messageOf(e)).join('; ');
  }
  return err instanceof Error ? err.message || String(errnoCode(err) ?? err.name) : String(err);
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/** `abc.example.com:8080` → `abc.example.com`; `[::1]:3000` → `::1`. */
function hostnameOf(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end < 0 ? host.slice(1) : host.slice(1, end);
  }
  const i = host.lastIndexOf(':');
  return i < 0 ? host : host.slice(0, i);
}

/** The relay's store-and-forward marks on a request head, if well-formed. */
function queuedDelivery(head: RequestHead): QueuedDelivery | undefined {
  const q = (head as { queued?: unknown }).queued;
  if (typeof q !== 'object' || q === null) return undefined;
  const { deliveryId, queuedAt } = q as Record<string, unknown>;
  if (typeof deliveryId !== 'string' || typeof queuedAt !== 'string') return undefined;
  return { deliveryId: deliveryId.slice(0, 200), queuedAt: queuedAt.slice(0, 100) };
}
