/**
 * Visitor connections: how they end after an error answer, and how many there may be.
 *
 * Every error answer (404, 400, 421, 401/403, 429, 502/503/504, a refused upgrade) ends
 * its connection: `closeSoon` half-closes it after the answer and destroys it a short
 * linger later whether or not the peer cooperates. Waiting for the visitor's FIN let a
 * visitor that never reads and keeps sending hold the socket (and a refused upgrade's
 * tunnel stream) forever; ~2,000 of them exhausted a tunnel's streams or the relay's
 * file descriptors. Requests read from a closing connection are never acted on.
 *
 * `VisitorConnections` caps the visitor connections the relay holds, relay-wide and per
 * client IP, so no single address can exhaust the relay's descriptors.
 */
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { realClock, type Clock } from '../../shared/clock.js';
import { ConcurrencyCounter } from './limits.js';

/** How long a connection may linger after its error answer before it is destroyed. */
export const ERROR_LINGER_MS = 2_000;

const closing = new WeakSet<Duplex>();

/** True once an error answer was given on `socket`: nothing more read from it is acted on. */
export function isClosing(socket: Duplex): boolean {
  return closing.has(socket);
}

/**
 * Ends `socket` after what has been written to it and destroys it `lingerMs` later at
 * the latest, whatever the peer does (no FIN, no reading, more bytes). `clock`: for
 * tests; default the real one.
 */
export function closeSoon(
  socket: Duplex,
  lingerMs = ERROR_LINGER_MS,
  clock: Clock = realClock,
): void {
  if (closing.has(socket)) return;
  closing.add(socket);
  if (socket.destroyed) return;
  const timer = clock.setTimeout(() => socket.destroy(), lingerMs).unref();
  socket.once('close', () => clock.clearTimeout(timer));
}

export interface VisitorConnectionLimits {
  /** Visitor connections the relay holds at once (tunnel clients' included). 0 = no limit. */
  maxConnections: number;
  /** Visitor connections one client IP holds at once. 0 = no limit. */
  maxConnectionsPerIp: number;
}

/** Log a refusal per key at most this often. */
const LOG_EVERY_MS = 10_000;

export class VisitorConnections {
  private readonly limits: VisitorConnectionLimits;
  private readonly perIp: ConcurrencyCounter;
  private readonly log: Logger;
  private total = 0;
  private readonly lastLogged = new Map<string, number>();

  constructor(limits: VisitorConnectionLimits, log: Logger) {
    this.limits = limits;
    this.perIp = new ConcurrencyCounter(limits.maxConnectionsPerIp);
    this.log = log;
  }

  /** Visitor connections open now. */
  get size(): number {
    return this.total;
  }

  /**
   * Counts a new TCP connection, or refuses it beyond a cap: on the plain HTTP listener
   * with a 429/503 answer that says why; on the HTTPS listener (no HTTP before the TLS
   * handshake) by closing it at once. Returns false when refused.
   */
  admit(socket: net.Socket, plainHttp: boolean): boolean {
    const ip = socket.remoteAddress ?? '';
    const { maxConnections } = this.limits;
    let refusal: { status: number; text: string; key: string } | undefined;
    const release =
      maxConnections > 0 && this.total >= maxConnections ? undefined : this.perIp.acquire(ip);
    if (release === undefined) {
      refusal =
        maxConnections > 0 && this.total >= maxConnections
          ? {
              status: 503,
              text: `the relay holds its maximum of ${maxConnections} visitor connections; try again later`,
              key: '*',
            }
          : {
              status: 429,
              text: `too many connections from ${ip} (limit ${this.perIp.limit}); close some and try again`,
              key: ip,
            };
    }
    if (refusal !== undefined) {
      this.logRefusal(refusal.key, ip, refusal.text);
      socket.on('error', () => socket.destroy());
      if (!plainHttp) {
        socket.destroy();
        return false;
      }
      const reason = refusal.status === 429 ? 'Too Many Requests' : 'Service Unavailable';
      const body = `${refusal.status} ${reason}\n\n${refusal.text}\n`;
      socket.end(
        `HTTP/1.1 ${refusal.status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n${body}`,
      );
      closeSoon(socket, 1_000);
      return false;
    }
    this.total++;
    socket.once('close', () => {
      this.total--;
      release?.();
    });
    return true;
  }

  private logRefusal(key: string, ip: string, text: string): void {
    const now = Date.now();
    const last = this.lastLogged.get(key);
    if (last !== undefined && now - last < LOG_EVERY_MS) return;
    if (this.lastLogged.size > 1024) this.lastLogged.clear();
    this.lastLogged.set(key, now);
    this.log.warn({ event: 'connection-refused', remoteAddress: ip }, text);
  }
}
