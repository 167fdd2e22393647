/**
 * End-to-end benchmark: visitor → relay → CLI (over the TLS WebSocket) → local origin,
 * against the same traffic sent straight to the origin, in one run. Four processes:
 * origin, relay, CLI, and the load generator (wrk when installed, else a Node client).
 *
 * Reports requests/s and p50/p99 latency of a small GET at N concurrent keep-alive
 * connections, MB/s of a large download and upload, and peak RSS of relay and CLI.
 * The visitor leg is plain HTTP to the relay's HTTP port (as with ssh -R); the
 * relay ↔ CLI leg is the real TLS WebSocket.
 *
 * In the same run, when available: the same figures through an OpenSSH `ssh -R` forward
 * (bench/ssh-forward.ts; its transfers take turns with the tunnel's, run by run) with
 * quick-tunnel's ratios to it, and the Node floor (bench/node-floor.ts): plain Node
 * forwarders that tell what Node itself costs from what the tunnel adds.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { BenchCase } from './run.js';
import type { ParamSpec } from './params.js';
import { DOMAIN, build, entry, freePort, median, procSample, relayArgs } from './scale-support.js';
import { FLOOR_KINDS, startNodeFloor, type FloorKind } from './node-floor.js';
import { startSshForward, type SshForward } from './ssh-forward.js';
import { sendBytes } from './traffic.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const PARAMS = {
  'duration-s': { default: '10', help: 'seconds of small-GET load per target' },
  connections: { default: '50', help: 'concurrent keep-alive connections for the small GET' },
  'transfer-bytes': { default: '256MiB', help: 'size of the download and of the upload' },
  'transfer-runs': {
    default: '5',
    help: 'measured transfers each way after a first (cold) one; the median is reported',
  },
  'chunked-bytes': {
    default: '32MiB',
    help: 'size of a download the origin writes in small chunks (chunked encoding); 0 = skip',
  },
  'chunk-bytes': { default: '1024', help: 'size of each origin write in that download' },
  'cli-stdout': {
    default: 'file',
    help: "where the CLI's request lines go: file (a temp file) or pipe (read by the bench)",
  },
  'tunnel-connections': { default: '2', help: 'CLI --connections (HA WebSockets)' },
  'load-generator': { default: 'auto', help: 'wrk | node | auto (wrk if installed)' },
  ssh: { default: 'true', help: 'also measure an ssh -R forward (OpenSSH on loopback)' },
  floor: {
    default: 'true',
    help: 'also measure the Node floor: a Node TCP pipe, a plain Node HTTP proxy and a Node TLS pipe pair (bench/node-floor.ts)',
  },
  build: {
    default: 'true',
    help: 'build dist/ first (false: run the build already there, e.g. between A/B runs)',
  },
  dist: {
    default: 'dist',
    help: 'directory of the build to run (relative to the repo, next to dist/), for A/B runs of two builds',
  },
  'node-flags': {
    default: '',
    help: 'extra node flags for the relay and CLI processes (space-separated), for experiments',
  },
} satisfies Record<string, ParamSpec>;

/**
 * One Node floor forwarder's figures: of its one process (pipe, proxy: it does the relay's
 * and the CLI's job), or of tls-pipe's front (the relay's place) with its back's in `back`.
 */
interface FloorResult {
  rps: number;
  p99Ms: number;
  errors: number;
  cpuUsPerRequest: number;
  downloadMBps: number;
  uploadMBps: number;
  downloadCpuSPerGiB: number;
  uploadCpuSPerGiB: number;
  /** Peak RSS in the transfers, and in the small GETs. */
  peakRssMiB: number;
  peakRssSmallGetMiB: number;
  /** tls-pipe's back (the CLI's place). */
  back?: {
    cpuUsPerRequest: number;
    downloadCpuSPerGiB: number;
    uploadCpuSPerGiB: number;
    peakRssMiB: number;
  };
}

interface LoadResult {
  rps: number;
  /** Requests completed in the measured window. */
  requests: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/** The origin runs in its own process so the load generator doesn't share its loop. */
export const ORIGIN_SOURCE = `
const http = require('node:http');
const chunk = Buffer.alloc(256 * 1024, 0x61);
const server = http.createServer((req, res) => {
  if (req.url === '/small') { res.setHeader('content-type', 'text/plain'); res.end('hello, tunnel!'); return; }
  if (req.url.startsWith('/download')) {
    let left = Number(new URL(req.url, 'http://x').searchParams.get('bytes'));
    res.writeHead(200, { 'content-length': String(left) });
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length); left -= n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return res.once('drain', pump);
      }
      res.end();
    };
    return pump();
  }
  if (req.url.startsWith('/chunks')) {
    const q = new URL(req.url, 'http://x').searchParams;
    let left = Number(q.get('bytes'));
    const size = Number(q.get('size'));
    const piece = chunk.subarray(0, size);
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, size); left -= n;
        if (!res.write(n === size ? piece : piece.subarray(0, n))) return res.once('drain', pump);
      }
      res.end();
    };
    return pump();
  }
  if (req.url === '/upload') { let n = 0; req.on('data', (c) => n += c.length); req.on('end', () => res.end(String(n))); return; }
  res.statusCode = 404; res.end();
});
server.keepAliveTimeout = 65000;
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

/** `stdout`: a pipe (read with firstLine), or a file descriptor the child writes to. */
export function spawnLogged(
  args: string[],
  label: string,
  log: (l: string) => void,
  stdout: 'pipe' | number = 'pipe',
): ChildProcess {
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', stdout, 'pipe'] });
  createInterface({ input: child.stderr! }).on('line', (l) => {
    if (/error|warning/i.test(l)) log(`${label}: ${l}`);
  });
  return child;
}

export async function firstLine(
  child: ChildProcess,
  re: RegExp,
  timeoutMs = 20_000,
): Promise<string> {
  const rl = createInterface({ input: child.stdout! });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re}`)), timeoutMs);
    rl.on('line', (l) => {
      if (re.test(l)) {
        clearTimeout(timer);
        // Stop parsing: the CLI then logs a line per request, and reading those here would
        // take CPU from the processes being measured (callers drain stdout with resume()).
        rl.close();
        resolve(l);
      }
    });
    child.once('exit', (code) => reject(new Error(`process exited (${code}) before ${re}`)));
  });
}

/** The first line of the file at `file` matching `re`, polled (a child writes it). */
async function firstFileLine(
  child: ChildProcess,
  file: string,
  re: RegExp,
  timeoutMs = 20_000,
): Promise<string> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const line = (await readFile(file, 'utf8')).split('\n').find((l) => re.test(l));
    if (line !== undefined) return line;
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`process exited (${child.exitCode}) before ${re}`);
    }
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${re} in ${file}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Peak RSS of a process (or the sum over a set of them), sampled from /proc every 50 ms. */
function rssSampler(pids: number | (() => Promise<number[]>)): { stop(): number } {
  let peak = 0;
  const list = typeof pids === 'number' ? () => Promise.resolve([pids]) : pids;
  const sample = async (): Promise<void> => {
    let kb = 0;
    for (const pid of await list()) {
      try {
        const status = await readFile(`/proc/${pid}/status`, 'utf8');
        kb += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      } catch {
        // process gone
      }
    }
    peak = Math.max(peak, kb / 1024);
  };
  // Unref'd: a sampler an error skipped the stop() of does not keep the bench alive.
  const timer = setInterval(() => void sample(), 50).unref();
  void sample();
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

/** CPU time (ms) of a set of processes so far; processes gone since count as 0. */
async function cpuOf(pids: readonly number[]): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    try {
      out.set(pid, (await procSample(pid)).cpuMs);
    } catch {
      // gone
    }
  }
  return out;
}

/** CPU ms spent between two cpuOf samples, over the processes present in both. */
function cpuSpent(before: Map<number, number>, after: Map<number, number>): number {
  let ms = 0;
  for (const [pid, v] of after) ms += v - (before.get(pid) ?? v);
  return ms;
}

/** ssh -R's figures the Node floor is set against (the e2e result's `sshR`). */
interface SshFigures {
  rps: number;
  cpuUsPerRequest: { sshd: number; ssh: number };
  downloadMBps: number;
  uploadMBps: number;
  downloadCpuSPerGiB: { sshd: number; ssh: number };
  uploadCpuSPerGiB: { sshd: number; ssh: number };
}

/**
 * The Node floor's figures, each with ratios to ssh -R's from the same run (> 1 = more
 * for Node). A one-process floor does both sides' work, so its CPU is set against sshd's
 * and ssh's added up, and against one side of ssh (the ceiling the issue sets per
 * process); tls-pipe's front is set against sshd and its back against ssh.
 */
function floorFigures(
  floors: Partial<Record<FloorKind, FloorResult>>,
  ssh: SshFigures | undefined,
): Partial<Record<FloorKind, FloorResult & { vsSshR?: Record<string, number> }>> {
  const ratio = (a: number, b: number): number => Number((a / b).toFixed(2));
  const out: Partial<Record<FloorKind, FloorResult & { vsSshR?: Record<string, number> }>> = {};
  for (const [kind, f] of Object.entries(floors) as [FloorKind, FloorResult][]) {
    out[kind] =
      ssh === undefined
        ? f
        : {
            ...f,
            vsSshR:
              f.back === undefined
                ? {
                    rps: ratio(f.rps, ssh.rps),
                    cpuPerRequestVsBothSides: ratio(
                      f.cpuUsPerRequest,
                      ssh.cpuUsPerRequest.sshd + ssh.cpuUsPerRequest.ssh,
                    ),
                    cpuPerRequestVsSshd: ratio(f.cpuUsPerRequest, ssh.cpuUsPerRequest.sshd),
                    download: ratio(f.downloadMBps, ssh.downloadMBps),
                    upload: ratio(f.uploadMBps, ssh.uploadMBps),
                    cpuPerGiBDownVsBothSides: ratio(
                      f.downloadCpuSPerGiB,
                      ssh.downloadCpuSPerGiB.sshd + ssh.downloadCpuSPerGiB.ssh,
                    ),
                    cpuPerGiBUpVsBothSides: ratio(
                      f.uploadCpuSPerGiB,
                      ssh.uploadCpuSPerGiB.sshd + ssh.uploadCpuSPerGiB.ssh,
                    ),
                  }
                : {
                    // Side by side, as the tunnel's own ratios: front vs sshd, back vs ssh.
                    rps: ratio(f.rps, ssh.rps),
                    frontCpuPerRequest: ratio(f.cpuUsPerRequest, ssh.cpuUsPerRequest.sshd),
                    backCpuPerRequest: ratio(f.back.cpuUsPerRequest, ssh.cpuUsPerRequest.ssh),
                    download: ratio(f.downloadMBps, ssh.downloadMBps),
                    upload: ratio(f.uploadMBps, ssh.uploadMBps),
                    frontCpuPerGiBDown: ratio(f.downloadCpuSPerGiB, ssh.downloadCpuSPerGiB.sshd),
                    backCpuPerGiBDown: ratio(f.back.downloadCpuSPerGiB, ssh.downloadCpuSPerGiB.ssh),
                    frontCpuPerGiBUp: ratio(f.uploadCpuSPerGiB, ssh.uploadCpuSPerGiB.sshd),
                    backCpuPerGiBUp: ratio(f.back.uploadCpuSPerGiB, ssh.uploadCpuSPerGiB.ssh),
                  },
          };
  }
  return out;
}

function hasWrk(): Promise<boolean> {
  return new Promise((resolve) =>
    execFile('wrk', ['--version'], (err) =>
      resolve(err === null || (err as { code?: unknown }).code === 1),
    ),
  );
}

function parseWrkMs(text: string): number {
  const m = /([\d.]+)(us|ms|s)/.exec(text);
  if (m === null) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

async function wrk(
  url: string,
  host: string,
  connections: number,
  durationS: number,
): Promise<LoadResult> {
  const out = await new Promise<string>((resolve, reject) => {
    execFile(
      'wrk',
      [
        '-t1',
        `-c${connections}`,
        `-d${durationS}s`,
        '--latency',
        '--timeout',
        '10s',
        '-H',
        `Host: ${host}`,
        url,
      ],
      { maxBuffer: 1 << 20 },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    );
  });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const p50 = parseWrkMs(/\s50%\s+(\S+)/.exec(out)?.[1] ?? '');
  const p99 = parseWrkMs(/\s99%\s+(\S+)/.exec(out)?.[1] ?? '');
  const errLine = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const errors = non2xx + (errLine ? errLine.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  return { rps, requests, p50Ms: p50, p99Ms: p99, errors };
}

/** A Node load generator: N keep-alive loops for `durationS`, latencies recorded. */
async function nodeLoad(
  port: number,
  host: string,
  connections: number,
  durationS: number,
): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const latencies: number[] = [];
  let errors = 0;
  const deadline = performance.now() + durationS * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      const status = await new Promise<number>((resolve) => {
        const req = http.get(
          { host: '127.0.0.1', port, path: '/small', headers: { host }, agent },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', () => resolve(0));
      });
      if (status !== 200) errors++;
      latencies.push(performance.now() - t0);
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: connections }, loop));
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const q = (p: number): number =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return {
    rps: latencies.length / elapsed,
    requests: latencies.length,
    p50Ms: q(0.5),
    p99Ms: q(0.99),
    errors,
  };
}

type TransferKind = 'download' | 'upload' | { chunksOf: number };

async function transfer(
  kind: TransferKind,
  port: number,
  host: string,
  bytes: number,
): Promise<number> {
  const name = typeof kind === 'string' ? kind : 'chunked download';
  const started = performance.now();
  const got = await new Promise<number>((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: kind === 'upload' ? 'POST' : 'GET',
        path:
          kind === 'upload'
            ? '/upload'
            : kind === 'download'
              ? `/download?bytes=${bytes}`
              : `/chunks?bytes=${bytes}&size=${kind.chunksOf}`,
        headers: kind === 'upload' ? { host, 'content-length': String(bytes) } : { host },
        agent: false,
      },
      (res) => {
        let n = 0;
        let text = '';
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (kind === 'upload') text += c.toString();
        });
        res.on('end', () => resolve(kind === 'upload' ? Number(text) : n));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (kind !== 'upload') {
      req.end();
      return;
    }
    sendBytes(req, bytes, Buffer.alloc(256 * 1024, 0x62)).then(() => req.end(), reject);
  });
  if (got !== bytes) throw new Error(`${name}: expected ${bytes} bytes, got ${got}`);
  return bytes / 1e6 / ((performance.now() - started) / 1000);
}

export const e2eBench: BenchCase = {
  name: 'e2e',
  description:
    'visitor → relay → CLI (TLS WebSocket) → origin vs direct: req/s, p50/p99, MB/s, RSS',
  params: PARAMS,
  async run(params, log) {
    const durationS = params.number('duration-s', PARAMS['duration-s']);
    const connections = params.number('connections', PARAMS.connections);
    const bytes = params.bytes('transfer-bytes', PARAMS['transfer-bytes']);
    const transferRuns = Math.max(1, params.number('transfer-runs', PARAMS['transfer-runs']));
    const tunnelConnections = params.number('tunnel-connections', PARAMS['tunnel-connections']);
    const chunkedBytes = params.bytes('chunked-bytes', PARAMS['chunked-bytes']);
    const chunkBytes = Math.max(1, params.number('chunk-bytes', PARAMS['chunk-bytes']));
    const cliStdout = params.oneOf('cli-stdout', PARAMS['cli-stdout'], ['file', 'pipe'] as const);
    const nodeFlags = params.string('node-flags', PARAMS['node-flags']).split(' ').filter(Boolean);
    const gen = params.oneOf('load-generator', PARAMS['load-generator'], [
      'auto',
      'wrk',
      'node',
    ] as const);
    const useWrk = gen === 'wrk' || (gen === 'auto' && (await hasWrk()));
    const withSsh = params.string('ssh', PARAMS.ssh) !== 'false';
    const withFloor = params.string('floor', PARAMS.floor) !== 'false';
    log(
      `load generator: ${useWrk ? 'wrk (1 thread)' : 'node (install wrk for lower client overhead)'}`,
    );

    if (nodeFlags.length > 0) log(`node flags for relay and CLI: ${nodeFlags.join(' ')}`);
    const distDir = params.string('dist', PARAMS.dist).replace(/\/+$/, '');
    if (params.string('build', PARAMS.build) !== 'false') {
      log('building dist/ (tsc)…');
      await build();
    }
    // The relay and CLI run from `distDir` (dist/cli/main.js there).
    const fromDist = (args: string[]): string[] =>
      args.map((a) => (a === entry('dist')[0] ? `${distDir}/cli/main.js` : a));
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'qt-bench-e2e-'));
    const children: ChildProcess[] = [];
    let ssh: SshForward | undefined;
    try {
      const origin = spawnLogged(['-e', ORIGIN_SOURCE], 'origin', log);
      children.push(origin);
      const originPort = Number(await firstLine(origin, /^\d+$/));

      const httpPort = await freePort();
      const relay = spawnLogged(
        [...nodeFlags, ...fromDist(relayArgs('dist', { httpPort, dataDir, logLevel: 'info' }))],
        'relay',
        log,
      );
      children.push(relay);
      const listening = JSON.parse(await firstLine(relay, /"relay listening"/)) as {
        httpsPort: number;
        certificate: string;
      };
      relay.stdout!.resume();

      // The CLI prints a line per request. Into a pipe the bench drains, each batch of
      // lines is a write that wakes the bench's process (the load generator) as well:
      // 7% of the CLI's CPU on small GETs (--cpu-prof). A file keeps the CLI's own work
      // (format and write every line) without that. ssh -R prints nothing.
      const cliOut = path.join(dataDir, 'cli-stdout.txt');
      const cliOutFd = cliStdout === 'file' ? openSync(cliOut, 'w') : undefined;
      const cli = spawnLogged(
        [
          ...nodeFlags,
          ...fromDist(entry('dist')),
          String(originPort),
          '--relay',
          `https://${DOMAIN}:${listening.httpsPort}`,
          '--ca',
          listening.certificate,
          '--log',
          'text',
          // No web inspector: the bench measures the tunnel (and dist/ has no UI assets).
          '--no-inspect',
          '--connections',
          String(tunnelConnections),
        ],
        'cli',
        log,
        cliOutFd ?? 'pipe',
      );
      children.push(cli);
      if (cliOutFd !== undefined) closeSync(cliOutFd);
      const line =
        cliOutFd !== undefined
          ? await firstFileLine(cli, cliOut, /^Forwarding /)
          : await firstLine(cli, /^Forwarding /);
      const host = new URL(line.split(' ')[1]!).hostname;
      cli.stdout?.resume(); // one line per request: drain it
      log(`tunnel ${host}, relay pid ${relay.pid}, cli pid ${cli.pid}, origin pid ${origin.pid}`);
      if (withSsh) {
        ssh = await startSshForward(originPort);
        log(`ssh -R forward on port ${ssh.port} (cipher ${ssh.cipher}), ssh pid ${ssh.clientPid}`);
      }
      // The two sides of each path: relay and CLI, or sshd (all its processes) and ssh.
      const sides = {
        tunnel: { server: async () => [relay.pid!], client: async () => [cli.pid!] },
        ssh: {
          server: () => ssh?.serverPids() ?? Promise.resolve([]),
          client: async () => (ssh === undefined ? [] : [ssh.clientPid]),
        },
      };

      // Peak RSS per phase: the target is for the transfers; the small-GET load
      // (50 connections, thousands of requests in flight per second) is reported apart.
      let relayRss = rssSampler(relay.pid!);
      let cliRss = rssSampler(cli.pid!);

      const load = (port: number, h: string): Promise<LoadResult> =>
        useWrk
          ? wrk(`http://127.0.0.1:${port}/small`, h, connections, durationS)
          : nodeLoad(port, h, connections, durationS);
      // Warm up both paths (JIT, pools), then measure.
      await load(originPort, 'localhost');
      await load(httpPort, host);
      if (ssh !== undefined) await load(ssh.port, 'localhost');
      const direct = await load(originPort, 'localhost');
      log(
        `small GET direct:  ${direct.rps.toFixed(0)} req/s  p50 ${direct.p50Ms.toFixed(2)} ms  p99 ${direct.p99Ms.toFixed(2)} ms`,
      );
      // CPU time per request of each process: steadier than req/s on a shared machine,
      // and relay + CLI over the origin's own figure cancels most of the host's drift.
      const pids = [relay.pid!, cli.pid!, origin.pid!];
      const cpuBefore = await Promise.all(pids.map((pid) => procSample(pid)));
      const tunnel = await load(httpPort, host);
      const cpuAfter = await Promise.all(pids.map((pid) => procSample(pid)));
      const [relayUs, cliUs, originUs] = pids.map((_, i) =>
        Math.round(((cpuAfter[i]!.cpuMs - cpuBefore[i]!.cpuMs) * 1000) / tunnel.requests),
      ) as [number, number, number];
      log(
        `small GET tunnel:  ${tunnel.rps.toFixed(0)} req/s  p50 ${tunnel.p50Ms.toFixed(2)} ms  p99 ${tunnel.p99Ms.toFixed(2)} ms  errors ${tunnel.errors}`,
      );
      log(
        `CPU per request:   relay ${relayUs} µs, CLI ${cliUs} µs, origin ${originUs} µs (relay + CLI = ${((relayUs + cliUs) / originUs).toFixed(1)}x the origin)`,
      );

      const relayGetPeak = relayRss.stop();
      const cliGetPeak = cliRss.stop();
      // The same load through ssh -R, with the CPU of sshd's processes and of ssh.
      let sshGet: { load: LoadResult; serverUs: number; clientUs: number } | undefined;
      let sshGetRss = { server: 0, client: 0 };
      if (ssh !== undefined) {
        const serverRss = rssSampler(sides.ssh.server);
        const clientRss = rssSampler(ssh.clientPid);
        const pidsNow = [...(await sides.ssh.server()), ssh.clientPid];
        const before = await cpuOf(pidsNow);
        const sshLoad = await load(ssh.port, 'localhost');
        const after = await cpuOf(pidsNow);
        const client = new Map([[ssh.clientPid, after.get(ssh.clientPid) ?? 0]]);
        const server = new Map([...after].filter(([pid]) => pid !== ssh!.clientPid));
        sshGet = {
          load: sshLoad,
          serverUs: Math.round((cpuSpent(before, server) * 1000) / sshLoad.requests),
          clientUs: Math.round((cpuSpent(before, client) * 1000) / sshLoad.requests),
        };
        sshGetRss = { server: serverRss.stop(), client: clientRss.stop() };
        log(
          `small GET ssh -R:  ${sshLoad.rps.toFixed(0)} req/s  p50 ${sshLoad.p50Ms.toFixed(2)} ms  p99 ${sshLoad.p99Ms.toFixed(2)} ms  errors ${sshLoad.errors}; CPU per request sshd ${sshGet.serverUs} µs, ssh ${sshGet.clientUs} µs`,
        );
      }
      relayRss = rssSampler(relay.pid!);
      cliRss = rssSampler(cli.pid!);
      // Each transfer: one cold run (the first through a fresh process: JIT, heap and
      // window sizes still growing), then `transfer-runs` measured ones, median reported.
      // Also the CPU time relay and CLI spend per measured transfer (median): steadier
      // than MB/s on a shared machine, and what an A/B of two builds should compare.
      // Paths measured together take turns run by run (tunnel, ssh -R, tunnel, ...), so
      // that a slow spell of the shared machine falls on both sides of a ratio.
      type Side = { server: () => Promise<number[]>; client: () => Promise<number[]> };
      type Path = { port: number; h: string; side: Side };
      type Series = { cold: number; median: number; relayCpuMs: number; cliCpuMs: number };
      const seriesOf = async (
        kind: TransferKind,
        paths: Path[],
        size = bytes,
      ): Promise<Series[]> => {
        const colds: number[] = [];
        for (const p of paths) colds.push(await transfer(kind, p.port, p.h, size));
        const runs = paths.map(() => ({
          mbps: [] as number[],
          relay: [] as number[],
          cli: [] as number[],
        }));
        for (let i = 0; i < transferRuns; i++) {
          for (const [j, p] of paths.entries()) {
            const [serverPids, clientPids] = await Promise.all([p.side.server(), p.side.client()]);
            const before = await Promise.all([cpuOf(serverPids), cpuOf(clientPids)]);
            runs[j]!.mbps.push(await transfer(kind, p.port, p.h, size));
            const after = await Promise.all([cpuOf(serverPids), cpuOf(clientPids)]);
            runs[j]!.relay.push(cpuSpent(before[0], after[0]));
            runs[j]!.cli.push(cpuSpent(before[1], after[1]));
          }
        }
        return runs.map((r, j) => ({
          cold: colds[j]!,
          median: median(r.mbps),
          relayCpuMs: Math.round(median(r.relay)),
          cliCpuMs: Math.round(median(r.cli)),
        }));
      };
      const series = async (
        kind: TransferKind,
        port: number,
        h: string,
        side: Side = sides.tunnel,
      ): Promise<Series> => (await seriesOf(kind, [{ port, h, side }]))[0]!;
      const mbps = (r: { cold: number; median: number }): string =>
        `${r.median.toFixed(0)} MB/s (first run ${r.cold.toFixed(0)})`;
      const directDown = await series('download', originPort, 'localhost');
      const directUp = await series('upload', originPort, 'localhost');
      const tunnelPath: Path = { port: httpPort, h: host, side: sides.tunnel };
      const sshPaths: Path[] =
        ssh === undefined ? [] : [{ port: ssh.port, h: 'localhost', side: sides.ssh }];
      const sshRss =
        ssh === undefined
          ? undefined
          : { server: rssSampler(sides.ssh.server), client: rssSampler(ssh.clientPid) };
      /** The tunnel and, when it runs, ssh -R, taking turns. */
      const tunnelAndSsh = async (
        kind: TransferKind,
        size = bytes,
      ): Promise<{ tunnel: Series; ssh: Series | undefined }> => {
        const [tunnelResult, sshResult] = await seriesOf(kind, [tunnelPath, ...sshPaths], size);
        return { tunnel: tunnelResult!, ssh: sshResult };
      };
      const { tunnel: tunnelDown, ssh: sshDown } = await tunnelAndSsh('download');
      const { tunnel: tunnelUp, ssh: sshUp } = await tunnelAndSsh('upload');
      // A download the origin writes in small chunks (an app streaming a page or JSON):
      // the per-chunk costs of the HTTP legs, where bulk transfers show per-byte ones.
      const chunkedPair =
        chunkedBytes > 0 ? await tunnelAndSsh({ chunksOf: chunkBytes }, chunkedBytes) : undefined;
      const tunnelChunked = chunkedPair?.tunnel;
      const sshChunked = chunkedPair?.ssh;
      const sshPeak = { server: sshRss?.server.stop() ?? 0, client: sshRss?.client.stop() ?? 0 };
      if (sshDown !== undefined && sshUp !== undefined) {
        log(
          `ssh -R: download ${mbps(sshDown)}, upload ${mbps(sshUp)}; CPU per transfer: download sshd ${sshDown.relayCpuMs} ms, ssh ${sshDown.cliCpuMs} ms; upload sshd ${sshUp.relayCpuMs} ms, ssh ${sshUp.cliCpuMs} ms; peak RSS sshd ${sshPeak.server.toFixed(0)} MiB, ssh ${sshPeak.client.toFixed(0)} MiB`,
        );
      }
      const perGiB = (ms: number, size = bytes): number =>
        Number((ms / 1000 / (size / 2 ** 30)).toFixed(2));
      // The Node floor, one forwarder at a time: the same small GETs (warm-up, then
      // measured) and transfers, with CPU and peak RSS of its one process.
      const floors: Partial<Record<FloorKind, FloorResult>> = {};
      for (const kind of withFloor ? FLOOR_KINDS : []) {
        const spawnFloor = (args: string[], label: string): ChildProcess => {
          const child = spawnLogged(args, label, log);
          children.push(child);
          return child;
        };
        const floor = await startNodeFloor(kind, originPort, spawnFloor, firstLine, {
          certFile: listening.certificate,
          keyFile: listening.certificate.replace(/\.crt$/, '.key'),
        });
        const backPids = floor.backPid === undefined ? [] : [floor.backPid];
        // Stopped in `finally` too: a sampler left running would keep the bench alive.
        const samplers: { stop(): number }[] = [];
        try {
          const side = { server: async () => [floor.pid], client: async () => backPids };
          await load(floor.port, 'localhost');
          const getRss = rssSampler(floor.pid);
          samplers.push(getRss);
          const floorPids = [floor.pid, ...backPids];
          const before = await Promise.all(floorPids.map((pid) => procSample(pid)));
          const get = await load(floor.port, 'localhost');
          const after = await Promise.all(floorPids.map((pid) => procSample(pid)));
          const usPerRequest = (i: number): number =>
            Math.round(((after[i]!.cpuMs - before[i]!.cpuMs) * 1000) / get.requests);
          const peakRssSmallGetMiB = Math.round(getRss.stop());
          const rss = rssSampler(floor.pid);
          samplers.push(rss);
          const backRss = floor.backPid === undefined ? undefined : rssSampler(floor.backPid);
          if (backRss !== undefined) samplers.push(backRss);
          const down = await series('download', floor.port, 'localhost', side);
          const up = await series('upload', floor.port, 'localhost', side);
          const result: FloorResult = {
            rps: Math.round(get.rps),
            p99Ms: get.p99Ms,
            errors: get.errors,
            cpuUsPerRequest: usPerRequest(0),
            downloadMBps: Math.round(down.median),
            uploadMBps: Math.round(up.median),
            downloadCpuSPerGiB: perGiB(down.relayCpuMs),
            uploadCpuSPerGiB: perGiB(up.relayCpuMs),
            peakRssMiB: Math.round(rss.stop()),
            peakRssSmallGetMiB,
            ...(backRss === undefined
              ? {}
              : {
                  back: {
                    cpuUsPerRequest: usPerRequest(1),
                    downloadCpuSPerGiB: perGiB(down.cliCpuMs),
                    uploadCpuSPerGiB: perGiB(up.cliCpuMs),
                    peakRssMiB: Math.round(backRss.stop()),
                  },
                }),
          };
          floors[kind] = result;
          const { back } = result;
          log(
            back === undefined
              ? `node ${kind} (one process): ${result.rps} req/s  p99 ${result.p99Ms.toFixed(2)} ms  errors ${result.errors}; CPU per request ${result.cpuUsPerRequest} µs; download ${mbps(down)}, upload ${mbps(up)}; CPU per GiB down ${result.downloadCpuSPerGiB} s, up ${result.uploadCpuSPerGiB} s; peak RSS ${result.peakRssMiB} MiB (small GETs ${result.peakRssSmallGetMiB} MiB)`
              : `node ${kind} (front, back): ${result.rps} req/s  p99 ${result.p99Ms.toFixed(2)} ms  errors ${result.errors}; CPU per request ${result.cpuUsPerRequest}, ${back.cpuUsPerRequest} µs; download ${mbps(down)}, upload ${mbps(up)}; CPU per GiB down ${result.downloadCpuSPerGiB}, ${back.downloadCpuSPerGiB} s, up ${result.uploadCpuSPerGiB}, ${back.uploadCpuSPerGiB} s; peak RSS ${result.peakRssMiB}, ${back.peakRssMiB} MiB`,
          );
        } finally {
          for (const sampler of samplers) sampler.stop();
          await floor.close();
        }
      }
      log(
        `download ${(bytes / 2 ** 20).toFixed(0)} MiB, median of ${transferRuns}: direct ${mbps(directDown)}, tunnel ${mbps(tunnelDown)}`,
      );
      log(
        `upload   ${(bytes / 2 ** 20).toFixed(0)} MiB, median of ${transferRuns}: direct ${mbps(directUp)}, tunnel ${mbps(tunnelUp)}`,
      );
      log(
        `CPU per transfer:  download relay ${tunnelDown.relayCpuMs} ms, CLI ${tunnelDown.cliCpuMs} ms; ` +
          `upload relay ${tunnelUp.relayCpuMs} ms, CLI ${tunnelUp.cliCpuMs} ms`,
      );
      const relayPeak = relayRss.stop();
      const cliPeak = cliRss.stop();
      log(
        `peak RSS during the transfers: relay ${relayPeak.toFixed(0)} MiB, cli ${cliPeak.toFixed(0)} MiB ` +
          `(during the small GETs: relay ${relayGetPeak.toFixed(0)} MiB, cli ${cliGetPeak.toFixed(0)} MiB)`,
      );
      log(
        `ratio: ${(tunnel.rps / direct.rps).toFixed(2)}x direct req/s (ssh -R: 0.20x, localtunnel 0.06x)`,
      );

      if (tunnelChunked !== undefined) {
        log(
          `chunked download ${(chunkedBytes / 2 ** 20).toFixed(0)} MiB in ${chunkBytes}-byte writes: tunnel ${mbps(tunnelChunked)}, CPU per GiB relay ${perGiB(tunnelChunked.relayCpuMs, chunkedBytes)} s, CLI ${perGiB(tunnelChunked.cliCpuMs, chunkedBytes)} s` +
            (sshChunked === undefined
              ? ''
              : `; ssh -R ${mbps(sshChunked)}, sshd ${perGiB(sshChunked.relayCpuMs, chunkedBytes)} s, ssh ${perGiB(sshChunked.cliCpuMs, chunkedBytes)} s`),
        );
      }
      const ratio = (a: number, b: number): number => Number((a / b).toFixed(2));
      const vsSsh =
        ssh === undefined || sshGet === undefined || sshDown === undefined || sshUp === undefined
          ? undefined
          : {
              cipher: ssh.cipher,
              rps: Math.round(sshGet.load.rps),
              p99Ms: sshGet.load.p99Ms,
              errors: sshGet.load.errors,
              cpuUsPerRequest: { sshd: sshGet.serverUs, ssh: sshGet.clientUs },
              downloadMBps: Math.round(sshDown.median),
              uploadMBps: Math.round(sshUp.median),
              downloadCpuSPerGiB: {
                sshd: perGiB(sshDown.relayCpuMs),
                ssh: perGiB(sshDown.cliCpuMs),
              },
              uploadCpuSPerGiB: { sshd: perGiB(sshUp.relayCpuMs), ssh: perGiB(sshUp.cliCpuMs) },
              ...(sshChunked === undefined
                ? {}
                : {
                    chunkedMBps: Math.round(sshChunked.median),
                    chunkedCpuSPerGiB: {
                      sshd: perGiB(sshChunked.relayCpuMs, chunkedBytes),
                      ssh: perGiB(sshChunked.cliCpuMs, chunkedBytes),
                    },
                  }),
              peakRssMiB: { sshd: Math.round(sshPeak.server), ssh: Math.round(sshPeak.client) },
              peakRssSmallGetMiB: {
                sshd: Math.round(sshGetRss.server),
                ssh: Math.round(sshGetRss.client),
              },
              // quick-tunnel's figure over ssh -R's, same run (> 1 = more for quick-tunnel).
              ratios: {
                rps: ratio(tunnel.rps, sshGet.load.rps),
                p99: ratio(tunnel.p99Ms, sshGet.load.p99Ms),
                download: ratio(tunnelDown.median, sshDown.median),
                upload: ratio(tunnelUp.median, sshUp.median),
                relayCpuPerRequest: ratio(relayUs, sshGet.serverUs),
                cliCpuPerRequest: ratio(cliUs, sshGet.clientUs),
                relayCpuPerGiBDown: ratio(tunnelDown.relayCpuMs, sshDown.relayCpuMs),
                cliCpuPerGiBDown: ratio(tunnelDown.cliCpuMs, sshDown.cliCpuMs),
                relayCpuPerGiBUp: ratio(tunnelUp.relayCpuMs, sshUp.relayCpuMs),
                ...(tunnelChunked === undefined || sshChunked === undefined
                  ? {}
                  : {
                      chunked: ratio(tunnelChunked.median, sshChunked.median),
                      relayCpuPerGiBChunked: ratio(tunnelChunked.relayCpuMs, sshChunked.relayCpuMs),
                      cliCpuPerGiBChunked: ratio(tunnelChunked.cliCpuMs, sshChunked.cliCpuMs),
                    }),
                cliCpuPerGiBUp: ratio(tunnelUp.cliCpuMs, sshUp.cliCpuMs),
                relayRss: ratio(relayPeak, sshPeak.server),
                cliRss: ratio(cliPeak, sshPeak.client),
              },
            };
      if (vsSsh !== undefined) {
        log(`quick-tunnel / ssh -R, same run: ${JSON.stringify(vsSsh.ratios)}`);
      }

      return {
        loadGenerator: useWrk ? 'wrk' : 'node',
        connections,
        directRps: Math.round(direct.rps),
        tunnelRps: Math.round(tunnel.rps),
        rpsRatio: Number((tunnel.rps / direct.rps).toFixed(3)),
        directP50Ms: direct.p50Ms,
        directP99Ms: direct.p99Ms,
        tunnelP50Ms: tunnel.p50Ms,
        tunnelP99Ms: tunnel.p99Ms,
        tunnelErrors: tunnel.errors,
        relayCpuUsPerRequest: relayUs,
        cliCpuUsPerRequest: cliUs,
        originCpuUsPerRequest: originUs,
        transferMiB: bytes / 2 ** 20,
        transferRuns,
        directDownloadMBps: Math.round(directDown.median),
        downloadMBps: Math.round(tunnelDown.median),
        downloadFirstRunMBps: Math.round(tunnelDown.cold),
        directUploadMBps: Math.round(directUp.median),
        uploadMBps: Math.round(tunnelUp.median),
        uploadFirstRunMBps: Math.round(tunnelUp.cold),
        downloadCpuMs: { relay: tunnelDown.relayCpuMs, cli: tunnelDown.cliCpuMs },
        uploadCpuMs: { relay: tunnelUp.relayCpuMs, cli: tunnelUp.cliCpuMs },
        relayPeakRssMiB: Math.round(relayPeak),
        cliPeakRssMiB: Math.round(cliPeak),
        relayPeakRssSmallGetMiB: Math.round(relayGetPeak),
        cliPeakRssSmallGetMiB: Math.round(cliGetPeak),
        downloadCpuSPerGiB: {
          relay: perGiB(tunnelDown.relayCpuMs),
          cli: perGiB(tunnelDown.cliCpuMs),
        },
        uploadCpuSPerGiB: { relay: perGiB(tunnelUp.relayCpuMs), cli: perGiB(tunnelUp.cliCpuMs) },
        ...(tunnelChunked === undefined
          ? {}
          : {
              chunkedMiB: chunkedBytes / 2 ** 20,
              chunkBytes,
              chunkedMBps: Math.round(tunnelChunked.median),
              chunkedCpuSPerGiB: {
                relay: perGiB(tunnelChunked.relayCpuMs, chunkedBytes),
                cli: perGiB(tunnelChunked.cliCpuMs, chunkedBytes),
              },
            }),
        ...(vsSsh === undefined ? {} : { sshR: vsSsh }),
        ...(withFloor ? { nodeFloor: floorFigures(floors, vsSsh) } : {}),
      };
    } finally {
      await ssh?.close();
      // SIGTERM first: relay and CLI stop gracefully, so `--node-flags --cpu-prof` gets
      // its profiles written; whatever is still running after 5 s is killed.
      for (const c of children) c.kill('SIGTERM');
      const killer = setTimeout(() => {
        for (const c of children) c.kill('SIGKILL');
      }, 5_000);
      await Promise.all(
        children.map((c) =>
          c.exitCode === null && c.signalCode === null ? once(c, 'exit') : undefined,
        ),
      );
      clearTimeout(killer);
      await rm(dataDir, { recursive: true, force: true });
    }
  },
};
