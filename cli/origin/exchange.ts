/**
 * One visitor request or WebSocket (a mux stream) against the local origin: the OPEN
 * metadata becomes an origin request through the proxy's OriginClient, the body
 * streams both ways with backpressure, the origin's head goes back with
 * `stream.reply()`, and one `request` event reports the outcome.
 *
 * Failure contract with the relay (it turns resets into visitor-facing answers):
 * - before the reply: RESET CONNECT_ERROR (origin refused, unreachable, TLS or HTTP
 *   failure) or TIMEOUT, with a message naming the local target (failure.ts);
 * - after the reply: RESET INTERNAL_ERROR when the origin breaks mid-response, so a
 *   truncated body never looks complete to the visitor;
 * - a visitor that goes away (stream reset or session closed) aborts the origin request.
 *
 * A request that fails on a reused pooled connection before any response byte (the
 * origin closed it as we reused it) is retried once on a fresh connection, replaying
 * the body bytes already sent (kept up to REPLAY_LIMIT_BYTES; beyond, no retry).
 *
 * Over 500 lines: one state machine (ExchangeState) whose transitions are the methods
 * below; the body pump, failure words and host check already live in their own modules.
 */
import { pipeline, type Duplex } from 'node:stream';
import type { ClockTimer } from '../../shared/clock.js';
import { OriginError, QtErrorCode, StreamResetError, errnoCode } from '../../shared/errors.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import {
  endToEndHeaders,
  flattenHeaders,
  type HeaderPairs,
  type RequestHead,
  type ResponseHead,
} from '../../shared/protocol/tunnel.js';
import { BodyPump, BodyStream, REPLAY_LIMIT_BYTES } from './body-pump.js';
import { ExchangeCapture, WebSocketFrameCounter } from './capture.js';
import type { OriginCall, OriginRequest, OriginResponseHead, UpgradeSink } from './client.js';
import type { OriginEvent, QueuedDelivery } from '../events.js';
import { CLOSED_UNANSWERED, describeFailure, messageOf, seconds, type Failure } from './failure.js';
import { HostCheckSniffer, hostnameOf } from './host-check.js';
import type { OriginProxy } from './proxy.js';

/** Methods Node sends without chunked framing unless told: they need a body check. */
export const BODYLESS_BY_DEFAULT = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE']);

/**
 * Where an exchange is. `waiting`: the request is being sent, no response head yet
 * (`retried`: this is the one retry on a fresh connection); `streaming`: the head is
 * replied and the body flows to the visitor; `upgraded`: raw bytes flow both ways after
 * a 101; `answered`: the whole response reached the stream; `failed`: it ended with an
 * error (the stream was reset, or the visitor went away mid-response).
 */
export type ExchangeState =
  | { readonly phase: 'waiting'; readonly retried: boolean }
  | { readonly phase: 'streaming' }
  | { readonly phase: 'upgraded'; readonly socket: Duplex }
  | { readonly phase: 'answered' }
  | { readonly phase: 'failed' };

/** The head (response) timeout: the origin stayed silent too long. */
export class OriginTimeoutError extends OriginError {
  constructor(message: string) {
    super(message, { code: QtErrorCode.ORIGIN_TIMEOUT });
  }
}

/** The body handlers `beginResponse` returns. */
interface ResponseBody {
  data(chunk: Buffer): boolean;
  end(): void;
}

export class Exchange {
  readonly id: number;
  private readonly proxy: OriginProxy;
  private readonly stream: MuxStream;
  private readonly head: RequestHead;
  private readonly startedAt: number;
  private readonly label: string;
  private readonly capture: ExchangeCapture | undefined;
  private state: ExchangeState = { phase: 'waiting', retried: false };
  private headers: HeaderPairs = [];
  private pump: BodyPump | undefined;
  /** The origin request under way, and its number (callbacks of older ones are ignored). */
  private call: OriginCall | undefined;
  private attempt = 0;
  private body: BodyStream | undefined;
  /** The visitor's request body has ended (an upgrade has none). */
  private requestDone = false;
  // The outcome, for the request event.
  private status: number | undefined;
  private error: string | undefined;
  private streamError: Error | undefined;
  private headTimer: ClockTimer | undefined;
  private lastProgressAt = 0;

  constructor(proxy: OriginProxy, stream: MuxStream, head: RequestHead, id: number) {
    this.proxy = proxy;
    this.stream = stream;
    this.head = head;
    this.id = id;
    this.startedAt = proxy.clock.now();
    this.label = proxy.target.label;
    if (proxy.captureBodyBytes !== undefined) {
      this.capture = new ExchangeCapture(
        {
          method: head.method,
          url: head.url,
          httpVersion: head.httpVersion,
          headers: head.headers.map(([k, v]) => [k, v]),
          remoteAddress: head.remoteAddress,
          scheme: head.scheme,
        },
        proxy.captureBodyBytes,
      );
    }
  }

  start(): void {
    const { head, stream, capture } = this;
    const queued = queuedDelivery(head);
    this.proxy.emit({
      event: 'request-start',
      id: this.id,
      method: head.method,
      path: head.url,
      upgrade: head.upgrade,
      ...(queued !== undefined ? { queued } : {}),
      ...(capture !== undefined ? { capture } : {}),
    });
    stream.on('error', (err) => {
      this.streamError = err;
    });
    stream.once('close', () => this.onStreamClose());
    if (head.method.toUpperCase() === 'CONNECT') {
      this.refuse('CONNECT is not supported');
      return;
    }
    if (head.upgrade && !head.headers.some(([k]) => k.toLowerCase() === 'upgrade')) {
      this.refuse('upgrade request without an Upgrade header');
      return;
    }
    this.headers = this.buildHeaders();
    // What the origin gets (Transfer-Encoding may still be added below).
    if (capture !== undefined) capture.request.headers = this.headers;
    if (head.upgrade) {
      // The stream carries raw bytes only after the 101; a GET upgrade has no body.
      this.requestDone = true;
      this.dispatch(false);
      return;
    }
    const pump = new BodyPump(
      stream,
      REPLAY_LIMIT_BYTES,
      () => {
        this.lastProgressAt = this.proxy.clock.now();
      },
      capture?.requestBody,
    );
    this.pump = pump;
    stream.once('end', () => {
      this.requestDone = true;
    });
    const hasLength = this.headers.some(([k]) => k.toLowerCase() === 'content-length');
    if (!hasLength && BODYLESS_BY_DEFAULT.has(head.method.toUpperCase())) {
      // These methods' bodies are framed only by a length or an explicit chunked
      // encoding, and the relay removed Transfer-Encoding (hop-by-hop): wait for the
      // first body byte or the end (immediate for a body-less request) to choose.
      pump.start((hasBody) => {
        if (hasBody) this.headers.push(['Transfer-Encoding', 'chunked']);
        else this.pump = undefined;
        this.dispatch(false);
      });
    } else {
      pump.start();
      this.dispatch(false);
    }
  }

  /** Ends the exchange from outside (proxy closing). */
  abort(reason: string): void {
    if (!this.stream.destroyed) {
      this.error ??= reason;
      this.stream.reset(ErrorCode.CANCEL, reason);
    }
    this.destroyOrigin();
  }

  private buildHeaders(): HeaderPairs {
    const { head, proxy } = this;
    // The relay already removed hop-by-hop headers; do it again rather than trust the wire.
    let pairs = endToEndHeaders(flattenHeaders(head.headers), head.upgrade);
    if (head.upgrade) {
      // An upgrade is sent without a body (the stream carries bytes only after a 101):
      // never a length without its bytes, whatever a relay sends.
      pairs = pairs.filter(([k]) => {
        const lower = k.toLowerCase();
        return lower !== 'content-length' && lower !== 'transfer-encoding';
      });
    }
    const mode = proxy.hostHeaderMode;
    const value =
      mode === 'preserve' ? undefined : mode === 'rewrite' ? proxy.target.hostHeader : mode.value;
    const at = pairs.findIndex(([k]) => k.toLowerCase() === 'host');
    if (value === undefined) {
      if (at < 0) pairs.unshift(['Host', proxy.target.hostHeader]);
      return pairs;
    }
    const out: HeaderPairs = [];
    for (const [i, pair] of pairs.entries()) {
      if (i === at) out.push([pair[0], value]);
      else if (pair[0].toLowerCase() !== 'host') out.push(pair);
    }
    if (at < 0) out.unshift(['Host', value]);
    return out;
  }

  /** Sends the request (again, on a fresh connection, when `fresh`). */
  private dispatch(fresh: boolean): void {
    if (this.stream.destroyed) return;
    const { head, proxy } = this;
    const attempt = ++this.attempt;
    const live = (): boolean => attempt === this.attempt;
    const request: OriginRequest = { method: head.method, path: head.url, headers: this.headers };
    if (fresh) request.fresh = true;
    this.body?.destroy();
    this.body = this.pump === undefined ? undefined : new BodyStream();
    request.body = this.body;
    let body: ResponseBody | undefined;
    const sink: UpgradeSink = {
      onHead: (res) => {
        if (!live()) return;
        body = this.beginResponse(res);
        // The visitor is gone: stop reading (the body may never end, e.g. SSE).
        if (body === undefined) this.call?.abort();
      },
      onData: (chunk) => (live() && body !== undefined ? body.data(chunk) : true),
      onEnd: () => {
        if (!live()) return;
        body?.end();
        // Answered before the whole body was sent (e.g. a 413): the client closed the
        // connection; let the rest of the visitor's body drain into nothing.
        if (!this.requestDone) this.pump?.discard();
      },
      onError: (err, info) => {
        // Once response bytes came, the origin processed the request: never resent.
        if (live()) this.onAttemptError(err, info.reused && !info.responseStarted);
      },
      onUpgrade: (res, socket) => {
        if (live()) this.onUpgrade(res, socket);
        else socket.destroy();
      },
    };
    try {
      const upgrade = head.upgrade
        ? this.headers.find(([k]) => k.toLowerCase() === 'upgrade')?.[1]
        : undefined;
      this.call =
        upgrade === undefined
          ? proxy.client.request(request, sink)
          : proxy.client.upgrade(request, upgrade, sink);
    } catch (err) {
      // Both clients check method, path and header bytes before sending anything.
      this.refuse(`cannot forward the request to ${this.label}: ${messageOf(err)}`);
      return;
    }
    this.armHeadTimer();
    if (this.body !== undefined) this.pump?.attach(this.body, fresh);
  }

  private armHeadTimer(): void {
    const ms = this.proxy.responseHeadTimeoutMs;
    const clock = this.proxy.clock;
    clock.clearTimeout(this.headTimer);
    this.lastProgressAt = clock.now();
    if (ms <= 0) return;
    const check = (): void => {
      if (this.state.phase !== 'waiting') return;
      const idleMs = clock.now() - this.lastProgressAt;
      if (idleMs < ms) {
        this.headTimer = clock.setTimeout(check, ms - idleMs).unref();
        return;
      }
      this.call?.abort(
        new OriginTimeoutError(
          `${this.label} did not answer within ${seconds(ms)} (response timeout)`,
        ),
      );
    };
    this.headTimer = clock.setTimeout(check, ms).unref();
  }

  private clearTimers(): void {
    this.proxy.clock.clearTimeout(this.headTimer);
  }

  // ---- origin events ----------------------------------------------------------------

  /**
   * The attempt under way failed. `reusedUnanswered`: it ran on a pooled connection and
   * no response byte had arrived, so the origin may have closed it as we reused it.
   */
  private onAttemptError(err: Error, reusedUnanswered: boolean): void {
    if (this.error !== undefined) return;
    this.clearTimers();
    const { state } = this;
    switch (state.phase) {
      case 'streaming':
        this.failMidResponse(err);
        return;
      case 'answered':
        // The origin answered in full without taking the whole request body (e.g. 413)
        // and closed: let the rest of the visitor's body drain into nothing.
        if (!this.requestDone) this.pump?.discard();
        return;
      case 'upgraded': // the socket reports its own errors
      case 'failed':
        return;
    }
    if (this.stream.destroyed) return;
    if (
      !state.retried &&
      reusedUnanswered &&
      CLOSED_UNANSWERED.has(errnoCode(err) ?? '') &&
      (this.pump === undefined || this.pump.replayable)
    ) {
      // The origin closed an idle keep-alive connection as we reused it: nothing was
      // processed, so send the request again on a connection of its own.
      this.state = { phase: 'waiting', retried: true };
      this.pump?.detach();
      this.proxy.client.dropIdle();
      this.dispatch(true);
      return;
    }
    const { proxy } = this;
    const failure = describeFailure(err, proxy.target, reusedUnanswered, proxy.connectTimeoutMs);
    if (failure.warning !== undefined) proxy.noteUnreachable(failure.warning);
    this.fail(failure);
  }

  /**
   * The origin's response head arrived: reply on the stream and return the body's
   * handlers (undefined when the visitor is already gone). The body moves with
   * backpressure; the same handler checks the first body bytes for a dev server's host
   * rejection, which runs on nearly every response until a hint has been shown.
   */
  private beginResponse(res: OriginResponseHead): ResponseBody | undefined {
    this.clearTimers();
    this.state = { phase: 'streaming' };
    this.status = res.status;
    this.proxy.noteReachable();
    this.pump?.stopReplay();
    const { stream, capture } = this;
    if (stream.destroyed) return undefined;
    this.replyHead(res, false);
    stream.once('finish', () => {
      if (this.state.phase !== 'streaming') return;
      this.state = { phase: 'answered' };
      // A refused upgrade answered normally: the stream may still get the visitor's
      // FIN; consume it so the stream can close.
      if (this.head.upgrade) stream.resume();
    });
    let sniffer =
      !this.proxy.hostHintSent &&
      res.status < 500 &&
      !res.headers.some(([k]) => k.toLowerCase() === 'content-encoding')
        ? new HostCheckSniffer()
        : undefined;
    const sniff = (chunk: Buffer | undefined): void => {
      const verdict = sniffer?.push(chunk);
      if (verdict === undefined) return;
      sniffer = undefined;
      if (verdict !== 'none') this.proxy.hostRejected(verdict, hostnameOf(this.sentHost()));
    };
    // One 'drain' wait at a time: one socket read can hold many chunks of a chunked body,
    // and each of them still arrives after the first one filled the stream.
    let waiting = false;
    const resume = (): void => {
      waiting = false;
      this.call?.resume();
    };
    return {
      data: (chunk: Buffer) => {
        capture?.responseBody.add(chunk);
        if (sniffer !== undefined) sniff(chunk);
        if (stream.write(chunk)) return true;
        if (!waiting) stream.once('drain', resume);
        waiting = true;
        return false;
      },
      end: () => {
        if (sniffer !== undefined) sniff(undefined);
        stream.end();
      },
    };
  }

  private onUpgrade(res: OriginResponseHead, socket: Duplex): void {
    this.clearTimers();
    this.state = { phase: 'upgraded', socket };
    this.status = res.status;
    this.proxy.noteReachable();
    const { stream, proxy } = this;
    if (stream.destroyed) {
      socket.destroy();
      return;
    }
    proxy.upgradedSockets.add(socket);
    socket.once('close', () => proxy.upgradedSockets.delete(socket));
    // Mirror TCP half-close: the origin's FIN becomes the stream's FIN and vice versa,
    // instead of Node ending our side as soon as the origin ends its own.
    (socket as Duplex & { allowHalfOpen: boolean }).allowHalfOpen = true;
    this.replyHead(res, true);
    socket.on('error', (err) => this.failTunnel(err));
    pipeline(socket, stream, (err) => {
      if (err) this.failTunnel(err);
    });
    pipeline(stream, socket, (err) => {
      if (err) this.failTunnel(err);
    });
    const { capture } = this;
    if (capture !== undefined) {
      // Watchers only, added after the pipes: they never change the flow.
      const toOrigin = new WebSocketFrameCounter();
      const toVisitor = new WebSocketFrameCounter();
      capture.upgraded = { toOrigin, toVisitor };
      socket.on('data', (chunk: Buffer) => toVisitor.push(chunk));
      stream.on('data', (chunk: Buffer) => toOrigin.push(chunk));
    }
  }

  /** Replies the origin's head on the stream (and keeps a copy in the capture). */
  private replyHead(res: OriginResponseHead, upgrade: boolean): void {
    const headers = endToEndHeaders(flattenHeaders(res.headers), upgrade);
    const reply: ResponseHead = { status: res.status, headers };
    if (res.statusMessage) reply.statusMessage = res.statusMessage;
    this.stream.reply({ ...reply });
    if (this.capture !== undefined) this.capture.response = { ...reply, headers: [...headers] };
  }

  private sentHost(): string {
    return this.headers.find(([k]) => k.toLowerCase() === 'host')?.[1] ?? '';
  }

  // ---- endings ----------------------------------------------------------------------

  /** Fails before the reply: reset the stream with a reason the relay can show. */
  private fail(failure: Failure): void {
    this.state = { phase: 'failed' };
    this.error ??= failure.message;
    this.status ??= failure.status;
    this.pump?.stop();
    this.destroyOrigin();
    this.stream.reset(failure.wireCode, failure.message);
  }

  /** A request that cannot be forwarded at all (a 502 for the visitor). */
  private refuse(message: string): void {
    this.fail({ wireCode: ErrorCode.PROTOCOL_ERROR, message, status: 502 });
  }

  /** The origin broke after the reply: abort, so the visitor never sees a clean end. */
  private failMidResponse(err: Error): void {
    if (this.state.phase === 'failed') return;
    this.state = { phase: 'failed' };
    this.pump?.stop();
    if (this.stream.destroyed) {
      // The visitor went away first; onStreamClose records that.
      this.destroyOrigin();
      return;
    }
    const message = `${this.label} failed mid-response: ${messageOf(err)}`;
    this.error ??= message;
    this.destroyOrigin();
    this.stream.reset(ErrorCode.INTERNAL_ERROR, message);
  }

  private failTunnel(err: Error): void {
    if (!this.stream.destroyed) {
      const message = `WebSocket connection to ${this.label} failed: ${messageOf(err)}`;
      this.error ??= message;
      this.stream.reset(ErrorCode.INTERNAL_ERROR, message);
    }
    if (this.state.phase === 'upgraded') this.state.socket.destroy();
  }

  private destroyOrigin(): void {
    this.clearTimers();
    this.call?.abort();
    this.body?.destroy();
    if (this.state.phase === 'upgraded') this.state.socket.destroy();
  }

  private onStreamClose(): void {
    const { stream } = this;
    const clean = stream.readableEnded && stream.writableFinished;
    if (!clean) {
      if (this.error === undefined) {
        const err = this.streamError;
        if (err !== undefined && !(err instanceof StreamResetError)) {
          this.error = `the tunnel connection closed (${err.message})`;
        } else {
          this.error =
            this.state.phase === 'answered'
              ? 'the visitor went away before the end of the request body'
              : 'the visitor went away';
        }
        this.status ??= 499;
      }
      this.pump?.stop();
      if (this.state.phase !== 'answered' || !this.requestDone) this.destroyOrigin();
    }
    this.clearTimers();
    this.finish();
  }

  private finish(): void {
    this.proxy.forget(this);
    const event: OriginEvent = {
      event: 'request',
      id: this.id,
      method: this.head.method,
      path: this.head.url,
      status: this.status ?? 502,
      durationMs: Math.max(0, Math.round(this.proxy.clock.now() - this.startedAt)),
      bytesIn: this.stream.bytesReceived,
      bytesOut: this.stream.bytesSent,
      upgrade: this.head.upgrade,
    };
    if (this.error !== undefined) event.error = this.error;
    const queued = queuedDelivery(this.head);
    if (queued !== undefined) event.queued = queued;
    if (this.capture !== undefined) {
      this.capture.finishedAt = Date.now();
      event.capture = this.capture;
    }
    this.proxy.emit(event);
  }
}

/** The relay's store-and-forward marks on a request head, if well-formed. */
function queuedDelivery(head: RequestHead): QueuedDelivery | undefined {
  const q = (head as { queued?: unknown }).queued;
  if (typeof q !== 'object' || q === null) return undefined;
  const { deliveryId, queuedAt } = q as Record<string, unknown>;
  if (typeof deliveryId !== 'string' || typeof queuedAt !== 'string') return undefined;
  return { deliveryId: deliveryId.slice(0, 200), queuedAt: queuedAt.slice(0, 100) };
}
