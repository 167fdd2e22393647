/**
 * Connections to the origin (`connectOrigin`), and the plain-http one that outlives a
 * failed write. An origin may answer before it has read the request body (a 413 for an
 * upload) and close: our next body write then fails (EPIPE, ECONNRESET) while the
 * answer is still unread in the kernel, and Node fails the socket's readable side too
 * on a write error, answer and all (a 502 instead of the origin's 413). Here a failed
 * write reports success and later writes are dropped: the read side goes on, the client
 * reads the answer, then the origin's end or reset, as usual (a request that got no
 * answer still fails, by its read side). Public stream API only: `_write` and `_writev`.
 * An https origin gets a plain TLS socket (no early answer there, as with Node's client).
 */
import { isIP, Socket, type LookupFunction } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { OriginError, QtErrorCode } from '../../shared/errors.js';

/** Where the origin is and how to connect to it. */
export interface OriginSocketOptions {
  /** Host name or IP literal, without IPv6 brackets. */
  hostname: string;
  port: number;
  lookup?: LookupFunction | undefined;
  /** Happy eyeballs over the addresses `lookup` returns, with this attempt timeout. */
  autoSelectFamilyAttemptTimeoutMs?: number | undefined;
  /** 0 = no limit (TCP connect, and the TLS handshake of an https origin). */
  connectTimeoutMs: number;
  /** An https origin: verify its certificate (or not), trusting these CAs. */
  tls?: { rejectUnauthorized: boolean; ca?: (string | Buffer)[] | undefined } | undefined;
}

/** A connection to the origin; `writeFailed` is only ever set on a plain-http one. */
export type OriginSocket = Socket & { writeFailed?: boolean };

type WriteCallback = (err?: Error | null) => void;

export class EarlyAnswerSocket extends Socket {
  /** A write failed: nothing more is written (and the connection is not reused). */
  writeFailed = false;

  override _write(chunk: unknown, encoding: BufferEncoding, cb: WriteCallback): void {
    if (this.writeFailed) cb();
    else super._write(chunk, encoding, this.noting(cb));
  }

  override _writev(chunks: { chunk: unknown; encoding: BufferEncoding }[], cb: WriteCallback) {
    if (this.writeFailed) cb();
    else super._writev!(chunks, this.noting(cb));
  }

  private noting(cb: WriteCallback): WriteCallback {
    return (err) => {
      if (err) this.writeFailed = true;
      cb();
    };
  }
}

/**
 * A new connection to the origin, connected (and for https, secured) within
 * `connectTimeoutMs` or destroyed with a QT_ERR_ORIGIN_CONNECT_TIMEOUT error.
 */
export function connectOrigin(options: OriginSocketOptions): OriginSocket {
  const { hostname, port, lookup, autoSelectFamilyAttemptTimeoutMs: attemptMs, tls } = options;
  const where = {
    host: hostname,
    port,
    ...(lookup !== undefined ? { lookup } : {}),
    ...(attemptMs !== undefined
      ? { autoSelectFamily: true, autoSelectFamilyAttemptTimeout: attemptMs }
      : {}),
  };
  const socket: OriginSocket =
    tls === undefined
      ? new EarlyAnswerSocket({ allowHalfOpen: false }).connect(where)
      : connectTls({
          ...where,
          // SNI: the target's name (none for an IP), never the visitor's Host.
          ...(isIP(hostname) === 0 ? { servername: hostname } : {}),
          ALPNProtocols: ['http/1.1'],
          rejectUnauthorized: tls.rejectUnauthorized,
          ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
        });
  const ms = options.connectTimeoutMs;
  if (ms > 0) {
    const timer = setTimeout(() => {
      const message = `connect timeout after ${ms} ms`;
      socket.destroy(new OriginError(message, { code: QtErrorCode.ORIGIN_CONNECT_TIMEOUT }));
    }, ms).unref();
    const ready = tls === undefined ? 'connect' : 'secureConnect';
    socket.once(ready, () => clearTimeout(timer)).once('close', () => clearTimeout(timer));
  }
  return socket.setNoDelay(true);
}
