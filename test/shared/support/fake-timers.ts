/**
 * A manual clock implementing the session's `Timers`: nothing runs until the test calls
 * `advance(ms)`, so keepalive and handshake timeouts are driven without sleeping.
 */
import type { Timers } from '../../../shared/mux/session.js';

interface FakeTimer {
  id: number;
  at: number;
  fn: () => void;
  /** Period for intervals, undefined for one-shot timers. */
  everyMs: number | undefined;
}

export class FakeTimers implements Timers {
  /** Current fake time in ms. */
  nowMs = 0;
  private nextId = 1;
  private readonly timers = new Map<number, FakeTimer>();

  now(): number {
    return this.nowMs;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    return this.add(fn, ms, undefined);
  }

  setInterval(fn: () => void, ms: number): unknown {
    return this.add(fn, ms, ms);
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  clearInterval(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Timers still scheduled (a closed session must leave none). */
  get pending(): number {
    return this.timers.size;
  }

  /** Moves time forward by `ms`, running every timer that falls due, in order. */
  advance(ms: number): void {
    const target = this.nowMs + ms;
    for (;;) {
      let next: FakeTimer | undefined;
      for (const timer of this.timers.values()) {
        if (timer.at <= target && (next === undefined || timer.at < next.at)) next = timer;
      }
      if (next === undefined) break;
      this.nowMs = next.at;
      if (next.everyMs === undefined) this.timers.delete(next.id);
      else next.at += Math.max(1, next.everyMs);
      next.fn();
    }
    this.nowMs = target;
  }

  private add(fn: () => void, ms: number, everyMs: number | undefined): number {
    const id = this.nextId++;
    this.timers.set(id, { id, at: this.nowMs + Math.max(0, ms), fn, everyMs });
    return id;
  }
}
