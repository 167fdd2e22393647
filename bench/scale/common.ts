/**
 * What the scale cases (bench/scale/*.ts) share: the common parameters, the Harness that
 * starts a relay process, driver processes and the real CLI and tears them down in
 * reverse, CPU metering of several processes, the result shapes the drivers return, and
 * the warm-up before a baseline. Load helpers of all benchmarks: bench/scale-support.ts.
 */
import { copyFile, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BenchParams, ParamSpec } from '../params.js';
import {
  build,
  Driver,
  fdLimit,
  procSample,
  ProcWatcher,
  round,
  sleep,
  sourceAddresses,
  startCliProcess,
  startRelayProcess,
  table,
  type RelayProcess,
  type Runtime,
} from '../scale-support.js';

export const KIB = 1024;

export const COMMON = {
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

export interface Common {
  runtime: Runtime;
  logLevel: string;
  sources: string[];
  concurrency: number;
  heapDir: string;
  relayNodeArgs: string[];
}

export function common(p: BenchParams): Common {
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

export let built: Promise<void> | undefined;

/** Everything one case starts, torn down in reverse whatever happens. */
export class Harness {
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

export async function withHarness<T>(
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

export const mib = (kib: number): number => round(kib / 1024, 1);

/** CPU time of several processes, to tell which one is the bottleneck of a phase. */
export class CpuMeter {
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

export const cpuText = (pct: Record<string, number>): string =>
  Object.entries(pct)
    .map(([k, v]) => `${k} ${v} %`)
    .join(', ');

export function printTable(log: (line: string) => void, rows: (string | number)[][]): void {
  for (const line of table([['figure', 'value', 'target / note'], ...rows])) log(line);
}

export interface OpenResult {
  opened: number;
  failed: number;
  errors: { count: number; samples: Record<string, number> };
  ms: number;
  handshake: { p50Ms: number; p99Ms: number };
  hostnames: string[];
}

export interface LoadResult {
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

export interface TunnelStatus {
  live: number;
  dropped: number;
  dropReasons: { count: number; samples: Record<string, number> };
}

export function endpoint(relay: RelayProcess, tls: boolean): string {
  return tls
    ? `wss://qt.localhost:${relay.httpsPort}/_qt/tunnel`
    : `ws://qt.localhost:${relay.httpPort}/_qt/tunnel`;
}

/** A short warm-up (JIT, lazily loaded modules, the admin app) before the baseline. */
export async function warmUp(
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
