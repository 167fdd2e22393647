/**
 * The request totals of the TUI store: arrival rates over the last 1 and 5 minutes (one
 * counter per second) and duration percentiles of the last finished HTTP requests (a
 * fixed window). Fixed memory whatever the traffic.
 */

const RATE_WINDOW_S = 300;

export class RequestStats {
  /** Arrivals per second over the last RATE_WINDOW_S seconds. */
  private readonly arrivals = new Uint32Array(RATE_WINDOW_S);
  private arrivalsSecond: number;
  private readonly durations: Float64Array;
  private durationsCount = 0;
  private durationsNext = 0;
  /** Computed on demand, dropped when a duration comes in. */
  private percentileCache: { p50: number | undefined; p90: number | undefined } | undefined;

  /**
   * `now`: the store's clock; `createdAt`: when the tunnel started (rates are over the
   * time since when that is shorter than the window); `durationsKept`: the window.
   */
  constructor(
    private readonly now: () => number,
    private readonly createdAt: number,
    durationsKept: number,
  ) {
    this.durations = new Float64Array(durationsKept);
    this.arrivalsSecond = Math.floor(createdAt / 1000);
  }

  countArrival(): void {
    this.rollArrivals();
    const slot = this.arrivalsSecond % RATE_WINDOW_S;
    this.arrivals[slot] = this.arrivals[slot]! + 1;
  }

  recordDuration(ms: number): void {
    this.durations[this.durationsNext] = ms;
    this.durationsNext = (this.durationsNext + 1) % this.durations.length;
    this.durationsCount = Math.min(this.durations.length, this.durationsCount + 1);
    this.percentileCache = undefined;
  }

  /** Arrivals per second over the last 1 and 5 minutes. */
  rates(): { rate1m: number; rate5m: number } {
    this.rollArrivals();
    let last1 = 0;
    let last5 = 0;
    const sec = this.arrivalsSecond;
    for (let i = 0; i < RATE_WINDOW_S; i++) {
      const n = this.arrivals[(sec - i) % RATE_WINDOW_S]!;
      last5 += n;
      if (i < 60) last1 += n;
    }
    const upS = Math.max(1, (this.now() - this.createdAt) / 1000);
    return { rate1m: last1 / Math.min(60, upS), rate5m: last5 / Math.min(RATE_WINDOW_S, upS) };
  }

  /** Median and 90th percentile of the durations in the window (undefined: none yet). */
  percentiles(): { p50: number | undefined; p90: number | undefined } {
    this.percentileCache ??= this.computePercentiles();
    return this.percentileCache;
  }

  private rollArrivals(): void {
    const sec = Math.floor(this.now() / 1000);
    if (sec <= this.arrivalsSecond) return;
    const steps = Math.min(RATE_WINDOW_S, sec - this.arrivalsSecond);
    for (let i = 1; i <= steps; i++) this.arrivals[(this.arrivalsSecond + i) % RATE_WINDOW_S] = 0;
    this.arrivalsSecond = sec;
  }

  private computePercentiles(): { p50: number | undefined; p90: number | undefined } {
    const n = this.durationsCount;
    if (n === 0) return { p50: undefined, p90: undefined };
    const sorted = this.durations.slice(0, n).sort();
    const pick = (p: number): number => sorted[Math.min(n - 1, Math.ceil(p * n) - 1)]!;
    return { p50: pick(0.5), p90: pick(0.9) };
  }
}
