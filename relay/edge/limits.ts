/**
 * Abuse limits: token buckets for request rates (per tunnel) and creation rates (per
 * client IP / token), and counters of concurrent things per key. Every map is bounded:
 * idle entries are dropped, and past `maxKeys` the oldest go first.
 */

export interface RateLimitOptions {
  /** Sustained rate, events per second. */
  ratePerSecond: number;
  /** Bucket size: how many events may come at once. Default = one second's worth. */
  burst?: number;
  /** Most keys tracked; the least recently used are dropped beyond. Default 100,000. */
  maxKeys?: number;
  now?: () => number;
}

/** A token bucket per key. `take(key)` → 0 when allowed, else seconds to wait. */
export class RateLimiter {
  private readonly rate: number;
  private readonly burst: number;
  private readonly maxKeys: number;
  private readonly now: () => number;
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(opts: RateLimitOptions) {
    this.rate = opts.ratePerSecond;
    this.burst = Math.max(1, opts.burst ?? opts.ratePerSecond);
    this.maxKeys = opts.maxKeys ?? 100_000;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Takes one token for `key`; returns 0 if allowed, else the seconds until one frees up. */
  take(key: string): number {
    const now = this.now();
    let b = this.buckets.get(key);
    if (b === undefined) {
      b = { tokens: this.burst, at: now };
    } else {
      this.buckets.delete(key); // re-inserted below: Map order = least recently used first
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.rate);
      b.at = now;
    }
    this.buckets.set(key, b);
    if (this.buckets.size > this.maxKeys) {
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
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
  private readonly counts = new Map<string, number>();
  readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  count(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  /** Takes a slot for `key`; returns a release function, or undefined at the limit. */
  acquire(key: string): (() => void) | undefined {
    const n = this.counts.get(key) ?? 0;
    if (this.limit > 0 && n >= this.limit) return undefined;
    this.counts.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const m = (this.counts.get(key) ?? 1) - 1;
      if (m <= 0) this.counts.delete(key);
      else this.counts.set(key, m);
    };
  }
}
