/**
 * Replays a captured request straight to the local origin (not through the relay), with
 * the same method, path, headers and body, over the origin proxy's connection pool (so
 * its TLS and localhost settings apply). The result is captured like a tunnelled
 * exchange, so it can be inspected the same way.
 */
import { Readable } from 'node:stream';
import type { HeaderPairs } from '../../shared/protocol/tunnel.js';
import { ExchangeCapture, type CapturedResponse } from './capture.js';
import type { OriginCall } from './client.js';
import { BODYLESS_BY_DEFAULT, OriginTimeoutError } from './exchange.js';
import { describeFailure } from './failure.js';
import type { OriginProxy } from './proxy.js';

export interface ReplayResult {
  capture: ExchangeCapture;
  /** The origin's status; 502 when it could not be reached, 504 on timeout. */
  status: number;
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
  error?: string;
}

/**
 * Changes to a replayed request (the inspector's "replay with edits"): each field given
 * replaces the captured one. `headers` replaces all headers, except that the captured
 * Host stays when they have none (Content-Length is always recomputed for the body sent).
 */
export interface ReplayEdits {
  method?: string;
  /** Path and query. */
  path?: string;
  headers?: HeaderPairs;
  body?: Buffer;
}

/** Why `capture` cannot be replayed faithfully (with `edits`), or undefined when it can. */
export function replayRefusal(capture: ExchangeCapture, edits?: ReplayEdits): string | undefined {
  const method = edits?.method ?? capture.request.method;
  if (method.toUpperCase() === 'CONNECT') return 'CONNECT cannot be replayed';
  if ((edits?.headers ?? capture.request.headers).some(([k]) => k.toLowerCase() === 'upgrade')) {
    return 'a WebSocket (upgrade) cannot be replayed';
  }
  if (
    edits?.body === undefined &&
    capture.requestBody.released &&
    capture.requestBody.totalBytes > 0
  ) {
    return 'the request body preview was dropped to keep memory bounded';
  }
  if (edits?.body === undefined && capture.requestBody.truncated) {
    return `the request body (${capture.requestBody.totalBytes} bytes) was larger than the ${capture.requestBody.limit} bytes kept`;
  }
  if (capture.finishedAt === undefined && capture.response === undefined) {
    return 'the request is still arriving';
  }
  return undefined;
}

/** Headers for the replay: the captured ones with a fresh length for the kept body. */
function replayHeaders(headers: HeaderPairs, bodyBytes: number, method: string): HeaderPairs {
  const out = headers.filter(([k]) => {
    const lower = k.toLowerCase();
    return lower !== 'content-length' && lower !== 'transfer-encoding';
  });
  const hadBody = out.length < headers.length;
  if (bodyBytes > 0 || hadBody || !BODYLESS_BY_DEFAULT.has(method)) {
    out.push(['Content-Length', String(bodyBytes)]);
  }
  return out;
}

/**
 * Sends the captured request to `proxy`'s origin again, changed by `options.edits` if
 * given. Never rejects: failures come back as a result with `error`. Call
 * `replayRefusal` first.
 */
export function replayRequest(
  proxy: OriginProxy,
  original: ExchangeCapture,
  options: { timeoutMs?: number; bodyLimitBytes?: number; edits?: ReplayEdits } = {},
): Promise<ReplayResult> {
  const edits = options.edits ?? {};
  const request = {
    ...original.request,
    method: edits.method ?? original.request.method,
    url: edits.path ?? original.request.url,
  };
  const body = edits.body ?? original.requestBody.bytes();
  // Edited headers without a Host keep the captured one (HTTP/1.1 requires it).
  let sent = edits.headers ?? request.headers;
  if (!sent.some(([k]) => k.toLowerCase() === 'host')) {
    const host = request.headers.find(([k]) => k.toLowerCase() === 'host');
    if (host !== undefined) sent = [host, ...sent];
  }
  const headers = replayHeaders(sent, body.length, request.method.toUpperCase());
  const capture = new ExchangeCapture(
    { ...request, headers },
    options.bodyLimitBytes ?? original.responseBody.limit,
  );
  capture.requestBody.add(body);
  const started = performance.now();
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolve) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let bytesOut = 0;
    const done = (status: number, error?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      capture.finishedAt = Date.now();
      const result: ReplayResult = {
        capture,
        status,
        durationMs: Math.round(performance.now() - started),
        bytesIn: body.length,
        bytesOut,
      };
      if (error !== undefined) result.error = error;
      resolve(result);
    };
    const target = proxy.target;
    // The same words as a tunnelled request's failure (failure.ts), from error codes.
    const fail = (err: Error, reused: boolean): void => {
      const failure = describeFailure(err, target, reused, proxy.connectTimeoutMs);
      done(failure.status, `replay to ${target.label} failed: ${failure.message}`);
    };
    let response: CapturedResponse | undefined;
    let call: OriginCall;
    try {
      call = proxy.client.request(
        {
          method: request.method,
          path: request.url,
          headers,
          body: body.length > 0 ? Readable.from([body]) : undefined,
        },
        {
          onHead: (head) => {
            response = { status: head.status, headers: head.headers };
            if (head.statusMessage) response.statusMessage = head.statusMessage;
            capture.response = response;
          },
          onData: (chunk) => {
            bytesOut += chunk.length;
            capture.responseBody.add(chunk);
            return true;
          },
          onEnd: () => done(response?.status ?? 502),
          onError: (err, info) =>
            info.responseStarted && response !== undefined
              ? done(response.status, `the response broke: ${err.message}`)
              : fail(err, info.reused),
        },
      );
    } catch (err) {
      done(502, `cannot replay: ${(err as Error).message}`);
      return;
    }
    timer = setTimeout(() => {
      call.abort(new OriginTimeoutError(`${target.label} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    timer.unref();
  });
}
