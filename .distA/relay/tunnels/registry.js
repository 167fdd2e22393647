export class Tunnel {
    id;
    label;
    kind;
    sessions = [];
    createdAt = Date.now();
    next = 0;
    /** Requests forwarded, for logs and metrics. */
    requests = 0;
    /** Visitor access control, from the latest connection's HELLO (undefined = open). */
    access;
    constructor(id, label, kind) {
        this.id = id;
        this.label = label;
        this.kind = kind;
    }
    /**
     * A live session for a new stream; undefined when none can take one. Round-robin,
     * but sticky within one turn of the event loop: the requests that arrive together go
     * over one connection, so their frames leave in one TLS write and the client reads
     * them in one go (each session corks its socket per turn). Spreading every request
     * over the HA connections cost ~20% of small-GET throughput (`npm run bench -- e2e`:
     * 7.7k req/s with one connection, 6.4k with two).
     */
    pickSession() {
        const turn = currentTurn();
        const sticky = this.sticky;
        if (sticky !== undefined && this.stickyTurn === turn && usable(sticky))
            return sticky;
        const n = this.sessions.length;
        for (let i = 0; i < n; i++) {
            const s = this.sessions[(this.next + i) % n];
            if (usable(s)) {
                this.next = (this.next + i + 1) % n;
                this.sticky = s;
                this.stickyTurn = turn;
                return s;
            }
        }
        this.sticky = undefined;
        return undefined;
    }
    /** Drops a session that closed; false if it was not one of this tunnel's. */
    removeSession(session) {
        const i = this.sessions.indexOf(session);
        if (i === -1)
            return false;
        this.sessions.splice(i, 1);
        if (this.sticky === session)
            this.sticky = undefined;
        return true;
    }
    sticky;
    stickyTurn = -1;
}
function usable(s) {
    return !s.closed && !s.goingAway && !s.receivedGoAway;
}
/** Counts turns of the event loop, for as long as someone asks (one setImmediate a turn). */
let turnCount = 0;
let turnScheduled = false;
function nextTurn() {
    turnCount++;
    turnScheduled = false;
}
function currentTurn() {
    if (!turnScheduled) {
        turnScheduled = true;
        setImmediate(nextTurn);
    }
    return turnCount;
}
export class TunnelRegistry {
    byLabel = new Map();
    hooks;
    holdMs;
    maxHeld;
    now;
    startedAt;
    /** Labels whose last connection dropped recently → when their hold window ends. */
    recentlyOffline = new Map();
    waiters = new Map();
    heldCount = 0;
    constructor(options = {}) {
        this.hooks = options;
        this.holdMs = options.holdMs ?? 10_000;
        this.maxHeld = options.maxHeldRequests ?? 10_000;
        this.now = options.now ?? Date.now;
        this.startedAt = options.restarted === true ? this.now() : -Infinity;
    }
    /** Requests currently waiting for a tunnel to come back. */
    get held() {
        return this.heldCount;
    }
    /**
     * How long a request for `label` may wait for a connection: the rest of the label's
     * hold window (it just went offline) or of the relay's post-start window; 0 = don't.
     */
    holdBudgetMs(label) {
        if (this.holdMs <= 0)
            return 0;
        const now = this.now();
        let until = this.startedAt + this.holdMs;
        const offline = this.recentlyOffline.get(label);
        if (offline !== undefined) {
            if (offline <= now)
                this.recentlyOffline.delete(label);
            else
                until = Math.max(until, offline);
        }
        return Math.max(0, until - now);
    }
    /** True if `label` lost its last connection within the hold window. */
    wasRecentlyOnline(label) {
        const offline = this.recentlyOffline.get(label);
        return offline !== undefined && offline > this.now();
    }
    /**
     * Resolves with a live session for `label` as soon as one registers, or undefined
     * after `timeoutMs` (or at once when too many requests are already held).
     */
    waitForSession(label, timeoutMs) {
        const live = this.byLabel.get(label)?.pickSession();
        if (live !== undefined)
            return Promise.resolve(live);
        if (timeoutMs <= 0 || this.heldCount >= this.maxHeld)
            return Promise.resolve(undefined);
        return new Promise((resolve) => {
            let set = this.waiters.get(label);
            if (set === undefined) {
                set = new Set();
                this.waiters.set(label, set);
            }
            const waiters = set;
            this.heldCount++;
            const waiter = (session) => {
                clearTimeout(timer);
                waiters.delete(waiter);
                if (waiters.size === 0 && this.waiters.get(label) === waiters)
                    this.waiters.delete(label);
                this.heldCount--;
                resolve(session);
            };
            const timer = setTimeout(() => waiter(undefined), timeoutMs);
            timer.unref();
            waiters.add(waiter);
        });
    }
    wakeWaiters(label, tunnel) {
        const set = this.waiters.get(label);
        if (set === undefined)
            return;
        for (const waiter of [...set]) {
            const session = tunnel.pickSession();
            if (session === undefined)
                return;
            waiter(session);
        }
    }
    get size() {
        return this.byLabel.size;
    }
    has(label) {
        return this.byLabel.has(label);
    }
    lookup(label) {
        return this.byLabel.get(label);
    }
    tunnels() {
        return this.byLabel.values();
    }
    /**
     * Adds `session` to the tunnel for `label`, creating it if needed. The session is
     * removed again when it closes; the tunnel disappears with its last session.
     */
    attach(label, id, kind, session) {
        let tunnel = this.byLabel.get(label);
        if (tunnel === undefined) {
            tunnel = new Tunnel(id, label, kind);
            this.byLabel.set(label, tunnel);
        }
        const t = tunnel;
        t.sessions.push(session);
        this.recentlyOffline.delete(label);
        this.hooks.onRegistered?.(t, session);
        // A session emits 'close' once: `on` saves `once`'s wrapper for the session's life.
        session.on('close', () => this.detach(t, session));
        this.wakeWaiters(label, t);
        return t;
    }
    detach(tunnel, session) {
        if (!tunnel.removeSession(session))
            return;
        if (tunnel.sessions.length === 0 && this.byLabel.get(tunnel.label) === tunnel) {
            this.byLabel.delete(tunnel.label);
            if (this.holdMs > 0) {
                this.recentlyOffline.set(tunnel.label, this.now() + this.holdMs);
                // Bound the map: drop expired entries now and then.
                if (this.recentlyOffline.size > 1024)
                    this.pruneOffline();
            }
        }
        this.hooks.onUnregistered?.(tunnel, session);
    }
    pruneOffline() {
        const now = this.now();
        for (const [label, until] of this.recentlyOffline)
            if (until <= now)
                this.recentlyOffline.delete(label);
    }
    /** Answers every held request with `undefined` (relay shutting down). */
    releaseAll() {
        for (const set of [...this.waiters.values()])
            for (const waiter of [...set])
                waiter(undefined);
    }
}
//# sourceMappingURL=registry.js.map