/**
 * What the TUI store (cli/ui/tui/store.ts) holds and hands to its views (the Ink TUI and
 * the web inspector): the rows of the request list, the tunnel's state, the totals.
 */
import type { ExchangeCapture } from '../../origin/capture.js';

export type TunnelStatus = 'connecting' | 'online' | 'reconnecting' | 'offline' | 'closing';

/** One row of the request list: a request, a WebSocket session, or a replay. */
export interface RequestRow {
  /** Unique and increasing in the store (rows are kept in key order). */
  readonly key: number;
  /** The origin proxy's request number (`#12`); undefined for a replay. */
  readonly id: number | undefined;
  /** For a replay: the `id` (or key) of the request it replays. */
  readonly replayOf: number | undefined;
  /** For a replay: the key of the row it replays (the inspector links to it). */
  readonly replayOfKey: number | undefined;
  /** For a replay: true when it was sent with edits (method, path, headers or body). */
  readonly edited: boolean;
  readonly method: string;
  readonly path: string;
  readonly upgrade: boolean;
  /** Epoch ms. */
  readonly startedAt: number;
  open: boolean;
  status: number | undefined;
  durationMs: number | undefined;
  bytesIn: number;
  bytesOut: number;
  error: string | undefined;
  /** Delivered from the relay's queue: the delivery id and when it reached the relay. */
  queued: { deliveryId: string; queuedAt: string } | undefined;
  capture: ExchangeCapture | undefined;
  /** Body bytes of `capture` counted against the store's budget. */
  retainedBytes: number;
}

export interface Notice {
  kind: 'warning' | 'hint' | 'info';
  message: string;
  at: number;
}

export interface TunnelInfo {
  /** Set by `ready`; until then the tunnel is connecting. */
  url: string | undefined;
  urls: string[];
  hostname: string | undefined;
  kind: 'ephemeral' | 'named' | undefined;
  relay: string | undefined;
  target: string | undefined;
  local: boolean;
  /** `--lan`: the URL other devices on this network open. */
  lanUrl?: string | undefined;
  connectionsWanted: number;
  /** From events, when no live source is given. */
  connectionsLive: number;
  rttMs: number | undefined;
  onlineSince: number | undefined;
  connectAttempt: number;
  reconnect: { attempt: number; at: number; error: string } | undefined;
  closed: boolean;
  closing: boolean;
  /** The web inspector's address, when it runs (from `ready`). */
  inspectorUrl: string | undefined;
}

export interface TotalsSnapshot {
  /** Requests finished since the start (not reset by clear). */
  total: number;
  /** Requests and WebSockets in progress. */
  open: number;
  /** Arrivals per second over the last 1 and 5 minutes. */
  rate1m: number;
  rate5m: number;
  /** Duration percentiles of the last finished HTTP requests (WebSockets excluded). */
  p50Ms: number | undefined;
  p90Ms: number | undefined;
}

/** Live figures the supervisor knows better than the event stream. */
export interface TunnelSource {
  liveConnections(): number;
  rttMs(): number | undefined;
}
