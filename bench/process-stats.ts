/**
 * Per-process measurements for one benchmark phase: RSS at the start, peak RSS
 * (sampled every few ms while the phase runs, plus the kernel's lifetime maxRSS), and
 * CPU time, so a run shows which process is the bottleneck. Used by both ends of a
 * benchmark, each in its own process.
 */
import { createRequire } from 'node:module';

export interface PhaseStats {
  /** RSS when the phase started, MiB. */
  rssStartMiB: number;
  /** Highest RSS sampled during the phase, MiB. */
  rssPeakMiB: number;
  /** Kernel's peak RSS over the whole process lifetime (getrusage maxrss), MiB. */
  maxRssMiB: number;
  /** CPU time (user + system) spent during the phase, ms. */
  cpuMs: number;
  /** The system (kernel) part of `cpuMs`: socket syscalls, loopback TCP. */
  sysMs: number;
  wallMs: number;
}

const MIB = 1024 * 1024;

export class PhaseMeter {
  private readonly sampleMs: number;
  private timer: NodeJS.Timeout | undefined;
  private rssStart = 0;
  private rssPeak = 0;
  private cpuStart: NodeJS.CpuUsage = process.cpuUsage();
  private wallStart = 0;

  /**
   * Samples RSS every `sampleMs` (default 20 ms) between `start()` and `stop()`. Reading
   * RSS costs 15-250 µs (/proc), so sampling much faster would show up in the figures.
   */
  constructor(sampleMs = 20) {
    this.sampleMs = sampleMs;
  }

  start(): void {
    this.stopTimer();
    this.rssStart = process.memoryUsage.rss();
    this.rssPeak = this.rssStart;
    this.cpuStart = process.cpuUsage();
    this.wallStart = performance.now();
    this.timer = setInterval(() => this.sample(), this.sampleMs);
    this.timer.unref();
  }

  stop(): PhaseStats {
    this.sample();
    this.stopTimer();
    const cpu = process.cpuUsage(this.cpuStart);
    return {
      rssStartMiB: this.rssStart / MIB,
      rssPeakMiB: this.rssPeak / MIB,
      // resourceUsage().maxRSS is in KiB.
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
      cpuMs: (cpu.user + cpu.system) / 1000,
      sysMs: cpu.system / 1000,
      wallMs: performance.now() - this.wallStart,
    };
  }

  private sample(): void {
    const rss = process.memoryUsage.rss();
    if (rss > this.rssPeak) this.rssPeak = rss;
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/**
 * Whether `ws` in this process uses the optional native `bufferutil` helper for
 * masking/unmasking: mirrors ws's own check (Node 20 has no built-in websocketMask,
 * and ws skips the helper when WS_NO_BUFFER_UTIL is set).
 */
export function bufferutilLoaded(env: NodeJS.ProcessEnv): boolean {
  if (env['WS_NO_BUFFER_UTIL']) return false;
  try {
    createRequire(import.meta.url)('bufferutil');
    return true;
  } catch {
    return false;
  }
}
