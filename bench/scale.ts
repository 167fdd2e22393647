/**
 * Scale on one relay (issue 8): how the relay's cost grows with tunnels, visitor
 * connections and time. Each case starts its own relay process (the compiled dist/, as
 * users run it) with simulated clients in other processes (bench/scale-driver.ts):
 *
 * - idle-tunnels / idle-tunnels-tls: N idle ephemeral tunnels over ws:// or wss://:
 *   relay RSS per tunnel, time to register them all, heartbeat CPU, and p99 of requests
 *   to random tunnels. Target < 20 KiB per idle tunnel (plain; TLS is reported apart).
 * - many-visitors: N concurrent keep-alive visitor connections over M tunnels.
 * - churn: tunnels connecting and leaving at a fixed rate: RSS and fds back to baseline,
 *   no hostname collision, no request answered by the wrong tunnel.
 * - soak: mixed traffic through the real CLI for minutes: RSS slope of relay and CLI,
 *   and the slope of their live heap after each full GC (--trace-gc), RSS's noise aside.
 * - ws-fanout: visitor WebSockets on one tunnel (real CLI + origin) echoing.
 *
 * Counts and durations are parameters (`--tunnels 50 --churn-s 2 …`), so CI runs a
 * tiny version (test/bench/scale-smoke.test.ts) through the same code.
 */
import { copyFile, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BenchParams, ParamSpec } from './params.js';
import type { BenchCase } from './run.js';
import {
  build,
  Driver,
  heapCensus,
  markCompacts,
  fdLimit,
  median,
  procSample,
  ProcWatcher,
  round,
  settledSample,
  sleep,
  slope,
  sourceAddresses,
  startCliProcess,
  startRelayProcess,
  table,
  type HeapCensus,
  type ProcSample,
  type RelayProcess,
  type Runtime,
} from './scale-support.js';

const KIB = 1024;

const COMMON = {
  'relay-runtime': {
    default: 'dist',
    help: 'dist (compiled first, as users run it) | tsx (from sources: no build, more memory)',
  },
  'relay-log-level': {
    default: 'info',
    help: "relay --log-level (info is the relay's default: a line per registration)",
  },
  'source-addresses': {
    default: '8',
    help: 'loopback source addresses (127.0.0.2, .3, …) the clients spread over',
  },
  'connect-concurrency': {
    default: '256',
    help: 'connections and handshakes in flight at once while ramping up',
  },
  'relay-node-args': {
    default: '',
    help: 'extra node flags for the relay, space-separated (e.g. --trace-gc; output in its log)',
  },
  'heap-snapshot-dir': {
    default: '',
    help: 'write a relay heap snapshot here at the measuring point (idle, visitors, churn)',
  },
} satisfies Record<string, ParamSpec>;

interface Common {
  runtime: Runtime;
  logLevel: string;
  sources: string[];
  concurrency: number;
  heapDir: string;
  relayNodeArgs: string[];
}

function common(p: BenchParams): Common {
  return {
    runtime: p.oneOf('relay-runtime', COMMON['relay-runtime'], ['dist', 'tsx'] as const),
    logLevel: p.oneOf('relay-log-level', COMMON['relay-log-level'], [
      'fatal',
      'error',
      'warn',
      'info',
      'debug',
      'silent',
    ] as const),
    sources: sourceAddresses(p.number('source-addresses', COMMON['source-addresses'])),
    concurrency: p.number('connect-concurrency', COMMON['connect-concurrency']),
    heapDir: p.string('heap-snapshot-dir', COMMON['heap-snapshot-dir']),
    relayNodeArgs: p
      .string('relay-node-args', COMMON['relay-node-args'])
      .split(' ')
      .filter((a) => a !== ''),
  };
}

let built: Promise<void> | undefined;

/** Everything one case starts, torn down in reverse whatever happens. */
class Harness {
  readonly log: (line: string) => void;
  readonly c: Common;
  private readonly cleanups: (() => Promise<void>)[] = [];
  dataDir = '';

  constructor(c: Common, log: (line: string) => void) {
    this.c = c;
    this.log = log;
  }

  /** Heap snapshots go to --heap-snapshot-dir, else (for a case that takes its own) here. */
  snapshotDir = '';

  /**
   * Starts the relay. `snapshots`: let the case take heap snapshots (SIGUSR2) even
   * without --heap-snapshot-dir (they land in the data dir).
   */
  async relay(
    extraNodeArgs: readonly string[] = [],
    snapshots = false,
  ): Promise<{
    relay: RelayProcess;
    watch: ProcWatcher;
  }> {
    if (this.c.runtime === 'dist') {
      built ??= (this.log('building dist/ (tsc)…'), build());
      await built;
    }
    this.dataDir = await mkdtemp(path.join(os.tmpdir(), 'qt-bench-scale-'));
    this.cleanups.push(async () => {
      if (this.c.relayNodeArgs.length > 0) {
        // Diagnostics (--trace-gc…) went to the relay's stdout: keep that log.
        const kept = path.join(os.tmpdir(), `${path.basename(this.dataDir)}-relay.log`);
        await copyFile(path.join(this.dataDir, 'relay.log'), kept);
        this.log(`relay log kept: ${kept}`);
      }
      await rm(this.dataDir, { recursive: true, force: true });
    });
    this.snapshotDir =
      this.c.heapDir !== '' ? this.c.heapDir : snapshots ? path.join(this.dataDir, 'heap') : '';
    if (this.snapshotDir !== '') await mkdir(this.snapshotDir, { recursive: true });
    const nodeArgs = [
      ...extraNodeArgs,
      ...this.c.relayNodeArgs,
      ...(this.snapshotDir !== ''
        ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${this.snapshotDir}`]
        : []),
    ];
    const relay = await startRelayProcess({
      runtime: this.c.runtime,
      dataDir: this.dataDir,
      logLevel: this.c.logLevel,
      nodeArgs,
      log: this.log,
    });
    this.cleanups.push(() => relay.stop());
    const watch = new ProcWatcher(relay.pid);
    this.cleanups.push(async () => watch.stop());
    this.log(
      `relay pid ${relay.pid} (${this.c.runtime}, log level ${this.c.logLevel}), fd limit ${await fdLimit(relay.pid)}; clients spread over ${this.c.sources[0]}…${this.c.sources[this.c.sources.length - 1]} (ephemeral ports are per source address)`,
    );
    return { relay, watch };
  }

  async driver(name: string): Promise<Driver> {
    const d = await Driver.spawn(name, this.log);
    this.cleanups.push(() => d.stop());
    this.log(`${name} pid ${d.pid}, fd limit ${await fdLimit(d.pid)} (soft limit raised to hard)`);
    return d;
  }

  /** The real CLI (compiled like the relay) in front of an origin in `origin`'s driver. */
  async cli(relay: RelayProcess, origin: Driver, nodeArgs: readonly string[] = []) {
    const { port } = await origin.call<{ port: number }>('origin', {});
    const caFile = path.join(this.dataDir, 'relay-ca.pem');
    await writeFile(caFile, relay.ca);
    const cli = await startCliProcess({
      runtime: this.c.runtime,
      originPort: port,
      relay,
      caFile,
      log: this.log,
      nodeArgs,
    });
    this.cleanups.push(() => cli.stop());
    this.log(`cli pid ${cli.pid} → origin :${port}, tunnel ${cli.hostname}`);
    return cli;
  }

  /**
   * SIGUSR2 → a heap snapshot (after a full GC) in the snapshot dir, if snapshots are on;
   * resolves with its path once written.
   */
  async heapSnapshot(relay: RelayProcess): Promise<string | undefined> {
    const dir = this.snapshotDir;
    if (dir === '') return undefined;
    const before = new Set(await readdir(dir));
    process.kill(relay.pid, 'SIGUSR2');
    for (let i = 0; i < 600; i++) {
      await sleep(500);
      const fresh = (await readdir(dir)).filter(
        (f) => !before.has(f) && f.endsWith('.heapsnapshot'),
      );
      if (fresh.length === 0) continue;
      const file = path.join(dir, fresh[0]!);
      const a = (await stat(file)).size;
      await sleep(1000);
      if ((await stat(file)).size === a && a > 0) {
        if (this.c.heapDir !== '') this.log(`heap snapshot: ${file}`);
        return file;
      }
    }
    this.log('heap snapshot: not written within 5 min');
    return undefined;
  }

  async close(): Promise<void> {
    for (const fn of this.cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        this.log(`cleanup: ${(err as Error).message}`);
      }
    }
  }
}

async function withHarness<T>(
  p: BenchParams,
  log: (line: string) => void,
  fn: (h: Harness) => Promise<T>,
): Promise<T> {
  const h = new Harness(common(p), log);
  try {
    return await fn(h);
  } finally {
    await h.close();
  }
}

const mib = (kib: number): number => round(kib / 1024, 1);

/** CPU time of several processes, to tell which one is the bottleneck of a phase. */
class CpuMeter {
  private readonly pids: Record<string, number>;
  private start: Record<string, number> = {};
  private t0 = 0;

  constructor(pids: Record<string, number>) {
    this.pids = pids;
  }

  async begin(): Promise<void> {
    this.start = await this.read();
    this.t0 = performance.now();
  }

  /** Percent of one core each process used since `begin()`. */
  async end(): Promise<Record<string, number>> {
    const now = await this.read();
    const wall = performance.now() - this.t0;
    const out: Record<string, number> = {};
    for (const k of Object.keys(now)) out[k] = round(((now[k]! - this.start[k]!) / wall) * 100, 0);
    return out;
  }

  private async read(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const [k, pid] of Object.entries(this.pids)) out[k] = (await procSample(pid)).cpuMs;
    return out;
  }
}

const cpuText = (pct: Record<string, number>): string =>
  Object.entries(pct)
    .map(([k, v]) => `${k} ${v} %`)
    .join(', ');

function printTable(log: (line: string) => void, rows: (string | number)[][]): void {
  for (const line of table([['figure', 'value', 'target / note'], ...rows])) log(line);
}

interface OpenResult {
  opened: number;
  failed: number;
  errors: { count: number; samples: Record<string, number> };
  ms: number;
  handshake: { p50Ms: number; p99Ms: number };
  hostnames: string[];
}

interface LoadResult {
  connections: number;
  openAtPlateau: number;
  rampMs: number;
  requests: number;
  ok: number;
  errors: { count: number; samples: Record<string, number> };
  mismatches: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  ramp: { p50Ms: number; p99Ms: number };
  /** The load generator's own event-loop delay p99 (high = the figures are its own). */
  generatorLagP99Ms: number;
}

interface TunnelStatus {
  live: number;
  dropped: number;
  dropReasons: { count: number; samples: Record<string, number> };
}

function endpoint(relay: RelayProcess, tls: boolean): string {
  return tls
    ? `wss://qt.localhost:${relay.httpsPort}/_qt/tunnel`
    : `ws://qt.localhost:${relay.httpPort}/_qt/tunnel`;
}

/** A short warm-up (JIT, lazily loaded modules, the admin app) before the baseline. */
async function warmUp(
  relay: RelayProcess,
  tunnels: Driver,
  visitors: Driver,
  tls: boolean,
  sources: string[],
): Promise<void> {
  const open = await tunnels.call<OpenResult>('open-tunnels', {
    endpoint: endpoint(relay, tls),
    ca: relay.ca,
    sourceAddresses: sources,
    count: 20,
    concurrency: 20,
  });
  await visitors.call<LoadResult>('http-load', {
    port: relay.httpPort,
    hosts: open.hostnames,
    connections: 4,
    requests: 50,
    thinkMs: 0,
    hostPerRequest: true,
    sourceAddresses: sources,
    connectConcurrency: 4,
    timeoutMs: 10_000,
    plateauHoldMs: 0,
    deadlineMs: 30_000,
  });
  await relay.metric('quick_tunnel_connections'); // loads the admin app now, not mid-run
  await tunnels.call('close-tunnels', {});
  await sleep(1_500);
}

// ---- idle-tunnels ----------------------------------------------------------------------

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

// ---- many-visitors ---------------------------------------------------------------------

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

// ---- churn -----------------------------------------------------------------------------

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

// ---- soak ------------------------------------------------------------------------------

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

// ---- ws-fanout -------------------------------------------------------------------------

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

/** All scale cases, in the order `npm run bench` runs them. */
export const scaleBenches: readonly BenchCase[] = [
  idleTunnelsBench,
  idleTunnelsTlsBench,
  manyVisitorsBench,
  churnBench,
  wsFanoutBench,
  soakBench,
];
