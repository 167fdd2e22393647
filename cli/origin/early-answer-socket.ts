/**
 * A plain-http origin connection that outlives a failed write, for both origin clients.
 * An origin may answer before it has read the request body (a 413 for an upload) and
 * close: our next body write then fails (EPIPE, ECONNRESET) while the answer is still
 * unread in the kernel, and Node fails the socket's readable side too on a write error,
 * answer and all (a 502 instead of the origin's 413). Here a failed write reports
 * success and later writes are dropped: the read side goes on, the client reads the
 * answer, then the origin's end or reset, as usual (a request that got no answer still
 * fails, by its read side). Public stream API only: `_write` and `_writev`.
 */
import { Socket, type LookupFunction } from 'node:net';
import { errors } from 'undici';

/** Where a plain-http origin is and how to connect to it (both clients). */
export interface OriginSocketOptions {
  /** Host name or IP literal, without IPv6 brackets. */
  hostname: string;
  port: number;
  lookup?: LookupFunction | undefined;
  /** Happy eyeballs over the addresses `lookup` returns, with this attempt timeout. */
  autoSelectFamilyAttemptTimeoutMs?: number | undefined;
  /** 0 = no limit. */
  connectTimeoutMs: number;
}

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
 * A new connection to the origin. Past `connectTimeoutMs` it is destroyed with undici's
 * connect timeout error, so one describer (failure.ts) reads it for both clients.
 */
export function connectOrigin(options: OriginSocketOptions): EarlyAnswerSocket {
  const { hostname, port, lookup, autoSelectFamilyAttemptTimeoutMs: attemptMs } = options;
  const socket = new EarlyAnswerSocket({ allowHalfOpen: false });
  const ms = options.connectTimeoutMs;
  if (ms > 0) {
    const timer = setTimeout(() => {
      socket.destroy(new errors.ConnectTimeoutError(`connect timeout after ${ms} ms`));
    }, ms).unref();
    socket.once('connect', () => clearTimeout(timer)).once('close', () => clearTimeout(timer));
  }
  return socket.setNoDelay(true).connect({
    host: hostname,
    port,
    ...(lookup !== undefined ? { lookup } : {}),
    ...(attemptMs !== undefined
      ? { autoSelectFamily: true, autoSelectFamilyAttemptTimeout: attemptMs }
      : {}),
  });
}
