/** Visitor WebSockets through one tunnel, echoing. */
import type http from 'node:http';
import WebSocket from 'ws';
import { localhostAwareLookup } from '../../../cli/tunnel/client.js';
import { emit, log } from './ipc.js';
import { Latencies, round, Errors, pool } from './stats.js';

export interface Echoer {
  ws: WebSocket;
  /** Sends one message and resolves with its round trip in ms (rejects on a bad echo). */
  roundTrip(payload: Buffer, timeoutMs: number): Promise<number>;
}

export function openVisitorWs(
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

export interface WsFanoutArgs {
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
export async function wsFanout(a: WsFanoutArgs) {
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
