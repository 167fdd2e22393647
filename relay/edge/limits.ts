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

  /** Seconds until `key` may take a token (0 = now), without taking one. */
  peek(key: string): number {
    const b = this.buckets.get(key);
    if (b === undefined) return 0;
    const tokens = Math.min(this.burst, b.tokens + ((this.now() - b.at) / 1000) * this.rate);
    return tokens >= 1 ? 0 : Math.max(1, Math.ceil((1 - tokens) / this.rate));
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

/**
 * Failed authentication attempts per client IP (relay tokens, admin tokens, named-tunnel
 * credentials): after `maxPerMinute` failures an address is refused (429 / a rejected
 * HELLO) until its budget refills, so secrets cannot be guessed at thousands a second.
 * Every failure is logged (at most one line per address per 10 s once it is blocked).
 */
export class FailedAuthThrottle {
  private readonly failures: RateLimiter;
  private readonly log: { warn(obj: object, msg: string): void };
  private readonly lastLogged = new Map<string, number>();
  readonly maxPerMinute: number;

  constructor(maxPerMinute: number, log: { warn(obj: object, msg: string): void }) {
    this.maxPerMinute = maxPerMinute;
    this.failures = new RateLimiter({ ratePerSecond: maxPerMinute / 60, burst: maxPerMinute });
    this.log = log;
  }

  /** Seconds `ip` must wait before it may try a secret again; 0 = it may. */
  blockedFor(ip: string): number {
    return this.maxPerMinute > 0 ? this.failures.peek(ip) : 0;
  }

  /** Records a refused secret from `ip` (`what`: which kind, for the log). */
  fail(ip: string, what: string): void {
    if (this.maxPerMinute <= 0) return;
    const wait = this.failures.take(ip);
    const now = Date.now();
    if (wait > 0) {
      const last = this.lastLogged.get(ip);
      if (last !== undefined && now - last < 10_000) return;
      if (this.lastLogged.size > 1024) this.lastLogged.clear();
      this.lastLogged.set(ip, now);
    }
    this.log.warn(
      { event: 'auth-failed', remoteAddress: ip, secret: what, blockedForS: wait || undefined },
      wait > 0
        ? `authentication failed (${what}); ${ip} is blocked for ${wait} s`
        : `authentication failed (${what})`,
    );
  }
}
