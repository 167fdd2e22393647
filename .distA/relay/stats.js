/**
 * The relay's traffic counters, as plain numbers: cheap to bump on every request, and
 * read by the admin app's `/metrics` (which loads prom-client lazily, so a tunnel's
 * time-to-URL does not pay for it). Gauges (tunnels connected, streams open) are not
 * counted here: `/metrics` reads them from the registry at scrape time.
 */
export class RelayStats {
    /** Finished visitor requests routed to a tunnel, by status class (`2xx`, `5xx`…). */
    requestsByClass = new Map();
    /** Body bytes from visitors into tunnels (request bodies, upgraded-stream upload). */
    bytesIn = 0;
    /** Body bytes from tunnels out to visitors. */
    bytesOut = 0;
    connectionEvents = {
        registered: 0,
        unregistered: 0,
        rejected: 0,
    };
    /** Counts one finished request (the edge's ForwardResult). */
    request(r) {
        const cls = statusClass(r.status);
        this.requestsByClass.set(cls, (this.requestsByClass.get(cls) ?? 0) + 1);
        this.bytesIn += r.bytesIn;
        this.bytesOut += r.bytesOut;
    }
    connection(event) {
        this.connectionEvents[event]++;
    }
}
/** `1xx`…`5xx`; anything else (0, 499 from an aborted visitor is `4xx`) is `other`. */
export function statusClass(status) {
    return status >= 100 && status <= 599 ? `${Math.floor(status / 100)}xx` : 'other';
}
//# sourceMappingURL=stats.js.map