/**
 * Serves each mux stream the relay opens (one visitor request or WebSocket) against one
 * local origin: an `Exchange` per stream (exchange.ts) over one `OriginClient`
 * (client.ts, on our HTTP/1.1 client: http1-client.ts) for http and https origins.
 *
 * Keep-alive: requests share a pool of origin connections. Idle pooled connections are
 * dropped after `idleSocketTimeoutMs`, before common servers close them (and at most
 * N-1 s after a `Keep-Alive: timeout=N` hint); a request that fails on a reused one
 * before any response byte is retried once on a fresh connection (see exchange.ts).
 * The proxy also keeps what outlives one exchange: which loopback address answers for
 * `localhost`, the one-time "origin unreachable" warning and the dev-server host hint.
 */
import http from 'node:http';
import { isIPv6, type LookupFunction, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { realClock, type Clock } from '../../shared/clock.js';
import { IdTable } from '../../shared/id-table.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import { isRequestHead } from '../../shared/protocol/tunnel.js';
import { CAPTURE_BODY_LIMIT_BYTES } from './capture.js';
import type { OriginClient } from './client.js';
import type { OriginEvent } from '../events.js';
import { Exchange } from './exchange.js';
import { hostRejectedHint, type DevServer } from './host-check.js';
import { Http1OriginClient } from './http1-client.js';
import { LOCALHOST_ADDRESSES, type OriginTarget } from './target.js';

export { REPLAY_LIMIT_BYTES } from './body-pump.js';

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

export class OriginProxy {
  readonly target: OriginTarget;
  /** @internal */ readonly hostHeaderMode: HostHeaderMode;
  /** @internal */ readonly connectTimeoutMs: number;
  /** @internal */ readonly responseHeadTimeoutMs: number;
  /** @internal */ readonly clock: ProxyTimers;
  /** @internal every request and upgrade to the origin goes through it */
  readonly client: OriginClient;
  /** @internal sockets handed over by an upgrade, outside the client's pool */
  readonly upgradedSockets = new Set<Duplex>();
  /** @internal the dev-server host hint was shown (once per proxy) */
  hostHintSent = false;
  /** @internal reports an event (the `onEvent` option) */
  readonly emit: (event: OriginEvent) => void;
  /** @internal body bytes captured per body; undefined = no capture */
  readonly captureBodyBytes: number | undefined;

  private readonly exchanges = new IdTable<Exchange>();
  private preferredAddress: string | undefined;
  private unreachableWarned = false;
  private readonly nextId: () => number;
  private closed = false;

  constructor(options: OriginProxyOptions) {
    this.target = options.target;
    this.hostHeaderMode = options.hostHeader ?? 'preserve';
    this.connectTimeoutMs = options.connectTimeoutMs ?? ORIGIN_PROXY_DEFAULTS.connectTimeoutMs;
    this.responseHeadTimeoutMs =
      options.responseHeadTimeoutMs ?? ORIGIN_PROXY_DEFAULTS.responseHeadTimeoutMs;
    this.clock = options.timers ?? realClock;
    this.emit = options.onEvent ?? (() => {});
    let id = 1;
    this.nextId = options.nextId ?? (() => id++);
    this.captureBodyBytes =
      options.capture === undefined || options.capture === false
        ? undefined
        : options.capture === true
          ? CAPTURE_BODY_LIMIT_BYTES
          : (options.capture.bodyLimitBytes ?? CAPTURE_BODY_LIMIT_BYTES);

    const { protocol, hostname, port } = this.target;
    // `localhost`: both loopback addresses, the one that answered last first, with happy
    // eyeballs. On loopback a missing listener refuses at once; an attempt that takes
    // longer than Node's 250 ms is an event loop busy elsewhere (an HTTP/2 visitor's
    // burst of 100 requests), not a dead address: giving up then failed every pending
    // request with ETIMEDOUT (502) at the same instant.
    const lookup = this.target.localhost ? this.lookupLocalhost : undefined;
    const attemptMs = this.target.localhost ? LOCALHOST_ATTEMPT_TIMEOUT_MS : undefined;
    const extraCa = options.ca === undefined ? [] : [options.ca].flat();
    this.client = new Http1OriginClient({
      hostname,
      port,
      lookup,
      autoSelectFamilyAttemptTimeoutMs: attemptMs,
      connectTimeoutMs: this.connectTimeoutMs,
      idleTimeoutMs: options.idleSocketTimeoutMs ?? ORIGIN_PROXY_DEFAULTS.idleSocketTimeoutMs,
      maxHeaderBytes: http.maxHeaderSize,
      onConnected: (socket: Socket): void => this.noteConnected(socket),
      tls:
        protocol === 'https'
          ? {
              rejectUnauthorized: options.insecure !== true,
              ca: extraCa.length > 0 ? [...rootCertificates, ...extraCa] : undefined,
            }
          : undefined,
    });
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
    this.client.close();
  }

  // ---- called by exchanges ----------------------------------------------------------

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

  /** @internal */
  hostRejected(server: DevServer, hostname: string): void {
    if (this.hostHintSent) return;
    this.hostHintSent = true;
    const message = hostRejectedHint(server, this.target.label, hostname);
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
