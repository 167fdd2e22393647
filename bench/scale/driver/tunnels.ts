/**
 * Simulated tunnel clients: real WebSockets to the relay's tunnel endpoint, the real HELLO
 * handshake (`handshake` from cli/tunnel/client.ts, the same MuxSession and keepalive as
 * the CLI), and a tiny in-process responder instead of a local origin.
 */
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import type net from 'node:net';
import WebSocket from 'ws';
import { handshake, localhostAwareLookup } from '../../../cli/tunnel/client.js';
import { realClock, type Clock, type ClockTimer } from '../../../shared/clock.js';
import type { MuxSession } from '../../../shared/mux/session.js';
import type { MuxStream } from '../../../shared/mux/stream.js';
import { tunnelClientWsOptions, wsTransport } from '../../../shared/mux/transport.js';
import { log, sleep } from './ipc.js';
import { Latencies, round, Errors, pool } from './stats.js';

/** Timers for one session that can all be stopped at once (a client that vanishes). */
export class StoppableTimers implements Clock {
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

export interface SimTunnel {
  hostname: string;
  session: MuxSession;
  ws: WebSocket;
  socket: net.Socket | undefined;
  timers: StoppableTimers;
  /** Set when we close it on purpose; a close without it is a drop. */
  closing: boolean;
}

export interface TunnelTarget {
  /** ws://qt.localhost:PORT/_qt/tunnel or wss://… */
  endpoint: string;
  /** The relay's certificate (PEM), for wss. */
  ca?: string;
  sourceAddresses: string[];
}

export let requestsAnswered = 0;

/**
 * Answers every visitor request on a simulated tunnel: 200 with the tunnel's own label
 * as the body, so a visitor can check it reached the tunnel it asked for.
 */
export function respond(stream: MuxStream, label: string): void {
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
export async function openTunnel(target: TunnelTarget, index: number): Promise<SimTunnel> {
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

export type CloseMode = 'close' | 'terminate' | 'vanish';

/**
 * Ends a tunnel: `close` is a clean WebSocket close; `terminate` drops the socket
 * without a close frame; `vanish` stops the client dead (no more reads, pings or
 * answers, the socket stays open) so the relay must find out by its heartbeat. The
 * vanished socket is destroyed after `vanishMs`.
 */
export function endTunnel(t: SimTunnel, mode: CloseMode, vanishMs: number): void {
  t.closing = true;
  if (mode === 'close') t.session.close();
  else if (mode === 'terminate') t.ws.terminate();
  else {
    t.timers.stopAll();
    t.socket?.pause();
    setTimeout(() => t.ws.terminate(), vanishMs).unref();
  }
}

export const tunnels: SimTunnel[] = [];
export let dropped = 0;
export const dropReasons = new Errors();

export function track(t: SimTunnel): void {
  t.session.once('close', (err) => {
    if (!t.closing) {
      dropped++;
      dropReasons.add(err?.message ?? 'closed');
    }
  });
}

export async function openTunnels(args: TunnelTarget & { count: number; concurrency: number }) {
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

export async function closeTunnels() {
  const n = tunnels.length;
  for (const t of tunnels.splice(0)) endTunnel(t, 'close', 0);
  await sleep(200);
  return { closed: n, dropped, dropReasons: dropReasons.toJSON() };
}

export function tunnelStatus() {
  return {
    live: tunnels.filter((t) => !t.session.closed).length,
    dropped,
    dropReasons: dropReasons.toJSON(),
    requestsAnswered,
  };
}
