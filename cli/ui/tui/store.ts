/**
 * The TUI's model: consumes the tunnel's event stream (TunnelEvent, the origin proxy's
 * requests with their captures included) and keeps what the screen shows: the tunnel's
 * state, totals, and a bounded history of requests. Plain TypeScript, no React: the
 * components read it, and redraw at a bounded rate when `version` moves.
 *
 * Memory stays flat over a long session: at most `maxRows` rows (oldest dropped), each
 * body preview capped by the proxy (64 KiB), and the previews of all rows together
 * capped at `maxBodyBytes` (the oldest rows lose their previews first).
 */
import { IdTable } from '../../../shared/id-table.js';
import type { ExchangeCapture } from '../../origin/capture.js';
import type { ReplayResult } from '../../origin/replay.js';
import type { TunnelEvent } from '../../events.js';
import { RequestStats } from './request-stats.js';
import { Ring } from './ring.js';
import type {
  Notice,
  RequestRow,
  TotalsSnapshot,
  TunnelInfo,
  TunnelSource,
  TunnelStatus,
} from './store-types.js';

export type {
  Notice,
  RequestRow,
  TotalsSnapshot,
  TunnelInfo,
  TunnelSource,
  TunnelStatus,
} from './store-types.js';

export interface TuiStoreOptions {
  /** Rows kept (oldest dropped). Default 1000. */
  maxRows?: number;
  /** Body preview bytes kept over all rows. Default 32 MiB. */
  maxBodyBytes?: number;
  now?: () => number;
  source?: TunnelSource;
  /**
   * Hands out row keys. Default 1, 2, 3… per store; the stores of several tunnels share
   * one counter so the web inspector's request ids stay unique across them.
   */
  nextKey?: () => number;
}

export class TuiStore {
  /** Moves on every change; the view redraws (throttled) when it does. */
  version = 0;
  readonly tunnel: TunnelInfo = {
    url: undefined,
    urls: [],
    hostname: undefined,
    kind: undefined,
    relay: undefined,
    target: undefined,
    local: false,
    connectionsWanted: 0,
    connectionsLive: 0,
    rttMs: undefined,
    onlineSince: undefined,
    connectAttempt: 0,
    reconnect: undefined,
    closed: false,
    closing: false,
    inspectorUrl: undefined,
  };
  /** The latest warnings and hints, newest last (at most 5). */
  readonly notices: Notice[] = [];
  readonly maxRows: number;
  readonly maxBodyBytes: number;
  /** Moves on every `clear()` (views that mirror the rows drop theirs). */
  clears = 0;
  readonly now: () => number;
  private readonly source: TunnelSource | undefined;
  private readonly rows: Ring<RequestRow>;
  private readonly openById = new IdTable<RequestRow>();
  private readonly listeners = new Set<() => void>();
  private readonly nextKey: () => number;
  private finished = 0;
  /** Highest proxy id whose start was seen (ids grow; an end at or below it without an open row is stale). */
  private maxStartedId = 0;
  private retainedBytes = 0;
  /** Key of the oldest row whose preview may still be released for the budget. */
  private releaseFromKey = 0;
  private readonly stats: RequestStats;
  readonly createdAt: number;

  constructor(options: TuiStoreOptions = {}) {
    this.maxRows = options.maxRows ?? 1000;
    this.maxBodyBytes = options.maxBodyBytes ?? 32 * 1024 * 1024;
    this.now = options.now ?? Date.now;
    this.source = options.source;
    let key = 1;
    this.nextKey = options.nextKey ?? (() => key++);
    this.rows = new Ring(this.maxRows);
    this.createdAt = this.now();
    this.stats = new RequestStats(this.now, this.createdAt, this.maxRows);
  }

  // ---- reading ------------------------------------------------------------------------

  get rowCount(): number {
    return this.rows.length;
  }

  /** Row `i` in time order (0 = oldest kept). */
  rowAt(i: number): RequestRow | undefined {
    return this.rows.at(i);
  }

  /** Index of the row with `key`, or -1 (rows are in key order: binary search). */
  indexOfKey(key: number): number {
    let lo = 0;
    let hi = this.rows.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const k = this.rows.at(mid)!.key;
      if (k === key) return mid;
      if (k < key) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  rowByKey(key: number): RequestRow | undefined {
    const i = this.indexOfKey(key);
    return i < 0 ? undefined : this.rows.at(i);
  }

  /** Body preview bytes held by the rows (for the memory budget). */
  get bodyBytesRetained(): number {
    return this.retainedBytes;
  }

  status(): TunnelStatus {
    const t = this.tunnel;
    if (t.closed) return 'offline';
    if (t.closing) return 'closing';
    if (t.url === undefined) return 'connecting';
    return this.liveConnections() > 0 ? 'online' : 'reconnecting';
  }

  liveConnections(): number {
    return this.source?.liveConnections() ?? this.tunnel.connectionsLive;
  }

  rttMs(): number | undefined {
    return this.source?.rttMs() ?? this.tunnel.rttMs;
  }

  totals(): TotalsSnapshot {
    const { p50, p90 } = this.stats.percentiles();
    return {
      total: this.finished,
      open: this.openById.size,
      ...this.stats.rates(),
      p50Ms: p50,
      p90Ms: p90,
    };
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---- events -------------------------------------------------------------------------

  /** Takes one event of the tunnel (cli/events.ts). */
  onEvent(e: TunnelEvent): void {
    const t = this.tunnel;
    switch (e.event) {
      case 'connecting':
        t.connectAttempt = e.attempt;
        t.relay = e.relay;
        break;
      case 'ready':
        t.url = e.url;
        t.urls = e.urls.length > 0 ? [...e.urls] : [e.url];
        t.hostname = e.hostname;
        t.kind = e.kind;
        t.relay = e.relay;
        t.target = e.target;
        t.local = e.local;
        t.lanUrl = e.lanUrl;
        t.connectionsWanted = e.connections;
        t.connectionsLive = 1;
        t.onlineSince = this.now();
        t.reconnect = undefined;
        if (e.inspector !== undefined) t.inspectorUrl = e.inspector;
        break;
      case 'connection-lost':
        t.connectionsLive = e.connectionsLeft;
        break;
      case 'reconnecting':
        t.reconnect = { attempt: e.attempt, at: this.now() + e.delayMs, error: e.error };
        break;
      case 'reconnected':
        t.connectionsLive = Math.min(t.connectionsWanted || 1, t.connectionsLive + 1);
        t.reconnect = undefined;
        if (!e.sameHostname) {
          t.url = e.url;
          t.urls = [e.url];
          this.addNotice(
            'warning',
            `reconnected with a NEW address: ${e.url} (the old one expired)`,
          );
        }
        break;
      case 'rtt':
        t.rttMs = e.ms;
        break;
      case 'warning':
        this.addNotice('warning', e.message);
        break;
      case 'hint':
        this.addNotice('hint', e.message);
        break;
      case 'closed':
        t.closed = true;
        t.connectionsLive = 0;
        break;
      case 'request-start':
        this.startRow(e.id, e.method, e.path, e.upgrade, e.capture);
        break;
      case 'request':
        this.finishRow(e.id, e, e.capture);
        break;
    }
    this.changed();
  }

  // ---- actions ------------------------------------------------------------------------

  /** Drops the finished rows (open requests and WebSockets stay); totals are kept. */
  clear(): void {
    const open: RequestRow[] = [];
    for (let i = 0; i < this.rows.length; i++) {
      const row = this.rows.at(i)!;
      if (row.open) open.push(row);
      else this.dropped(row);
    }
    this.rows.clear();
    for (const row of open) this.rows.push(row);
    this.clears++;
    this.changed();
  }

  /** The user asked to quit: the header says so while the tunnel drains. */
  markClosing(): void {
    this.tunnel.closing = true;
    this.changed();
  }

  addNotice(kind: Notice['kind'], message: string): void {
    this.notices.push({ kind, message, at: this.now() });
    if (this.notices.length > 5) this.notices.shift();
    this.changed();
  }

  /**
   * Adds the row of a replay of `original` (open until `finishReplay`); returns its key.
   * `edits`: the method and path sent instead of the original's (replay with edits).
   */
  startReplay(original: RequestRow, edits?: { method: string; path: string }): number {
    const row = this.newRow(
      undefined,
      original.replayOf ?? original.id ?? original.key,
      edits?.method ?? original.method,
      edits?.path ?? original.path,
      false,
      undefined,
      { key: original.key, edited: edits !== undefined },
    );
    return row.key;
  }

  finishReplay(key: number, result: ReplayResult): void {
    const row = this.rowByKey(key);
    if (row === undefined) return; // cleared or dropped meanwhile
    row.open = false;
    row.status = result.status;
    row.durationMs = result.durationMs;
    row.bytesIn = result.bytesIn;
    row.bytesOut = result.bytesOut;
    row.error = result.error;
    row.capture = result.capture;
    this.account(row);
    this.changed();
  }

  // ---- internals ----------------------------------------------------------------------

  private newRow(
    id: number | undefined,
    replayOf: number | undefined,
    method: string,
    path: string,
    upgrade = false,
    capture: ExchangeCapture | undefined = undefined,
    replay: { key: number; edited: boolean } | undefined = undefined,
  ): RequestRow {
    const row: RequestRow = {
      key: this.nextKey(),
      id,
      replayOf,
      replayOfKey: replay?.key,
      edited: replay?.edited ?? false,
      method,
      path,
      upgrade,
      startedAt: this.now(),
      open: true,
      status: undefined,
      durationMs: undefined,
      bytesIn: 0,
      bytesOut: 0,
      error: undefined,
      queued: undefined,
      capture,
      retainedBytes: 0,
    };
    const out = this.rows.push(row);
    if (out !== undefined) this.dropped(out);
    return row;
  }

  private startRow(
    id: number,
    method: string,
    path: string,
    upgrade: boolean,
    capture: ExchangeCapture | undefined,
  ): void {
    if (this.openById.has(id) || id <= this.maxStartedId) return; // seen already
    this.maxStartedId = id;
    this.stats.countArrival();
    const row = this.newRow(id, undefined, method, path, upgrade, capture);
    this.openById.set(id, row);
  }

  private finishRow(
    id: number,
    e: {
      method: string;
      path: string;
      status: number;
      durationMs: number;
      bytesIn: number;
      bytesOut: number;
      upgrade: boolean;
      error?: string;
      queued?: { deliveryId: string; queuedAt: string };
    },
    capture: ExchangeCapture | undefined,
  ): void {
    let row = this.openById.get(id);
    if (row === undefined) {
      // Already finished, or dropped (cleared, too old): nothing to show.
      if (id <= this.maxStartedId) return;
      // The start was not seen: add the row now.
      this.maxStartedId = id;
      this.stats.countArrival();
      row = this.newRow(id, undefined, e.method, e.path, e.upgrade, capture);
    } else if (!row.open) {
      return;
    }
    this.openById.delete(id);
    this.finished++;
    row.open = false;
    row.status = e.status;
    row.durationMs = e.durationMs;
    row.bytesIn = e.bytesIn;
    row.bytesOut = e.bytesOut;
    row.error = e.error;
    if (e.queued !== undefined) row.queued = e.queued;
    if (capture !== undefined) row.capture = capture;
    if (!e.upgrade) this.stats.recordDuration(e.durationMs);
    this.account(row);
  }

  /** Counts a finished row's previews against the budget; releases the oldest if over. */
  private account(row: RequestRow): void {
    if (row.capture === undefined) return;
    row.retainedBytes = row.capture.retainedBytes;
    this.retainedBytes += row.retainedBytes;
    if (this.retainedBytes <= this.maxBodyBytes) return;
    let i = Math.max(0, this.indexAtOrAfter(this.releaseFromKey));
    for (; i < this.rows.length && this.retainedBytes > this.maxBodyBytes; i++) {
      const old = this.rows.at(i)!;
      if (old.open || old.retainedBytes === 0) continue;
      old.capture?.releaseBodies();
      this.retainedBytes -= old.retainedBytes;
      old.retainedBytes = 0;
      this.releaseFromKey = old.key + 1;
    }
  }

  private indexAtOrAfter(key: number): number {
    let lo = 0;
    let hi = this.rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.rows.at(mid)!.key < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private dropped(row: RequestRow): void {
    this.retainedBytes -= row.retainedBytes;
    row.retainedBytes = 0;
    if (row.id !== undefined && row.open) this.openById.delete(row.id);
  }

  private changed(): void {
    this.version++;
    for (const listener of this.listeners) listener();
  }
}
