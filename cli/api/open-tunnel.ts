/**
 * The library API: `import { openTunnel } from 'quick-tunnel'`.
 *
 *     const tunnel = await openTunnel({ target: 3000 });
 *     console.log(tunnel.url);
 *     tunnel.on('request', (e) => console.log(e.method, e.path, e.status));
 *     await tunnel.close();
 *
 * The same code path as the CLI (TunnelRunner), without what belongs to a process: it
 * reads no environment variables and no config file (except a named tunnel's stored
 * credential), installs no signal handlers, never exits and never writes to stdout or
 * stderr. Failures are QuickTunnelError (rejections, or the `error` event).
 */
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { ConfigError, QuickTunnelError } from '../../shared/errors.js';
import type { TunnelRequest } from '../../shared/protocol/tunnel.js';
import { VERSION } from '../../shared/version.js';
import { parseRelayUrl, readEnvironment } from '../config.js';
import type { TunnelEvent } from '../events.js';
import { parseTarget } from '../origin/target.js';
import { normalizeFingerprint } from '../tunnel/client.js';
import { namedTunnelCredential } from '../tunnel/credentials.js';
import { embeddedRelay, remoteRelay, type RelayConnector } from '../tunnel/relay-connector.js';
import { TunnelRunner, accessPolicy, hostHeaderMode } from '../tunnel/runner.js';

export interface OpenTunnelOptions {
  /** The local app: a port (`3000`), `'HOST:PORT'`, or `'http(s)://HOST[:PORT]'`. */
  target: number | string;
  /**
   * The relay, `https://tunnel.example.com[:port]`. Default: a relay embedded in this
   * process on 127.0.0.1 (`http://<label>.localhost:<port>` URLs that work on this
   * machine only), shared by every tunnel of the process that has no relay.
   */
  relay?: string | URL | undefined;
  /** Relay access token. */
  token?: string | undefined;
  /** Extra CA or the relay's self-signed certificate to trust: PEM text, or a PEM file's path. */
  ca?: string | undefined;
  /**
   * Trust exactly the relay certificate with this SHA-256 fingerprint (as the relay prints
   * it, `AB:CD:…`, optionally prefixed `SHA256:`), CA or not.
   */
  caFingerprint?: string | undefined;
  /**
   * Serve the named tunnel NAME, created beforehand with `quick-tunnel tunnel create NAME`
   * (its credential is read from this user's quick-tunnel config directory). Default: an
   * ephemeral hostname, gone when the tunnel closes.
   */
  name?: string | undefined;
  /**
   * Host header the local app gets: `'preserve'` (the visitor's, default), `'rewrite'`
   * (the target's own `host:port`, for dev servers that check it), or a literal value.
   */
  hostHeader?: 'preserve' | 'rewrite' | (string & {}) | undefined;
  /** `USER:PASS` visitors must log in with (checked by the relay, which gets only a hash). */
  basicAuth?: string | undefined;
  /** Only these visitor addresses or CIDRs may visit (IPv4 and IPv6). */
  allowIp?: readonly string[] | undefined;
  /** Aborts opening (the promise rejects with code `QT_ERR_ABORTED`); after that, closes. */
  signal?: AbortSignal | undefined;
}

/** A finished request (or WebSocket) through the tunnel. */
export interface TunnelRequestEvent {
  /** Sequence number in this tunnel, from 1. */
  id: number;
  method: string;
  /** Path and query as the visitor sent them. */
  path: string;
  /** The origin's status (101 for a WebSocket), or 502 / 504 / 499 when it did not answer. */
  status: number;
  durationMs: number;
  /** Request body bytes (WebSocket: visitor → app). */
  bytesIn: number;
  /** Response body bytes (WebSocket: app → visitor). */
  bytesOut: number;
  /** True for a WebSocket. */
  upgrade: boolean;
  /** Why the exchange did not complete normally (absent when it did). */
  error?: string;
}

export interface TunnelReconnectingEvent {
  attempt: number;
  delayMs: number;
  /** Why the connection was lost or the last attempt failed. */
  error: string;
}

export interface TunnelReconnectedEvent {
  url: string;
  /** False if the relay forgot the hostname meanwhile: the URL changed. */
  sameHostname: boolean;
}

export interface TunnelClosedEvent {
  /** Why, if the tunnel closed by itself (a permanent error); absent after close(). */
  error?: QuickTunnelError;
}

/** Events of a Tunnel and their payloads. */
export interface TunnelEventMap {
  request: [TunnelRequestEvent];
  reconnecting: [TunnelReconnectingEvent];
  reconnected: [TunnelReconnectedEvent];
  /** Something to act on (nothing listens on the target yet, a dev server refused the Host…). */
  warning: [{ message: string }];
  /**
   * A permanent failure after the tunnel was online (token revoked, tunnel deleted): it
   * closes next. Emitted only when someone listens, so an unhandled one never throws.
   */
  error: [QuickTunnelError];
  closed: [TunnelClosedEvent];
}

/** An open tunnel: an EventEmitter with typed events (see TunnelEventMap). */
export interface Tunnel extends EventEmitter {
  /** The first public URL (https when the relay serves it). */
  readonly url: string;
  /** Every public URL (https and http); with the embedded relay, `directUrl` too. */
  readonly urls: readonly string[];
  /**
   * Embedded relay only: `http://127.0.0.1:PORT`, the same tunnel for HTTP clients that
   * cannot resolve `*.localhost` (Node's fetch, Python, wget). It reaches the tunnel while
   * it is the only one open on the embedded relay (with several, each has its `url` only).
   */
  readonly directUrl: string | undefined;
  /** The public host name, e.g. `k3x9q2.tunnel.example.com`. */
  readonly hostname: string;
  on<E extends keyof TunnelEventMap>(
    event: E,
    listener: (...args: TunnelEventMap[E]) => void,
  ): this;
  once<E extends keyof TunnelEventMap>(
    event: E,
    listener: (...args: TunnelEventMap[E]) => void,
  ): this;
  off<E extends keyof TunnelEventMap>(
    event: E,
    listener: (...args: TunnelEventMap[E]) => void,
  ): this;
  /**
   * Closes gracefully: the relay sends no new requests, those in flight finish (up to
   * 5 s), then every connection closes. Resolves when nothing of the tunnel is left.
   */
  close(): Promise<void>;
}

class OpenedTunnel extends EventEmitter implements Tunnel {
  url = '';
  urls: readonly string[] = [];
  hostname = '';
  private closing: Promise<void> | undefined;

  constructor(
    private readonly runner: () => TunnelRunner,
    readonly directUrl: string | undefined,
  ) {
    super();
  }

  /** Routes the runner's events to listeners. */
  event(e: TunnelEvent): void {
    switch (e.event) {
      case 'ready':
        this.url = e.url;
        this.urls = Object.freeze(
          this.directUrl === undefined || e.urls.includes(this.directUrl)
            ? [...e.urls]
            : [...e.urls, this.directUrl],
        );
        this.hostname = e.hostname;
        return;
      case 'request': {
        const out: TunnelRequestEvent = {
          id: e.id,
          method: e.method,
          path: e.path,
          status: e.status,
          durationMs: e.durationMs,
          bytesIn: e.bytesIn,
          bytesOut: e.bytesOut,
          upgrade: e.upgrade,
        };
        if (e.error !== undefined) out.error = e.error;
        this.emit('request', out);
        return;
      }
      case 'reconnecting':
        this.emit('reconnecting', { attempt: e.attempt, delayMs: e.delayMs, error: e.error });
        return;
      case 'reconnected':
        if (e.url.includes('://')) this.url = e.url;
        this.emit('reconnected', { url: e.url, sameHostname: e.sameHostname });
        return;
      case 'warning':
      case 'hint':
        this.emit('warning', { message: e.message });
        return;
      default:
        return;
    }
  }

  /** The runner gave up for good: report, close, then `closed` with the reason. */
  failed(err: Error): void {
    const error =
      err instanceof QuickTunnelError
        ? err
        : new QuickTunnelError('QT_ERR_TUNNEL', err.message, { cause: err });
    if (this.listenerCount('error') > 0) this.emit('error', error);
    this.closing ??= this.runner()
      .stop(0)
      .then(() => void this.emit('closed', { error }));
  }

  close(): Promise<void> {
    this.closing ??= this.runner()
      .stop(5_000)
      .then(() => void this.emit('closed', {}));
    return this.closing;
  }
}

/** PEM text as is; anything else is a file path to read. */
async function readCa(ca: string | undefined): Promise<string | undefined> {
  if (ca === undefined || ca.includes('-----BEGIN')) return ca;
  try {
    return await readFile(ca, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read the CA file ${ca}: ${(err as Error).message}`, {
      cause: err,
      hint: 'pass the PEM text itself or the path of a PEM file',
    });
  }
}

/** Read through a call: TypeScript would keep an earlier check's narrowing. */
function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function abortedError(): QuickTunnelError {
  return new QuickTunnelError(
    'QT_ERR_ABORTED',
    'openTunnel() was aborted before the tunnel was online',
  );
}

/**
 * Opens a tunnel to `options.target`; resolves once its public URL works. Rejects with
 * a QuickTunnelError (`code`, `message`, `hint`) on bad options, a relay that refuses or
 * cannot be reached (after 3 attempts), or an abort.
 */
export async function openTunnel(options: OpenTunnelOptions): Promise<Tunnel> {
  const signal = options.signal;
  if (signal?.aborted === true) throw abortedError();
  const targetInput = options.target;
  if (typeof targetInput !== 'number' && typeof targetInput !== 'string') {
    throw new ConfigError('openTunnel: `target` is required: a port (3000), HOST:PORT or a URL');
  }
  const target = parseTarget(String(targetInput));
  const names = { basicAuth: 'basicAuth', allowIp: 'allowIp' };
  const request: TunnelRequest = { clientVersion: VERSION };
  if (options.token !== undefined) request.token = options.token;
  const access = accessPolicy(options, names);
  if (access !== undefined) request.access = access;
  const relayUrl =
    options.relay === undefined
      ? undefined
      : parseRelayUrl(options.relay instanceof URL ? options.relay.href : options.relay);
  const fingerprint =
    options.caFingerprint === undefined ? undefined : normalizeFingerprint(options.caFingerprint);
  if (options.name !== undefined) {
    const named = await namedTunnelCredential(
      readEnvironment().configDir,
      relayUrl?.href,
      options.name,
    );
    request.name = named.name;
    request.credential = named.credential;
  }
  const ca = await readCa(options.ca);

  const relay: RelayConnector =
    relayUrl === undefined
      ? await embeddedRelay()
      : remoteRelay({ relay: relayUrl, ca, fingerprint256: fingerprint, connections: 2 });

  let runner!: TunnelRunner;
  const tunnel = new OpenedTunnel(() => runner, relay.directUrl);
  runner = new TunnelRunner(
    {
      target,
      hostHeader: hostHeaderMode(options.hostHeader),
      originInsecure: false,
      capture: false,
      request,
      relay,
    },
    { emit: (e) => tunnel.event(e) },
  );

  const onAbort = (): void => void runner.supervisor.stop(0).catch(() => {});
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await runner.start();
  } catch (err) {
    await runner.stop(0);
    if (aborted(signal)) throw abortedError();
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  if (aborted(signal)) {
    await runner.stop(0);
    throw abortedError();
  }
  signal?.addEventListener('abort', () => void tunnel.close(), { once: true });
  runner.done.then(
    (err) => {
      if (err !== undefined) tunnel.failed(err);
    },
    (err: unknown) => tunnel.failed(err instanceof Error ? err : new Error(String(err))),
  );
  return tunnel;
}
