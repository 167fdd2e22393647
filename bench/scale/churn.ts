/**
 * churn: tunnels connecting and leaving at a fixed rate: RSS and fds back to baseline, no
 * hostname collision, no request answered by the wrong tunnel.
 */
import { rm } from 'node:fs/promises';
import type { ParamSpec } from '../params.js';
import type { BenchCase } from '../run.js';
import {
  heapCensus,
  procSample,
  round,
  settledSample,
  sleep,
  type HeapCensus,
} from '../scale-support.js';
import { COMMON, withHarness, mib, printTable, endpoint, warmUp } from './common.js';

const CHURN_PARAMS = {
  ...COMMON,
  'churn-rate': { default: '200', help: 'tunnels connecting (and leaving) per second' },
  'churn-s': { default: '60', help: 'seconds of churn' },
  'churn-lifetime-ms': { default: '1000', help: 'how long each tunnel stays' },
  'churn-vanish-per-10': {
    default: '1',
    help: 'of every 10 leaving tunnels, how many vanish (heartbeat path); the rest close or drop',
  },
  'churn-warmup-s': {
    default: '20',
    help: 'seconds of churn before the baseline (JIT, pools, the heap at its working size)',
  },
  'settle-s': { default: '40', help: 'longest wait for the relay to get back to baseline' },
} satisfies Record<string, ParamSpec>;

/** Classes whose instances must not outlive the tunnels that made them. */
const TRACKED = [
  'MuxSession',
  'MuxStream',
  'Tunnel',
  'WebSocket',
  'TLSSocket',
  'Socket',
  'IncomingMessage',
  'ServerResponse',
];

/** Census of a heap snapshot; the file is deleted unless `keep` (--heap-snapshot-dir). */
async function census(file: string | undefined, keep: boolean): Promise<HeapCensus> {
  if (file === undefined) return { liveMiB: NaN, objects: {} };
  const c = await heapCensus(file, TRACKED);
  if (!keep) await rm(file, { force: true });
  return c;
}

interface ChurnResult {
  launched: number;
  opened: number;
  failed: number;
  errors: { count: number; samples: Record<string, number> };
  skipped: number;
  ratePerS: number;
  collisions: number;
  reusedLabels: number;
  dropped: number;
  ends: Record<string, number>;
  handshake: { p50Ms: number; p99Ms: number };
  probes: {
    ok: number;
    mismatches: number;
    gone: number;
    errors: { count: number; samples: Record<string, number> };
    p99Ms: number;
  };
}

export const churnBench: BenchCase = {
  name: 'churn',
  description:
    'tunnels connecting and leaving at a fixed rate: RSS and fds back to baseline, no collisions',
  params: CHURN_PARAMS,
  run: (p, log) =>
    withHarness(p, log, async (h) => {
      const rate = p.number('churn-rate', CHURN_PARAMS['churn-rate']);
      const durationS = p.number('churn-s', CHURN_PARAMS['churn-s']);
      const lifetimeMs = p.number('churn-lifetime-ms', CHURN_PARAMS['churn-lifetime-ms']);
      const vanishPer10 = p.number('churn-vanish-per-10', CHURN_PARAMS['churn-vanish-per-10']);
      const settleS = p.number('settle-s', CHURN_PARAMS['settle-s']);
      const warmS = p.number('churn-warmup-s', CHURN_PARAMS['churn-warmup-s']);
      // Heap snapshots at the baseline and at the end: a full GC, then what is really
      // left. RSS alone can't tell: TLS churn fragments the C heap (OpenSSL's allocations)
      // and V8 keeps heap pages, so RSS settles higher without anything leaking.
      const { relay, watch } = await h.relay([], true);
      const tunnels = await h.driver('tunnels');
      const visitors = await h.driver('visitors');
      await warmUp(relay, tunnels, visitors, true, h.c.sources);
      await visitors.stop();
      // Vanished clients keep their socket until the relay's heartbeat must have fired.
      const vanishMs = 20_000;
      const churnArgs = (seconds: number) => ({
        endpoint: endpoint(relay, true),
        ca: relay.ca,
        sourceAddresses: h.c.sources,
        ratePerS: rate,
        durationS: seconds,
        lifetimeMs,
        vanishPer10,
        vanishMs,
        probePort: relay.httpPort,
        probeConnections: 4,
        maxInflight: 2_000,
      });

      /**
       * Waits until the relay holds no tunnel and its fd count is at most `fds` (or, with
       * no target, has stopped changing).
       */
      const settle = async (fds?: number): Promise<number> => {
        const t0 = performance.now();
        const limit = t0 + settleS * 1000;
        let prev = -1;
        let stable = 0;
        while (performance.now() < limit) {
          const [conns, s] = await Promise.all([
            relay.metric('quick_tunnel_connections'),
            procSample(relay.pid),
          ]);
          stable = s.fds === prev ? stable + 1 : 0;
          prev = s.fds;
          if (conns === 0 && (fds !== undefined ? s.fds <= fds : stable >= 4)) break;
          await sleep(500);
        }
        return performance.now() - t0;
      };

      // A short round first, so the baseline includes warmed-up code and pools.
      log(`warm-up: ${warmS} s of churn`);
      await tunnels.call<ChurnResult>('churn', churnArgs(warmS));
      await settle();
      const base = await settledSample(relay.pid);
      const keep = h.c.heapDir !== '';
      const baseHeap = await census(await h.heapSnapshot(relay), keep);
      log(
        `baseline: relay RSS ${mib(base.rssKiB)} MiB, live heap ${baseHeap.liveMiB} MiB, ${base.fds} fds`,
      );
      watch.resetPeaks();

      log(`churn: ${rate} tunnels/s for ${durationS} s, each staying ${lifetimeMs} ms`);
      const r = await tunnels.call<ChurnResult>('churn', churnArgs(durationS));
      const peakRss = watch.peakRssKiB;
      const peakFds = watch.peakFds;
      const settleMs = await settle(base.fds);
      const after = await settledSample(relay.pid);
      const afterHeap = await census(await h.heapSnapshot(relay), keep);
      const leftovers = Object.entries(afterHeap.objects).filter(
        ([k, n]) => n > (baseHeap.objects[k] ?? 0),
      );
      const heapDeltaMiB = round(afterHeap.liveMiB - baseHeap.liveMiB, 1);
      const conns = await relay.metric('quick_tunnel_connections');
      const streams = await relay.metric('quick_tunnel_streams_open');
      const rssDeltaPct = ((after.rssKiB - base.rssKiB) / base.rssKiB) * 100;
      printTable(log, [
        ['tunnels opened', `${r.opened} (${r.ratePerS}/s)`, `${rate}/s asked`],
        ['handshake failures', r.failed, '0'],
        ['hostname collisions', r.collisions, '0 (live tunnels sharing a name)'],
        ['labels reused', r.reusedLabels, '0 expected (50-bit labels)'],
        ['wrong-tunnel answers', r.probes.mismatches, `0 of ${r.probes.ok} probes`],
        ['probe errors', r.probes.errors.count, `${r.probes.gone} hit a tunnel as it left`],
        ['ends', JSON.stringify(r.ends), 'clean close / dropped socket / vanished'],
        ['relay RSS', `${mib(base.rssKiB)} → peak ${mib(peakRss)} → ${mib(after.rssKiB)} MiB`, ''],
        [
          'RSS after vs baseline',
          `${round(rssDeltaPct, 1)} %`,
          'C heap fragmentation, not objects',
        ],
        [
          'live JS heap (full GC)',
          `${baseHeap.liveMiB} → ${afterHeap.liveMiB} MiB`,
          'back to baseline (± 2 MiB)',
        ],
        [
          'objects left over',
          leftovers.length === 0 ? 'none' : JSON.stringify(Object.fromEntries(leftovers)),
          TRACKED.join(', '),
        ],
        ['relay fds', `${base.fds} → peak ${peakFds} → ${after.fds}`, 'back to baseline'],
        ['connections / streams after', `${conns} / ${streams}`, '0 / 0'],
        ['settled in', `${round(settleMs / 1000, 1)} s`, 'vanished clients: heartbeat ≤ 14 s'],
      ]);
      if (r.failed > 0) log(`handshake errors: ${JSON.stringify(r.errors.samples)}`);
      if (r.probes.errors.count > 0)
        log(`probe errors: ${JSON.stringify(r.probes.errors.samples)}`);
      return {
        case: 'churn',
        ratePerS: r.ratePerS,
        durationS,
        opened: r.opened,
        failed: r.failed,
        skipped: r.skipped,
        collisions: r.collisions,
        reusedLabels: r.reusedLabels,
        mismatches: r.probes.mismatches,
        probes: r.probes.ok,
        probeErrors: r.probes.errors.count,
        handshakeP99Ms: r.handshake.p99Ms,
        ends: r.ends,
        relayBaseRssMiB: mib(base.rssKiB),
        relayPeakRssMiB: mib(peakRss),
        relayAfterRssMiB: mib(after.rssKiB),
        rssDeltaPct: round(rssDeltaPct, 1),
        liveHeapBaseMiB: baseHeap.liveMiB,
        liveHeapAfterMiB: afterHeap.liveMiB,
        leftoverObjects: Object.fromEntries(leftovers),
        baseFds: base.fds,
        peakFds,
        afterFds: after.fds,
        connectionsAfter: conns,
        streamsAfter: streams,
        settleS: round(settleMs / 1000, 1),
        backToBaseline:
          after.fds <= base.fds &&
          conns === 0 &&
          streams === 0 &&
          leftovers.length === 0 &&
          Math.abs(heapDeltaMiB) <= 2,
      };
    }),
};
