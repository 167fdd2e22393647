const RATE_WINDOW_S = 300;
/** A fixed-capacity queue: push at the end, the oldest falls out. */
class Ring {
    capacity;
    items;
    start = 0;
    length = 0;
    constructor(capacity) {
        this.capacity = capacity;
        this.items = new Array(capacity);
    }
    /** Appends; returns the item that fell out, if any. */
    push(item) {
        if (this.length < this.capacity) {
            this.items[(this.start + this.length) % this.capacity] = item;
            this.length++;
            return undefined;
        }
        const out = this.items[this.start];
        this.items[this.start] = item;
        this.start = (this.start + 1) % this.capacity;
        return out;
    }
    at(i) {
        if (i < 0 || i >= this.length)
            return undefined;
        return this.items[(this.start + i) % this.capacity];
    }
    clear() {
        this.items = new Array(this.capacity);
        this.start = 0;
        this.length = 0;
    }
}
export class TuiStore {
    /** Moves on every change; the view redraws (throttled) when it does. */
    version = 0;
    tunnel = {
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
    };
    /** The latest warnings and hints, newest last (at most 5). */
    notices = [];
    maxRows;
    maxBodyBytes;
    now;
    source;
    rows;
    openById = new Map();
    listeners = new Set();
    nextKey = 1;
    finished = 0;
    /** Highest proxy id whose start was seen (ids grow; an end at or below it without an open row is stale). */
    maxStartedId = 0;
    retainedBytes = 0;
    /** Key of the oldest row whose preview may still be released for the budget. */
    releaseFromKey = 0;
    /** Arrivals per second over the last RATE_WINDOW_S seconds. */
    arrivals = new Uint32Array(RATE_WINDOW_S);
    arrivalsSecond = 0;
    durations;
    durationsCount = 0;
    durationsNext = 0;
    percentileCache = {
        version: -1,
        p50: undefined,
        p90: undefined,
    };
    createdAt;
    constructor(options = {}) {
        this.maxRows = options.maxRows ?? 1000;
        this.maxBodyBytes = options.maxBodyBytes ?? 32 * 1024 * 1024;
        this.now = options.now ?? Date.now;
        this.source = options.source;
        this.rows = new Ring(this.maxRows);
        this.durations = new Float64Array(this.maxRows);
        this.createdAt = this.now();
        this.arrivalsSecond = Math.floor(this.createdAt / 1000);
    }
    // ---- reading ------------------------------------------------------------------------
    get rowCount() {
        return this.rows.length;
    }
    /** Row `i` in time order (0 = oldest kept). */
    rowAt(i) {
        return this.rows.at(i);
    }
    /** Index of the row with `key`, or -1 (rows are in key order: binary search). */
    indexOfKey(key) {
        let lo = 0;
        let hi = this.rows.length - 1;
        while (lo <= hi) {
            const mid = (lo + hi) >> 1;
            const k = this.rows.at(mid).key;
            if (k === key)
                return mid;
            if (k < key)
                lo = mid + 1;
            else
                hi = mid - 1;
        }
        return -1;
    }
    rowByKey(key) {
        const i = this.indexOfKey(key);
        return i < 0 ? undefined : this.rows.at(i);
    }
    /** Body preview bytes held by the rows (for the memory budget). */
    get bodyBytesRetained() {
        return this.retainedBytes;
    }
    status() {
        const t = this.tunnel;
        if (t.closed)
            return 'offline';
        if (t.closing)
            return 'closing';
        if (t.url === undefined)
            return 'connecting';
        return this.liveConnections() > 0 ? 'online' : 'reconnecting';
    }
    liveConnections() {
        return this.source?.liveConnections() ?? this.tunnel.connectionsLive;
    }
    rttMs() {
        return this.source?.rttMs() ?? this.tunnel.rttMs;
    }
    totals() {
        this.rollArrivals();
        let last1 = 0;
        let last5 = 0;
        const sec = this.arrivalsSecond;
        for (let i = 0; i < RATE_WINDOW_S; i++) {
            const n = this.arrivals[(sec - i) % RATE_WINDOW_S];
            last5 += n;
            if (i < 60)
                last1 += n;
        }
        // Over the time the tunnel has been up when that is shorter than the window.
        const upS = Math.max(1, (this.now() - this.createdAt) / 1000);
        if (this.percentileCache.version !== this.version)
            this.computePercentiles();
        return {
            total: this.finished,
            open: this.openById.size,
            rate1m: last1 / Math.min(60, upS),
            rate5m: last5 / Math.min(RATE_WINDOW_S, upS),
            p50Ms: this.percentileCache.p50,
            p90Ms: this.percentileCache.p90,
        };
    }
    subscribe(listener) {
        this.listeners.add(listener);
        return () => this.listeners.delete(listener);
    }
    // ---- events -------------------------------------------------------------------------
    onTunnelEvent(e) {
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
                t.connectionsWanted = e.connections;
                t.connectionsLive = 1;
                t.onlineSince = this.now();
                t.reconnect = undefined;
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
                    this.addNotice('warning', `reconnected with a NEW address: ${e.url} (the old one expired)`);
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
                this.startRow(e.id, e.method, e.path, false, undefined);
                break;
            case 'request':
                this.finishRow(e.id, e, undefined);
                break;
        }
        this.changed();
    }
    onOriginEvent(e) {
        switch (e.type) {
            case 'request-start':
                this.startRow(e.id, e.method, e.path, e.upgrade, e.capture);
                break;
            case 'request':
                this.finishRow(e.id, e, e.capture);
                break;
            case 'warning':
                this.addNotice('warning', e.message);
                break;
            case 'hint':
                this.addNotice('hint', e.message);
                break;
        }
        this.changed();
    }
    // ---- actions ------------------------------------------------------------------------
    /** Drops the finished rows (open requests and WebSockets stay); totals are kept. */
    clear() {
        const open = [];
        for (let i = 0; i < this.rows.length; i++) {
            const row = this.rows.at(i);
            if (row.open)
                open.push(row);
            else
                this.dropped(row);
        }
        this.rows.clear();
        for (const row of open)
            this.rows.push(row);
        this.changed();
    }
    /** The user asked to quit: the header says so while the tunnel drains. */
    markClosing() {
        this.tunnel.closing = true;
        this.changed();
    }
    addNotice(kind, message) {
        this.notices.push({ kind, message, at: this.now() });
        if (this.notices.length > 5)
            this.notices.shift();
        this.changed();
    }
    /** Adds the row of a replay of `original` (open until `finishReplay`); returns its key. */
    startReplay(original) {
        const row = this.newRow(undefined, original.replayOf ?? original.id ?? original.key, original.method, original.path);
        return row.key;
    }
    finishReplay(key, result) {
        const row = this.rowByKey(key);
        if (row === undefined)
            return; // cleared or dropped meanwhile
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
    newRow(id, replayOf, method, path, upgrade = false, capture = undefined) {
        const row = {
            key: this.nextKey++,
            id,
            replayOf,
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
            capture,
            retainedBytes: 0,
        };
        const out = this.rows.push(row);
        if (out !== undefined)
            this.dropped(out);
        return row;
    }
    startRow(id, method, path, upgrade, capture) {
        if (this.openById.has(id) || id <= this.maxStartedId)
            return; // seen already
        this.maxStartedId = id;
        this.countArrival();
        const row = this.newRow(id, undefined, method, path, upgrade, capture);
        this.openById.set(id, row);
    }
    finishRow(id, e, capture) {
        let row = this.openById.get(id);
        if (row === undefined) {
            // Already finished, or dropped (cleared, too old): nothing to show.
            if (id <= this.maxStartedId)
                return;
            // The start was not seen: add the row now.
            this.maxStartedId = id;
            this.countArrival();
            row = this.newRow(id, undefined, e.method, e.path, e.upgrade, capture);
        }
        else if (!row.open) {
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
        if (capture !== undefined)
            row.capture = capture;
        if (!e.upgrade) {
            this.durations[this.durationsNext] = e.durationMs;
            this.durationsNext = (this.durationsNext + 1) % this.durations.length;
            this.durationsCount = Math.min(this.durations.length, this.durationsCount + 1);
        }
        this.account(row);
    }
    /** Counts a finished row's previews against the budget; releases the oldest if over. */
    account(row) {
        if (row.capture === undefined)
            return;
        row.retainedBytes = row.capture.retainedBytes;
        this.retainedBytes += row.retainedBytes;
        if (this.retainedBytes <= this.maxBodyBytes)
            return;
        let i = Math.max(0, this.indexAtOrAfter(this.releaseFromKey));
        for (; i < this.rows.length && this.retainedBytes > this.maxBodyBytes; i++) {
            const old = this.rows.at(i);
            if (old.open || old.retainedBytes === 0)
                continue;
            old.capture?.releaseBodies();
            this.retainedBytes -= old.retainedBytes;
            old.retainedBytes = 0;
            this.releaseFromKey = old.key + 1;
        }
    }
    indexAtOrAfter(key) {
        let lo = 0;
        let hi = this.rows.length;
        while (lo < hi) {
            const mid = (lo + hi) >> 1;
            if (this.rows.at(mid).key < key)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo;
    }
    dropped(row) {
        this.retainedBytes -= row.retainedBytes;
        row.retainedBytes = 0;
        if (row.id !== undefined && row.open)
            this.openById.delete(row.id);
    }
    rollArrivals() {
        const sec = Math.floor(this.now() / 1000);
        if (sec <= this.arrivalsSecond)
            return;
        const steps = Math.min(RATE_WINDOW_S, sec - this.arrivalsSecond);
        for (let i = 1; i <= steps; i++)
            this.arrivals[(this.arrivalsSecond + i) % RATE_WINDOW_S] = 0;
        this.arrivalsSecond = sec;
    }
    countArrival() {
        this.rollArrivals();
        const slot = this.arrivalsSecond % RATE_WINDOW_S;
        this.arrivals[slot] = this.arrivals[slot] + 1;
    }
    computePercentiles() {
        const n = this.durationsCount;
        if (n === 0) {
            this.percentileCache = { version: this.version, p50: undefined, p90: undefined };
            return;
        }
        const sorted = this.durations.slice(0, n).sort();
        const pick = (p) => sorted[Math.min(n - 1, Math.ceil(p * n) - 1)];
        this.percentileCache = { version: this.version, p50: pick(0.5), p90: pick(0.9) };
    }
    changed() {
        this.version++;
        for (const listener of this.listeners)
            listener();
    }
}
//# sourceMappingURL=store.js.map