/**
 * Store-and-forward delivery (relay/queue/webhook-queue.ts runs the loop): one kept
 * request sent over a tunnel stream with its delivery id, and what came of it; and the
 * bounded read of a request body that is being kept.
 */
import type { Readable } from 'node:stream';
import { errnoCode, StreamResetError } from '../../shared/errors.js';
import type { MuxSession } from '../../shared/mux/session.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import { isResponseHead, type RequestHead } from '../../shared/protocol/tunnel.js';
import type { QueueItem, TunnelQueueDir } from './disk.js';

/** What one delivery attempt came to. */
export type Outcome =
  | { kind: 'delivered'; status: number }
  | { kind: 'failed'; message: string; status?: number }
  /** The connection went away (or refused the stream): not the app's fault, no attempt used. */
  | { kind: 'offline'; message: string };

/**
 * Sends `item` over `session` once and reports how it went: delivered (any answer below
 * 500), failed (5xx, a reset, no answer within `timeoutMs`: an attempt used), or offline
 * (the connection went or refused the stream: not the app's fault, no attempt used).
 */
export async function deliverOnce(
  session: MuxSession,
  q: TunnelQueueDir,
  item: QueueItem,
  opts: {
    timeoutMs: number;
    /** Marks the head as forwarded, for a connection held by another relay. */
    wrapHead?: ((head: Record<string, unknown>) => Record<string, unknown>) | undefined;
  },
): Promise<Outcome> {
  const { wrapHead } = opts;
  let body: Buffer;
  try {
    body = await q.readBody(item);
  } catch (err) {
    return {
      kind: 'failed',
      message: `the stored request is unreadable: ${(err as Error).message}`,
    };
  }
  const { meta } = item;
  const head: RequestHead = {
    method: meta.method,
    url: meta.url,
    httpVersion: meta.httpVersion,
    headers: [
      ...meta.headers,
      ['X-Quick-Tunnel-Delivery-Id', meta.id],
      ['X-Quick-Tunnel-Queued-At', meta.queuedAt],
    ],
    upgrade: false,
    remoteAddress: meta.remoteAddress,
    scheme: meta.scheme,
    queued: { deliveryId: meta.id, queuedAt: meta.queuedAt },
  };
  let stream;
  try {
    const meta = head as unknown as Record<string, unknown>;
    stream = session.openStream(wrapHead !== undefined ? wrapHead(meta) : meta);
  } catch (err) {
    return { kind: 'offline', message: (err as Error).message };
  }
  const s = stream;
  return new Promise<Outcome>((resolve) => {
    let status: number | undefined;
    let settled = false;
    const settle = (o: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(o);
    };
    const timer = setTimeout(() => {
      s.reset(ErrorCode.TIMEOUT, 'no response to a queued delivery');
      settle({
        kind: 'failed',
        message: `no response within ${Math.round(opts.timeoutMs / 1000)} s`,
      });
    }, opts.timeoutMs);
    timer.unref();
    s.once('reply', (meta: unknown) => {
      if (!isResponseHead(meta)) {
        s.reset(ErrorCode.PROTOCOL_ERROR, 'invalid response head');
        settle({ kind: 'failed', message: 'the tunnel client sent an invalid response head' });
        return;
      }
      status = meta.status;
      clearTimeout(timer);
    });
    s.on('data', () => {}); // the answer's body is not kept
    s.once('end', () => {
      if (status === undefined) settle({ kind: 'failed', message: 'ended without a response' });
      else if (status >= 500) settle({ kind: 'failed', message: `HTTP ${status}`, status });
      else settle({ kind: 'delivered', status });
    });
    s.on('error', (err) => {
      if (status !== undefined && status < 500) {
        settle({ kind: 'delivered', status });
        return;
      }
      const code = errnoCode(err);
      if (
        (err instanceof StreamResetError && err.resetCode === ErrorCode.REFUSED_STREAM) ||
        code === 'QT_ERR_SESSION_CLOSED' ||
        code === 'QT_ERR_CONNECTION' ||
        code === 'QT_ERR_HEARTBEAT'
      ) {
        // Counted as no attempt: the connection went, not the app.
        settle({ kind: 'offline', message: err.message });
        return;
      }
      settle(
        status !== undefined
          ? { kind: 'failed', message: `HTTP ${status}`, status }
          : { kind: 'failed', message: err.message },
      );
    });
    s.once('close', () => {
      if (status === undefined) settle({ kind: 'offline', message: 'the stream closed' });
      else if (status < 500) settle({ kind: 'delivered', status });
      else settle({ kind: 'failed', message: `HTTP ${status}`, status });
    });
    s.end(body);
  });
}

/** Reads a request body up to `max` bytes; undefined when it is larger (reading stops). */
export function readBody(req: Readable, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > max) {
        cleanup();
        req.pause();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    // 'end' comes before 'close' (and cleans up): a close first means the body was cut.
    const onClose = (): void =>
      onError(new Error('the sender went away before the end of the body'));
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}
