/** many-visitors: N concurrent keep-alive visitor connections over M tunnels. */
import type { ParamSpec } from '../params.js';
import type { BenchCase } from '../run.js';
import { procSample, round, settledSample, sleep, type ProcSample } from '../scale-support.js';
import {
  KIB,
  COMMON,
  withHarness,
  mib,
  CpuMeter,
  cpuText,
  printTable,
  type OpenResult,
  type LoadResult,
  type TunnelStatus,
  endpoint,
  warmUp,
} from './common.js';

const VISITOR_PARAMS = {
  ...COMMON,
  visitors: { default: '10000', help: 'concurrent keep-alive visitor connections' },
  'visitor-tunnels': { default: '100', help: 'tunnels the visitors spread over (wss)' },
  'visitor-requests': { default: '6', help: 'requests per visitor connection' },
  'visitor-think-ms': {
    default: '5000',
    help: 'mean pause between one visitor’s requests (uniform 0.5..1.5×): visitors / think = offered req/s',
  },
} satisfies Record<string, ParamSpec>;

export const manyVisitorsBench: BenchCase = {
  name: 'many-visitors',
  description: 'N concurrent keep-alive visitor connections over M tunnels: errors, p99, relay RSS',
  params: VISITOR_PARAMS,
  run: (p, log) =>
    withHarness(p, log, async (h) => {
      const n = p.number('visitors', VISITOR_PARAMS.visitors);
      const m = p.number('visitor-tunnels', VISITOR_PARAMS['visitor-tunnels']);
      const requests = p.number('visitor-requests', VISITOR_PARAMS['visitor-requests']);
      const thinkMs = p.number('visitor-think-ms', VISITOR_PARAMS['visitor-think-ms']);
      const { relay, watch } = await h.relay();
      const tunnels = await h.driver('tunnels');
      const visitors = await h.driver('visitors');
      await warmUp(relay, tunnels, visitors, true, h.c.sources);
      const open = await tunnels.call<OpenResult>('open-tunnels', {
        endpoint: endpoint(relay, true),
        ca: relay.ca,
        sourceAddresses: h.c.sources,
        count: m,
        concurrency: Math.min(m, h.c.concurrency),
      });
      if (open.opened < m) throw new Error(`only ${open.opened}/${m} tunnels registered`);
      await sleep(1_000);
      const base = await settledSample(relay.pid);
      log(`${m} tunnels; baseline relay RSS ${mib(base.rssKiB)} MiB, ${base.fds} fds`);
      watch.resetPeaks();

      let plateau: Promise<ProcSample> | undefined;
      visitors.on('plateau', () => {
        plateau = (async () => {
          const s = await settledSample(relay.pid, 3, 300);
          await h.heapSnapshot(relay);
          return s;
        })();
      });
      const loadCpu = new CpuMeter({
        relay: relay.pid,
        tunnels: tunnels.pid,
        visitors: visitors.pid,
      });
      await loadCpu.begin();
      const load = await visitors.call<LoadResult>('http-load', {
        port: relay.httpPort,
        hosts: open.hostnames,
        connections: n,
        requests,
        thinkMs,
        hostPerRequest: false,
        sourceAddresses: h.c.sources,
        connectConcurrency: h.c.concurrency,
        timeoutMs: 30_000,
        plateauHoldMs: 3_000,
        deadlineMs: 600_000,
      });
      const cpu = await loadCpu.end();
      const atPlateau = plateau !== undefined ? await plateau : await procSample(relay.pid);
      const status = await tunnels.call<TunnelStatus>('tunnel-status', {});
      const perConn = ((atPlateau.rssKiB - base.rssKiB) * KIB) / Math.max(1, load.openAtPlateau);
      printTable(log, [
        ['visitor connections', `${load.openAtPlateau}/${n} open at once`, `over ${m} tunnels`],
        [
          'ramp-up',
          `${round(load.rampMs / 1000, 2)} s, p99 ${load.ramp.p99Ms} ms`,
          'connect + first request',
        ],
        ['requests', load.requests, `${requests} per connection`],
        ['errors / mismatches', `${load.errors.count} / ${load.mismatches}`, '0 / 0'],
        ['p50 / p90 / p99', `${load.p50Ms} / ${load.p90Ms} / ${load.p99Ms} ms`, 'after ramp-up'],
        [
          'throughput',
          `${Math.round(load.rps)} req/s`,
          `offered ≈ ${Math.round((n / Math.max(1, thinkMs)) * 1000)}/s (think ${thinkMs} ms)`,
        ],
        ['CPU', cpuText(cpu), '% of one core'],
        ['load generator lag p99', `${load.generatorLagP99Ms} ms`, 'its own event loop'],
        ['relay RSS', `${mib(base.rssKiB)} → ${mib(atPlateau.rssKiB)} MiB`, 'at the plateau'],
        ['relay bytes / connection', `${(perConn / KIB).toFixed(1)} KiB`, ''],
        ['relay peak RSS', `${mib(watch.peakRssKiB)} MiB`, ''],
        ['relay fds', `${base.fds} → ${atPlateau.fds}`, ''],
        ['tunnels dropped', status.dropped, '0'],
      ]);
      if (load.errors.count > 0) log(`errors: ${JSON.stringify(load.errors.samples)}`);
      return {
        case: 'many-visitors',
        visitors: load.openAtPlateau,
        tunnels: m,
        requests: load.requests,
        errors: load.errors.count,
        mismatches: load.mismatches,
        rps: Math.round(load.rps),
        offeredRps: Math.round((n / Math.max(1, thinkMs)) * 1000),
        cpuPct: cpu,
        p50Ms: load.p50Ms,
        p90Ms: load.p90Ms,
        p99Ms: load.p99Ms,
        maxMs: load.maxMs,
        rampS: round(load.rampMs / 1000, 2),
        rampP99Ms: load.ramp.p99Ms,
        generatorLagP99Ms: load.generatorLagP99Ms,
        relayBaseRssMiB: mib(base.rssKiB),
        relayRssMiB: mib(atPlateau.rssKiB),
        relayPeakRssMiB: mib(watch.peakRssKiB),
        relayBytesPerConnection: Math.round(perConn),
        relayFds: atPlateau.fds,
        dropped: status.dropped,
      };
    }),
};
