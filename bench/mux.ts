/**
 * Mux micro-benchmark: the two ends of a tunnel session in two processes over a real
 * loopback WebSocket. Both ends are fresh child processes running `bench/mux-peer.ts`:
 * one plays the relay, the other the tunnel client (it dials with the ws options the
 * CLI uses, so it masks what it sends the same way). This process only orchestrates,
 * so what it (or another benchmark case) imports cannot skew the figures.
 *
 * Phases, per transport (TLS, which users get, then plain ws:// for comparison):
 *   raw      reference: `--bytes` client → relay over a bare TLS (or TCP) socket between
 *            the same two processes, no WebSocket and no mux: the ceiling of the machine
 *   warmup   one stream, `--warmup` bytes each way (not reported: lets V8 optimise)
 *   up       one stream, `--bytes` client → relay (the direction HTTP responses take)
 *   down     one stream, `--bytes` relay → client
 *   streams  `--streams` concurrent streams moving `--streams-bytes` in total, each
 *            stream half up and half down at the same time
 *
 * MB/s is 10^6 bytes per second of stream payload. CPU is reported per process as a
 * share of one core and as seconds per GiB moved (steadier than MB/s on a busy
 * machine). RSS growth is each process's peak RSS during the up/down phases minus its
 * RSS before any traffic. The JSON line's top level holds the TLS figures
 * (`primaryTransport`); the plain ones sit under `plain`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { MuxSession } from '../shared/mux/session.js';
import type {
  BenchTransport,
  ParentMessage,
  PeerMessage,
  PeerMuxOptions,
  StreamPlan,
} from './mux-ipc.js';
import type { ParamSpec } from './params.js';
import type { PhaseStats } from './process-stats.js';
import type { BenchCase } from './run.js';

const PARAMS = {
  bytes: { default: '1GiB', help: 'bytes moved by the one-stream runs, in each direction' },
  streams: { default: '100', help: 'concurrent streams in the many-streams run' },
  'streams-bytes': {
    default: '1GiB',
    help: 'total bytes of the many-streams run (each stream: half up, half down)',
  },
  transport: { default: 'both', help: 'tls, plain or both (TLS figures are the primary ones)' },
  mask: {
    default: 'auto',
    help: 'client masking key: auto (tunnelClientWsOptions: zero over TLS), zero or random',
  },
  window: { default: 'default', help: 'MuxOptions.windowBytes for both ends, e.g. 256KiB' },
  frame: { default: 'default', help: 'MuxOptions.maxFrameBytes for both ends, e.g. 64KiB' },
  'high-water': { default: 'default', help: 'MuxOptions.sendHighWaterBytes for both ends' },
  chunk: { default: '64KiB', help: 'size of each write into a stream (one reused buffer)' },
  warmup: { default: '64MiB', help: 'bytes each way before measuring (0 = none)' },
  phases: {
    default: 'raw,up,down,streams',
    help: 'which phases to run (e.g. "down" to profile)',
  },
  'timeout-s': { default: '300', help: 'give up (and kill both ends) after this many seconds' },
} satisfies Record<string, ParamSpec>;

/** Targets from the issue, for the 2-core dev machine. */
const TARGETS = { oneStreamMBps: 1000, streamsMBps: 800, rssGrowthMiB: 64 };

const TEST_DOMAIN = 'qt.localhost';

type Side = 'client' | 'relay';

interface PhaseResult {
  bytes: number;
  wallMs: number;
  mbps: number;
  client: PhaseStats;
  relay: PhaseStats;
}

type PhaseName = 'raw' | 'up' | 'down' | 'streams';
const PHASE_NAMES: readonly PhaseName[] = ['raw', 'up', 'down', 'streams'];

interface TransportResult {
  transport: BenchTransport;
  mask: 'zero' | 'random';
  cipher: string | undefined;
  bufferutil: Record<Side, boolean>;
  phases: Partial<Record<PhaseName, PhaseResult>>;
  /** RSS before any traffic, MiB: the base of the growth figures. */
  rssBeforeMiB: Record<Side, number>;
}

/** One end (a `bench/mux-peer.ts` child) and request/response over its IPC channel. */
class EndProcess {
  readonly child: ChildProcess;
  /** Rejects when the process reports an error or dies; raced against every wait. */
  readonly failed: Promise<never>;
  private readonly waiting = new Map<PeerMessage['type'], (msg: PeerMessage) => void>();
  private readonly deadline: Promise<never>;

  /** `deadline` rejects when the run takes too long: every wait then fails at once. */
  constructor(
    readonly role: Side | 'cert',
    deadline: Promise<never>,
  ) {
    this.deadline = deadline;
    const entry = fileURLToPath(new URL('./mux-peer.ts', import.meta.url));
    // Same node flags as ours (--import tsx, and e.g. --cpu-prof when profiling a run).
    const execArgv = process.execArgv.some((a) => a.includes('tsx'))
      ? process.execArgv
      : [...process.execArgv, '--import', 'tsx'];
    // stdout stays ours (the JSON line); the child's diagnostics go to our stderr.
    this.child = fork(entry, [], { execArgv, stdio: ['ignore', 2, 2, 'ipc'] });
    this.failed = new Promise<never>((_, reject) => {
      this.child.on('message', (msg: PeerMessage) => {
        if (msg.type === 'error') {
          reject(new Error(`${role}: ${msg.message}`));
          return;
        }
        const resolve = this.waiting.get(msg.type);
        this.waiting.delete(msg.type);
        resolve?.(msg);
      });
      this.child.on('exit', (code, signal) =>
        reject(new Error(`${role} process exited (code ${code}, signal ${signal})`)),
      );
      this.child.on('error', reject);
    });
    this.failed.catch(() => {}); // observed through race(); never unhandled
  }

  async request<T extends PeerMessage['type']>(
    msg: ParentMessage,
    reply: T,
  ): Promise<Extract<PeerMessage, { type: T }>> {
    const answer = new Promise<PeerMessage>((resolve) => this.waiting.set(reply, resolve));
    this.child.send(msg);
    return (await this.race(answer)) as Extract<PeerMessage, { type: T }>;
  }

  race<T>(work: Promise<T>): Promise<T> {
    return Promise.race([work, this.failed, this.deadline]);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    if (this.child.connected) this.child.disconnect(); // the child exits on disconnect
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 2_000);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * A self-signed certificate for the TLS runs, made in a throwaway process. Not in an
 * end: loading the certificate library (pkijs) into a process changes V8's GC
 * behaviour for the rest of its life (importing fastify does the same). With it
 * loaded, an end ran a mark-compact every ~10 MiB of traffic instead of scavenges only
 * and spent about twice the CPU per byte: that would measure the library, not the mux.
 */
async function makeCertificate(deadline: Promise<never>): Promise<{ cert: string; key: string }> {
  const helper = new EndProcess('cert', deadline);
  try {
    const { cert, key } = await helper.request({ type: 'make-cert', domain: TEST_DOMAIN }, 'cert');
    return { cert, key };
  } finally {
    await helper.stop();
  }
}

interface Ends {
  client: EndProcess;
  relay: EndProcess;
}

/** Runs one phase with both ends metered; `bytes` is what it moves in total. */
async function measure(
  ends: Ends,
  bytes: number,
  run: Extract<ParentMessage, { type: 'run' }> | undefined,
): Promise<PhaseResult> {
  await Promise.all([
    ends.client.request({ type: 'phase-start' }, 'phase-started'),
    ends.relay.request({ type: 'phase-start' }, 'phase-started'),
  ]);
  // A failed run throws here; runTransport then stops both ends (timers and all).
  const wallMs =
    run === undefined ? 0 : (await ends.relay.race(ends.client.request(run, 'ran'))).wallMs;
  const [client, relay] = await Promise.all([
    ends.client.request({ type: 'phase-end' }, 'phase-stats'),
    ends.relay.request({ type: 'phase-end' }, 'phase-stats'),
  ]);
  return {
    bytes,
    wallMs,
    mbps: wallMs > 0 ? bytes / 1e6 / (wallMs / 1000) : 0,
    client: client.stats,
    relay: relay.stats,
  };
}

interface RunConfig {
  bytes: number;
  streams: number;
  streamsBytes: number;
  chunkBytes: number;
  warmupBytes: number;
  phases: readonly PhaseName[];
  mask: 'auto' | 'zero' | 'random';
  mux: PeerMuxOptions;
  cert: { cert: string; key: string };
}

async function runTransport(
  transport: BenchTransport,
  config: RunConfig,
  deadline: Promise<never>,
  log: (line: string) => void,
): Promise<TransportResult> {
  const ends: Ends = {
    relay: new EndProcess('relay', deadline),
    client: new EndProcess('client', deadline),
  };
  try {
    const listening = await ends.relay.request(
      {
        type: 'listen',
        transport,
        ...config.cert,
        mux: config.mux,
        chunkBytes: config.chunkBytes,
      },
      'listening',
    );
    const connected = await ends.relay.race(
      ends.client.request(
        {
          type: 'connect',
          transport,
          port: listening.port,
          rawPort: listening.rawPort,
          ca: config.cert.cert,
          servername: TEST_DOMAIN,
          mux: config.mux,
          mask: config.mask,
          chunkBytes: config.chunkBytes,
        },
        'connected',
      ),
    );
    log(
      `${transport}: ${connected.url}${connected.cipher ? ` ${connected.cipher}` : ''}, ` +
        `client mask ${connected.mask}, bufferutil client ${connected.bufferutil} ` +
        `relay ${listening.bufferutil}`,
    );
    // RSS of both ends before any traffic: an empty phase.
    const idle = await measure(ends, 0, undefined);
    if (config.warmupBytes > 0) {
      const warm = [{ up: config.warmupBytes, down: config.warmupBytes }];
      await measure(ends, 0, { type: 'run', work: 'streams', plans: warm });
    }
    const each = Math.floor(config.streamsBytes / config.streams / 2);
    const phases: Record<
      PhaseName,
      { label: string; bytes: number; run: Extract<ParentMessage, { type: 'run' }> }
    > = {
      raw: {
        label: `raw ${transport === 'tls' ? 'TLS' : 'TCP'} up`,
        bytes: config.bytes,
        run: { type: 'run', work: 'raw', bytes: config.bytes },
      },
      up: {
        label: '1 stream up',
        bytes: config.bytes,
        run: { type: 'run', work: 'streams', plans: [{ up: config.bytes, down: 0 }] },
      },
      down: {
        label: '1 stream down',
        bytes: config.bytes,
        run: { type: 'run', work: 'streams', plans: [{ up: 0, down: config.bytes }] },
      },
      streams: {
        label: `${config.streams} streams`,
        bytes: each * 2 * config.streams,
        run: {
          type: 'run',
          work: 'streams',
          plans: Array.from({ length: config.streams }, (): StreamPlan => ({
            up: each,
            down: each,
          })),
        },
      },
    };
    const result: TransportResult = {
      transport,
      mask: connected.mask,
      cipher: connected.cipher,
      bufferutil: { client: connected.bufferutil, relay: listening.bufferutil },
      phases: {},
      rssBeforeMiB: { client: idle.client.rssStartMiB, relay: idle.relay.rssStartMiB },
    };
    for (const name of config.phases) {
      const { label, bytes, run } = phases[name];
      const phase = await measure(ends, bytes, run);
      result.phases[name] = phase;
      log(phaseLine(transport, label, phase));
    }
    log(summaryLine(result, config.streams));
    return result;
  } finally {
    await Promise.all([ends.client.stop(), ends.relay.stop()]);
  }
}

const fmt = (n: number | undefined, digits = 0): string =>
  n === undefined ? '-' : n.toFixed(digits);
const round = (n: number | undefined): number | null =>
  n === undefined ? null : Math.round(n * 10) / 10;

function phaseLine(transport: BenchTransport, name: string, r: PhaseResult): string {
  const cpu = (s: PhaseStats): string =>
    `${fmt((s.cpuMs / r.wallMs) * 100)}% ${fmt(cpuSecPerGiB(r, s), 2)} s/GiB ` +
    `(sys ${fmt((s.sysMs / s.cpuMs) * 100)}%)`;
  return (
    `${transport} ${name.padEnd(13)} ${fmt(r.bytes / 2 ** 20)} MiB in ${fmt(r.wallMs / 1000, 2)} s` +
    ` = ${fmt(r.mbps)} MB/s | cpu client ${cpu(r.client)}, relay ${cpu(r.relay)}` +
    ` | peak rss client ${fmt(r.client.rssPeakMiB)} MiB, relay ${fmt(r.relay.rssPeakMiB)} MiB`
  );
}

/** CPU seconds a process spent per GiB moved: less sensitive to a busy machine than MB/s. */
function cpuSecPerGiB(r: PhaseResult, s: PhaseStats): number {
  return s.cpuMs / 1000 / (r.bytes / 2 ** 30);
}

/** Peak RSS of one process over the given phases (undefined if none ran). */
function peak(r: TransportResult, side: Side, names: readonly PhaseName[]): number | undefined {
  const peaks = names.flatMap((n) => {
    const p = r.phases[n];
    return p === undefined ? [] : [p[side].rssPeakMiB];
  });
  return peaks.length === 0 ? undefined : Math.max(...peaks);
}

/** Peak RSS during the one-stream (1 GiB) runs minus RSS before any traffic. */
function growth(r: TransportResult, side: Side): number | undefined {
  const top = peak(r, side, ['up', 'down']);
  return top === undefined ? undefined : top - r.rssBeforeMiB[side];
}

function summaryLine(r: TransportResult, streams: number): string {
  return (
    `${r.transport} summary: raw socket ${fmt(r.phases.raw?.mbps)} MB/s; ` +
    `mux up ${fmt(r.phases.up?.mbps)} MB/s, down ${fmt(r.phases.down?.mbps)} MB/s, ` +
    `${streams} streams ${fmt(r.phases.streams?.mbps)} MB/s; ` +
    `peak RSS client ${fmt(peak(r, 'client', PHASE_NAMES))} MiB, ` +
    `relay ${fmt(peak(r, 'relay', PHASE_NAMES))} MiB; RSS growth over the one-stream runs ` +
    `client +${fmt(growth(r, 'client'))} MiB, relay +${fmt(growth(r, 'relay'))} MiB`
  );
}

/** The flat JSON fields of one transport's run (what a comparison script reads). */
function figures(r: TransportResult): Record<string, unknown> {
  const clientGrowth = growth(r, 'client');
  const relayGrowth = growth(r, 'relay');
  const cpu = Object.fromEntries(
    PHASE_NAMES.flatMap((name) => {
      const p = r.phases[name];
      if (p === undefined) return [];
      const side = (s: PhaseStats): Record<string, number> => ({
        pct: Math.round((s.cpuMs / p.wallMs) * 100),
        secPerGiB: Math.round(cpuSecPerGiB(p, s) * 100) / 100,
        sysPct: Math.round((s.sysMs / s.cpuMs) * 100),
      });
      return [[name, { client: side(p.client), relay: side(p.relay) }]];
    }),
  );
  return {
    oneStreamUpMBps: round(r.phases.up?.mbps),
    oneStreamDownMBps: round(r.phases.down?.mbps),
    streams100MBps: round(r.phases.streams?.mbps),
    rssGrowthMiB:
      clientGrowth === undefined || relayGrowth === undefined
        ? null
        : round(Math.max(clientGrowth, relayGrowth)),
    rawUpMBps: round(r.phases.raw?.mbps),
    clientRssGrowthMiB: round(clientGrowth),
    relayRssGrowthMiB: round(relayGrowth),
    clientPeakRssMiB: round(peak(r, 'client', PHASE_NAMES)),
    relayPeakRssMiB: round(peak(r, 'relay', PHASE_NAMES)),
    clientRssBeforeMiB: round(r.rssBeforeMiB.client),
    relayRssBeforeMiB: round(r.rssBeforeMiB.relay),
    cpu,
    mask: r.mask,
    cipher: r.cipher ?? null,
    bufferutil: r.bufferutil,
  };
}

export const muxBench: BenchCase = {
  name: 'mux',
  description: 'mux throughput and memory, client and relay in two processes over loopback',
  params: PARAMS,
  async run(params, log) {
    const optionalBytes = (name: 'window' | 'frame' | 'high-water'): number | undefined =>
      params.string(name, PARAMS[name]) === 'default'
        ? undefined
        : params.bytes(name, PARAMS[name]);
    const mux: PeerMuxOptions = {};
    const windowBytes = optionalBytes('window');
    const maxFrameBytes = optionalBytes('frame');
    const sendHighWaterBytes = optionalBytes('high-water');
    if (windowBytes !== undefined) mux.windowBytes = windowBytes;
    if (maxFrameBytes !== undefined) mux.maxFrameBytes = maxFrameBytes;
    if (sendHighWaterBytes !== undefined) mux.sendHighWaterBytes = sendHighWaterBytes;
    const which = params.oneOf('transport', PARAMS.transport, ['both', 'tls', 'plain']);
    const config: RunConfig = {
      bytes: params.bytes('bytes', PARAMS.bytes),
      streams: params.number('streams', PARAMS.streams),
      streamsBytes: params.bytes('streams-bytes', PARAMS['streams-bytes']),
      chunkBytes: params.bytes('chunk', PARAMS.chunk),
      warmupBytes: params.bytes('warmup', PARAMS.warmup),
      phases: params
        .string('phases', PARAMS.phases)
        .split(',')
        .map((name) => {
          if (!(PHASE_NAMES as readonly string[]).includes(name)) {
            throw new Error(`--phases takes ${PHASE_NAMES.join(', ')}, got "${name}"`);
          }
          return name as PhaseName;
        }),
      mask: params.oneOf('mask', PARAMS.mask, ['auto', 'zero', 'random']),
      mux,
      cert: { cert: '', key: '' },
    };
    if (!Number.isInteger(config.streams) || config.streams < 1) {
      throw new Error('--streams must be a positive integer');
    }
    if (config.chunkBytes < 1) throw new Error('--chunk must be at least 1 byte');
    const transports: BenchTransport[] = which === 'both' ? ['tls', 'plain'] : [which];

    const timeoutS = params.number('timeout-s', PARAMS['timeout-s']);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`mux benchmark exceeded --timeout-s ${timeoutS}`)),
        timeoutS * 1000,
      );
    });
    deadline.catch(() => {}); // observed through EndProcess.race(); never unhandled
    const results: TransportResult[] = [];
    try {
      if (transports.includes('tls')) config.cert = await makeCertificate(deadline);
      for (const transport of transports) {
        // On timeout every wait in the run rejects, and its `finally` stops both ends.
        results.push(await runTransport(transport, config, deadline, log));
      }
    } finally {
      clearTimeout(timer);
    }
    const primary = results[0]!;
    const others = Object.fromEntries(results.slice(1).map((r) => [r.transport, figures(r)]));
    const top = figures(primary);
    const { up, down, streams } = primary.phases;
    const growthMiB = top['rssGrowthMiB'];
    const meetsTargets =
      up !== undefined &&
      down !== undefined &&
      streams !== undefined &&
      up.mbps >= TARGETS.oneStreamMBps &&
      down.mbps >= TARGETS.oneStreamMBps &&
      streams.mbps >= TARGETS.streamsMBps &&
      typeof growthMiB === 'number' &&
      growthMiB < TARGETS.rssGrowthMiB;
    return {
      primaryTransport: primary.transport,
      ...top,
      ...others,
      meetsTargets,
      targets: TARGETS,
      config: {
        bytes: config.bytes,
        streams: config.streams,
        streamsBytes: config.streamsBytes,
        chunkBytes: config.chunkBytes,
        warmupBytes: config.warmupBytes,
        mux: config.mux,
        maxMessageBytes: MuxSession.maxMessageBytes(config.mux),
        node: process.version,
        cpus: availableParallelism(),
      },
    };
  },
};
