/** Load helpers of the scale driver: latency percentiles, error samples, a bounded pool. */
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';

/**
 * Latency recorder: percentiles in ms, from a perf_hooks histogram (HDR, 3 significant
 * digits) of microseconds, so a long run keeps a fixed-size record instead of every value.
 */
export class Latencies {
  private readonly histogram: RecordableHistogram = createHistogram();
  add(ms: number): void {
    this.histogram.record(Math.max(1, Math.round(ms * 1000)));
  }
  get count(): number {
    return this.histogram.count;
  }
  summary(): { count: number; p50Ms: number; p90Ms: number; p99Ms: number; maxMs: number } {
    const h = this.histogram;
    const ms = (us: number): number => (h.count === 0 ? NaN : round(us / 1000));
    return {
      count: h.count,
      p50Ms: ms(h.percentile(50)),
      p90Ms: ms(h.percentile(90)),
      p99Ms: ms(h.percentile(99)),
      maxMs: ms(h.max),
    };
  }
}

export const round = (n: number): number => Math.round(n * 100) / 100;

/** Keeps the first few distinct error messages, and a count of all. */
export class Errors {
  count = 0;
  readonly samples = new Map<string, number>();
  add(message: string): void {
    this.count++;
    if (this.samples.has(message) || this.samples.size < 8)
      this.samples.set(message, (this.samples.get(message) ?? 0) + 1);
  }
  toJSON(): { count: number; samples: Record<string, number> } {
    return { count: this.count, samples: Object.fromEntries(this.samples) };
  }
}

/** Runs `worker(i)` for i in [0, count) with at most `concurrency` at once. */
export async function pool(
  count: number,
  concurrency: number,
  worker: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) await worker(next++);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, lane));
}

export const labelOf = (hostname: string): string => hostname.slice(0, hostname.indexOf('.'));
