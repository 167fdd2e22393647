/**
 * A manual `Clock` (shared/clock.ts) for tests: nothing runs until the test moves time with
 * `advance(ms)` (synchronous) or `tick(ms)` (lets promise callbacks run after each timer),
 * so backoff, holds, keepalive and timeouts are driven without sleeping.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Clock, ClockTimer } from '../../shared/clock.js';

class FakeTimer implements ClockTimer {
  constructor(
    readonly id: number,
    public at: number,
    readonly fn: () => void,
    /** Period for intervals, undefined for one-shot timers. */
    readonly everyMs: number | undefined,
    readonly delayMs: number,
  ) {}
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }
}

export class FakeClock implements Clock {
  /** Current fake time in ms. */
  nowMs = 0;
  private nextId = 1;
  private readonly timers = new Map<number, FakeTimer>();

  now(): number {
    return this.nowMs;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    return this.add(fn, ms, undefined);
  }

  setInterval(fn: () => void, ms: number): ClockTimer {
    return this.add(fn, ms, ms);
  }

  clearTimeout(timer: ClockTimer | undefined): void {
    if (timer instanceof FakeTimer) this.timers.delete(timer.id);
  }

  clearInterval(timer: ClockTimer | undefined): void {
    this.clearTimeout(timer);
  }

  /** Timers still scheduled (a closed session must leave none). */
  get pending(): number {
    return this.timers.size;
  }

  /** The delays (ms) of the one-shot timers scheduled now, soonest first. */
  pendingDelays(): number[] {
    return [...this.timers.values()]
      .filter((timer) => timer.everyMs === undefined)
      .sort((a, b) => a.at - b.at)
      .map((timer) => timer.delayMs);
  }

  /** Moves time forward by `ms`, running every timer that falls due, in order. */
  advance(ms: number): void {
    const target = this.nowMs + ms;
    for (let next = this.due(target); next !== undefined; next = this.due(target)) this.fire(next);
    this.nowMs = target;
  }

  /**
   * Like `advance`, but after each timer (and once at the start) lets the event loop turn,
   * so the promise chains a timer resolves run before the next timer is due.
   */
  async tick(ms: number): Promise<void> {
    const target = this.nowMs + ms;
    await nextTurn();
    for (let next = this.due(target); next !== undefined; next = this.due(target)) {
      this.fire(next);
      await nextTurn();
    }
    this.nowMs = target;
  }

  private due(target: number): FakeTimer | undefined {
    let next: FakeTimer | undefined;
    for (const timer of this.timers.values()) {
      if (timer.at <= target && (next === undefined || timer.at < next.at)) next = timer;
    }
    return next;
  }

  private fire(timer: FakeTimer): void {
    this.nowMs = timer.at;
    if (timer.everyMs === undefined) this.timers.delete(timer.id);
    else timer.at += Math.max(1, timer.everyMs);
    timer.fn();
  }

  private add(fn: () => void, ms: number, everyMs: number | undefined): FakeTimer {
    const id = this.nextId++;
    const timer = new FakeTimer(id, this.nowMs + Math.max(0, ms), fn, everyMs, ms);
    this.timers.set(id, timer);
    return timer;
  }
}
