/**
 * TUI benchmark: the real CLI with its Ink TUI under a tmux pseudo-terminal, tunnelled
 * through a real relay process to an origin in this process, while this process sends
 * `--rate` requests/s (open loop, keep-alive, plain HTTP to the relay) for
 * `--duration-s`. It samples the CLI's CPU (utime + stime from /proc/<pid>/stat) and
 * RSS (/proc/<pid>/status) every `--sample-ms`, and counts the frames Ink writes to the
 * terminal (each is wrapped in a synchronized-update sequence, `ESC[?2026h`, captured
 * with `tmux pipe-pane`), so the redraw rate is measured outside the CLI.
 *
 * Targets (issue "Live Ink TUI"): CPU below one core, RSS flat, redraws bounded
 * (≤ 10 fps plus the 1 s clock) rather than one per request.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { TmuxPane, tmuxVersion } from '../test/helpers/tmux.js';
import type { ParamSpec } from './params.js';
import type { BenchCase } from './run.js';
import { DOMAIN, build, entry, relayArgs } from './scale-support.js';

const PARAMS = {
  rate: { default: '2000', help: 'requests per second sent through the tunnel' },
  'duration-s': { default: '30', help: 'seconds of load (after the warm-up)' },
  'warmup-s': { default: '3', help: 'seconds of load before measuring' },
  concurrency: { default: '128', help: 'most requests in flight (keep-alive sockets)' },
  'body-bytes': { default: '256', help: 'response body size of the origin' },
  'sample-ms': { default: '1000', help: 'CPU / RSS / frame sampling interval' },
  width: { default: '120', help: 'terminal columns' },
  height: { default: '40', help: 'terminal rows' },
  'timeout-s': { default: '180', help: 'give up after this many seconds' },
  'node-args': { default: '', help: 'extra node flags for the CLI, e.g. --node-args=--cpu-prof' },
  'cli-args': {
    default: '',
    help: 'extra CLI flags, e.g. --cli-args="--log json" to compare with the line view',
  },
} satisfies Record<string, ParamSpec>;

const TARGETS = { cpuCores: 1, rssGrowthMiB: 32, maxFps: 12 };

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const CLK_TCK = 100;
const BSU = Buffer.from('\u001b[?2026h');

interface Sample {
  atS: number;
  cpuPct: number;
  rssMiB: number;
  fps: number;
  reqPerS: number;
}

/** utime + stime of `pid` in ms. */
async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces: count fields after its closing paren.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

/** Counts frames (synchronized-update starts) in a growing file. */
class FrameCounter {
  private offset = 0;
  private carry = Buffer.alloc(0);
  frames = 0;
  bytes = 0;
  constructor(private readonly file: string) {}

  async poll(): Promise<void> {
    const fh = await open(this.file, 'r').catch(() => undefined);
    if (fh === undefined) return;
    try {
      const { size } = await fh.stat();
      if (size <= this.offset) return;
      const buf = Buffer.alloc(size - this.offset);
      await fh.read(buf, 0, buf.length, this.offset);
      this.offset = size;
      this.bytes += buf.length;
      const data = Buffer.concat([this.carry, buf]);
      let at = data.indexOf(BSU);
      while (at !== -1) {
        this.frames++;
        at = data.indexOf(BSU, at + BSU.length);
      }
      this.carry = data.subarray(Math.max(0, data.length - (BSU.length - 1)));
    } finally {
      await fh.close();
    }
  }
}

/** `quick-tunnel relay` on 127.0.0.1 with free ports. */
async function startRelay(dataDir: string): Promise<{
  child: ChildProcess;
  httpsPort: number;
  certPath: string;
}> {
  const child = spawn(process.execPath, relayArgs('dist', { httpPort: 0, dataDir }), {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr!.resume();
  const lines = createInterface({ input: child.stdout! });
  let timer: NodeJS.Timeout | undefined;
  const line = await new Promise<string>((resolve, reject) => {
    lines.on('line', (l) => {
      if (l.includes('"relay listening"')) resolve(l);
    });
    child.once('exit', (code) => reject(new Error(`the relay exited (${code}) before listening`)));
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('the relay did not start within 20 s'));
    }, 20_000);
  }).finally(() => clearTimeout(timer));
  // Its request logs are not needed: keep the pipe drained.
  child.stdout!.resume();
  const info = JSON.parse(line) as { httpsPort: number; certificate: string };
  return { child, httpsPort: info.httpsPort, certPath: info.certificate };
}

/**
 * Open-loop load over HTTPS (as visitors come), keep-alive: `rate` requests/s in 10 ms
 * ticks, at most `concurrency` in flight (beyond, requests are skipped and counted).
 */
class Load {
  sent = 0;
  done = 0;
  errors = 0;
  skipped = 0;
  readonly statuses = new Map<number, number>();
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly agent: https.Agent;

  constructor(
    private readonly port: number,
    private readonly host: string,
    ca: string,
    private readonly rate: number,
    private readonly concurrency: number,
  ) {
    this.agent = new https.Agent({
      keepAlive: true,
      maxSockets: concurrency,
      ca,
      servername: host,
    });
  }

  start(): void {
    const started = performance.now();
    const tick = (): void => {
      const due = Math.floor(((performance.now() - started) / 1000) * this.rate);
      while (this.sent + this.skipped < due) {
        if (this.inFlight >= this.concurrency) {
          this.skipped++;
          continue;
        }
        this.one();
      }
    };
    this.timer = setInterval(tick, 10);
  }

  private one(): void {
    this.sent++;
    this.inFlight++;
    const n = this.sent;
    const req = https.request(
      {
        host: '127.0.0.1',
        port: this.port,
        path: `/bench/${n % 1000}?n=${n}`,
        headers: { host: this.host },
        agent: this.agent,
      },
      (res) => {
        this.statuses.set(res.statusCode ?? 0, (this.statuses.get(res.statusCode ?? 0) ?? 0) + 1);
        res.resume();
        res.on('end', () => {
          this.inFlight--;
          this.done++;
        });
      },
    );
    req.on('error', () => {
      this.inFlight--;
      this.errors++;
    });
    req.end();
  }

  stop(): void {
    clearInterval(this.timer);
    this.agent.destroy();
  }
}

const round = (n: number, digits = 1): number => Math.round(n * 10 ** digits) / 10 ** digits;

export const tuiBench: BenchCase = {
  name: 'tui',
  description: 'CLI with the Ink TUI under tmux at a fixed request rate: CPU, RSS, redraw rate',
  params: PARAMS,
  async run(params, log) {
    if (tmuxVersion() === undefined)
      throw new Error('tmux is not installed (apt-get install tmux)');
    const rate = params.number('rate', PARAMS.rate);
    const durationS = params.number('duration-s', PARAMS['duration-s']);
    const warmupS = params.number('warmup-s', PARAMS['warmup-s']);
    const concurrency = params.number('concurrency', PARAMS.concurrency);
    const bodyBytes = params.bytes('body-bytes', PARAMS['body-bytes']);
    const sampleMs = params.number('sample-ms', PARAMS['sample-ms']);
    const width = params.number('width', PARAMS.width);
    const height = params.number('height', PARAMS.height);
    const timeoutS = params.number('timeout-s', PARAMS['timeout-s']);
    const words = (s: string): string[] => s.split(' ').filter((w) => w !== '');
    const nodeArgs = words(params.string('node-args', PARAMS['node-args']));
    const cliArgs = words(params.string('cli-args', PARAMS['cli-args']));
    log('building dist/ (tsc)…');
    await build();

    const dir = await mkdtemp(path.join(os.tmpdir(), 'qt-bench-tui-'));
    const body = Buffer.alloc(bodyBytes, 0x61);
    const origin = http.createServer((req, res) => {
      req.resume();
      res.setHeader('content-type', 'text/plain');
      res.end(body);
    });
    origin.keepAliveTimeout = 10_000;
    origin.listen(0, '127.0.0.1');
    await once(origin, 'listening');
    const originPort = (origin.address() as AddressInfo).port;
    let relay: Awaited<ReturnType<typeof startRelay>> | undefined;
    let pane: TmuxPane | undefined;
    let load: Load | undefined;
    const deadline = setTimeout(() => {
      log(`timeout after ${timeoutS} s: killing everything`);
      void pane?.kill();
      relay?.child.kill('SIGKILL');
    }, timeoutS * 1000);
    try {
      relay = await startRelay(path.join(dir, 'relay'));
      pane = await TmuxPane.start({
        argv: [
          process.execPath,
          ...nodeArgs,
          ...entry('dist'),
          String(originPort),
          '--relay',
          `https://${DOMAIN}:${relay.httpsPort}`,
          '--ca',
          relay.certPath,
          ...cliArgs,
        ],
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          QUICK_TUNNEL_RELAY: '',
          QUICK_TUNNEL_TOKEN: '',
          QUICK_TUNNEL_CONFIG_DIR: path.join(dir, 'config'),
        },
        dir,
        width,
        height,
      });
      // The TUI's header, or the line view's first line.
      const screen = await pane.waitForScreen(
        /(● online[\s\S]*|"url":"|Forwarding )https:\/\/[a-z2-9]{10}\.qt\.localhost/,
      );
      const host = /https:\/\/([a-z2-9]{10}\.qt\.localhost)/.exec(screen)![1]!;
      const pid = await pane.pid();
      const rawFile = path.join(dir, 'pty.raw');
      await pane.tmux('pipe-pane', '-o', `cat >> '${rawFile}'`);
      log(
        `CLI pid ${pid} at ${host} under tmux ${width}x${height}; relay :${relay.httpsPort}; ` +
          `${rate} req/s over HTTPS for ${warmupS} + ${durationS} s, ${concurrency} in flight at most`,
      );
      const frames = new FrameCounter(rawFile);
      const idleRss = await rssMiB(pid);

      const ca = await readFile(relay.certPath, 'utf8');
      load = new Load(relay.httpsPort, host, ca, rate, concurrency);
      load.start();
      await new Promise((r) => setTimeout(r, warmupS * 1000));

      const samples: Sample[] = [];
      await frames.poll();
      let lastCpu = await cpuMs(pid);
      let lastFrames = frames.frames;
      let lastDone = load.done;
      let last = performance.now();
      const t0 = last;
      const startCpu = lastCpu;
      const startFrames = lastFrames;
      const startDone = lastDone;
      while (performance.now() - t0 < durationS * 1000) {
        await new Promise((r) => setTimeout(r, sampleMs));
        const now = performance.now();
        const cpu = await cpuMs(pid);
        await frames.poll();
        const dt = (now - last) / 1000;
        const sample: Sample = {
          atS: round((now - t0) / 1000),
          cpuPct: round(((cpu - lastCpu) / 1000 / dt) * 100),
          rssMiB: round(await rssMiB(pid)),
          fps: round((frames.frames - lastFrames) / dt),
          reqPerS: Math.round((load.done - lastDone) / dt),
        };
        samples.push(sample);
        if (samples.length % Math.max(1, Math.round(5000 / sampleMs)) === 0) {
          log(
            `t=${sample.atS}s cpu ${sample.cpuPct}% rss ${sample.rssMiB} MiB ` +
              `redraws ${sample.fps}/s requests ${sample.reqPerS}/s`,
          );
        }
        lastCpu = cpu;
        lastFrames = frames.frames;
        lastDone = load.done;
        last = now;
      }
      const wallS = (performance.now() - t0) / 1000;
      load.stop();
      const endScreen = await pane.screen();
      const totalShown = /Requests\s+(\d+) total/.exec(endScreen)?.[1];

      // Ctrl-C: a key for the TUI (raw mode); the line view gets SIGINT itself (through
      // the terminal, the shell around it would get one too).
      if (cliArgs.includes('--log')) process.kill(pid, 'SIGINT');
      else await pane.keys('C-c');
      const exit = await pane.exited();

      const cpuPct = ((lastCpu - startCpu) / 1000 / wallS) * 100;
      const rss = samples.map((s) => s.rssMiB);
      const half = Math.floor(samples.length / 2);
      const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
      const rssFirstHalf = mean(rss.slice(0, half));
      const rssSecondHalf = mean(rss.slice(half));
      const result = {
        rateTarget: rate,
        rateAchieved: round((load.done - startDone) / wallS, 0),
        durationS: round(wallS),
        cpuPct: round(cpuPct),
        cpuPctMax: Math.max(...samples.map((s) => s.cpuPct)),
        rssIdleMiB: round(idleRss),
        rssStartMiB: rss[0] ?? 0,
        rssEndMiB: rss[rss.length - 1] ?? 0,
        rssMaxMiB: Math.max(...rss),
        rssSecondHalfMinusFirstMiB: round(rssSecondHalf - rssFirstHalf),
        redrawsPerS: round((frames.frames - startFrames) / wallS),
        redrawsPerSMax: Math.max(...samples.map((s) => s.fps)),
        ptyKiBPerS: round(frames.bytes / 1024 / (wallS + warmupS)),
        requests: { sent: load.sent, done: load.done, errors: load.errors, skipped: load.skipped },
        statuses: Object.fromEntries(load.statuses),
        tuiTotalShown: totalShown === undefined ? null : Number(totalShown),
        exitStatus: exit.status,
        terminalRestored: exit.sttyAfter === exit.sttyBefore,
        samples,
      };
      const meetsTargets =
        result.rateAchieved >= rate * 0.95 &&
        result.cpuPct < TARGETS.cpuCores * 100 &&
        result.rssSecondHalfMinusFirstMiB < TARGETS.rssGrowthMiB &&
        result.redrawsPerSMax <= TARGETS.maxFps &&
        exit.status === 0;
      log(
        `summary: ${result.rateAchieved} req/s achieved (target ${rate}); CLI cpu ${result.cpuPct}% ` +
          `(max ${result.cpuPctMax}%), rss ${result.rssStartMiB} → ${result.rssEndMiB} MiB ` +
          `(max ${result.rssMaxMiB}, 2nd half − 1st half ${result.rssSecondHalfMinusFirstMiB} MiB), ` +
          `redraws ${result.redrawsPerS}/s (max ${result.redrawsPerSMax}/s), ` +
          `TUI shows ${result.tuiTotalShown} total, exit ${exit.status}`,
      );
      return { ...result, meetsTargets, targets: TARGETS };
    } finally {
      clearTimeout(deadline);
      load?.stop();
      await pane?.kill();
      if (relay !== undefined && relay.child.exitCode === null) {
        const exited = once(relay.child, 'exit');
        relay.child.kill('SIGTERM');
        await exited;
      }
      origin.closeAllConnections();
      await new Promise((r) => origin.close(r));
      await rm(dir, { recursive: true, force: true });
    }
  },
};
