/**
 * Abuse limits: token buckets for request rates (per tunnel) and creation rates (per
 * client IP / token), and counters of concurrent things per key. Every map is bounded:
 * idle entries are dropped, and past `maxKeys` the oldest go first.
 */
/** A token bucket per key. `take(key)` → 0 when allowed, else seconds to wait. */
export class RateLimiter {
    rate;
    burst;
    maxKeys;
    now;
    buckets = new Map();
    constructor(opts) {
        this.rate = opts.ratePerSecond;
        this.burst = Math.max(1, opts.burst ?? opts.ratePerSecond);
        this.maxKeys = opts.maxKeys ?? 100_000;
        this.now = opts.now ?? Date.now;
    }
    get size() {
        return this.buckets.size;
    }
    /** Takes one token for `key`; returns 0 if allowed, else the seconds until one frees up. */
    take(key) {
        const now = this.now();
        let b = this.buckets.get(key);
        if (b === undefined) {
            b = { tokens: this.burst, at: now };
        }
        else {
            this.buckets.delete(key); // re-inserted below: Map order = least recently used first
            b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.rate);
            b.at = now;
        }
        this.buckets.set(key, b);
        if (this.buckets.size > this.maxKeys) {
            const oldest = this.buckets.keys().next().value;
            if (oldest !== undefined)
                this.buckets.delete(oldest);
        }
        if (b.tokens >= 1) {
            b.tokens -= 1;
            return 0;
        }
        return Math.max(1, Math.ceil((1 - b.tokens) / this.rate));
    }
}
/** Counts concurrent things (connections, tunnels) per key, with a cap per key. */
export class ConcurrencyCounter {
    counts = new Map();
    limit;
    constructor(limit) {
        this.limit = limit;
    }
    count(key) {
        return this.counts.get(key) ?? 0;
    }
    /** Takes a slot for `key`; returns a release function, or undefined at the limit. */
    acquire(key) {
        const n = this.counts.get(key) ?? 0;
        if (this.limit > 0 && n >= this.limit)
            return undefined;
        this.counts.set(key, n + 1);
        let released = false;
        return () => {
            if (released)
                return;
            released = true;
            const m = (this.counts.get(key) ?? 1) - 1;
            if (m <= 0)
                this.counts.delete(key);
            else
                this.counts.set(key, m);
        };
    }
}
//# sourceMappingURL=limits.js.map