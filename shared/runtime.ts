/**
 * Process-wide V8 tuning for the relay and the CLI, applied once at startup by
 * cli/main.ts (both run through it). Measured with `npm run bench` on a 2-core VM where
 * relay, CLI, origin and load generator share the cores.
 *
 * - `--no-concurrent-array-buffer-sweeping` (both): every large chunk a tunnel moves
 *   (socket reads, TLS records, WebSocket messages, mux frames) is its own ArrayBuffer,
 *   so a transfer frees tens of thousands of them per second. V8 frees them on a
 *   background thread by default; with four processes on two cores that thread competes
 *   with the ones doing the work, and freeing on the main thread after each GC is cheaper
 *   overall: relay CPU per 256 MiB download 0.95 → 0.57 s, download 242 → 308 MB/s,
 *   upload 221 → 328 MB/s.
 * - The young generation is capped. V8 grows it to 2 × 16 MiB under load, and that much
 *   stays committed. What a tunnel allocates per request or chunk dies young, so a
 *   smaller one costs little:
 *   - the CLI serves one tunnel and keeps the size it has when it starts serving
 *     (CLIENT_YOUNG_CAP_BYTES): ~30 MiB less RSS than a grown one, scavenge pauses of
 *     ~1.5 ms instead of ~7 ms (small-GET p99 15 vs 20 ms), no measurable change in CPU
 *     per request or in transfer speed (alternating A/B runs). It used to turn growth
 *     off for good, but V8 halves an idle process's young generation, which then stayed
 *     at 2 MiB: after ten idle seconds, CLI CPU per small GET was ~5% higher (3 A/B
 *     pairs). The timer below lets it grow back;
 *   - the relay may grow it to RELAY_YOUNG_CAP_BYTES: with 10,000 visitor connections
 *     open, a young generation at its initial size made every scavenge copy their
 *     per-request state (many-visitors p99 8–9 → 31–49 ms, relay CPU +15%), while the
 *     cap keeps that p99 at ~9 ms and still saves ~15 MiB (e2e peak RSS 142–161 →
 *     122–143 MiB). V8 has no runtime setting for a size limit, so a 100 ms timer turns
 *     growth off once the young generation reaches the cap (and on again if V8 shrinks
 *     it); doubling from there takes V8 several scavenges, and `npm run bench -- gc`
 *     measures whether the timer keeps up under steady load.
 *
 * These flags are read by V8 when it sweeps or grows the heap, so setting them at runtime
 * is safe (unlike `--single-threaded-gc` or `--max-semi-space-size`, which V8 fixes at
 * startup). But starting a Worker thread resets runtime-set flags to their defaults
 * (Node 20): whoever starts one calls `reapplyGarbageCollectorTuning()` once the worker
 * is online.
 *
 * Both are speed tricks of shared/speed.ts (`array-buffer-sweeping`,
 * `young-generation-cap`): each can be switched off, and neither runs on a V8 other
 * than the ones measured (v8TuningSupported).
 */
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { speedTrickOn, v8TuningSupported } from './speed.js';

export type RuntimeRole = 'relay' | 'client';

/** Young generation size (V8's new space, both semi-spaces) the relay may grow to. */
export const RELAY_YOUNG_CAP_BYTES = 16 * 2 ** 20;
/** The CLI's: what V8 grows it to while the CLI starts; kept, or regrown after V8 shrank it. */
export const CLIENT_YOUNG_CAP_BYTES = 4 * 2 ** 20;
const GOVERNOR_INTERVAL_MS = 100;

let role: RuntimeRole | undefined;
let growing: boolean | undefined;
let governor: NodeJS.Timeout | undefined;

/** Applies the tuning for `role` to this process (the relay and CLI entry point calls it). */
export function tuneGarbageCollector(which: RuntimeRole): void {
  role = which;
  growing = undefined;
  if (!v8TuningSupported()) return;
  if (speedTrickOn('array-buffer-sweeping')) {
    setFlagsFromString('--no-concurrent-array-buffer-sweeping');
  }
  if (speedTrickOn('young-generation-cap')) {
    capYoungGeneration();
    governor ??= setInterval(capYoungGeneration, GOVERNOR_INTERVAL_MS).unref();
  }
}

/**
 * Sets the flags again after a Worker thread started (which resets them); a no-op in a
 * process that never tuned them, such as a test runner embedding the relay.
 */
export function reapplyGarbageCollectorTuning(): void {
  if (role !== undefined) tuneGarbageCollector(role);
}

function capYoungGeneration(): void {
  const young = getHeapSpaceStatistics().find((space) => space.space_name === 'new_space');
  const cap = role === 'relay' ? RELAY_YOUNG_CAP_BYTES : CLIENT_YOUNG_CAP_BYTES;
  const grow = young === undefined || young.space_size < cap;
  if (grow === growing) return;
  growing = grow;
  setFlagsFromString(`--semi-space-growth-factor=${grow ? 2 : 1}`);
}
