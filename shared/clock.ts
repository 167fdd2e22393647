/**
 * One injectable clock for everything that waits: the relay's reconnect hold, the edge's
 * response timeouts, the CLI's supervisor (backoff) and the mux (keepalive, handshake).
 * Production code takes an optional `clock` and defaults to `realClock`; tests pass a fake
 * one (test/helpers/fake-clock.ts) and move time by hand, so nothing sleeps.
 */

/** A scheduled timer. Like Node's `Timeout`: `unref()` lets the process exit while it waits. */
export interface ClockTimer {
  unref(): ClockTimer;
  ref(): ClockTimer;
}

export interface Clock {
  /**
   * Milliseconds since an arbitrary origin, monotonic (not wall time): for durations
   * and deadlines only. The real clock is `performance.now()`.
   */
  now(): number;
  /** Runs `fn` once after `ms`. The timer keeps the process alive unless unref'd. */
  setTimeout(fn: () => void, ms: number): ClockTimer;
  clearTimeout(timer: ClockTimer | undefined): void;
  /** Runs `fn` every `ms` until cleared. */
  setInterval(fn: () => void, ms: number): ClockTimer;
  clearInterval(timer: ClockTimer | undefined): void;
}

/** Node's timers and `performance.now()`. */
export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout | undefined),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (timer) => clearInterval(timer as NodeJS.Timeout | undefined),
};
