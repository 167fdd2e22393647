/** Visitors: raw keep-alive HTTP/1.1 connections with a bounded, timed load. */
import net from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { emit, log, sleep } from './ipc.js';
import { Latencies, round, Errors, pool, labelOf } from './stats.js';

export interface RawResponse {
  status: number;
  body: Buffer;
}

/**
 * One keep-alive HTTP/1.1 connection with a minimal response parser (Content-Length,
 * chunked, or until close). Lighter than http.Agent: the load generator shares the two
 * cores with the relay.
 */
export class RawConnection {
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

export interface HttpLoadArgs {
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
export async function httpLoad(a: HttpLoadArgs) {
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
