/**
 * Child process of the scale benchmarks (bench/scale.ts), driven over IPC. One process
 * plays one part at a time:
 *
 * - simulated tunnel clients: real WebSockets to the relay's tunnel endpoint, the real
 *   HELLO handshake (`handshake` from cli/tunnel/client.ts, the same MuxSession and
 *   keepalive as the CLI), and a tiny in-process responder instead of a local origin;
 * - visitors: raw keep-alive HTTP/1.1 connections, visitor WebSockets, and the soak's
 *   mixed traffic;
 * - a small origin (HTTP + WebSocket echo) for the cases that run the real CLI.
 *
 * Every loop here is bounded in count and in time. Only loopback addresses are used.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import WebSocket, { WebSocketServer } from 'ws';
import { handshake, localhostAwareLookup } from '../cli/tunnel/client.js';
import { realClock, type Clock, type ClockTimer } from '../shared/clock.js';
import type { MuxSession } from '../shared/mux/session.js';
import type { MuxStream } from '../shared/mux/stream.js';
import { tunnelClientWsOptions, wsTransport } from '../shared/mux/transport.js';

// ---- IPC -----------------------------------------------------------------------------

function send(message: object): void {
  process.send?.(message);
}

function emit(event: string, data: unknown): void {
  send({ event, data });
}

function log(line: string): void {
  send({ log: line });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- statistics ----------------------------------------------------------------------

/** Latency recorder: percentiles in ms. */
class Latencies {
  private values: number[] = [];
  add(ms: number): void {
    this.values.push(ms);
  }
  get count(): number {
    return this.values.length;
  }
  summary(): { count: number; p50Ms: number; p90Ms: number; p99Ms: number; maxMs: number } {
    const s = this.values.sort((a, b) => a - b);
    const q = (p: number): number =>
      s.length === 0 ? NaN : round(s[Math.min(s.length - 1, Math.floor(p * s.length))]!);
    return {
      count: s.length,
      p50Ms: q(0.5),
      p90Ms: q(0.9),
      p99Ms: q(0.99),
      maxMs: s.length === 0 ? NaN : round(s[s.length - 1]!),
    };
  }
}

const round = (n: number): number => Math.round(n * 100) / 100;

/** Keeps the first few distinct error messages, and a count of all. */
class Errors {
  count = 0;
  readonly samples = new Map<string, number>();
  add(message: string): void {
    this.count++;
    if (this.samples.has(message) || this.samples.size < 8)
      this.samples.set(message, (this.samples.get(message) ?? 0) + 1);
  }
  toJSON(): { count: number; samples: Record<string, number> } {
    return { count: this.count, samples: Object.fromEntries(this.samples) };
  }
}

/** Runs `worker(i)` for i in [0, count) with at most `concurrency` at once. */
async function pool(
  count: number,
  concurrency: number,
  worker: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) await worker(next++);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, lane));
}

const labelOf = (hostname: string): string => hostname.slice(0, hostname.indexOf('.'));

// ---- simulated tunnel clients ------------------------------------------------------

/** Timers for one session that can all be stopped at once (a client that vanishes). */
class StoppableTimers implements Clock {
  private readonly handles = new Set<ClockTimer>();
  setInterval(fn: () => void, ms: number): ClockTimer {
    const h = realClock.setInterval(fn, ms).unref();
    this.handles.add(h);
    return h;
  }
  clearInterval(h: ClockTimer | undefined): void {
    if (h !== undefined) this.handles.delete(h);
    realClock.clearInterval(h);
  }
  setTimeout(fn: () => void, ms: number): ClockTimer {
    const h = realClock.setTimeout(fn, ms).unref();
    this.handles.add(h);
    return h;
  }
  clearTimeout(h: ClockTimer | undefined): void {
    if (h !== undefined) this.handles.delete(h);
    realClock.clearTimeout(h);
  }
  now(): number {
    return realClock.now();
  }
  stopAll(): void {
    for (const h of this.handles) realClock.clearTimeout(h);
    this.handles.clear();
  }
}

interface SimTunnel {
  hostname: string;
  session: MuxSession;
  ws: WebSocket;
  socket: net.Socket | undefined;
  timers: StoppableTimers;
  /** Set when we close it on purpose; a close without it is a drop. */
  closing: boolean;
}

interface TunnelTarget {
  /** ws://qt.localhost:PORT/_qt/tunnel or wss://… */
  endpoint: string;
  /** The relay's certificate (PEM), for wss. */
  ca?: string;
  sourceAddresses: string[];
}

let requestsAnswered = 0;

/**
 * Answers every visitor request on a simulated tunnel: 200 with the tunnel's own label
 * as the body, so a visitor can check it reached the tunnel it asked for.
 */
function respond(stream: MuxStream, label: string): void {
  stream.on('error', () => {}); // a visitor that went away resets its stream
  if (stream.meta['upgrade'] === true) {
    stream.reset(undefined, 'no upgrades on simulated tunnels');
    return;
  }
  stream.resume(); // discard any request body
  stream.reply({
    status: 200,
    headers: [
      ['content-type', 'text/plain'],
      ['content-length', String(label.length)],
    ],
  });
  stream.end(label);
  requestsAnswered++;
}

/** Opens one tunnel: WebSocket, HELLO, registration. Rejects on any failure. */
async function openTunnel(target: TunnelTarget, index: number): Promise<SimTunnel> {
  const localAddress = target.sourceAddresses[index % target.sourceAddresses.length]!;
  const ws = new WebSocket(target.endpoint, {
    ...tunnelClientWsOptions(target.endpoint),
    lookup: localhostAwareLookup,
    localAddress,
    handshakeTimeout: 30_000,
    ...(target.ca !== undefined ? { ca: target.ca } : {}),
    // As the CLI does: Nagle off at connect time (setNoDelay does not reach TLS's TCP).
    noDelay: true,
  } as WebSocket.ClientOptions);
  let socket: net.Socket | undefined;
  ws.once('upgrade', (res: http.IncomingMessage) => {
    socket = res.socket;
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res: http.IncomingMessage) => {
      res.resume();
      reject(new Error(`HTTP ${res.statusCode} on the tunnel endpoint`));
    });
  }).catch((err: unknown) => {
    ws.terminate();
    throw err;
  });
  ws.on('error', () => {}); // surfaces as the session's close
  const timers = new StoppableTimers();
  const { session, assignment } = await handshake(
    wsTransport(ws),
    { clientVersion: 'bench', clientId: randomUUID(), connection: 0 },
    { clock: timers },
  );
  const label = assignment.label;
  session.on('stream', (stream) => respond(stream, label));
  return { hostname: assignment.hostname, session, ws, socket, timers, closing: false };
}

type CloseMode = 'close' | 'terminate' | 'vanish';

/**
 * Ends a tunnel: `close` is a clean WebSocket close; `terminate` drops the socket
 * without a close frame; `vanish` stops the client dead (no more reads, pings or
 * answers, the socket stays open) so the relay must find out by its heartbeat. The
 * vanished socket is destroyed after `vanishMs`.
 */
function endTunnel(t: SimTunnel, mode: CloseMode, vanishMs: number): void {
  t.closing = true;
  if (mode === 'close') t.session.close();
  else if (mode === 'terminate') t.ws.terminate();
  else {
    t.timers.stopAll();
    t.socket?.pause();
    setTimeout(() => t.ws.terminate(), vanishMs).unref();
  }
}

const tunnels: SimTunnel[] = [];
let dropped = 0;
const dropReasons = new Errors();

function track(t: SimTunnel): void {
  t.session.once('close', (err) => {
    if (!t.closing) {
      dropped++;
      dropReasons.add(err?.message ?? 'closed');
    }
  });
}

async function openTunnels(args: TunnelTarget & { count: number; concurrency: number }) {
  const started = performance.now();
  const errors = new Errors();
  const hostnames: string[] = [];
  const openMs = new Latencies();
  let done = 0;
  let lastReport = started;
  await pool(args.count, args.concurrency, async (i) => {
    const t0 = performance.now();
    try {
      const t = await openTunnel(args, i);
      openMs.add(performance.now() - t0);
      track(t);
      tunnels.push(t);
      hostnames.push(t.hostname);
    } catch (err) {
      errors.add((err as Error).message);
    }
    done++;
    const now = performance.now();
    if (now - lastReport > 5_000) {
      lastReport = now;
      log(`${done}/${args.count} tunnels (${errors.count} failed)`);
    }
  });
  const ms = performance.now() - started;
  return {
    opened: hostnames.length,
    failed: errors.count,
    errors: errors.toJSON(),
    ms: round(ms),
    handshake: openMs.summary(),
    hostnames,
  };
}

async function closeTunnels() {
  const n = tunnels.length;
  for (const t of tunnels.splice(0)) endTunnel(t, 'close', 0);
  await sleep(200);
  return { closed: n, dropped, dropReasons: dropReasons.toJSON() };
}

function tunnelStatus() {
  return {
    live: tunnels.filter((t) => !t.session.closed).length,
    dropped,
    dropReasons: dropReasons.toJSON(),
    requestsAnswered,
  };
}

// ---- raw HTTP visitors -----------------------------------------------------------------

interface RawResponse {
  status: number;
  body: Buffer;
}

/**
 * One keep-alive HTTP/1.1 connection with a minimal response parser (Content-Length,
 * chunked, or until close). Lighter than http.Agent: the load generator shares the two
 * cores with the relay.
 */
class RawConnection {
  readonly socket: net.Socket;
  private buf: Buffer = Buffer.alloc(0);
  private waiter: ((r: RawResponse | Error) => void) | undefined;
  private closeAfter = false;
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      this.parse(false);
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      if (this.waiter !== undefined && !this.parse(true))
        this.settle(new Error('connection closed'));
    });
  }

  static connect(port: number, localAddress: string, timeoutMs: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error('connect timeout'));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new RawConnection(socket));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  request(
    host: string,
    path: string,
    timeoutMs: number,
    method = 'GET',
    body?: Buffer,
  ): Promise<RawResponse> {
    if (this.closed || this.closeAfter) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.settle(new Error('timeout'));
        this.socket.destroy();
      }, timeoutMs);
      this.waiter = (r) => {
        clearTimeout(timer);
        if (r instanceof Error) reject(r);
        else resolve(r);
      };
      const head =
        `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\n` +
        (body !== undefined ? `Content-Length: ${body.length}\r\n` : '') +
        '\r\n';
      this.socket.write(body === undefined ? head : Buffer.concat([Buffer.from(head), body]));
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private settle(r: RawResponse | Error): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.(r);
  }

  /** Parses one response from the buffer if it is complete; returns whether it did. */
  private parse(atEof: boolean): boolean {
    if (this.waiter === undefined) return false;
    const headEnd = this.buf.indexOf('\r\n\r\n');
    if (headEnd === -1) return false;
    const head = this.buf.toString('latin1', 0, headEnd);
    const status = Number(head.slice(9, 12));
    const lower = head.toLowerCase();
    const bodyStart = headEnd + 4;
    if (/\r\nconnection:\s*close/.test(lower)) this.closeAfter = true;
    let body: Buffer;
    let end: number;
    const cl = /\r\ncontent-length:\s*(\d+)/.exec(lower);
    if (cl !== null) {
      end = bodyStart + Number(cl[1]);
      if (this.buf.length < end) return false;
      body = this.buf.subarray(bodyStart, end);
    } else if (/\r\ntransfer-encoding:\s*chunked/.test(lower)) {
      const parts: Buffer[] = [];
      let at = bodyStart;
      for (;;) {
        const lineEnd = this.buf.indexOf('\r\n', at);
        if (lineEnd === -1) return false;
        const size = parseInt(this.buf.toString('latin1', at, lineEnd), 16);
        if (size === 0) {
          if (this.buf.length < lineEnd + 4) return false;
          end = lineEnd + 4; // no trailers from the relay
          break;
        }
        if (this.buf.length < lineEnd + 2 + size + 2) return false;
        parts.push(this.buf.subarray(lineEnd + 2, lineEnd + 2 + size));
        at = lineEnd + 2 + size + 2;
      }
      body = Buffer.concat(parts);
    } else if (status === 204 || status === 304) {
      end = bodyStart;
      body = Buffer.alloc(0);
    } else {
      if (!atEof) return false; // body runs until the connection closes
      end = this.buf.length;
      body = this.buf.subarray(bodyStart);
      this.closeAfter = true;
    }
    this.buf = this.buf.subarray(end);
    this.settle({ status, body });
    return true;
  }
}

interface HttpLoadArgs {
  port: number;
  hosts: string[];
  connections: number;
  /** Requests per connection, the first one sent as soon as it connects. */
  requests: number;
  /** Mean pause between a connection's requests (uniform in 0.5..1.5×), ms. */
  thinkMs: number;
  /** Pick a random host for every request (else connection i uses hosts[i % n]). */
  hostPerRequest: boolean;
  sourceAddresses: string[];
  connectConcurrency: number;
  timeoutMs: number;
  /** Once every connection is open and answered once: emit 'plateau', wait this long. */
  plateauHoldMs: number;
  /** Hard stop for the whole run. */
  deadlineMs: number;
}

/**
 * Keep-alive visitors: opens `connections` raw connections, each sending its first
 * request at once; once all are open (the plateau) they send the rest with think
 * time. Every response must be a 200 whose body is the label of the host asked for.
 */
async function httpLoad(a: HttpLoadArgs) {
  const started = performance.now();
  const deadline = started + a.deadlineMs;
  const rampLat = new Latencies();
  const lat = new Latencies();
  const errors = new Errors();
  let mismatches = 0;
  let ok = 0;
  const conns: (RawConnection | undefined)[] = new Array(a.connections);
  const pick = (i: number): string =>
    a.hostPerRequest
      ? a.hosts[Math.floor(Math.random() * a.hosts.length)]!
      : a.hosts[i % a.hosts.length]!;

  const once1 = async (i: number, rec: Latencies): Promise<void> => {
    let conn = conns[i];
    if (conn === undefined || conn.closed) {
      try {
        conn = await RawConnection.connect(
          a.port,
          a.sourceAddresses[i % a.sourceAddresses.length]!,
          a.timeoutMs,
        );
        conns[i] = conn;
      } catch (err) {
        errors.add(`connect: ${(err as Error).message}`);
        return;
      }
    }
    const host = pick(i);
    const t0 = performance.now();
    try {
      const r = await conn.request(host, '/', a.timeoutMs);
      rec.add(performance.now() - t0);
      if (r.status !== 200) errors.add(`HTTP ${r.status}`);
      else if (r.body.toString('latin1') !== labelOf(host)) mismatches++;
      else ok++;
    } catch (err) {
      errors.add((err as Error).message);
    }
  };

  // Ramp-up: connect, and send the first request at once (an idle new connection would
  // meet the relay's headers timeout). Its latencies include the connect storm.
  await pool(a.connections, a.connectConcurrency, (i) => once1(i, rampLat));
  const open = conns.filter((c) => c !== undefined && !c.closed).length;
  const rampMs = performance.now() - started;
  emit('plateau', { open });
  log(`plateau: ${open} connections open after ${Math.round(rampMs)} ms`);
  await sleep(a.plateauHoldMs);

  const phase2 = performance.now();
  const before = errors.count;
  // This process's own event-loop delay: if it is high, the latencies are ours, not the relay's.
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  await Promise.all(
    Array.from({ length: a.connections }, async (_, i) => {
      for (let r = 1; r < a.requests && performance.now() < deadline; r++) {
        if (a.thinkMs > 0) await sleep(a.thinkMs * (0.5 + Math.random()));
        await once1(i, lat);
      }
    }),
  );
  const phase2Ms = performance.now() - phase2;
  lag.disable();
  for (const c of conns) c?.close();
  return {
    connections: a.connections,
    openAtPlateau: open,
    rampMs: round(rampMs),
    requests: rampLat.count + lat.count + errors.count,
    ok,
    errors: errors.toJSON(),
    mismatches,
    rps: round((lat.count + errors.count - before) / (phase2Ms / 1000)),
    ramp: rampLat.summary(),
    generatorLagP99Ms: round(lag.percentile(99) / 1e6),
    // Steady state: after the ramp-up (or the ramp itself for one request per connection).
    ...(lat.count > 0 ? lat : rampLat).summary(),
    ms: round(performance.now() - started),
  };
}

// ---- churn ---------------------------------------------------------------------------

interface ChurnArgs extends TunnelTarget {
  ratePerS: number;
  durationS: number;
  lifetimeMs: number;
  /** Of every 10 tunnels ended, how many vanish (heartbeat path) instead of closing. */
  vanishPer10: number;
  vanishMs: number;
  /** End every tunnel this way (diagnostics); default: the mix above. */
  onlyMode?: CloseMode;
  probePort: number;
  probeConnections: number;
  maxInflight: number;
}

/**
 * Tunnels connect at `ratePerS` and each leaves after `lifetimeMs` (clean close,
 * dropped socket, or vanished in turn), while visitors probe random live tunnels.
 * Checks that no two live tunnels ever get the same hostname and that every probe
 * answered 200 comes from the tunnel asked for.
 */
async function churn(a: ChurnArgs) {
  const started = performance.now();
  const endAt = started + a.durationS * 1000;
  const live = new Map<string, SimTunnel>();
  const everSeen = new Set<string>();
  const errors = new Errors();
  const openLat = new Latencies();
  const modes: Record<CloseMode, number> = { close: 0, terminate: 0, vanish: 0 };
  let launched = 0;
  let opened = 0;
  let inflight = 0;
  let skipped = 0;
  let collisions = 0;
  let reused = 0;
  let ended = 0;
  let churnDropped = 0;
  const timers = new Set<NodeJS.Timeout>();

  const end = (t: SimTunnel): void => {
    const slot = ended++ % 10;
    const mode: CloseMode =
      a.onlyMode ?? (slot < a.vanishPer10 ? 'vanish' : slot % 2 === 0 ? 'close' : 'terminate');
    modes[mode]++;
    live.delete(t.hostname);
    endTunnel(t, mode, a.vanishMs);
  };

  const launch = (i: number): void => {
    launched++;
    inflight++;
    const t0 = performance.now();
    openTunnel(a, i).then(
      (t) => {
        inflight--;
        opened++;
        openLat.add(performance.now() - t0);
        if (live.has(t.hostname)) collisions++;
        const label = labelOf(t.hostname);
        if (everSeen.has(label)) reused++;
        everSeen.add(label);
        live.set(t.hostname, t);
        t.session.once('close', () => {
          if (!t.closing) {
            churnDropped++;
            live.delete(t.hostname);
          }
        });
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (!t.closing) end(t);
        }, a.lifetimeMs);
        timers.add(timer);
      },
      (err: unknown) => {
        inflight--;
        errors.add((err as Error).message);
      },
    );
  };

  // Visitors: random live tunnels, checking who answers.
  const probe = { ok: 0, mismatches: 0, gone: 0, errors: new Errors(), lat: new Latencies() };
  const prober = async (i: number): Promise<void> => {
    let conn: RawConnection | undefined;
    while (performance.now() < endAt) {
      const hosts = [...live.keys()];
      if (hosts.length === 0) {
        await sleep(20);
        continue;
      }
      const host = hosts[Math.floor(Math.random() * hosts.length)]!;
      try {
        if (conn === undefined || conn.closed)
          conn = await RawConnection.connect(
            a.probePort,
            a.sourceAddresses[i % a.sourceAddresses.length]!,
            10_000,
          );
        const t0 = performance.now();
        // Longer than the relay's dead-peer detection (≤ 14 s): a probe that picked a
        // tunnel just before it vanished waits for that, then gets a 502.
        const r = await conn.request(host, '/', 20_000);
        probe.lat.add(performance.now() - t0);
        if (r.status === 200) {
          if (r.body.toString('latin1') === labelOf(host)) probe.ok++;
          else probe.mismatches++;
        } else if (r.status === 404 || r.status === 502 || r.status === 503) {
          probe.gone++; // the tunnel left between the pick and the request
        } else probe.errors.add(`HTTP ${r.status}`);
      } catch (err) {
        probe.errors.add((err as Error).message);
      }
      await sleep(5);
    }
    conn?.close();
  };
  const probers = Array.from({ length: a.probeConnections }, (_, i) => prober(i));

  // Launch on a 20 ms tick so the rate holds even when a tick is late.
  let lastLog = started;
  while (performance.now() < endAt) {
    const due = Math.floor(((performance.now() - started) / 1000) * a.ratePerS);
    while (launched + skipped < due) {
      if (inflight >= a.maxInflight) skipped++;
      else launch(launched + skipped);
    }
    if (performance.now() - lastLog > 10_000) {
      lastLog = performance.now();
      log(
        `churn: ${opened} opened, ${live.size} live, ${inflight} connecting, ${errors.count} failed`,
      );
    }
    await sleep(20);
  }
  await Promise.all(probers);
  // Let the last handshakes finish (bounded), then end everything still live.
  for (let i = 0; i < 250 && inflight > 0; i++) await sleep(40);
  for (const timer of timers) clearTimeout(timer);
  for (const t of [...live.values()]) end(t);
  const ms = performance.now() - started;
  return {
    launched,
    opened,
    failed: errors.count,
    errors: errors.toJSON(),
    skipped,
    stillConnecting: inflight,
    ratePerS: round(opened / a.durationS),
    collisions,
    reusedLabels: reused,
    dropped: churnDropped,
    ends: modes,
    handshake: openLat.summary(),
    probes: {
      ok: probe.ok,
      mismatches: probe.mismatches,
      gone: probe.gone,
      errors: probe.errors.toJSON(),
      ...probe.lat.summary(),
    },
    ms: round(ms),
  };
}

// ---- origin (for the cases that run the real CLI) ------------------------------------

let originServer: http.Server | undefined;

async function startOrigin() {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://origin');
    if (url.pathname === '/upload') {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(String(n)));
      return;
    }
    req.resume();
    if (url.pathname === '/download') {
      let left = Number(url.searchParams.get('bytes') ?? 0);
      res.writeHead(200, { 'content-length': String(left) });
      const pump = (): void => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    res.setHeader('content-type', 'text/plain');
    res.end('hello, tunnel!');
  });
  server.keepAliveTimeout = 65_000;
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws) => {
    ws.on('error', () => {});
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  originServer = server;
  return { port: (server.address() as AddressInfo).port };
}

// ---- visitor WebSockets --------------------------------------------------------------

interface Echoer {
  ws: WebSocket;
  /** Sends one message and resolves with its round trip in ms (rejects on a bad echo). */
  roundTrip(payload: Buffer, timeoutMs: number): Promise<number>;
}

function openVisitorWs(
  port: number,
  host: string,
  localAddress: string,
  timeoutMs: number,
): Promise<Echoer> {
  const ws = new WebSocket(`ws://${host}:${port}/echo`, {
    lookup: localhostAwareLookup,
    localAddress,
    perMessageDeflate: false,
    handshakeTimeout: timeoutMs,
  } as WebSocket.ClientOptions);
  let waiter: ((data: Buffer | Error) => void) | undefined;
  ws.on('message', (data) => {
    const w = waiter;
    waiter = undefined;
    w?.(data as Buffer);
  });
  ws.on('close', () => {
    const w = waiter;
    waiter = undefined;
    w?.(new Error('websocket closed'));
  });
  const echoer: Echoer = {
    ws,
    roundTrip(payload, ms) {
      return new Promise((resolve, reject) => {
        if (ws.readyState !== WebSocket.OPEN) {
          reject(new Error('websocket closed'));
          return;
        }
        const t0 = performance.now();
        const timer = setTimeout(() => {
          waiter = undefined;
          reject(new Error('echo timeout'));
        }, ms);
        waiter = (data) => {
          clearTimeout(timer);
          if (data instanceof Error) reject(data);
          else if (!data.equals(payload)) reject(new Error('echo mismatch'));
          else resolve(performance.now() - t0);
        };
        ws.send(payload);
      });
    },
  };
  return new Promise((resolve, reject) => {
    ws.once('open', () => {
      ws.removeAllListeners('error');
      ws.on('error', () => {});
      resolve(echoer);
    });
    ws.once('error', (err) => reject(err));
    ws.once('unexpected-response', (_req, res: http.IncomingMessage) => {
      res.resume();
      ws.terminate();
      reject(new Error(`HTTP ${res.statusCode} on upgrade`));
    });
  });
}

interface WsFanoutArgs {
  port: number;
  host: string;
  connections: number;
  durationS: number;
  messageBytes: number;
  sourceAddresses: string[];
  connectConcurrency: number;
  timeoutMs: number;
}

/** `connections` visitor WebSockets on one tunnel, each echoing messages in a loop. */
async function wsFanout(a: WsFanoutArgs) {
  const errors = new Errors();
  const lat = new Latencies();
  const socks: Echoer[] = [];
  const t0 = performance.now();
  await pool(a.connections, a.connectConcurrency, async (i) => {
    try {
      socks.push(
        await openVisitorWs(
          a.port,
          a.host,
          a.sourceAddresses[i % a.sourceAddresses.length]!,
          a.timeoutMs,
        ),
      );
    } catch (err) {
      errors.add(`open: ${(err as Error).message}`);
    }
  });
  const rampMs = performance.now() - t0;
  emit('plateau', { open: socks.length });
  log(`${socks.length} visitor WebSockets open after ${Math.round(rampMs)} ms`);
  const started = performance.now();
  const endAt = started + a.durationS * 1000;
  await Promise.all(
    socks.map(async (s, i) => {
      const payload = Buffer.alloc(a.messageBytes, i & 0xff);
      for (let seq = 0; performance.now() < endAt; seq++) {
        payload.writeUInt32BE(seq, 0);
        try {
          lat.add(await s.roundTrip(payload, a.timeoutMs));
        } catch (err) {
          errors.add((err as Error).message);
          return;
        }
      }
    }),
  );
  const ms = performance.now() - started;
  for (const s of socks) s.ws.close();
  return {
    opened: socks.length,
    rampMs: round(rampMs),
    messages: lat.count,
    messagesPerS: round(lat.count / (ms / 1000)),
    errors: errors.toJSON(),
    ...lat.summary(),
  };
}

// ---- soak ----------------------------------------------------------------------------

interface SoakArgs {
  port: number;
  host: string;
  durationS: number;
  /** Small GETs per second (over a few keep-alive connections). */
  rps: number;
  /** Size of each upload and each download. */
  transferBytes: number;
  /** Transfers per second (uploads and downloads alternate). */
  transfersPerS: number;
  /** Visitor WebSockets kept open; each is replaced after a random lifetime. */
  websockets: number;
  wsLifetimeS: number;
  /** Echo messages per second on each WebSocket. */
  wsMessagesPerS: number;
  sourceAddresses: string[];
}

function transfer(port: number, host: string, kind: 'upload' | 'download', bytes: number) {
  return new Promise<void>((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: kind === 'upload' ? 'POST' : 'GET',
        path: kind === 'upload' ? '/upload' : `/download?bytes=${bytes}`,
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
        res.on('end', () => {
          const got = kind === 'upload' ? Number(text) : n;
          if (res.statusCode !== 200) reject(new Error(`${kind}: HTTP ${res.statusCode}`));
          else if (got !== bytes) reject(new Error(`${kind}: ${got} of ${bytes} bytes`));
          else resolve();
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(60_000, () => req.destroy(new Error(`${kind}: timeout`)));
    req.on('error', reject);
    if (kind === 'upload') {
      const chunk = Buffer.alloc(Math.min(bytes, 64 * 1024), 0x62);
      let left = bytes;
      const pump = (): void => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
    } else req.end();
  });
}

/** Mixed traffic through one tunnel for `durationS`, at fixed rates. */
async function soak(a: SoakArgs) {
  const started = performance.now();
  const endAt = started + a.durationS * 1000;
  const errors = new Errors();
  const getLat = new Latencies();
  const wsLat = new Latencies();
  let transfers = 0;
  let transferBytes = 0;
  let wsOpened = 0;
  /** GETs and transfers not sent because the previous ones had not finished: stalls. */
  let skipped = 0;
  const addr = (i: number): string => a.sourceAddresses[i % a.sourceAddresses.length]!;

  // Small GETs: a fixed schedule over up to 32 keep-alive connections. A GET due while
  // all are busy (a stall of ≥ 32 / rps seconds somewhere) is skipped and counted.
  const gets = async (): Promise<void> => {
    const conns: (RawConnection | undefined)[] = new Array(32);
    const busy = new Array<boolean>(32).fill(false);
    let sent = 0;
    const inflight = new Set<Promise<void>>();
    while (performance.now() < endAt) {
      const due = Math.floor(((performance.now() - started) / 1000) * a.rps);
      while (sent < due) {
        sent++;
        const slot = busy.indexOf(false);
        if (slot === -1) {
          skipped++;
          continue;
        }
        busy[slot] = true;
        const p = (async () => {
          try {
            let c = conns[slot];
            if (c === undefined || c.closed) {
              c = await RawConnection.connect(a.port, addr(slot), 10_000);
              conns[slot] = c;
            }
            const t0 = performance.now();
            const r = await c.request(a.host, '/small', 10_000);
            getLat.add(performance.now() - t0);
            if (r.status !== 200) errors.add(`small GET: HTTP ${r.status}`);
          } catch (err) {
            errors.add(`small GET: ${(err as Error).message}`);
          } finally {
            busy[slot] = false;
          }
        })();
        inflight.add(p);
        void p.finally(() => inflight.delete(p));
      }
      await sleep(10);
    }
    await Promise.all(inflight);
    for (const c of conns) c?.close();
  };

  // Uploads and downloads, alternating, at most 4 at once.
  const transfersLoop = async (): Promise<void> => {
    if (a.transfersPerS <= 0) return;
    const inflight = new Set<Promise<void>>();
    let n = 0;
    while (performance.now() < endAt) {
      const due = Math.floor(((performance.now() - started) / 1000) * a.transfersPerS);
      while (n < due) {
        const kind = n++ % 2 === 0 ? 'upload' : 'download';
        if (inflight.size >= 4) {
          skipped++;
          continue;
        }
        const p = transfer(a.port, a.host, kind, a.transferBytes).then(
          () => {
            transfers++;
            transferBytes += a.transferBytes;
          },
          (err: unknown) => errors.add((err as Error).message),
        );
        inflight.add(p);
        void p.finally(() => inflight.delete(p));
      }
      await sleep(20);
    }
    await Promise.all(inflight);
  };

  // WebSockets: each lives a random lifetime, echoing, then is replaced.
  const wsLane = async (i: number): Promise<void> => {
    const payload = Buffer.alloc(256, i & 0xff);
    while (performance.now() < endAt) {
      let s: Echoer;
      try {
        s = await openVisitorWs(a.port, a.host, addr(i), 10_000);
        wsOpened++;
      } catch (err) {
        errors.add(`websocket open: ${(err as Error).message}`);
        await sleep(1_000);
        continue;
      }
      const until = Math.min(
        endAt,
        performance.now() + a.wsLifetimeS * 1000 * (0.5 + Math.random()),
      );
      while (performance.now() < until) {
        try {
          wsLat.add(await s.roundTrip(payload, 10_000));
        } catch (err) {
          errors.add(`websocket: ${(err as Error).message}`);
          break;
        }
        await sleep(1000 / a.wsMessagesPerS);
      }
      s.ws.close();
    }
  };

  let lastLog = started;
  const progress = setInterval(() => {
    if (performance.now() - lastLog < 60_000) return;
    lastLog = performance.now();
    log(
      `soak: ${getLat.count} GETs, ${transfers} transfers, ${wsOpened} websockets, ${errors.count} errors`,
    );
  }, 5_000);
  try {
    await Promise.all([
      gets(),
      transfersLoop(),
      ...Array.from({ length: a.websockets }, (_, i) => wsLane(i)),
    ]);
  } finally {
    clearInterval(progress);
  }
  return {
    durationS: round((performance.now() - started) / 1000),
    gets: getLat.summary(),
    transfers,
    transferMiB: round(transferBytes / 2 ** 20),
    websocketsOpened: wsOpened,
    websocketMessages: wsLat.summary(),
    skipped,
    errors: errors.toJSON(),
  };
}

// ---- dispatch ------------------------------------------------------------------------

const commands: Record<string, (args: never) => Promise<unknown>> = {
  ping: async () => ({ pid: process.pid }),
  'open-tunnels': openTunnels,
  'close-tunnels': closeTunnels,
  'tunnel-status': async () => tunnelStatus(),
  'http-load': httpLoad,
  churn,
  origin: startOrigin,
  'ws-fanout': wsFanout,
  soak,
};

process.on('message', (raw) => {
  const { id, cmd, args } = raw as { id: number; cmd: string; args: never };
  const fn = commands[cmd];
  if (fn === undefined) {
    send({ id, err: `unknown command ${cmd}` });
    return;
  }
  fn(args).then(
    (ok) => send({ id, ok }),
    (err: unknown) =>
      send({ id, err: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});

// The parent going away ends us too (no orphaned sockets).
process.on('disconnect', () => {
  originServer?.close();
  process.exit(0);
});
