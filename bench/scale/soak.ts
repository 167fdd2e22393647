/**
 * soak: mixed traffic through the real CLI for minutes: RSS slope of relay and CLI, and
 * the slope of their live heap after each full GC (--trace-gc), RSS's noise aside.
 */
import type { ParamSpec } from '../params.js';
import type { BenchCase } from '../run.js';
import {
  markCompacts,
  median,
  ProcWatcher,
  round,
  settledSample,
  sleep,
  slope,
} from '../scale-support.js';
import { KIB, COMMON, withHarness, mib, CpuMeter, cpuText, printTable } from './common.js';

const SOAK_PARAMS = {
  ...COMMON,
  'soak-s': { default: '600', help: 'seconds of mixed traffic' },
  'soak-sample-s': { default: '30', help: 'seconds between RSS samples' },
  'soak-rps': { default: '100', help: 'small GETs per second' },
  'soak-transfer-bytes': { default: '1MiB', help: 'size of each upload / download' },
  'soak-transfers-per-s': { default: '1', help: 'uploads + downloads per second (alternating)' },
  'soak-websockets': { default: '20', help: 'visitor WebSockets kept open (each replaced)' },
  'soak-ws-lifetime-s': { default: '20', help: 'mean lifetime of a visitor WebSocket' },
} satisfies Record<string, ParamSpec>;

interface SoakResult {
  durationS: number;
  gets: { count: number; p50Ms: number; p99Ms: number };
  transfers: number;
  transferMiB: number;
  websocketsOpened: number;
  websocketMessages: { count: number; p99Ms: number };
  skipped: number;
  errors: { count: number; samples: Record<string, number> };
}

export const soakBench: BenchCase = {
  name: 'soak',
  description:
    'mixed traffic (GETs, uploads, downloads, WebSockets) through one tunnel: RSS slope of relay and CLI',
  params: SOAK_PARAMS,
  run: (p, log) =>
    withHarness(p, log, async (h) => {
      const durationS = p.number('soak-s', SOAK_PARAMS['soak-s']);
      const sampleS = p.number('soak-sample-s', SOAK_PARAMS['soak-sample-s']);
      // --trace-gc: the live heap after each full GC, a leak measure free of RSS's noise.
      const { relay, watch } = await h.relay(['--trace-gc']);
      const origin = await h.driver('origin');
      const cli = await h.cli(relay, origin, ['--trace-gc']);
      const visitors = await h.driver('visitors');
      const cliWatch = new ProcWatcher(cli.pid);
      const cpuMeter = new CpuMeter({ relay: relay.pid, cli: cli.pid });
      await cpuMeter.begin();
      const samples: { t: number; relay: number; cli: number }[] = [];
      const t0 = performance.now();
      const take = async (): Promise<void> => {
        const [r, c] = await Promise.all([
          settledSample(relay.pid, 3, 300),
          settledSample(cli.pid, 3, 300),
        ]);
        samples.push({ t: (performance.now() - t0) / 60_000, relay: r.rssKiB, cli: c.rssKiB });
      };
      await take();
      let stop = false;
      const sampler = (async () => {
        let next = t0 + sampleS * 1000;
        while (!stop) {
          await sleep(Math.max(0, Math.min(500, next - performance.now())));
          if (!stop && performance.now() >= next) {
            next += sampleS * 1000;
            await take();
          }
        }
      })();
      let r: SoakResult;
      try {
        r = await visitors.call<SoakResult>('soak', {
          port: relay.httpPort,
          host: cli.hostname,
          durationS,
          rps: p.number('soak-rps', SOAK_PARAMS['soak-rps']),
          transferBytes: p.bytes('soak-transfer-bytes', SOAK_PARAMS['soak-transfer-bytes']),
          transfersPerS: p.number('soak-transfers-per-s', SOAK_PARAMS['soak-transfers-per-s']),
          websockets: p.number('soak-websockets', SOAK_PARAMS['soak-websockets']),
          wsLifetimeS: p.number('soak-ws-lifetime-s', SOAK_PARAMS['soak-ws-lifetime-s']),
          wsMessagesPerS: 2,
          sourceAddresses: h.c.sources,
        });
      } finally {
        stop = true;
        await sampler;
        cliWatch.stop();
      }
      const cpu = await cpuMeter.end();
      await take();
      // The first fifth is warm-up (JIT, pools, heap growing to its working size).
      const skip = samples.length >= 5 ? Math.floor(samples.length / 5) : 0;
      const steady = samples.slice(skip);
      const relaySlope = slope(steady.map((s) => ({ x: s.t, y: s.relay })));
      const cliSlope = slope(steady.map((s) => ({ x: s.t, y: s.cli })));
      // Live heap after full GCs, past the same warm-up (GC times count from each process's
      // start, a second or two before the soak's).
      const warmMin = skip > 0 ? samples[skip]!.t : 0;
      const liveOf = (points: { x: number; y: number; committed: number }[]) => {
        const after = points.filter((p) => p.x >= warmMin);
        return {
          count: points.length,
          slopeKiBPerMin: after.length >= 3 ? round(slope(after) * KIB, 1) : NaN,
          firstMiB: round(after[0]?.y ?? NaN, 1),
          lastMiB: round(after.at(-1)?.y ?? NaN, 1),
          committedFirstMiB: round(after[0]?.committed ?? NaN, 1),
          committedLastMiB: round(after.at(-1)?.committed ?? NaN, 1),
        };
      };
      const slopeText = (kibPerMin: number): string =>
        Number.isNaN(kibPerMin)
          ? 'no slope (under 3 full GCs after warm-up: run longer)'
          : `${kibPerMin} KiB/min`;
      const relayLive = liveOf(markCompacts(await relay.logText()));
      const cliLive = liveOf(markCompacts(cli.gcLines));
      log('RSS samples (min: relay MiB, cli MiB):');
      for (const s of samples)
        log(`  ${s.t.toFixed(1).padStart(5)}  ${mib(s.relay)}  ${mib(s.cli)}`);
      printTable(log, [
        ['duration', `${r.durationS} s`, `${samples.length} RSS samples, every ${sampleS} s`],
        ['small GETs', `${r.gets.count}, p99 ${r.gets.p99Ms} ms`, ''],
        ['transfers', `${r.transfers} (${r.transferMiB} MiB)`, ''],
        ['websockets', `${r.websocketsOpened} opened, ${r.websocketMessages.count} echoes`, ''],
        ['errors', r.errors.count, '0'],
        ['skipped (stalls)', r.skipped, 'GETs due while all 32 connections were busy'],
        ['CPU', cpuText(cpu), '% of one core'],
        [
          'relay live heap (full GCs)',
          `${relayLive.firstMiB} → ${relayLive.lastMiB} MiB, ${slopeText(relayLive.slopeKiBPerMin)}`,
          `${relayLive.count} full GCs; flat = no leak`,
        ],
        [
          'cli live heap (full GCs)',
          `${cliLive.firstMiB} → ${cliLive.lastMiB} MiB, ${slopeText(cliLive.slopeKiBPerMin)}`,
          `${cliLive.count} full GCs; flat = no leak`,
        ],
        [
          'relay V8 heap committed',
          `${relayLive.committedFirstMiB} → ${relayLive.committedLastMiB} MiB`,
          'after full GCs: capacity V8 keeps, part of RSS',
        ],
        [
          'cli V8 heap committed',
          `${cliLive.committedFirstMiB} → ${cliLive.committedLastMiB} MiB`,
          'after full GCs: capacity V8 keeps, part of RSS',
        ],
        [
          'relay RSS slope',
          `${round(relaySlope, 1)} KiB/min`,
          'target flat; noisy: GC timing, malloc retention',
        ],
        [
          'cli RSS slope',
          `${round(cliSlope, 1)} KiB/min`,
          'target flat; noisy: GC timing, malloc retention',
        ],
        [
          'relay RSS first → last',
          `${mib(samples[0]!.relay)} → ${mib(samples.at(-1)!.relay)} MiB`,
          `peak ${mib(watch.peakRssKiB)}`,
        ],
        [
          'cli RSS first → last',
          `${mib(samples[0]!.cli)} → ${mib(samples.at(-1)!.cli)} MiB`,
          `peak ${mib(cliWatch.peakRssKiB)}`,
        ],
      ]);
      if (r.errors.count > 0) log(`errors: ${JSON.stringify(r.errors.samples)}`);
      return {
        case: 'soak',
        durationS: r.durationS,
        gets: r.gets.count,
        getP99Ms: r.gets.p99Ms,
        transfers: r.transfers,
        transferMiB: r.transferMiB,
        websockets: r.websocketsOpened,
        websocketMessages: r.websocketMessages.count,
        skipped: r.skipped,
        errors: r.errors.count,
        samples: samples.length,
        cpuPct: cpu,
        relayLiveHeapSlopeKiBPerMin: relayLive.slopeKiBPerMin,
        relayLiveHeapMiB: [relayLive.firstMiB, relayLive.lastMiB],
        relayFullGcs: relayLive.count,
        cliLiveHeapSlopeKiBPerMin: cliLive.slopeKiBPerMin,
        cliLiveHeapMiB: [cliLive.firstMiB, cliLive.lastMiB],
        cliFullGcs: cliLive.count,
        relayHeapCommittedMiB: [relayLive.committedFirstMiB, relayLive.committedLastMiB],
        cliHeapCommittedMiB: [cliLive.committedFirstMiB, cliLive.committedLastMiB],
        relaySlopeKiBPerMin: round(relaySlope, 1),
        cliSlopeKiBPerMin: round(cliSlope, 1),
        relayFirstRssMiB: mib(samples[0]!.relay),
        relayLastRssMiB: mib(samples.at(-1)!.relay),
        relayMedianRssMiB: mib(median(steady.map((s) => s.relay))),
        relayPeakRssMiB: mib(watch.peakRssKiB),
        cliFirstRssMiB: mib(samples[0]!.cli),
        cliLastRssMiB: mib(samples.at(-1)!.cli),
        cliPeakRssMiB: mib(cliWatch.peakRssKiB),
      };
    }),
};
