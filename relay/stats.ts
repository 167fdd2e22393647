/**
 * The relay's traffic counters, as plain numbers: cheap to bump on every request, and
 * read by the admin app's `/metrics` (which loads prom-client lazily, so a tunnel's
 * time-to-URL does not pay for it). Gauges (tunnels connected, streams open) are not
 * counted here: `/metrics` reads them from the registry at scrape time.
 */

/** Connection lifecycle events counted by `quick_tunnel_connection_events_total`. */
export type ConnectionEvent = 'registered' | 'unregistered' | 'rejected';

export class RelayStats {
  /** Finished visitor requests routed to a tunnel, by status class (`2xx`, `5xx`…). */
  readonly requestsByClass = new Map<string, number>();
  /** Body bytes from visitors into tunnels (request bodies, upgraded-stream upload). */
  bytesIn = 0;
  /** Body bytes from tunnels out to visitors. */
  bytesOut = 0;
  readonly connectionEvents: Record<ConnectionEvent, number> = {
    registered: 0,
    unregistered: 0,
    rejected: 0,
  };

  /** Counts one finished request (the edge's ForwardResult). */
  request(r: { status: number; bytesIn: number; bytesOut: number }): void {
    const cls = statusClass(r.status);
    this.requestsByClass.set(cls, (this.requestsByClass.get(cls) ?? 0) + 1);
    this.bytesIn += r.bytesIn;
    this.bytesOut += r.bytesOut;
  }

  connection(event: ConnectionEvent): void {
    this.connectionEvents[event]++;
  }
}

/** `1xx`…`5xx`; anything else (0, 499 from an aborted visitor is `4xx`) is `other`. */
export function statusClass(status: number): string {
  return status >= 100 && status <= 599 ? `${Math.floor(status / 100)}xx` : 'other';
}
