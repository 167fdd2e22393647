/**
 * Process plumbing for the scale benchmarks (bench/scale.ts): spawns the relay (the
 * compiled dist/ by default, as users run it) and the simulated clients
 * (bench/scale-driver.ts) with their soft file-descriptor limit raised to the hard
 * one, talks to the drivers over IPC, and reads a process's RSS, open file
 * descriptors and CPU time from /proc.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { open, readFile, readdir, type FileHandle } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../', import.meta.url));
export const DOMAIN = 'qt.localhost';
/** Admin token the benchmark relays get, so `/metrics` can be read. */
export const ADMIN_TOKEN = 'bench-admin-token';

/**
 * Raises the soft RLIMIT_NOFILE to the hard limit, then execs the command. Node cannot
 * call setrlimit itself, so every child that holds thousands of sockets starts this way.
 */
const RAISE_NOFILE =
  'h=$(ulimit -Hn); [ "$h" = unlimited ] && h=1048576; ulimit -n "$h" 2>/dev/null; exec "$0" "$@"';

/** What /proc says about one process right now. */
export interface ProcSample {
  rssKiB: number;
  /** Anonymous RSS (heap, stacks, buffers): RSS without the mapped code and files. */
  rssAnonKiB: number;
  fds: number;
  /** CPU time since start (all threads), ms. */
  cpuMs: number;
}

/** Clock ticks per second for /proc/<pid>/stat (100 on every Linux we run on). */
const CLK_TCK = 100;

/**
 * CPU time of a process's live threads in ms, to the nanosecond: the sum of the first
 * field of each /proc/<pid>/task/<tid>/schedstat. /proc/<pid>/stat counts in 10 ms ticks,
 * which is ±5% of the ~200 ms a 128 MiB transfer costs one side. Undefined where the
 * kernel has no schedstat (then the caller uses the ticks). A thread that has exited is
 * no longer counted: compare two samples only over threads that outlive them (Node's
 * threads do; ssh's forked processes are separate pids).
 */
async function threadsCpuMs(pid: number): Promise<number | undefined> {
  try {
    const tids = await readdir(`/proc/${pid}/task`);
    const ns = await Promise.all(
      tids.map(async (tid) => {
        const text = await readFile(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').catch(() => '0');
        return Number(text.split(' ')[0]);
      }),
    );
    const total = ns.reduce((a, b) => a + b, 0);
    return Number.isFinite(total) && total > 0 ? total / 1e6 : undefined;
  } catch {
    return undefined;
  }
}

export async function procSample(pid: number): Promise<ProcSample> {
  const [status, stat, fds, precise] = await Promise.all([
    readFile(`/proc/${pid}/status`, 'utf8'),
    readFile(`/proc/${pid}/stat`, 'utf8'),
    readdir(`/proc/${pid}/fd`),
    threadsCpuMs(pid),
  ]);
  const kib = (key: string): number =>
    Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  // Fields after the command name (which may hold spaces) start at field 3: utime is 14.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return {
    rssKiB: kib('VmRSS'),
    rssAnonKiB: kib('RssAnon'),
    fds: fds.length,
    cpuMs: precise ?? (ticks * 1000) / CLK_TCK,
  };
}

/** The soft "Max open files" limit of a process, from /proc/<pid>/limits. */
export async function fdLimit(pid: number): Promise<number> {
  const limits = await readFile(`/proc/${pid}/limits`, 'utf8');
  return Number(/^Max open files\s+(\d+|unlimited)/m.exec(limits)?.[1] ?? NaN);
}

/** Samples a process every `everyMs` in the background: peak and last values. */
export class ProcWatcher {
  readonly pid: number;
  peakRssKiB = 0;
  peakFds = 0;
  last: ProcSample | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(pid: number, everyMs = 250) {
    this.pid = pid;
    this.timer = setInterval(() => void this.sample().catch(() => {}), everyMs);
  }

  async sample(): Promise<ProcSample> {
    const s = await procSample(this.pid);
    this.last = s;
    this.peakRssKiB = Math.max(this.peakRssKiB, s.rssKiB);
    this.peakFds = Math.max(this.peakFds, s.fds);
    return s;
  }

  resetPeaks(): void {
    this.peakRssKiB = this.last?.rssKiB ?? 0;
    this.peakFds = this.last?.fds ?? 0;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** Median of `count` samples taken `gapMs` apart (RSS moves with every GC). */
export async function settledSample(pid: number, count = 5, gapMs = 400): Promise<ProcSample> {
  const samples: ProcSample[] = [];
  for (let i = 0; i < count; i++) {
    if (i > 0) await sleep(gapMs);
    samples.push(await procSample(pid));
  }
  const med = (f: (s: ProcSample) => number): number => median(samples.map(f));
  return {
    rssKiB: med((s) => s.rssKiB),
    rssAnonKiB: med((s) => s.rssAnonKiB),
    fds: med((s) => s.fds),
    cpuMs: samples[samples.length - 1]!.cpuMs,
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The live heap after each full GC, from `--trace-gc` lines ("1234 ms: Mark-Compact 40.1
 * (52.3) -> 31.2 (50.0) MB, …"): t in minutes since the process started, MiB live after
 * (`y`) and MiB the heap keeps committed after (`committed`). A leak shows as a rising
 * live floor, without RSS's noise; RSS growth that follows `committed` while `y` stays
 * flat is heap capacity V8 keeps for its allocation rate, not objects.
 */
export function markCompacts(
  text: string | readonly string[],
): { x: number; y: number; committed: number }[] {
  const lines = typeof text === 'string' ? text.split('\n') : text;
  const out: { x: number; y: number; committed: number }[] = [];
  for (const line of lines) {
    const m = /(\d+) ms: Mark-Compact[^\d]*[\d.]+ \([\d.]+\) -> ([\d.]+) \(([\d.]+)\)/.exec(line);
    if (m !== null)
      out.push({ x: Number(m[1]) / 60_000, y: Number(m[2]), committed: Number(m[3]) });
  }
  return out;
}

/** Live JS heap in a .heapsnapshot (taken right after a full GC) and objects by class. */
export interface HeapCensus {
  liveMiB: number;
  objects: Record<string, number>;
}

/** Reads a V8 heap snapshot: total self size, and how many objects of each of `classes`. */
export async function heapCensus(file: string, classes: readonly string[]): Promise<HeapCensus> {
  const snap = JSON.parse(await readFile(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snap.snapshot.meta.node_fields;
  const stride = fields.length;
  const iType = fields.indexOf('type');
  const iName = fields.indexOf('name');
  const iSize = fields.indexOf('self_size');
  const objectType = snap.snapshot.meta.node_types[0].indexOf('object');
  const wanted = new Map(classes.map((c) => [c, 0]));
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += stride) {
    total += snap.nodes[i + iSize]!;
    if (snap.nodes[i + iType] !== objectType) continue;
    const name = snap.strings[snap.nodes[i + iName]!]!;
    const n = wanted.get(name);
    if (n !== undefined) wanted.set(name, n + 1);
  }
  return { liveMiB: round(total / 2 ** 20, 1), objects: Object.fromEntries(wanted) };
}

/** Least-squares slope of y over x. */
export function slope(points: readonly { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

export function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Formats rows as an aligned text table (first row = header). */
export function table(rows: readonly (readonly (string | number)[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, String(cell).length)));
  return rows.map((row) =>
    row
      .map((cell, i) =>
        typeof cell === 'number' ? String(cell).padStart(widths[i]!) : cell.padEnd(widths[i]!),
      )
      .join('  ')
      .trimEnd(),
  );
}

export async function freePort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** `count` loopback source addresses (127.0.0.2, .3, …): ephemeral ports are per address. */
export function sourceAddresses(count: number): string[] {
  const n = Math.min(250, Math.max(1, Math.floor(count)));
  return Array.from({ length: n }, (_, i) => `127.0.0.${2 + i}`);
}

/** Compiles dist/ from the current sources, so the figures are for this code. */
export function build(): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'],
      { cwd: ROOT },
      (err, stdout) => (err ? reject(new Error(`build failed: ${stdout}`)) : resolve()),
    ),
  );
}

/** How the relay and the CLI run: compiled (as users run them) or from sources via tsx. */
export type Runtime = 'dist' | 'tsx';

/** The node arguments that start quick-tunnel in `runtime` (before its own arguments). */
export function entry(runtime: Runtime): string[] {
  return runtime === 'dist' ? ['dist/cli/main.js'] : ['--import', 'tsx', 'cli/main.ts'];
}

/**
 * Arguments (after node's) for `quick-tunnel relay` on 127.0.0.1 with domain DOMAIN, the
 * HTTPS port chosen by the OS and the plain-HTTP port given (0 = chosen too).
 */
export function relayArgs(
  runtime: Runtime,
  opts: { httpPort: number; dataDir: string; logLevel?: string },
): string[] {
  return [
    ...entry(runtime),
    'relay',
    '--domain',
    DOMAIN,
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--http-port',
    String(opts.httpPort),
    '--data-dir',
    opts.dataDir,
    ...(opts.logLevel === undefined ? [] : ['--log-level', opts.logLevel]),
  ];
}

/** Waits for a line matching `re` on a readable, or rejects after `timeoutMs`/exit. */
function waitLine(
  child: ChildProcess,
  input: NodeJS.ReadableStream,
  re: RegExp,
  timeoutMs: number,
): Promise<string> {
  const rl = createInterface({ input });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null): void =>
      finish(new Error(`process exited (${code}) before printing ${re}`));
    const timer = setTimeout(() => finish(new Error(`timed out waiting for ${re}`)), timeoutMs);
    const finish = (err: Error | undefined, line?: string): void => {
      clearTimeout(timer);
      rl.off('line', onLine);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(line!);
    };
    const onLine = (l: string): void => {
      if (re.test(l)) finish(undefined, l);
    };
    rl.on('line', onLine);
    child.once('exit', onExit);
  });
}

export interface RelayProcess {
  child: ChildProcess;
  pid: number;
  httpPort: number;
  httpsPort: number;
  /** PEM of the relay's self-signed certificate (clients pin it). */
  ca: string;
  /** Bytes the relay has logged to stdout so far. */
  logBytes(): Promise<number>;
  /** The relay's stdout so far (its JSON log, and --trace-gc lines if asked for). */
  logText(): Promise<string>;
  /** Reads a gauge/counter from the relay's /metrics (sum over labels). */
  metric(name: string): Promise<number>;
  stop(): Promise<void>;
}

export interface RelayOptions {
  runtime: Runtime;
  dataDir: string;
  logLevel: string;
  /** Extra node flags (e.g. --heapsnapshot-signal=SIGUSR2). */
  nodeArgs?: readonly string[];
  log: (line: string) => void;
}

/**
 * Starts `quick-tunnel relay` on 127.0.0.1 with no per-IP, visitor-connection or
 * creation-rate limits (the benchmark is one client IP), an admin token for /metrics, stdout (the JSON log)
 * to a file in the data dir, and its soft fd limit raised.
 */
export async function startRelayProcess(opts: RelayOptions): Promise<RelayProcess> {
  const httpPort = await freePort();
  const logFile = path.join(opts.dataDir, 'relay.log');
  const out: FileHandle = await open(logFile, 'w');
  const child = spawn(
    'bash',
    [
      '-c',
      RAISE_NOFILE,
      process.execPath,
      ...(opts.nodeArgs ?? []),
      ...relayArgs(opts.runtime, { httpPort, dataDir: opts.dataDir, logLevel: opts.logLevel }),
      '--max-connections-per-ip',
      '0',
      '--max-new-tunnels-per-minute',
      '0',
      // The visitor caps (500 per IP, 10,000 in all) would hold many-visitors to 8 × 500
      // connections, the rest refused with 429.
      '--max-visitor-connections',
      '0',
      '--max-visitor-connections-per-ip',
      '0',
      '--admin-token',
      ADMIN_TOKEN,
    ],
    { cwd: ROOT, stdio: ['ignore', out.fd, 'pipe'] },
  );
  await out.close(); // the child has its own copy of the descriptor
  const stderr: string[] = [];
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    for (const line of chunk.split('\n')) {
      if (line === '') continue;
      if (stderr.length < 200) stderr.push(line);
      if (/error|warn|exception/i.test(line) && !/WARNING: this relay is OPEN/.test(line))
        opts.log(`relay: ${line}`);
    }
  });
  try {
    await waitLine(child, child.stderr!, /admin endpoints/, 60_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n${stderr.join('\n')}`);
  }
  const httpsPort = Number(/https:\/\/\S+:(\d+)/.exec(stderr.join('\n'))?.[1]);
  const certPath = /self-signed certificate:\s+(\S+)/.exec(stderr.join('\n'))?.[1];
  if (!Number.isInteger(httpsPort) || certPath === undefined) {
    child.kill('SIGKILL');
    throw new Error(`could not read the relay's ports from its output:\n${stderr.join('\n')}`);
  }
  const ca = await readFile(certPath, 'utf8');
  return {
    child,
    pid: child.pid!,
    httpPort,
    httpsPort,
    ca,
    async logBytes() {
      return (await readFile(logFile)).length;
    },
    logText: () => readFile(logFile, 'utf8'),
    async metric(name) {
      const text = await httpGet(httpPort, DOMAIN, '/metrics', {
        authorization: `Bearer ${ADMIN_TOKEN}`,
      });
      let sum = 0;
      for (const line of text.split('\n')) {
        if (line.startsWith(`${name}{`) || line.startsWith(`${name} `))
          sum += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
      return sum;
    },
    stop: () => stopChild(child),
  };
}

/** One small GET on 127.0.0.1 with a Host header; resolves with the body (2xx only). */
export function httpGet(
  port: number,
  host: string,
  urlPath: string,
  headers: Record<string, string> = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: urlPath, headers: { host, ...headers }, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          (res.statusCode ?? 0) < 300
            ? resolve(body)
            : reject(new Error(`GET ${urlPath}: HTTP ${res.statusCode}`)),
        );
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error(`GET ${urlPath}: timed out`)));
    req.on('error', reject);
  });
}

export async function stopChild(child: ChildProcess, graceMs = 3_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/**
 * A tunnel CLI process (`quick-tunnel <port> --relay … --log json`): resolves once it
 * printed its `ready` event, with the public hostname.
 */
export async function startCliProcess(opts: {
  runtime: Runtime;
  originPort: number;
  relay: RelayProcess;
  caFile: string;
  log: (line: string) => void;
  /** Extra node flags (e.g. --trace-gc: its Mark-Compact lines land in `gcLines`). */
  nodeArgs?: readonly string[];
}): Promise<{
  child: ChildProcess;
  pid: number;
  hostname: string;
  gcLines: string[];
  stop(): Promise<void>;
}> {
  const child = spawn(
    process.execPath,
    [
      ...(opts.nodeArgs ?? []),
      ...entry(opts.runtime),
      String(opts.originPort),
      '--relay',
      `https://${DOMAIN}:${opts.relay.httpsPort}`,
      '--ca',
      opts.caFile,
      '--log',
      'json',
      // Hundreds of tunnels: no web inspector (and no capture) each.
      '--no-inspect',
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  createInterface({ input: child.stderr! }).on('line', (l) => {
    if (/error|warn/i.test(l)) opts.log(`cli: ${l}`);
  });
  let line: string;
  try {
    line = await waitLine(child, child.stdout!, /"event":"ready"/, 30_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  const gcLines: string[] = [];
  // One line per request: drained, keeping only --trace-gc's full-GC lines.
  createInterface({ input: child.stdout! }).on('line', (l) => {
    if (l.includes('Mark-Compact') && gcLines.length < 100_000) gcLines.push(l);
  });
  const url = (JSON.parse(line) as { url: string }).url;
  return {
    child,
    pid: child.pid!,
    hostname: new URL(url).hostname,
    gcLines,
    stop: () => stopChild(child),
  };
}

/** Messages a driver sends back: an answer to a call, an event, or a log line. */
type DriverMessage =
  | { id: number; ok: unknown }
  | { id: number; err: string }
  | { event: string; data: unknown }
  | { log: string };

/**
 * A bench/scale-driver.ts child process, driven over IPC: `call(cmd, args)` resolves
 * with the command's result. It runs from sources (tsx): its own memory is not measured.
 */
export class Driver {
  readonly child: ChildProcess;
  readonly name: string;
  private nextId = 1;
  private readonly calls = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  private readonly listeners = new Map<string, (data: unknown) => void>();

  private constructor(child: ChildProcess, name: string, log: (line: string) => void) {
    this.child = child;
    this.name = name;
    child.on('message', (raw) => {
      const m = raw as DriverMessage;
      if ('log' in m) log(`${name}: ${m.log}`);
      else if ('event' in m) this.listeners.get(m.event)?.(m.data);
      else {
        const call = this.calls.get(m.id);
        if (call === undefined) return;
        this.calls.delete(m.id);
        if ('err' in m) call.reject(new Error(`${name}: ${m.err}`));
        else call.resolve(m.ok);
      }
    });
    child.once('exit', (code, signal) => {
      for (const call of this.calls.values())
        call.reject(new Error(`${name} exited (${code ?? signal}) during a call`));
      this.calls.clear();
    });
  }

  static async spawn(name: string, log: (line: string) => void): Promise<Driver> {
    const child = spawn(
      'bash',
      ['-c', RAISE_NOFILE, process.execPath, '--import', 'tsx', 'bench/scale-driver.ts'],
      { cwd: ROOT, stdio: ['ignore', 'inherit', 'pipe', 'ipc'] },
    );
    createInterface({ input: child.stderr! }).on('line', (l) => log(`${name} stderr: ${l}`));
    const driver = new Driver(child, name, log);
    await driver.call('ping', {});
    return driver;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Listens for the driver's progress events of one kind (one listener per kind). */
  on(event: string, fn: (data: unknown) => void): void {
    this.listeners.set(event, fn);
  }

  call<T>(cmd: string, args: object): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.calls.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, cmd, args });
    });
  }

  async stop(): Promise<void> {
    await stopChild(this.child, 2_000);
  }
}
