/**
 * The inspector's live list: Server-Sent Events to the open pages. Changes of the capture
 * stores are batched over FLUSH_MS into `requests` (new rows, and open ones again once
 * finished) and `tunnels` (state changes; polled each second for what the stores do not
 * announce, such as live connections); a clear sends a new `snapshot`. At most
 * MAX_EVENT_CLIENTS pages; one that stops reading is dropped past
 * MAX_CLIENT_BUFFER_BYTES.
 */
import type http from 'node:http';
import type { RequestRow } from '../ui/tui/store.js';
import { HttpError, SECURITY_HEADERS } from './http-error.js';
import type { InspectorTunnel } from './server.js';
import { summarize, type RequestSummary } from './views.js';

/** Live-list clients at once (each an open SSE response). */
const MAX_EVENT_CLIENTS = 16;
/** A client that stops reading is dropped once this much is queued for it. */
const MAX_CLIENT_BUFFER_BYTES = 4 * 1024 * 1024;
/** Live-list updates are batched over this long. */
const FLUSH_MS = 100;
const KEEPALIVE_MS = 15_000;

export interface LiveList {
  /** Answers GET /api/events: a `snapshot`, then updates until the page goes. */
  open(req: http.IncomingMessage, res: http.ServerResponse): void;
  close(): void;
}

/**
 * `tunnelsJson`: the body of GET /api/tunnels; `allRows`: every row of every tunnel,
 * oldest first.
 */
export function startLiveList(
  tunnels: readonly InspectorTunnel[],
  nameOf: (t: InspectorTunnel) => string,
  tunnelsJson: () => object,
  allRows: () => { row: RequestRow; tunnel: InspectorTunnel }[],
): LiveList {
  const clients = new Set<http.ServerResponse>();
  let flushTimer: NodeJS.Timeout | undefined;
  /** Per tunnel: the newest row sent, the open rows sent (to send again once finished). */
  const tracks = tunnels.map((t) => ({
    tunnel: t,
    lastKey: 0,
    openSent: new Set<number>(),
    clears: t.store.clears,
  }));
  let lastTunnels = '';

  const send = (res: http.ServerResponse, event: string, data: unknown): void => {
    if (res.writableLength > MAX_CLIENT_BUFFER_BYTES) {
      res.destroy();
      return;
    }
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const broadcast = (event: string, data: unknown): void => {
    for (const res of clients) send(res, event, data);
  };
  /** Starts tracking from the stores as they are now (what a snapshot shows). */
  const resetTracking = (): void => {
    for (const track of tracks) {
      const { store } = track.tunnel;
      track.openSent.clear();
      track.lastKey = 0;
      for (let i = 0; i < store.rowCount; i++) {
        const row = store.rowAt(i)!;
        if (row.open) track.openSent.add(row.key);
        track.lastKey = row.key;
      }
      track.clears = store.clears;
    }
  };
  const snapshot = () => ({
    ...tunnelsJson(),
    requests: allRows().map(({ row, tunnel }) => summarize(row, nameOf(tunnel))),
  });
  const flush = (): void => {
    flushTimer = undefined;
    if (clients.size === 0) return;
    const tunnelState = JSON.stringify(tunnelsJson());
    if (tracks.some((track) => track.tunnel.store.clears !== track.clears)) {
      resetTracking();
      lastTunnels = tunnelState;
      broadcast('snapshot', snapshot());
      return;
    }
    const changed: RequestSummary[] = [];
    for (const track of tracks) {
      const { store } = track.tunnel;
      const name = nameOf(track.tunnel);
      for (const key of track.openSent) {
        const row = store.rowByKey(key);
        if (row === undefined) track.openSent.delete(key);
        else if (!row.open) {
          changed.push(summarize(row, name));
          track.openSent.delete(key);
        }
      }
      // Rows are in key order: the new ones are at the end.
      let i = store.rowCount;
      while (i > 0 && store.rowAt(i - 1)!.key > track.lastKey) i--;
      for (; i < store.rowCount; i++) {
        const row = store.rowAt(i)!;
        changed.push(summarize(row, name));
        if (row.open) track.openSent.add(row.key);
        track.lastKey = row.key;
      }
    }
    if (changed.length > 0) broadcast('requests', changed);
    if (tunnelState !== lastTunnels) {
      lastTunnels = tunnelState;
      broadcast('tunnels', JSON.parse(tunnelState));
    }
  };
  const onChange = (): void => {
    if (clients.size > 0 && flushTimer === undefined) {
      flushTimer = setTimeout(flush, FLUSH_MS);
      flushTimer.unref();
    }
  };
  const unsubscribes = tunnels.map((t) => t.store.subscribe(onChange));
  // Status changes the store does not announce (live connections), and keep-alives.
  let ticks = 0;
  const ticker = setInterval(() => {
    if (clients.size === 0) return;
    flush();
    if (++ticks % Math.round(KEEPALIVE_MS / 1000) === 0) {
      for (const res of clients) res.write(': keep-alive\n\n');
    }
  }, 1000);
  ticker.unref();

  const openEvents = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (clients.size >= MAX_EVENT_CLIENTS) {
      throw new HttpError(503, `at most ${MAX_EVENT_CLIENTS} inspector pages at once`);
    }
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      connection: 'keep-alive',
    });
    if (clients.size === 0) resetTracking();
    clients.add(res);
    lastTunnels = JSON.stringify(tunnelsJson());
    send(res, 'snapshot', snapshot());
    req.socket.setTimeout(0);
    res.once('close', () => clients.delete(res));
  };

  return {
    open: openEvents,
    close() {
      for (const unsubscribe of unsubscribes) unsubscribe();
      clearInterval(ticker);
      if (flushTimer !== undefined) clearTimeout(flushTimer);
      for (const res of clients) res.end();
      clients.clear();
    },
  };
}
