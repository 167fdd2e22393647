/** ws-fanout: visitor WebSockets on one tunnel (real CLI + origin) echoing. */
import type { ParamSpec } from '../params.js';
import type { BenchCase } from '../run.js';
import { procSample, round, settledSample, type ProcSample } from '../scale-support.js';
import { KIB, COMMON, withHarness, mib, CpuMeter, cpuText, printTable } from './common.js';

const FANOUT_PARAMS = {
  ...COMMON,
  websockets: { default: '1000', help: 'visitor WebSockets on one tunnel' },
  'fanout-s': { default: '10', help: 'seconds of echoing' },
  'message-bytes': { default: '64', help: 'size of each echoed message' },
} satisfies Record<string, ParamSpec>;

interface FanoutResult {
  opened: number;
  rampMs: number;
  messages: number;
  messagesPerS: number;
  errors: { count: number; samples: Record<string, number> };
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export const wsFanoutBench: BenchCase = {
  name: 'ws-fanout',
  description: 'N visitor WebSockets on one tunnel (real CLI + origin) echoing: messages/s and p99',
  params: FANOUT_PARAMS,
  run: (p, log) =>
    withHarness(p, log, async (h) => {
      const n = p.number('websockets', FANOUT_PARAMS.websockets);
      const { relay, watch } = await h.relay();
      const origin = await h.driver('origin');
      const cli = await h.cli(relay, origin);
      const visitors = await h.driver('visitors');
      const base = await settledSample(relay.pid);
      const cliBase = await settledSample(cli.pid);
      let plateau: Promise<[ProcSample, ProcSample]> | undefined;
      visitors.on('plateau', () => {
        plateau = Promise.all([settledSample(relay.pid, 3, 200), settledSample(cli.pid, 3, 200)]);
      });
      const cpuMeter = new CpuMeter({
        relay: relay.pid,
        cli: cli.pid,
        origin: origin.pid,
        visitors: visitors.pid,
      });
      await cpuMeter.begin();
      const r = await visitors.call<FanoutResult>('ws-fanout', {
        port: relay.httpPort,
        host: cli.hostname,
        connections: n,
        durationS: p.number('fanout-s', FANOUT_PARAMS['fanout-s']),
        messageBytes: p.number('message-bytes', FANOUT_PARAMS['message-bytes']),
        sourceAddresses: h.c.sources,
        connectConcurrency: Math.min(h.c.concurrency, 100),
        timeoutMs: 30_000,
      });
      const cpu = await cpuMeter.end();
      const [atRelay, atCli] =
        plateau !== undefined
          ? await plateau
          : await Promise.all([procSample(relay.pid), procSample(cli.pid)]);
      const perWs = ((atRelay.rssKiB - base.rssKiB) * KIB) / Math.max(1, r.opened);
      printTable(log, [
        ['websockets open', `${r.opened}/${n}`, `ramp ${round(r.rampMs / 1000, 2)} s`],
        ['echoes', `${r.messages} (${Math.round(r.messagesPerS)}/s)`, ''],
        ['p50 / p99', `${r.p50Ms} / ${r.p99Ms} ms`, ''],
        ['errors', r.errors.count, '0'],
        [
          'relay RSS',
          `${mib(base.rssKiB)} → ${mib(atRelay.rssKiB)} MiB`,
          `${(perWs / KIB).toFixed(1)} KiB / websocket`,
        ],
        ['cli RSS', `${mib(cliBase.rssKiB)} → ${mib(atCli.rssKiB)} MiB`, ''],
        ['CPU', cpuText(cpu), '% of one core, ramp-up included'],
      ]);
      if (r.errors.count > 0) log(`errors: ${JSON.stringify(r.errors.samples)}`);
      return {
        case: 'ws-fanout',
        websockets: r.opened,
        messages: r.messages,
        messagesPerS: Math.round(r.messagesPerS),
        p50Ms: r.p50Ms,
        p99Ms: r.p99Ms,
        maxMs: r.maxMs,
        errors: r.errors.count,
        relayRssMiB: mib(atRelay.rssKiB),
        relayBytesPerWebSocket: Math.round(perWs),
        relayPeakRssMiB: mib(watch.peakRssKiB),
        cliRssMiB: mib(atCli.rssKiB),
        cpuPct: cpu,
      };
    }),
};
