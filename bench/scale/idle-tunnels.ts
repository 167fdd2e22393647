/**
 * idle-tunnels / idle-tunnels-tls: N idle ephemeral tunnels over ws:// or wss://: relay
 * RSS per tunnel, time to register them all, heartbeat CPU, and p99 of requests to random
 * tunnels. Target < 20 KiB per idle tunnel (plain; TLS is reported apart).
 */
import type { ParamSpec } from '../params.js';
import type { BenchCase } from '../run.js';
import { procSample, round, settledSample, sleep } from '../scale-support.js';
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

const IDLE_PARAMS = {
  ...COMMON,
  tunnels: { default: '10000', help: 'idle tunnels to register' },
  'probe-requests': { default: '2000', help: 'requests to random tunnels once all are idle' },
  'probe-connections': { default: '4', help: 'keep-alive connections the probes use' },
  'idle-s': {
    default: '12',
    help: 'seconds the tunnels sit idle before measuring (≥ 2 keepalive periods)',
  },
} satisfies Record<string, ParamSpec>;

const TARGET_BYTES_PER_TUNNEL = 20 * KIB;

function idleCase(tls: boolean): BenchCase {
  const name = tls ? 'idle-tunnels-tls' : 'idle-tunnels';
  return {
    name,
    description: `N idle ephemeral tunnels over ${tls ? 'wss:// (TLS)' : 'ws:// (plain)'}: relay RSS/tunnel, register time, heartbeat CPU, p99 to random tunnels`,
    params: IDLE_PARAMS,
    run: (p, log) =>
      withHarness(p, log, async (h) => {
        const n = p.number('tunnels', IDLE_PARAMS.tunnels);
        const probes = p.number('probe-requests', IDLE_PARAMS['probe-requests']);
        const probeConns = p.number('probe-connections', IDLE_PARAMS['probe-connections']);
        const idleS = p.number('idle-s', IDLE_PARAMS['idle-s']);
        const { relay, watch } = await h.relay();
        const tunnels = await h.driver('tunnels');
        const visitors = await h.driver('visitors');
        await warmUp(relay, tunnels, visitors, tls, h.c.sources);
        const base = await settledSample(relay.pid);
        const logBase = await relay.logBytes();
        log(`baseline: relay RSS ${mib(base.rssKiB)} MiB, ${base.fds} fds`);

        log(`registering ${n} tunnels over ${tls ? 'wss' : 'ws'}…`);
        const regCpu = new CpuMeter({ relay: relay.pid, clients: tunnels.pid });
        await regCpu.begin();
        const open = await tunnels.call<OpenResult>('open-tunnels', {
          endpoint: endpoint(relay, tls),
          ca: relay.ca,
          sourceAddresses: h.c.sources,
          count: n,
          concurrency: h.c.concurrency,
        });
        const registerPerS = open.opened / (open.ms / 1000);
        const registerCpu = await regCpu.end();
        // The relay's cost of one registration (TLS handshake, upgrade, HELLO, log line):
        // its capacity, whatever the client side of this one machine manages.
        const relayMsPerRegistration =
          ((registerCpu['relay']! / 100) * open.ms) / Math.max(1, open.opened);
        log(
          `registered ${open.opened}/${n} in ${round(open.ms / 1000, 2)} s (${Math.round(registerPerS)}/s), ${open.failed} failed`,
        );
        const connections = await relay.metric('quick_tunnel_connections');
        const logAfter = await relay.logBytes();

        // Idle: nothing but heartbeats. CPU over the window is the heartbeat cost.
        await sleep(Math.min(4_000, idleS * 1000));
        const cpu0 = await procSample(relay.pid);
        const t0 = performance.now();
        await sleep(Math.max(0, idleS * 1000 - 4_000));
        const loaded = await settledSample(relay.pid);
        const idleCpuPct = ((loaded.cpuMs - cpu0.cpuMs) / (performance.now() - t0)) * 100;
        await h.heapSnapshot(relay);

        const probe = await visitors.call<LoadResult>('http-load', {
          port: relay.httpPort,
          hosts: open.hostnames,
          connections: probeConns,
          requests: Math.ceil(probes / probeConns),
          thinkMs: 0,
          hostPerRequest: true,
          sourceAddresses: h.c.sources,
          connectConcurrency: probeConns,
          timeoutMs: 10_000,
          plateauHoldMs: 0,
          deadlineMs: 300_000,
        });
        const status = await tunnels.call<TunnelStatus>('tunnel-status', {});

        const bytesPer = ((loaded.rssKiB - base.rssKiB) * KIB) / Math.max(1, open.opened);
        const anonPer = ((loaded.rssAnonKiB - base.rssAnonKiB) * KIB) / Math.max(1, open.opened);
        const logPer = (logAfter - logBase) / Math.max(1, open.opened);
        printTable(log, [
          ['tunnels registered', `${open.opened}/${n}`, `relay counts ${connections}`],
          ['register time', `${round(open.ms / 1000, 2)} s`, `${Math.round(registerPerS)}/s`],
          ['handshake p99', `${open.handshake.p99Ms} ms`, `${h.c.concurrency} in flight`],
          ['CPU while registering', cpuText(registerCpu), '% of one core'],
          [
            'relay CPU / registration',
            `${round(relayMsPerRegistration, 2)} ms`,
            `≈ ${Math.round(1000 / relayMsPerRegistration)}/s per core`,
          ],
          ['relay RSS', `${mib(base.rssKiB)} → ${mib(loaded.rssKiB)} MiB`, ''],
          [
            'relay bytes / tunnel',
            `${(bytesPer / KIB).toFixed(1)} KiB`,
            tls ? 'TLS: reported, no target' : '< 20 KiB',
          ],
          ['  of which anonymous', `${(anonPer / KIB).toFixed(1)} KiB`, ''],
          ['relay fds / tunnel', round((loaded.fds - base.fds) / Math.max(1, open.opened), 2), ''],
          ['relay CPU while idle', `${round(idleCpuPct, 1)} % of a core`, 'heartbeats only'],
          ['log bytes / registration', Math.round(logPer), `level ${h.c.logLevel}`],
          ['probe p50 / p99', `${probe.p50Ms} / ${probe.p99Ms} ms`, 'p99 < 50 ms'],
          ['probe errors / mismatches', `${probe.errors.count} / ${probe.mismatches}`, '0 / 0'],
          ['tunnels dropped', status.dropped, '0'],
        ]);
        if (probe.errors.count > 0) log(`probe errors: ${JSON.stringify(probe.errors.samples)}`);
        if (open.failed > 0) log(`register errors: ${JSON.stringify(open.errors.samples)}`);
        if (status.dropped > 0) log(`drops: ${JSON.stringify(status.dropReasons.samples)}`);
        return {
          case: name,
          transport: tls ? 'tls' : 'plain',
          tunnels: open.opened,
          failed: open.failed,
          registerS: round(open.ms / 1000, 2),
          registerPerS: Math.round(registerPerS),
          handshakeP99Ms: open.handshake.p99Ms,
          registerCpuPct: registerCpu,
          relayCpuMsPerRegistration: round(relayMsPerRegistration, 3),
          relayBaseRssMiB: mib(base.rssKiB),
          relayRssMiB: mib(loaded.rssKiB),
          relayBytesPerTunnel: Math.round(bytesPer),
          relayAnonBytesPerTunnel: Math.round(anonPer),
          relayFdsPerTunnel: round((loaded.fds - base.fds) / Math.max(1, open.opened), 2),
          idleCpuPct: round(idleCpuPct, 1),
          logBytesPerRegistration: Math.round(logPer),
          p50Ms: probe.p50Ms,
          p99Ms: probe.p99Ms,
          probeErrors: probe.errors.count,
          mismatches: probe.mismatches,
          dropped: status.dropped,
          relayPeakRssMiB: mib(watch.peakRssKiB),
          meetsTarget: tls
            ? probe.p99Ms < 50
            : bytesPer < TARGET_BYTES_PER_TUNNEL && probe.p99Ms < 50,
        };
      }),
  };
}

export const idleTunnelsBench = idleCase(false);
export const idleTunnelsTlsBench = idleCase(true);
