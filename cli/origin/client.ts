/**
 * What the origin proxy needs from an HTTP/1.1 client to the local origin: one request
 * with a streamed body and a response sink, and one upgrade (WebSocket). The proxy
 * (exchange.ts) speaks only this interface; http1-client.ts implements it.
 *
 * Contract of one call, in order: `onHead`, `onData`* (return false to pause until
 * `resume()`), then `onEnd` or `onError`, once; `onUpgrade` instead of `onHead` when an
 * upgrade is accepted (101). Nothing is reported after `abort()` unless it is given an
 * error, which then is the call's `onError`.
 */
import type { Duplex, Readable } from 'node:stream';
import type { HeaderPairs } from '../../shared/protocol/tunnel.js';

export interface OriginRequest {
  method: string;
  /** Path and query, as the visitor sent them. */
  path: string;
  /**
   * End-to-end headers, Host included, in order. No hop-by-hop headers (Connection,
   * Transfer-Encoding, Upgrade, Expect...): the client frames the body itself. An
   * upgrade's own Connection and Upgrade headers may be there (the capture shows them as
   * the origin gets them); the client skips them and writes its own, once.
   */
  headers: HeaderPairs;
  /**
   * The body, read as the origin takes it (backpressure). Framed by the Content-Length
   * header when there is one, else chunked. Undefined: no body.
   */
  body?: Readable | undefined;
  /** On a new connection, never a pooled one (the retry after a pooled one failed). */
  fresh?: boolean;
}

export interface OriginResponseHead {
  status: number;
  statusMessage: string;
  /** As received: order, case and repeats kept; values latin1. */
  headers: HeaderPairs;
}

/** Why a call failed: whether a retry on a fresh connection can be safe. */
export interface AttemptInfo {
  /** It ran on a pooled connection that had served a request before. */
  reused: boolean;
  /** Some of the response had arrived: the origin processed the request. */
  responseStarted: boolean;
}

export interface ResponseSink {
  onHead(head: OriginResponseHead): void;
  /** A body chunk; false pauses the response until the call's `resume()`. */
  onData(chunk: Buffer): boolean;
  onEnd(): void;
  onError(err: Error, info: AttemptInfo): void;
}

export interface UpgradeSink extends ResponseSink {
  /**
   * The origin switched protocols: `socket` is the raw connection, now the caller's,
   * paused (so nothing is lost until it is piped or resumed).
   */
  onUpgrade(head: OriginResponseHead, socket: Duplex): void;
}

/** One request under way. */
export interface OriginCall {
  /** Resumes a response paused by `onData` returning false. */
  resume(): void;
  /** Abandons the call and its connection; with `err`, reports it as the call's error. */
  abort(err?: Error): void;
}

export interface OriginClient {
  /** Throws (before any I/O) when the method, path or a header is not valid HTTP. */
  request(request: OriginRequest, sink: ResponseSink): OriginCall;
  /**
   * Sends an upgrade request (`protocol`: the Upgrade header's value) on a connection
   * of its own, never pooled: after a refusal the origin may still wait for bytes.
   */
  upgrade(request: OriginRequest, protocol: string, sink: UpgradeSink): OriginCall;
  /** Closes idle pooled connections (one was found dead: its siblings likely are too). */
  dropIdle(): void;
  /** Closes every connection, busy or idle. */
  close(): void;
}
