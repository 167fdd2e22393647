/**
 * The tunnel's event stream: one union for everything a tunnel reports, from the
 * supervisor (connecting, ready, reconnecting…) and from the origin proxy (request-start,
 * request, warning, hint), which emits these events directly. Every view reads this one
 * stream: the Ink TUI and the web inspector (cli/ui/tui/store.ts), text and JSON lines
 * (cli/ui/lines.ts), the library's `Tunnel` emitter (cli/api/open-tunnel.ts).
 *
 * Event names follow the CLI contract (`ready`, `request`, `reconnecting`). The JSON
 * line of an event is not the event object as is: `jsonLineFields` in cli/ui/lines.ts
 * leaves out what is for in-process views only (`capture`, the origin's `upgrade` on a
 * start, a warning's `code`, a hint's `hostname`).
 */
import type { ExchangeCapture } from './origin/capture.js';

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
  event: 'request-start';
  /** Sequence number of the request in this tunnel, starting at 1. */
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
  event: 'request';
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
  /** Delivered from the relay's queue (kept while the tunnel was offline). */
  queued?: QueuedDelivery;
  /** With the proxy's `capture` option: what was captured (see RequestStartEvent). */
  capture?: ExchangeCapture;
}

/**
 * Something the user should act on. The origin proxy's `origin-unreachable` is reported
 * the first time the origin cannot be reached, and again only after it answered in
 * between; the runner's startup check has no code.
 */
export interface WarningEvent {
  event: 'warning';
  code?: 'origin-unreachable';
  message: string;
}

/** Advice once per origin proxy: the dev server refused the public Host header. */
export interface HintEvent {
  event: 'hint';
  code: 'host-rejected';
  /** The visitor's host name (no port) that the dev server refused. */
  hostname: string;
  message: string;
}

export interface ReadyEvent {
  event: 'ready';
  /** The first public URL (https when the relay has it). */
  url: string;
  urls: string[];
  hostname: string;
  kind: 'ephemeral' | 'named';
  relay: string;
  target: string;
  /** True for the embedded local relay: the URL works on this machine only. */
  local: boolean;
  /**
   * Embedded relay: the same tunnel at `http://127.0.0.1:PORT` (also in `urls`), for
   * HTTP clients that cannot resolve `*.localhost`.
   */
  directUrl?: string;
  /** `--lan`: the URL for other devices on this network (phones on the same Wi-Fi). */
  lanUrl?: string;
  connections: number;
  /** The web inspector's URL (http://127.0.0.1:4040), unless --no-inspect. */
  inspector?: string;
}

/** The events the origin proxy emits (cli/origin/proxy.ts). */
export type OriginEvent = RequestStartEvent | RequestEvent | WarningEvent | HintEvent;

type TunnelEventBody =
  | { event: 'connecting'; relay: string; attempt: number }
  | ReadyEvent
  | OriginEvent
  | { event: 'connection-lost'; error: string; connectionsLeft: number }
  | { event: 'reconnecting'; attempt: number; delayMs: number; error: string }
  | { event: 'reconnected'; url: string; sameHostname: boolean }
  | { event: 'rtt'; ms: number }
  | { event: 'closed' };

/** Every event of a tunnel. */
export type TunnelEvent = TunnelEventBody & {
  /**
   * The tunnel's name in the config file (`quick-tunnel start`), on every event of that
   * tunnel; absent for a single tunnel from the command line.
   */
  tunnel?: string;
};

export type EventSink = (event: TunnelEvent) => void;
