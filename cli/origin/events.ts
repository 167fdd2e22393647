/**
 * Events the origin proxy reports, for the views (TUI, text and JSON lines) and the
 * tunnel supervisor. One union, one place: the views switch on `type`.
 */
import type { ExchangeCapture } from './capture.js';

/**
 * A request the relay kept while the tunnel was offline and delivers now
 * (store-and-forward): its delivery id and when it reached the relay.
 */
export interface QueuedDelivery {
  deliveryId: string;
  /** ISO 8601. */
  queuedAt: string;
}

/** A visitor request (or WebSocket) arrived and is being sent to the origin. */
export interface RequestStartEvent {
  type: 'request-start';
  /** Sequence number of the request in this proxy, starting at 1. */
  id: number;
  method: string;
  /** Request target as the visitor sent it: path and query. */
  path: string;
  upgrade: boolean;
  /** Set when the relay delivers this request from its queue (store-and-forward). */
  queued?: QueuedDelivery;
  /**
   * With the proxy's `capture` option: the heads and body previews of this exchange,
   * filled in live while it runs (the same object comes again in its `request` event).
   */
  capture?: ExchangeCapture;
}

/** A request is over: answered, failed, or abandoned by the visitor. */
export interface RequestEvent {
  type: 'request';
  id: number;
  method: string;
  path: string;
  /**
   * The origin's status (101 for a WebSocket). When the origin never answered, the
   * status the visitor gets instead: 502 (origin unreachable or broken), 504 (timed
   * out), 499 (the visitor went away first, nginx's convention).
   */
  status: number;
  /** From the arrival of the stream to the end of the exchange. */
  durationMs: number;
  /** Request body bytes received from the visitor (WebSocket: visitor → origin). */
  bytesIn: number;
  /** Response body bytes sent to the visitor (WebSocket: origin → visitor). */
  bytesOut: number;
  upgrade: boolean;
  /** Why the exchange did not complete normally (absent when it did). */
  error?: string;
  /** Set when the relay delivers this request from its queue (store-and-forward). */
  queued?: QueuedDelivery;
  /** With the proxy's `capture` option: what was captured (see RequestStartEvent). */
  capture?: ExchangeCapture;
}

/**
 * Something the user should act on. `origin-unreachable` is reported the first time
 * the origin cannot be reached, and again only after it answered in between.
 */
export interface WarningEvent {
  type: 'warning';
  code: 'origin-unreachable';
  message: string;
}

/** Advice once per proxy: the dev server refused the public Host header. */
export interface HintEvent {
  type: 'hint';
  code: 'host-rejected';
  /** The visitor's host name (no port) that the dev server refused. */
  hostname: string;
  message: string;
}

export type OriginEvent = RequestStartEvent | RequestEvent | WarningEvent | HintEvent;
