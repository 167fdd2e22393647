/**
 * A mux session: many streams over one frame transport (one WebSocket).
 *
 * - Handshake: the client sends HELLO (protocol version, its window/limits, an app
 *   payload); the server answers HELLO with its own, or GOAWAY with a reason. No
 *   stream may open before that.
 * - Stream ids: odd from the client, even from the server, increasing, never reused.
 * - Keepalive: a PING every `keepAliveIntervalMs`; a peer that sends nothing at all for
 *   `keepAliveTimeoutMs` is declared dead. RTT of the last PONG is in `rttMs`.
 * - Any malformed frame closes this session (GOAWAY PROTOCOL_ERROR, one log line);
 *   it never throws out of the event handlers.
 *
 * Over 500 lines on purpose: one class, because the frame loop (dispatch) drives the
 * handshake, the stream table, flow control, DATA gathering, keepalive and GOAWAY, and
 * all of them share the session's state (yamux's session.go is one file for the same
 * reason). Per-stream state is in stream.ts, the wire format in ../protocol/frame.ts;
 * ~80 lines here are MuxOptions' documentation.
 */
import { EventEmitter } from 'node:events';
import { realClock, type Clock, type ClockTimer } from '../clock.js';
import {
  AuthError,
  ConnectionError,
  ProtocolError,
  QuickTunnelError,
  StreamResetError,
  type QtErrorCode,
} from '../errors.js';
import { IdTable } from '../id-table.js';
import {
  ErrorCode,
  FRAME_HEADER_SIZE,
  FRAME_HEADROOM,
  FrameType,
  PROTOCOL_VERSION,
  decodeCodeMessage,
  decodeFrameAt,
  encodeCodeMessage,
  encodeFrame,
  writeFrame,
  FrameBufferPool,
  encodeU32,
  errorCodeName,
  type Frame,
} from '../protocol/frame.js';
import { isHelloMessage, parseJson, type HelloMessage } from '../protocol/messages.js';
import { MuxStream } from './stream.js';
import type { FrameTransport } from './transport.js';

export type Role = 'client' | 'server';

/** Minimal logger (pino-compatible subset). */
export interface MuxLogger {
  warn(obj: object, msg: string): void;
}

export interface MuxOptions {
  /** Receive window per stream in bytes. Default 256 KiB. */
  windowBytes?: number;
  /** Concurrent streams the peer may open towards us. Default 1000. */
  maxStreams?: number;
  /** Largest DATA payload we accept (and the largest we send). Default 64 KiB. */
  maxFrameBytes?: number;
  /** Largest OPEN/REPLY/HELLO metadata payload. Default 64 KiB. */
  maxMetadataBytes?: number;
  /** Socket bytes queued before streams pause sending. Default 1 MiB. */
  sendHighWaterBytes?: number;
  /** PING period (and how often silence is checked). Default 4 s. 0 disables keepalive. */
  keepAliveIntervalMs?: number;
  /** Silence after which the peer is declared dead: detection within 10-14 s. Default 10 s. */
  keepAliveTimeoutMs?: number;
  /**
   * Let the peer drive the heartbeat: skip our PING while the peer's own PINGs keep
   * arriving (one within 1.5 intervals); a peer that does not PING still gets ours.
   * Dead-peer detection is unchanged (it only depends on silence). The relay sets it: its
   * clients PING anyway, and its own PINGs doubled the heartbeat frames it handles (at
   * 10,000 idle tunnels: 10,000 frames/s instead of 5,000). Default false.
   */
  keepAlivePassive?: boolean;
  /** How long the client waits for the server's HELLO. Default 10 s. */
  handshakeTimeoutMs?: number;
  /**
   * Hard cap on bytes queued to a peer that does not read (control frames included):
   * past it the session is closed (QT_ERR_PEER_STALLED). Default 32 MiB.
   */
  maxQueuedBytes?: number;
  /**
   * Receive-window auto-tuning: a stream whose consumer keeps up while the window is
   * what limits it (half a window consumed within `windowGrowthMs`) doubles its window,
   * up to `maxWindowBytes` (default 4 MiB), as long as the session's extra window stays
   * within `windowBudgetBytes` (default 32 MiB). So a fast transfer isn't held to one
   * 256 KiB window per round trip, and memory stays bounded by
   * streams × windowBytes + windowBudgetBytes. `maxWindowBytes` = windowBytes turns it off.
   */
  maxWindowBytes?: number;
  windowBudgetBytes?: number;
  windowGrowthMs?: number;
  /** Version byte to speak (tests only). */
  protocolVersion?: number;
  /**
   * Time for keepalive, the handshake timeout, RTT and window tuning (shared/clock.ts).
   * Default the real clock; tests pass a fake one.
   */
  clock?: Clock;
  log?: MuxLogger;
}

const DEFAULTS = {
  windowBytes: 256 * 1024,
  maxStreams: 1000,
  maxFrameBytes: 64 * 1024,
  maxMetadataBytes: 64 * 1024,
  sendHighWaterBytes: 1024 * 1024,
  keepAliveIntervalMs: 4_000,
  keepAliveTimeoutMs: 10_000,
  keepAlivePassive: false,
  handshakeTimeoutMs: 10_000,
  maxQueuedBytes: 32 * 1024 * 1024,
  maxWindowBytes: 4 * 1024 * 1024,
  windowBudgetBytes: 32 * 1024 * 1024,
  windowGrowthMs: 5,
};

/**
 * DATA frames of at least this size are built in pooled buffers (see FrameBufferPool);
 * smaller ones come from Node's own 8 KiB slab pool anyway.
 */
const POOLED_FRAME_MIN_BYTES = 16 * 1024;
/**
 * @internal One pool per process (exported for tests) for frames up to the default
 * frame size: 64 buffers (4 MiB) is what a few sessions at their send high-water mark
 * (1 MiB each) keep in flight.
 */
export const dataFramePool = new FrameBufferPool(
  FRAME_HEADER_SIZE + DEFAULTS.maxFrameBytes,
  64,
  FRAME_HEADROOM,
);

/** Decides what a server answers to a client's HELLO app payload. Throwing rejects. */
export type HelloHandler = (app: unknown, session: MuxSession) => unknown | Promise<unknown>;

/** Thrown by a HelloHandler to refuse a client with a specific wire code. */
export class HelloRejection extends QuickTunnelError {
  readonly wireCode: number;
  constructor(wireCode: number, message: string, code: QtErrorCode = 'QT_ERR_REJECTED') {
    super(code, message);
    this.wireCode = wireCode;
  }
}

interface SessionEvents {
  stream: [MuxStream];
  close: [Error | undefined];
  goaway: [number, string];
  ready: [unknown];
  rtt: [number];
}

export class MuxSession extends EventEmitter<SessionEvents> {
  readonly role: Role;
  /** Peer's HELLO app payload (server side) or the server's answer (client side). */
  peerApp: unknown;
  /** Round-trip time of the last PING, in ms (undefined until one completes). */
  rttMs: number | undefined;
  /** Set once the handshake completed. */
  ready = false;
  closed = false;
  /** Why the session closed (undefined for a clean close). */
  closeError: Error | undefined;
  /** We sent or received GOAWAY: no new streams. */
  goingAway = false;
  receivedGoAway = false;

  /** @internal */ peerMaxFrameBytes = DEFAULTS.maxFrameBytes;
  private peerWindowBytes = DEFAULTS.windowBytes;
  private peerMaxStreams = DEFAULTS.maxStreams;

  private readonly opts: Required<Omit<MuxOptions, 'log' | 'clock' | 'protocolVersion'>>;
  private readonly version: number;
  /** @internal */ readonly clock: Clock;
  /** Window granted beyond the initial size, over all streams (auto-tuning budget). */
  private windowExtraBytes = 0;
  private readonly log: MuxLogger | undefined;
  private readonly transport: FrameTransport;
  private readonly streams = new IdTable<MuxStream>();
  private nextStreamId: number;
  private lastPeerStreamId = 0;
  private localOpenCount = 0;
  private peerOpenCount = 0;
  private readonly drainQueue: MuxStream[] = [];
  /** Streams holding gathered small DATA slices until the turn ends (MuxStream.sendSlice). */
  private gathering: MuxStream[] = [];
  private keepAliveHandle: ClockTimer | undefined;
  private handshakeHandle: ClockTimer | undefined;
  private lastReceivedAt: number;
  private pingSentAt: number | undefined;
  private pingSeq = 0;
  /** When the peer's last PING arrived (keepAlivePassive). */
  private peerPingAt: number | undefined;
  private helloHandler: HelloHandler | undefined;
  private helloSeen = false;
  private readyResolvers:
    { resolve: (app: unknown) => void; reject: (err: Error) => void } | undefined;
  private idleResolvers: (() => void)[] = [];

  /** Bytes of DATA sent/received over the whole session. */
  bytesSent = 0;
  bytesReceived = 0;

  constructor(transport: FrameTransport, role: Role, options: MuxOptions = {}) {
    super();
    this.role = role;
    this.transport = transport;
    this.opts = {
      windowBytes: options.windowBytes ?? DEFAULTS.windowBytes,
      maxStreams: options.maxStreams ?? DEFAULTS.maxStreams,
      maxFrameBytes: options.maxFrameBytes ?? DEFAULTS.maxFrameBytes,
      maxMetadataBytes: options.maxMetadataBytes ?? DEFAULTS.maxMetadataBytes,
      sendHighWaterBytes: options.sendHighWaterBytes ?? DEFAULTS.sendHighWaterBytes,
      keepAliveIntervalMs: options.keepAliveIntervalMs ?? DEFAULTS.keepAliveIntervalMs,
      keepAliveTimeoutMs: options.keepAliveTimeoutMs ?? DEFAULTS.keepAliveTimeoutMs,
      keepAlivePassive: options.keepAlivePassive ?? DEFAULTS.keepAlivePassive,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULTS.handshakeTimeoutMs,
      maxQueuedBytes: options.maxQueuedBytes ?? DEFAULTS.maxQueuedBytes,
      maxWindowBytes: Math.max(
        options.maxWindowBytes ?? DEFAULTS.maxWindowBytes,
        options.windowBytes ?? DEFAULTS.windowBytes,
      ),
      windowBudgetBytes: options.windowBudgetBytes ?? DEFAULTS.windowBudgetBytes,
      windowGrowthMs: options.windowGrowthMs ?? DEFAULTS.windowGrowthMs,
    };
    this.version = options.protocolVersion ?? PROTOCOL_VERSION;
    this.clock = options.clock ?? realClock;
    this.log = options.log;
    this.nextStreamId = role === 'client' ? 1 : 2;
    this.lastReceivedAt = this.clock.now();
    transport.onFrame = (buf) => this.onFrame(buf);
    transport.onClose = (err) =>
      this.shutdown(
        err === undefined && this.ready
          ? undefined
          : new ConnectionError(`connection lost${err ? `: ${err.message}` : ''}`, { cause: err }),
        false,
      );
  }

  /** The largest frame this session can receive; use as ws `maxPayload`. */
  static maxMessageBytes(options: MuxOptions = {}): number {
    return (
      FRAME_HEADER_SIZE +
      Math.max(
        options.maxFrameBytes ?? DEFAULTS.maxFrameBytes,
        options.maxMetadataBytes ?? DEFAULTS.maxMetadataBytes,
      )
    );
  }

  get streamCount(): number {
    return this.streams.size;
  }

  // ---- handshake ---------------------------------------------------------------

  /** Client: sends HELLO and resolves with the server's app answer. */
  connect(app: unknown): Promise<unknown> {
    if (this.role !== 'client') throw new Error('connect() is for the client side');
    const done = new Promise<unknown>((resolve, reject) => {
      this.readyResolvers = { resolve, reject };
    });
    this.handshakeHandle = this.clock
      .setTimeout(() => {
        this.shutdown(
          new ConnectionError(
            `the relay did not answer the handshake within ${this.opts.handshakeTimeoutMs} ms`,
            { code: 'QT_ERR_HANDSHAKE_TIMEOUT' },
          ),
          true,
        );
      }, this.opts.handshakeTimeoutMs)
      .unref();
    this.sendHello(app);
    done.catch(() => {}); // the caller gets the rejection; never an unhandled one
    return done;
  }

  /** Server: answers the client's HELLO with whatever `handler` returns. */
  accept(handler: HelloHandler): Promise<unknown> {
    if (this.role !== 'server') throw new Error('accept() is for the server side');
    this.helloHandler = handler;
    const done = new Promise<unknown>((resolve, reject) => {
      this.readyResolvers = { resolve, reject };
    });
    this.handshakeHandle = this.clock
      .setTimeout(() => {
        this.shutdown(
          new ConnectionError('client sent no HELLO in time', { code: 'QT_ERR_HANDSHAKE_TIMEOUT' }),
          true,
        );
      }, this.opts.handshakeTimeoutMs)
      .unref();
    done.catch(() => {}); // the caller gets the rejection; never an unhandled one
    return done;
  }

  private sendHello(app: unknown): void {
    const hello: HelloMessage = {
      protocol: this.version,
      windowBytes: this.opts.windowBytes,
      maxStreams: this.opts.maxStreams,
      maxFrameBytes: this.opts.maxFrameBytes,
      app,
    };
    this.sendControl(FrameType.HELLO, 0, Buffer.from(JSON.stringify(hello)));
  }

  private onHello(frame: Frame): void {
    if (this.helloSeen) throw new ProtocolError('second HELLO on one session');
    this.helloSeen = true;
    const msg = parseJson(frame.payload);
    if (!isHelloMessage(msg)) throw new ProtocolError('HELLO payload is not a valid hello message');
    this.peerWindowBytes = msg.windowBytes;
    this.peerMaxStreams = msg.maxStreams;
    this.peerMaxFrameBytes = Math.min(msg.maxFrameBytes, this.opts.maxFrameBytes);
    this.peerApp = msg.app;
    if (this.role === 'client') {
      this.becomeReady(msg.app);
      return;
    }
    const handler = this.helloHandler;
    if (handler === undefined)
      throw new ProtocolError('HELLO arrived before the server called accept()');
    this.helloHandler = undefined; // used once: don't keep its closure for the session's life
    Promise.resolve()
      .then(() => handler(msg.app, this))
      .then(
        (answer) => {
          if (this.closed) return;
          this.sendHello(answer);
          this.becomeReady(msg.app);
        },
        (err: unknown) => {
          if (this.closed) return;
          const wireCode = err instanceof HelloRejection ? err.wireCode : ErrorCode.INTERNAL_ERROR;
          const message = err instanceof Error ? err.message : String(err);
          this.goAway(wireCode, message);
          this.shutdown(err instanceof Error ? err : new Error(message), false);
        },
      );
  }

  private becomeReady(app: unknown): void {
    this.ready = true;
    this.clock.clearTimeout(this.handshakeHandle);
    this.handshakeHandle = undefined; // let the spent timer go
    this.startKeepAlive();
    this.readyResolvers?.resolve(app);
    this.readyResolvers = undefined;
    this.emit('ready', app);
  }

  // ---- streams -------------------------------------------------------------------

  /**
   * Opens a stream carrying `meta` (JSON). Throws if the session is not ready, is going
   * away, or the peer's stream limit is reached (callers turn that into a 503).
   */
  openStream(meta: Record<string, unknown> = {}): MuxStream {
    if (this.closed)
      throw new ConnectionError('session is closed', { code: 'QT_ERR_SESSION_CLOSED' });
    if (!this.ready)
      throw new ConnectionError('session handshake not complete', { code: 'QT_ERR_NOT_READY' });
    if (this.goingAway || this.receivedGoAway) {
      throw new ConnectionError('session is going away', { code: 'QT_ERR_GOING_AWAY' });
    }
    if (this.nextStreamId > 0xffffffff) {
      // Ids are u32 and never reused: past the last one, a new connection is needed
      // (the frame header would silently wrap the id to one already used).
      throw new ConnectionError('stream ids exhausted on this session; reconnect', {
        code: 'QT_ERR_GOING_AWAY',
      });
    }
    if (this.localOpenCount >= this.peerMaxStreams) {
      throw new StreamResetError(
        ErrorCode.REFUSED_STREAM,
        `peer's limit of ${this.peerMaxStreams} streams reached`,
      );
    }
    const payload = Buffer.from(JSON.stringify(meta));
    if (payload.length > this.opts.maxMetadataBytes) {
      throw new ProtocolError(
        `stream metadata of ${payload.length} bytes exceeds ${this.opts.maxMetadataBytes}`,
        {
          code: 'QT_ERR_METADATA_TOO_LARGE',
        },
      );
    }
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = this.createStream(id, meta);
    this.localOpenCount++;
    this.sendControl(FrameType.OPEN, id, payload);
    return stream;
  }

  private createStream(id: number, meta: Record<string, unknown>): MuxStream {
    const hwm = Math.min(this.opts.windowBytes, 64 * 1024);
    const stream = new MuxStream(this, id, meta, this.peerWindowBytes, this.opts.windowBytes, hwm);
    this.streams.set(id, stream);
    return stream;
  }

  private isLocalId(id: number): boolean {
    return (id % 2 === 1) === (this.role === 'client');
  }

  /** @internal */
  forget(stream: MuxStream): void {
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    this.windowExtraBytes -= stream.windowSize - stream.initialRecvWindow;
    if (this.isLocalId(stream.id)) this.localOpenCount--;
    else this.peerOpenCount--;
    if (this.streams.size === 0) this.notifyIdle();
  }

  /**
   * @internal Auto-tuning: how many bytes `stream` may add to its window now (0 = none).
   * Called when half its window was consumed within `windowGrowthMs`.
   */
  growWindow(stream: MuxStream, sinceLastGrantMs: number): number {
    if (sinceLastGrantMs > this.opts.windowGrowthMs) return 0;
    const room = Math.min(
      stream.windowSize, // double
      this.opts.maxWindowBytes - stream.windowSize,
      this.opts.windowBudgetBytes - this.windowExtraBytes,
    );
    if (room <= 0) return 0;
    this.windowExtraBytes += room;
    return room;
  }

  /** @internal called after each FIN: a stream closed in both directions is done. */
  maybeForget(stream: MuxStream): void {
    if (stream.localFin && stream.remoteFin) {
      this.forget(stream);
      // Readable may still hold data for the consumer; the Duplex ends on its own.
    }
  }

  // ---- sending ---------------------------------------------------------------------

  /** True while the transport holds more than the high-water mark: DATA waits. */
  get congested(): boolean {
    return this.transport.bufferedAmount > this.opts.sendHighWaterBytes;
  }

  /** @internal a stream blocked by congestion asks to be resumed on drain. */
  waitForDrain(stream: MuxStream): void {
    if (stream.queuedForDrain) return;
    stream.queuedForDrain = true;
    this.drainQueue.push(stream);
  }

  private onSent = (err?: Error | null): void => {
    // ws (through the socket's write callback) passes `null` on success, not undefined.
    if ((err !== undefined && err !== null) || this.drainQueue.length === 0 || this.congested)
      return;
    // Resume blocked streams in FIFO order, so a busy stream can't starve the others.
    const queue = this.drainQueue.splice(0);
    for (let i = 0; i < queue.length; i++) {
      const stream = queue[i]!;
      stream.queuedForDrain = false;
      if (!stream.flush()) {
        // Congested again: keep the rest queued, in order, behind it. They still have
        // `queuedForDrain` set, so push them directly (waitForDrain would skip them and
        // they would never be resumed).
        for (let j = i + 1; j < queue.length; j++) this.drainQueue.push(queue[j]!);
        return;
      }
    }
  };

  /** @internal */
  sendData(stream: MuxStream, payload: Buffer): void {
    this.bytesSent += payload.length;
    if (
      payload.length < POOLED_FRAME_MIN_BYTES ||
      payload.length + FRAME_HEADER_SIZE > dataFramePool.bufferBytes ||
      this.transport.framesCopiedOnSend !== true
    ) {
      this.transport.send(
        encodeFrame(FrameType.DATA, stream.id, payload, 0, this.version),
        this.onSent,
      );
      return;
    }
    const buf = dataFramePool.take();
    this.transport.send(
      writeFrame(buf, FrameType.DATA, stream.id, payload, 0, this.version),
      (err) => {
        dataFramePool.give(buf);
        this.onSent(err);
      },
      dataFramePool.headroom,
    );
  }

  /**
   * @internal `stream` gathered small DATA slices: frame them when this turn ends,
   * before the transport writes the turn's frames (so they leave with them).
   */
  flushAtTurnEnd(stream: MuxStream): void {
    this.gathering.push(stream);
    if (this.gathering.length > 1) return;
    if (this.transport.atTurnEnd !== undefined) this.transport.atTurnEnd(this.flushGathering);
    else setImmediate(this.flushGathering);
  }

  private readonly flushGathering = (): void => {
    const streams = this.gathering;
    this.gathering = [];
    for (const stream of streams) stream.flushGathered();
  };

  /** @internal */
  sendWindowUpdate(stream: MuxStream, delta: number): void {
    this.sendControl(FrameType.WINDOW_UPDATE, stream.id, encodeU32(delta));
  }

  /** @internal */
  sendFin(stream: MuxStream): void {
    this.sendControl(FrameType.FIN, stream.id);
  }

  /** @internal */
  sendReset(stream: MuxStream, code: number, message: string): void {
    this.sendControl(FrameType.RESET, stream.id, encodeCodeMessage(code, message));
  }

  /** @internal */
  sendReply(stream: MuxStream, meta: Record<string, unknown>): void {
    const payload = Buffer.from(JSON.stringify(meta));
    if (payload.length > this.opts.maxMetadataBytes) {
      stream.reset(ErrorCode.INTERNAL_ERROR, 'reply metadata too large');
      return;
    }
    this.sendControl(FrameType.REPLY, stream.id, payload);
  }

  private sendControl(type: FrameType, streamId: number, payload?: Buffer): void {
    if (this.closed) return;
    // DATA waits when the socket is congested, but control frames (answers to the
    // peer's PINGs, OPENs, ...) are always queued. A peer that floods us and never
    // reads would grow that queue without bound: past a hard cap, drop it.
    if (this.transport.bufferedAmount > this.opts.maxQueuedBytes) {
      this.log?.warn(
        { queued: this.transport.bufferedAmount, role: this.role },
        'mux peer is not reading, closing session',
      );
      this.shutdown(
        new ProtocolError(`peer is not reading (over ${this.opts.maxQueuedBytes} bytes queued)`, {
          code: 'QT_ERR_PEER_STALLED',
        }),
        true,
      );
      return;
    }
    this.transport.send(encodeFrame(type, streamId, payload, 0, this.version), this.onSent);
  }

  // ---- keepalive -------------------------------------------------------------------

  private startKeepAlive(): void {
    if (this.opts.keepAliveIntervalMs <= 0) return;
    this.keepAliveHandle = this.clock
      .setInterval(() => this.keepAliveTick(), this.opts.keepAliveIntervalMs)
      .unref();
  }

  private keepAliveTick(): void {
    const silentMs = this.clock.now() - this.lastReceivedAt;
    if (silentMs >= this.opts.keepAliveTimeoutMs) {
      this.shutdown(
        new ConnectionError(`peer silent for ${Math.round(silentMs)} ms (heartbeat missed)`, {
          code: 'QT_ERR_HEARTBEAT',
        }),
        true,
      );
      return;
    }
    if (
      this.opts.keepAlivePassive &&
      this.peerPingAt !== undefined &&
      this.clock.now() - this.peerPingAt < this.opts.keepAliveIntervalMs * 1.5
    ) {
      return; // the peer's PINGs (and our PONGs) already prove both directions work
    }
    this.ping();
  }

  /** Sends a PING now; the RTT lands in `rttMs` and the 'rtt' event. */
  ping(): void {
    if (this.closed) return;
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(++this.pingSeq, 4);
    this.pingSentAt = this.clock.now();
    this.sendControl(FrameType.PING, 0, payload);
  }

  // ---- receiving -------------------------------------------------------------------

  /** One WebSocket message: one or more frames back to back (PROTOCOL.md §1). */
  private onFrame(buf: Buffer): void {
    if (this.closed) return;
    this.lastReceivedAt = this.clock.now();
    const max = Math.max(this.opts.maxFrameBytes, this.opts.maxMetadataBytes);
    try {
      let offset = 0;
      do {
        const frame = decodeFrameAt(buf, offset, max);
        offset = frame.end;
        if (frame.version !== this.version) {
          this.onVersionMismatch(frame);
          return;
        }
        this.dispatch(frame);
      } while (offset < buf.length && !this.closed);
    } catch (err) {
      this.protocolError(err);
    }
  }

  private onVersionMismatch(frame: Frame): void {
    const ours = this.version;
    const theirs = frame.version;
    const who = this.role === 'server' ? 'client' : 'relay';
    // A GOAWAY from a peer of another version is still readable: report its reason.
    if (frame.type === FrameType.GOAWAY && frame.payload.length >= 4) {
      const { message } = decodeCodeMessage(frame.payload);
      this.shutdown(new ProtocolError(message, { code: 'QT_ERR_VERSION_MISMATCH' }), false);
      return;
    }
    const message =
      this.role === 'server'
        ? `this relay speaks tunnel protocol v${ours} but the client speaks v${theirs}; ` +
          `install a quick-tunnel version that matches the relay`
        : `the relay speaks tunnel protocol v${theirs} but this client speaks v${ours}; ` +
          `install a quick-tunnel version that matches the relay`;
    this.goAway(ErrorCode.VERSION_MISMATCH, message);
    this.log?.warn({ peerVersion: theirs, who }, 'mux protocol version mismatch');
    this.shutdown(new ProtocolError(message, { code: 'QT_ERR_VERSION_MISMATCH' }), false);
  }

  private dispatch(frame: Frame): void {
    const { type, streamId, payload } = frame;
    if (type === FrameType.HELLO) {
      if (streamId !== 0) throw new ProtocolError('HELLO on a non-zero stream');
      if (payload.length > this.opts.maxMetadataBytes) throw new ProtocolError('HELLO too large');
      this.onHello(frame);
      return;
    }
    if (type === FrameType.GOAWAY) {
      if (streamId !== 0) throw new ProtocolError('GOAWAY on a non-zero stream');
      const { code, message } = decodeCodeMessage(payload);
      this.onGoAway(code, message);
      return;
    }
    if (!this.ready) {
      throw new ProtocolError(`${frameName(type)} frame before the handshake completed`);
    }
    switch (type) {
      case FrameType.PING:
        if (streamId !== 0 || payload.length !== 8) throw new ProtocolError('malformed PING');
        this.peerPingAt = this.clock.now();
        this.sendControl(FrameType.PONG, 0, Buffer.from(payload));
        return;
      case FrameType.PONG:
        if (streamId !== 0 || payload.length !== 8) throw new ProtocolError('malformed PONG');
        if (this.pingSentAt !== undefined && payload.readUInt32BE(4) === this.pingSeq) {
          this.rttMs = this.clock.now() - this.pingSentAt;
          this.pingSentAt = undefined;
          this.emit('rtt', this.rttMs);
        }
        return;
      case FrameType.OPEN:
        this.onOpen(streamId, payload);
        return;
      default:
        break;
    }
    if (streamId === 0) throw new ProtocolError(`${frameName(type)} frame on stream 0`);
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (!this.wasOpened(streamId)) {
        throw new ProtocolError(
          `${frameName(type)} frame for stream ${streamId}, which was never opened`,
        );
      }
      // A frame racing a reset or close on a stream we already forgot: ignore it,
      // as HTTP/2 does. DATA still has to respect the frame size limit (checked above).
      return;
    }
    switch (type) {
      case FrameType.DATA:
        if (stream.remoteFin) throw new ProtocolError(`DATA after FIN on stream ${streamId}`);
        if (payload.length > this.opts.maxFrameBytes) {
          throw new ProtocolError(
            `DATA frame of ${payload.length} bytes exceeds ${this.opts.maxFrameBytes}`,
          );
        }
        if (payload.length > stream.recvWindow) {
          throw new ProtocolError(
            `peer sent ${payload.length} bytes on stream ${streamId} with only ${stream.recvWindow} bytes of window`,
            { code: 'QT_ERR_FLOW_CONTROL' },
          );
        }
        this.bytesReceived += payload.length;
        stream.onData(payload);
        return;
      case FrameType.WINDOW_UPDATE: {
        if (payload.length !== 4) throw new ProtocolError('malformed WINDOW_UPDATE');
        const delta = payload.readUInt32BE(0);
        if (delta === 0) throw new ProtocolError('WINDOW_UPDATE of zero');
        if (stream.sendWindow + delta > 0x7fffffff) {
          throw new ProtocolError(`window overflow on stream ${streamId}`, {
            code: 'QT_ERR_FLOW_CONTROL',
          });
        }
        stream.onWindowUpdate(delta);
        return;
      }
      case FrameType.FIN:
        if (stream.remoteFin) throw new ProtocolError(`second FIN on stream ${streamId}`);
        stream.onRemoteFin();
        return;
      case FrameType.RESET: {
        const { code, message } = decodeCodeMessage(payload);
        stream.onReset(code, message);
        return;
      }
      case FrameType.REPLY: {
        if (!this.isLocalId(streamId)) throw new ProtocolError('REPLY on a stream the peer opened');
        if (stream.replyMeta !== undefined)
          throw new ProtocolError(`second REPLY on stream ${streamId}`);
        const meta = parseJson(payload);
        if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) {
          throw new ProtocolError('REPLY metadata is not a JSON object');
        }
        stream.replyMeta = meta as Record<string, unknown>;
        stream.emit('reply', stream.replyMeta);
        return;
      }
      default:
        throw new ProtocolError(`unexpected frame type ${type}`);
    }
  }

  private wasOpened(id: number): boolean {
    return this.isLocalId(id) ? id < this.nextStreamId : id <= this.lastPeerStreamId;
  }

  private onOpen(id: number, payload: Buffer): void {
    if (this.isLocalId(id) || id === 0)
      throw new ProtocolError(`peer opened stream ${id} with our parity`);
    if (id <= this.lastPeerStreamId)
      throw new ProtocolError(`stream id ${id} reused or not increasing`);
    if (payload.length > this.opts.maxMetadataBytes)
      throw new ProtocolError('OPEN metadata too large');
    const meta = parseJson(payload);
    if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) {
      throw new ProtocolError('OPEN metadata is not a JSON object');
    }
    this.lastPeerStreamId = id;
    const refusal = this.goingAway
      ? 'session is going away'
      : this.peerOpenCount >= this.opts.maxStreams
        ? `limit of ${this.opts.maxStreams} concurrent streams reached`
        : this.listenerCount('stream') === 0
          ? 'no stream handler'
          : undefined;
    if (refusal !== undefined) {
      // Refused: the peer turns this into a 503. Send RESET without creating state
      // (a stream nobody listens to would throw its reset error as uncaught).
      this.sendControl(FrameType.RESET, id, encodeCodeMessage(ErrorCode.REFUSED_STREAM, refusal));
      return;
    }
    const stream = this.createStream(id, meta as Record<string, unknown>);
    this.peerOpenCount++;
    this.emit('stream', stream);
  }

  private onGoAway(code: number, message: string): void {
    this.receivedGoAway = true;
    if (!this.ready) {
      // Refused during the handshake: surface the relay's reason as the error.
      const err =
        code === ErrorCode.VERSION_MISMATCH
          ? new ProtocolError(message, { code: 'QT_ERR_VERSION_MISMATCH' })
          : code === ErrorCode.AUTH_FAILED || code === ErrorCode.TOKEN_REJECTED
            ? new AuthError(message, { relayTokenRefused: code === ErrorCode.TOKEN_REJECTED })
            : new QuickTunnelError(
                'QT_ERR_REJECTED',
                message || `refused (${errorCodeName(code)})`,
                {
                  retryable: code === ErrorCode.SHUTDOWN,
                },
              );
      this.shutdown(err, false);
      return;
    }
    this.emit('goaway', code, message);
    if (this.streams.size === 0 && code !== ErrorCode.NO_ERROR && code !== ErrorCode.SHUTDOWN) {
      this.shutdown(
        new ConnectionError(`peer sent GOAWAY (${errorCodeName(code)}): ${message}`),
        false,
      );
    }
  }

  private protocolError(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.log?.warn({ err: message, role: this.role }, 'mux protocol error, closing session');
    this.goAway(ErrorCode.PROTOCOL_ERROR, message);
    this.shutdown(
      err instanceof ProtocolError ? err : new ProtocolError(message, { cause: err }),
      false,
    );
  }

  // ---- closing ---------------------------------------------------------------------

  /** Tells the peer: no new streams from now on. Open streams carry on. */
  goAway(code: number = ErrorCode.NO_ERROR, message = ''): void {
    if (this.closed) return;
    this.goingAway = true;
    this.sendControl(FrameType.GOAWAY, 0, encodeCodeMessage(code, message));
  }

  /** Resolves once no stream is open (at once if none is). */
  whenIdle(): Promise<void> {
    if (this.streams.size === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.idleResolvers.push(resolve));
  }

  private notifyIdle(): void {
    const resolvers = this.idleResolvers.splice(0);
    for (const r of resolvers) r();
  }

  /** Closes the session: open streams fail with `err` (or a generic close error). */
  close(err?: Error): void {
    this.shutdown(err, true);
  }

  private shutdown(err: Error | undefined, closeTransport: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError = err;
    this.clock.clearInterval(this.keepAliveHandle);
    this.clock.clearTimeout(this.handshakeHandle);
    const streamErr =
      err ?? new ConnectionError('tunnel connection closed', { code: 'QT_ERR_SESSION_CLOSED' });
    for (const stream of this.streams.values()) stream.onSessionClosed(streamErr);
    this.streams.clear();
    this.drainQueue.length = 0;
    if (closeTransport) {
      if (err === undefined) this.transport.close(1000, 'closed');
      else this.transport.terminate();
    } else {
      // Flush what we queued (e.g. GOAWAY) and let the socket go.
      this.transport.close(1000, '');
    }
    this.readyResolvers?.reject(
      err ?? new ConnectionError('connection closed before the handshake completed'),
    );
    this.readyResolvers = undefined;
    this.notifyIdle();
    this.emit('close', err);
  }
}

function frameName(type: number): string {
  for (const [name, value] of Object.entries(FrameType)) if (value === type) return name;
  return `0x${type.toString(16)}`;
}
