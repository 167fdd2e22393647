/**
 * Shared pieces of the hostile-input suite: raw TCP/TLS visitors that write exact
 * bytes, a control tunnel that keeps serving a request every 100 ms while the hostile
 * cases run (it must see 0 failures), a recording origin whose strict parser sees what
 * the relay forwards, a raw WebSocket client that speaks hand-made mux frames to the
 * tunnel endpoint, a log capture, and memory measurement.
 */
import { EventEmitter, once } from 'node:events';
import type http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { Writable } from 'node:stream';
import tls from 'node:tls';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import pino, { type Logger } from 'pino';
import type { Test } from 'tap';
import WebSocket from 'ws';
import { localhostAwareLookup } from '../../cli/tunnel/client.js';
import {
  FRAME_HEADER_SIZE,
  FrameType,
  PROTOCOL_VERSION,
  decodeCodeMessage,
  encodeFrame,
} from '../../shared/protocol/frame.js';
import { TUNNEL_ENDPOINT_PATH } from '../../shared/protocol/tunnel.js';
import {
  TEST_DOMAIN,
  connectTunnel,
  startOrigin,
  type ConnectedTunnel,
  type TestRelay,
} from './relay-env.js';
import { delay } from './wait.js';

// ---- raw visitors ------------------------------------------------------------------

export interface RawResult {
  /** Everything the relay sent, latin1. */
  text: string;
  /** Status codes of the responses in `text`, in order. */
  statuses: number[];
  /** The first status, if any response came. */
  status: number | undefined;
  /** The relay closed (or reset) the connection; false = our deadline ended it. */
  closedByPeer: boolean;
  /** Time from connect until the connection ended. */
  ms: number;
  /** Socket error, if the relay reset it or the TLS handshake failed. */
  error?: string;
}

export interface RawOptions {
  port: number;
  /** Speak TLS, with this SNI (undefined = no SNI, as for an IP literal). */
  tls?: { servername?: string | undefined };
  /** Written in order; a number pauses that many ms. */
  send: string | Buffer | (string | Buffer | number)[];
  /** Our deadline: the connection is destroyed after this long. Default 3 s. */
  timeoutMs?: number;
  /** Address of the relay (an IPv6 visitor: '::1'). Default 127.0.0.1. */
  host?: string;
  /**
   * Half-close once the relay has been silent this long after the last write (it then
   * sees the end of the input, as from a client that is done). Node's server aborts
   * requests still in flight on a half-close, so give it time to answer first.
   */
  halfCloseAfterIdleMs?: number;
}

/**
 * Connects to the relay, writes exact bytes and collects everything it answers until it
 * closes the connection (or our deadline passes). Requests that should succeed carry
 * `Connection: close` so the relay ends the exchange.
 */
export function rawRequest(opts: RawOptions): Promise<RawResult> {
  const started = performance.now();
  const host = opts.host ?? '127.0.0.1';
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: string | undefined;
    let timedOut = false;
    const socket: net.Socket =
      opts.tls !== undefined
        ? tls.connect({
            host,
            port: opts.port,
            // No SNI for an IP literal (RFC 6066), as real clients do.
            ...(opts.tls.servername !== undefined && net.isIP(opts.tls.servername) === 0
              ? { servername: opts.tls.servername }
              : {}),
            // The suite tests the relay, not certificate checks: accept its certificate.
            rejectUnauthorized: false,
          })
        : net.connect(opts.port, host);
    const timer = setTimeout(() => {
      timedOut = true;
      socket.destroy();
    }, opts.timeoutMs ?? 3_000);
    let idle: NodeJS.Timeout | undefined;
    let written = false;
    const armIdle = (): void => {
      if (opts.halfCloseAfterIdleMs === undefined || !written) return;
      clearTimeout(idle);
      idle = setTimeout(() => {
        if (!socket.destroyed) socket.end();
      }, opts.halfCloseAfterIdleMs);
    };
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      armIdle();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error = err.code ?? err.message;
    });
    socket.on('close', () => {
      clearTimeout(timer);
      clearTimeout(idle);
      const text = Buffer.concat(chunks).toString('latin1');
      const statuses = [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
      const result: RawResult = {
        text,
        statuses,
        status: statuses[0],
        closedByPeer: !timedOut,
        ms: performance.now() - started,
      };
      if (error !== undefined) result.error = error;
      resolve(result);
    });
    const parts = Array.isArray(opts.send) ? opts.send : [opts.send];
    const write = async (): Promise<void> => {
      if (opts.tls !== undefined) await once(socket, 'secureConnect');
      else await once(socket, 'connect');
      for (const part of parts) {
        if (socket.destroyed) return;
        if (typeof part === 'number') await delay(part);
        else socket.write(typeof part === 'string' ? Buffer.from(part, 'latin1') : part);
      }
      written = true;
      armIdle();
    };
    write().catch(() => socket.destroy());
  });
}

export interface ParsedResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Reads `text` as a client would: responses one after another, each body framed by
 * its Content-Length or chunked coding (or running to the end when neither is given;
 * `bodiless` marks responses to HEAD). Returns the complete responses and whether
 * bytes were left that do not form one: what a desynchronised connection looks like.
 */
export function parseResponses(
  text: string,
  bodiless: boolean[] = [],
): { responses: ParsedResponse[]; leftover: string } {
  const responses: ParsedResponse[] = [];
  let rest = text;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) break;
    const lines = rest.slice(0, end).split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
    if (m === null) break;
    const status = Number(m[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) return { responses, leftover: rest };
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    let after = rest.slice(end + 4);
    let body = '';
    const noBody =
      bodiless[responses.length] === true || status === 204 || status === 304 || status < 200;
    if (noBody) {
      // no body
    } else if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
      for (;;) {
        const lineEnd = after.indexOf('\r\n');
        if (lineEnd === -1) return { responses, leftover: rest };
        const size = parseInt(after.slice(0, lineEnd).split(';')[0] ?? '', 16);
        if (!Number.isFinite(size)) return { responses, leftover: rest };
        if (size === 0) {
          const trailerEnd = after.indexOf('\r\n\r\n', lineEnd - 2);
          if (trailerEnd === -1) return { responses, leftover: rest };
          after = after.slice(trailerEnd + 4);
          break;
        }
        const chunk = after.slice(lineEnd + 2, lineEnd + 2 + size);
        if (chunk.length < size || after.slice(lineEnd + 2 + size, lineEnd + 4 + size) !== '\r\n') {
          return { responses, leftover: rest };
        }
        body += chunk;
        after = after.slice(lineEnd + 4 + size);
      }
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (!/^\d+$/.test(headers['content-length']) || after.length < n) {
        return { responses, leftover: rest };
      }
      body = after.slice(0, n);
      after = after.slice(n);
    } else {
      body = after;
      after = '';
    }
    responses.push({ status, headers, body });
    rest = after;
  }
  return { responses, leftover: rest };
}

/** The value of header `name` in the first response of `text`. */
export function headerOf(text: string, name: string): string | undefined {
  const head = text.split('\r\n\r\n')[0] ?? '';
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (line.slice(0, colon).trim().toLowerCase() === name.toLowerCase()) {
      return line.slice(colon + 1).trim();
    }
  }
  return undefined;
}

/** The body of the first response (after the blank line). */
export function bodyOf(text: string): string {
  const i = text.indexOf('\r\n\r\n');
  return i === -1 ? '' : text.slice(i + 4);
}

// ---- the control tunnel ------------------------------------------------------------

export interface Control {
  hostname: string;
  tunnel: ConnectedTunnel;
  /** Requests the control loop made, and the ones that did not answer 200 "control ok". */
  readonly requests: number;
  readonly failures: string[];
  /**
   * End of a case: the relay is still up and the control tunnel still serves (one
   * fresh request answers 200 now, and the loop has seen no failure so far).
   */
  check(t: Test, what: string): Promise<void>;
  /** Stops the loop (also done in teardown). */
  stop(): Promise<void>;
}

/** One request with a hard deadline; resolves with the status and body, or the error. */
export function get(
  env: TestRelay,
  hostname: string,
  options: { path?: string; timeoutMs?: number; headers?: http.OutgoingHttpHeaders } = {},
): Promise<
  { status: number; body: string; headers: http.IncomingHttpHeaders } | { error: string }
> {
  return new Promise((resolve) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: env.httpsPort,
        path: options.path ?? '/',
        headers: { host: hostname, ...options.headers },
        servername: hostname,
        ca: env.ca,
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
        res.on('error', (err) => resolve({ error: err.message }));
      },
    );
    req.setTimeout(options.timeoutMs ?? 5_000, () => req.destroy(new Error('timed out')));
    req.on('error', (err) => resolve({ error: err.message }));
    req.end();
  });
}

/**
 * A well-behaved tunnel on the same relay, with a request every `intervalMs` (100 ms)
 * for as long as the test runs. Each request must answer 200 "control ok".
 */
export async function startControl(t: Test, env: TestRelay, intervalMs = 100): Promise<Control> {
  const { port } = await startOrigin(t, (req, res) => {
    req.resume();
    req.on('end', () => res.end('control ok'));
  });
  const tunnel = await connectTunnel(t, env, String(port));
  const failures: string[] = [];
  let requests = 0;
  let running = true;
  const probe = async (): Promise<string | undefined> => {
    const r = await get(env, tunnel.hostname, { path: '/control' });
    if ('error' in r) return r.error;
    if (r.status !== 200 || r.body !== 'control ok') return `${r.status} ${r.body.slice(0, 80)}`;
    return undefined;
  };
  const loop = (async () => {
    while (running) {
      const failure = await probe();
      requests++;
      if (failure !== undefined && running) failures.push(failure);
      await delay(intervalMs);
    }
  })();
  const stop = async (): Promise<void> => {
    running = false;
    await loop;
  };
  t.teardown(stop);
  return {
    hostname: tunnel.hostname,
    tunnel,
    get requests() {
      return requests;
    },
    failures,
    stop,
    async check(t, what) {
      const now = await probe();
      t.equal(now ?? 'ok', 'ok', `${what}: relay up, control tunnel answers`);
      t.same(failures, [], `${what}: control tunnel 0 failures (${requests} requests so far)`);
    },
  };
}

// ---- a recording origin ------------------------------------------------------------

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
  /** The body stream failed (the relay aborted the request). */
  aborted: boolean;
}

export interface RecordingOrigin {
  port: number;
  /** Requests the origin's (strict, default) parser accepted and read to the end. */
  requests: SeenRequest[];
  /** Parse errors the origin's server saw: the relay forwarded something malformed. */
  parseErrors: string[];
  /** Raw bytes received, per connection (what the tunnel client wrote). */
  raw: string[];
  /** Requests completed or aborted (counted even when `lean`). */
  count: number;
  /**
   * A barrier instead of a sleep: one more request through the tunnel `hostname` (HTTPS
   * listener), resolved once the origin has seen it end. Whatever the relay forwarded
   * before it went the same way first, so after it `requests` holds everything that was
   * going to arrive. Barrier requests are not recorded.
   */
  barrier(env: TestRelay, hostname: string): Promise<void>;
}

/** Path prefix of `RecordingOrigin.barrier` requests. */
const BARRIER_PATH = '/_test-barrier/';

/**
 * An origin that answers `origin saw <method> <url>` and records every request; `lean`
 * keeps only the count and the parse errors (for long fuzz runs that measure memory).
 */
export async function startRecordingOrigin(
  t: Test,
  options: { lean?: boolean } = {},
): Promise<RecordingOrigin> {
  const requests: SeenRequest[] = [];
  const parseErrors: string[] = [];
  const raw: string[] = [];
  const lean = options.lean === true;
  const barriers = new EventEmitter();
  let barrierCount = 0;
  const { server, port } = await startOrigin(t, (req, res) => {
    if (req.url?.startsWith(BARRIER_PATH) === true) {
      const url = req.url;
      req.resume();
      req.on('close', () => barriers.emit(url));
      req.on('end', () => res.end('barrier'));
      return;
    }
    const chunks: Buffer[] = [];
    const seen: SeenRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      body: '',
      aborted: false,
    };
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
      if (!lean) chunks.push(c);
    });
    req.on('error', () => {
      seen.aborted = true;
    });
    req.on('close', () => {
      origin.count++;
      if (lean) return;
      seen.body = Buffer.concat(chunks).toString('latin1');
      requests.push(seen);
    });
    req.on('end', () => {
      res.setHeader('content-type', 'text/plain');
      res.end(`origin saw ${req.method} ${req.url} body=${bytes}`);
    });
  });
  server.on('connection', (socket: net.Socket) => {
    if (lean) return;
    const i = raw.push('') - 1;
    socket.on('data', (c: Buffer) => (raw[i] += c.toString('latin1')));
  });
  server.on('clientError', (err: Error & { code?: string; rawPacket?: Buffer }, socket) => {
    const packet = err.rawPacket?.toString('latin1').slice(0, 300) ?? '';
    // Only parser errors count. A connection closed in the middle of a body
    // (HPE_INVALID_EOF_STATE, EPIPE, ECONNRESET) is a request the relay cancelled.
    if (err.code?.startsWith('HPE_') === true && err.code !== 'HPE_INVALID_EOF_STATE') {
      parseErrors.push(`${err.code ?? err.message}: ${JSON.stringify(packet)}`);
    }
    socket.destroy();
  });
  const origin: RecordingOrigin = {
    port,
    requests,
    parseErrors,
    raw,
    count: 0,
    async barrier(env, hostname) {
      const path = `${BARRIER_PATH}${++barrierCount}`;
      const seen = once(barriers, path);
      const r = await get(env, hostname, { path });
      if ('error' in r || r.status !== 200) {
        throw new Error(`barrier request failed: ${'error' in r ? r.error : r.status}`);
      }
      await seen;
    },
  };
  return origin;
}

// ---- logs --------------------------------------------------------------------------

/** A pino logger at `trace` whose output lines are kept in `lines`. */
export function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(line);
      cb();
    },
  });
  // The same redaction the `relay` command configures.
  const logger = pino(
    {
      level: 'trace',
      redact: ['token', 'credential', 'req.headers.authorization', '*.token', '*.credential'],
    },
    sink,
  );
  return { logger, lines };
}

// ---- memory ------------------------------------------------------------------------

let gcFn: (() => void) | undefined;

/** A full GC (through --expose-gc set at run time), so heap readings are comparable. */
export function collectGarbage(): void {
  if (gcFn === undefined) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
}

export async function settledHeap(): Promise<{ heapUsed: number; rss: number }> {
  for (let i = 0; i < 3; i++) {
    await delay(20);
    collectGarbage();
  }
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, rss: m.rss };
}

export const MiB = 1024 * 1024;

/** Mux streams open on the relay, over every registered tunnel connection. */
export function relayStreams(env: TestRelay): number {
  let n = 0;
  for (const tunnel of env.relay.registry.tunnels()) {
    for (const s of tunnel.sessions) n += s.streamCount;
  }
  return n;
}

// ---- a raw tunnel client -----------------------------------------------------------

export interface RawFrame {
  version: number;
  type: number;
  streamId: number;
  payload: Buffer;
}

export interface RawTunnelClient {
  ws: WebSocket;
  /** Frames the relay sent us (decoded without validation). */
  frames: RawFrame[];
  /** Resolves with the WebSocket close code once the connection is gone. */
  closed: Promise<{ code: number; reason: string }>;
  isClosed(): boolean;
  send(buf: Buffer): void;
  sendFrame(type: number, streamId: number, payload?: Buffer, version?: number): void;
  /** Sends a valid HELLO with `app` (a TunnelRequest) and waits for the relay's answer. */
  hello(app?: Record<string, unknown>, timeoutMs?: number): Promise<RawFrame>;
  /** Resolves with the first frame (already received or coming) that matches. */
  waitFor(match: (f: RawFrame) => boolean, timeoutMs?: number): Promise<RawFrame>;
  /** The relay's GOAWAY, decoded, if it sent one. */
  goAway(): { code: number; message: string } | undefined;
  close(): void;
}

export function helloPayload(app: Record<string, unknown> = { clientVersion: 'raw' }): Buffer {
  return Buffer.from(
    JSON.stringify({
      protocol: PROTOCOL_VERSION,
      windowBytes: 256 * 1024,
      maxStreams: 100,
      maxFrameBytes: 64 * 1024,
      app,
    }),
  );
}

/**
 * Opens a WebSocket to the relay's tunnel endpoint (TLS, SNI and Host = the apex) and
 * speaks raw frames: the test plays a hostile tunnel client. Closed in teardown, unless
 * `autoClose` is false (long fuzz runs close each client themselves, and keep no
 * reference to it, so that memory readings see only the relay).
 */
export async function rawTunnelClient(
  t: Test,
  env: TestRelay,
  options: WebSocket.ClientOptions = {},
  { autoClose = true }: { autoClose?: boolean } = {},
): Promise<RawTunnelClient> {
  const ws = new WebSocket(`wss://${TEST_DOMAIN}:${env.httpsPort}${TUNNEL_ENDPOINT_PATH}`, {
    ca: env.ca,
    lookup: localhostAwareLookup,
    perMessageDeflate: false,
    ...options,
  } as WebSocket.ClientOptions);
  ws.binaryType = 'nodebuffer';
  ws.on('error', () => {});
  const frames: RawFrame[] = [];
  const waiters: { match: (f: RawFrame) => boolean; resolve: (f: RawFrame) => void }[] = [];
  // A message holds one or more frames back to back (PROTOCOL.md §1). Split them where
  // the length fields allow; whatever does not parse is kept as one last frame.
  ws.on('message', (data: Buffer) => {
    let offset = 0;
    do {
      const left = data.length - offset;
      const length = left >= FRAME_HEADER_SIZE ? data.readUInt32BE(offset + 8) : Infinity;
      const end =
        length <= left - FRAME_HEADER_SIZE ? offset + FRAME_HEADER_SIZE + length : data.length;
      const f: RawFrame = {
        version: data[offset] ?? -1,
        type: data[offset + 1] ?? -1,
        streamId: left >= 8 ? data.readUInt32BE(offset + 4) : 0,
        payload: data.subarray(Math.min(offset + FRAME_HEADER_SIZE, end), end),
      };
      offset = end;
      frames.push(f);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.match(f)) waiters.splice(i, 1)[0]!.resolve(f);
      }
    } while (offset < data.length);
  });
  let isClosed = false;
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once('close', (code: number, reason: Buffer) => {
      isClosed = true;
      resolve({ code, reason: reason.toString() });
    }),
  );
  if (autoClose) {
    t.teardown(() => {
      ws.terminate();
      return closed.then(() => undefined);
    });
  }
  await Promise.race([
    once(ws, 'open'),
    closed.then(() => {
      throw new Error('the tunnel endpoint refused the WebSocket');
    }),
  ]);
  const client: RawTunnelClient = {
    ws,
    frames,
    closed,
    isClosed: () => isClosed,
    send(buf) {
      if (ws.readyState === WebSocket.OPEN) ws.send(buf, { binary: true });
    },
    sendFrame(type, streamId, payload, version = PROTOCOL_VERSION) {
      client.send(encodeFrame(type as FrameType, streamId, payload, 0, version));
    },
    async hello(app, timeoutMs) {
      client.sendFrame(FrameType.HELLO, 0, helloPayload(app));
      return client.waitFor(
        (f) => f.type === FrameType.HELLO || f.type === FrameType.GOAWAY,
        timeoutMs,
      );
    },
    waitFor(match, timeoutMs = 5_000) {
      const seen = frames.find(match);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          const i = waiters.indexOf(entry);
          if (i !== -1) waiters.splice(i, 1);
          reject(new Error('no matching frame from the relay in time'));
        }, timeoutMs);
        const entry = {
          match,
          resolve: (f: RawFrame) => {
            clearTimeout(timer);
            resolve(f);
          },
        };
        waiters.push(entry);
      });
    },
    goAway() {
      const f = frames.find((x) => x.type === FrameType.GOAWAY);
      return f === undefined || f.payload.length < 4 ? undefined : decodeCodeMessage(f.payload);
    },
    close() {
      ws.terminate();
    },
  };
  return client;
}
