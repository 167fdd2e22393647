/**
 * What a mux session needs from the connection underneath: whole frames in, whole
 * frames out, a measure of how much is queued, and close. `wsTransport` adapts a `ws`
 * WebSocket; `memoryTransportPair` connects two sessions in one process (tests).
 */
import type { Writable } from 'node:stream';
import type WebSocket from 'ws';
import { wsSocketAccess } from '../speed.js';
import { MuxSession, type MuxOptions } from './session.js';

export interface FrameTransport {
  /**
   * Queue one frame. `cb` runs once the bytes are handed to the OS (or on failure). The
   * same callback passed for consecutive frames that leave in one message may run once
   * for all of them. `headroom`: how many bytes just before `frame` in its ArrayBuffer
   * are free for the transport to write its own header into (up to FRAME_HEADROOM), so
   * that header and frame can leave as one buffer.
   */
  send(frame: Buffer, cb?: (err?: Error) => void, headroom?: number): void;
  /**
   * True when no reference to a sent frame's buffer is kept once `send`'s callback ran
   * (its bytes were copied to the socket or to TLS), so the buffer may be reused then.
   * An in-memory transport hands the buffer itself to the peer: false.
   */
  readonly framesCopiedOnSend?: boolean;
  /**
   * Optional: runs `fn` once when this turn of the event loop ends, just before the
   * frames sent in the turn are written, so that frames `fn` sends leave with them.
   * Without it the session uses setImmediate.
   */
  atTurnEnd?(fn: () => void): void;
  /** Bytes queued but not yet written to the socket. */
  readonly bufferedAmount: number;
  /** Close gracefully (pending frames are flushed first). */
  close(code?: number, reason?: string): void;
  /** Drop the connection at once. */
  terminate(): void;
  /** Set by the session: called for each received frame. */
  onFrame: (frame: Buffer) => void;
  /** Set by the session: called once when the connection is gone. */
  onClose: (err?: Error) => void;
}

const noop = (): void => {};

/**
 * Mask generator that leaves the 4-byte masking key all zero. ws sees a zero key and
 * skips the XOR pass over the payload (and the copy it needs to leave our buffer
 * intact); the relay's ws skips unmasking too. Measured with `npm run bench -- mux`
 * (1 GiB client → relay, 2-core VM): without the optional native `bufferutil` (it has
 * no prebuild for linux-arm64, for one) random keys cost ~4.2 s of CPU per GiB on
 * *each* side and cap uploads near 200 MB/s, against ~1.1 s/GiB and 600-700 MB/s
 * over TLS with a zero key. With `bufferutil` the two were within noise over TLS (ws
 * merges header and masked payload into one buffer, while with a zero key TLS
 * concatenated the two: one copy either way); since wsTransport writes zero-key
 * messages itself, a large frame is not copied at all (see DirectWriter).
 *
 * Why this is safe for us: RFC 6455 masks client frames so that a hostile script in a
 * *browser* cannot make the byte stream look like HTTP to a transparent proxy on the
 * path (cache poisoning, RFC 6455 §10.3). Our client is not a browser and runs no
 * untrusted script, and over TLS no intermediary can read the bytes at all. The MASK
 * bit is still set, so relays (and any RFC-compliant server) accept the frames. We
 * only use it over wss://; over plain ws:// we keep random keys, since payload bytes
 * (origin responses) may be chosen by someone else and a proxy would see them.
 */
function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

/**
 * ws client options for the tunnel client's connection to the relay at `url`: no
 * compression (frames are mostly already-compressed HTTP bodies, and deflate costs CPU
 * and memory per connection), `maxPayload` capped at the largest frame the session
 * accepts, and for a `wss:` URL a zero masking key (see `zeroMask`); `ws:` keeps ws's
 * random keys. Callers add `ca`, `servername`, `agent`, etc.
 */
export function tunnelClientWsOptions(
  url: string | URL,
  options: MuxOptions = {},
): WebSocket.ClientOptions {
  const tls = new URL(url).protocol === 'wss:';
  return {
    perMessageDeflate: false,
    maxPayload: MuxSession.maxMessageBytes(options),
    ...(tls ? { generateMask: zeroMask } : {}),
  };
}

/** ws server options for the relay's side: no compression, `maxPayload` capped. */
export function tunnelServerWsOptions(options: MuxOptions = {}): WebSocket.ServerOptions {
  return { perMessageDeflate: false, maxPayload: MuxSession.maxMessageBytes(options) };
}

/**
 * Whether `wsTransport` writes this WebSocket's messages itself, one buffer each (see
 * DirectWriter), instead of through `ws.send`: only for a client whose masking key is
 * all zero (`zeroMask`, so there is no XOR to do), i.e. the CLI over wss://. The
 * relay's side stays on `ws.send`: measured both ways (256 MiB transfers and
 * `npm run bench -- mux`), writing its 64 KiB frames one by one gained nothing on the
 * relay and cost the CLI, as receiver, 5-19% more CPU (each frame then ends in a
 * TLS record of a few bytes, where corked turns filled every record). This reads ws's
 * internals, so it is shared/speed.ts's `ws-socket` trick: off (or ws's fields not
 * what we expect) means `ws.send`, and test/shared/ws-transport.test.ts fails to say so.
 */
export function writesMessagesItself(ws: WebSocket): boolean {
  return wsSocketAccess(ws, zeroMask)?.writesItself === true;
}

/** Bytes of the header of a masked WebSocket frame with `length` payload bytes. */
function wsHeaderBytes(length: number): number {
  return 2 + (length < 126 ? 0 : length < 65536 ? 2 : 8) + 4;
}

/**
 * Writes the header of a final, masked binary WebSocket frame carrying `length`
 * payload bytes so that it ends at `end` in `buf`, and returns where it starts. The
 * masking key is all zero (RFC 6455 §5.2; see zeroMask).
 */
function writeWsHeader(buf: Buffer, end: number, length: number): number {
  const start = end - wsHeaderBytes(length);
  buf[start] = 0x82; // FIN + binary
  if (length < 126) buf[start + 1] = 0x80 | length;
  else if (length < 65536) {
    buf[start + 1] = 0x80 | 126;
    buf.writeUInt16BE(length, start + 2);
  } else {
    buf[start + 1] = 0x80 | 127;
    buf.writeUInt32BE(Math.floor(length / 2 ** 32), start + 2);
    buf.writeUInt32BE(length >>> 0, start + 6);
  }
  buf.writeUInt32BE(0, end - 4);
  return start;
}

/** Frames up to this size are gathered into one message per turn (see wsTransport). */
const BATCH_FRAME_MAX_BYTES = 4 * 1024;
/**
 * Largest gathered message. Far below any peer's `maxPayload` (12 + max(maxFrameBytes,
 * maxMetadataBytes), 64 KiB by default), so a batch is never too large for the peer.
 */
const BATCH_MAX_BYTES = 16 * 1024;

type SendCallback = (err?: Error) => void;

/** One write in flight in TLS, one waiting in the socket; see DirectWriter. */
const MAX_OUTSTANDING_WRITES = 2;

/**
 * Writes WebSocket messages we framed ourselves (each one buffer) to ws's socket.
 *
 * Why not `ws.send`: ws hands the socket a header and a payload, and over TLS every
 * write of more than one buffer is first copied into one allocation (node's
 * TLSWrap::DoWrite), which for bulk transfers was 8-12% of the sender's CPU. For the
 * same reason at most two writes are outstanding (one in flight, one waiting in the
 * socket): a TLS write always completes asynchronously, and writes that pile up in the
 * socket's buffer leave together as one multi-buffer write, copied again. The rest wait
 * here, and small ones are merged on the way out (a copy of small bytes is cheaper than
 * a TLS record and a syscall each).
 */
class DirectWriter {
  /** Writes handed to the socket whose callback has not run yet (see above). */
  private outstanding = 0;
  private readonly queue: { buf: Buffer; cbs: SendCallback[] }[] = [];
  queuedBytes = 0;

  constructor(
    private readonly socket: Writable,
    private readonly ws: WebSocket,
  ) {}

  write(buf: Buffer, cbs: SendCallback[]): void {
    if (this.outstanding < MAX_OUTSTANDING_WRITES && this.queue.length === 0) this.start(buf, cbs);
    else {
      this.queue.push({ buf, cbs });
      this.queuedBytes += buf.length;
    }
  }

  /** Hands everything queued to the socket now (before ws writes a close frame). */
  flush(): void {
    while (this.queue.length > 0) this.startNext();
  }

  /** Fails what is still queued (the connection is gone). */
  fail(err: Error): void {
    const queue = this.queue.splice(0);
    this.queuedBytes = 0;
    for (const { cbs } of queue) for (const cb of cbs) cb(err);
  }

  private start(buf: Buffer, cbs: SendCallback[]): void {
    this.outstanding++;
    this.socket.write(buf, (err) => {
      this.outstanding--;
      for (const cb of cbs) cb(err ?? undefined);
      while (this.outstanding < MAX_OUTSTANDING_WRITES && this.queue.length > 0) this.startNext();
    });
  }

  private startNext(): void {
    if (this.ws.readyState !== this.ws.OPEN) {
      this.fail(new Error('WebSocket is not open'));
      return;
    }
    const first = this.queue.shift()!;
    let end = 0;
    let bytes = first.buf.length;
    if (bytes < BATCH_MAX_BYTES) {
      while (
        end < this.queue.length &&
        this.queue[end]!.buf.length < BATCH_MAX_BYTES &&
        bytes + this.queue[end]!.buf.length <= 4 * BATCH_MAX_BYTES
      ) {
        bytes += this.queue[end]!.buf.length;
        end++;
      }
    }
    if (end === 0) {
      this.queuedBytes -= bytes;
      this.start(first.buf, first.cbs);
      return;
    }
    const merged = [first, ...this.queue.splice(0, end)];
    this.queuedBytes -= bytes;
    this.start(
      Buffer.concat(
        merged.map((m) => m.buf),
        bytes,
      ),
      merged.flatMap((m) => m.cbs),
    );
  }
}

/** Adapts a connected `ws` WebSocket (binaryType nodebuffer). */
export function wsTransport(ws: WebSocket): FrameTransport {
  ws.binaryType = 'nodebuffer';
  let closed = false;
  // Frames sent in one turn of the event loop leave together: a small request is
  // OPEN + FIN one way and REPLY + DATA + FIN the other, and over TLS each separate
  // write would be its own record and syscall.
  //
  // Small frames of the same turn also share one WebSocket message (PROTOCOL.md §1):
  // each message costs a header, a socket write and a parse on the other side, and
  // under load a turn sends dozens of control frames. Large frames go alone, after
  // the small ones queued before them, so the order on the wire is the order sent.
  //
  // The CLI's side over wss:// builds each message as one buffer and a DirectWriter
  // writes it (see writesMessagesItself); the relay's side, and a client with random
  // masking keys, go through ws.send, with the socket corked for the turn (setImmediate).
  //
  // Both reach into ws's socket: with shared/speed.ts's `ws-socket` trick off, every
  // message goes through ws.send, uncorked.
  const access = wsSocketAccess(ws, zeroMask);
  const socket = access?.socket;
  const writer = access?.writesItself === true ? new DirectWriter(access.socket, ws) : undefined;
  let turnScheduled = false;
  let turnEndHooks: (() => void)[] = [];
  let corked = false;
  let batch: Buffer[] = [];
  let batchBytes = 0;
  let batchCallbacks: SendCallback[] = [];
  const sendMessage = (data: Buffer, callbacks: SendCallback[]): void => {
    if (callbacks.length === 0) ws.send(data, { binary: true });
    else if (callbacks.length === 1) ws.send(data, { binary: true }, callbacks[0]);
    else
      ws.send(data, { binary: true }, (err) => {
        for (const cb of callbacks) cb(err);
      });
  };
  const flushBatch = (): void => {
    if (batch.length === 0) return;
    const frames = batch;
    const callbacks = batchCallbacks;
    const bytes = batchBytes;
    batch = [];
    batchCallbacks = [];
    batchBytes = 0;
    if (ws.readyState !== ws.OPEN) {
      const err = new Error('WebSocket is not open');
      for (const cb of callbacks) cb(err);
      return;
    }
    if (writer === undefined) {
      sendMessage(frames.length === 1 ? frames[0]! : Buffer.concat(frames, bytes), callbacks);
      return;
    }
    const header = wsHeaderBytes(bytes);
    const message = Buffer.allocUnsafe(header + bytes);
    writeWsHeader(message, header, bytes);
    let offset = header;
    for (const frame of frames) offset += frame.copy(message, offset);
    writer.write(message, callbacks);
  };
  const endTurn = (): void => {
    // The session's gathered DATA first: still within the turn (turnScheduled), so
    // what the hooks send joins this turn's batch and cork.
    if (turnEndHooks.length > 0) {
      const hooks = turnEndHooks;
      turnEndHooks = [];
      for (const hook of hooks) hook();
    }
    turnScheduled = false;
    flushBatch();
    if (corked) {
      corked = false;
      socket?.uncork();
    }
  };
  /** A large frame as its own message, built in its headroom when it has enough. */
  const sendLarge = (frame: Buffer, cb: SendCallback | undefined, headroom: number): void => {
    const header = wsHeaderBytes(frame.length);
    let message: Buffer;
    if (headroom >= header) {
      message = Buffer.from(frame.buffer, frame.byteOffset - header, header + frame.length);
    } else {
      message = Buffer.allocUnsafe(header + frame.length);
      frame.copy(message, header);
    }
    writeWsHeader(message, header, frame.length);
    writer!.write(message, cb === undefined ? [] : [cb]);
  };
  const transport: FrameTransport = {
    onFrame: noop,
    onClose: noop,
    // Every path copies the frame's bytes out (into a batch, into TLS, or to the
    // kernel) before calling back, so the session may reuse a frame's buffer then.
    framesCopiedOnSend: true,
    send(frame, cb, headroom = 0) {
      if (ws.readyState !== ws.OPEN) {
        cb?.(new Error('WebSocket is not open'));
        return;
      }
      if (!turnScheduled) {
        turnScheduled = true;
        setImmediate(endTurn);
      }
      if (writer === undefined && socket !== undefined && !corked) {
        // ws.send writes at once: hold its writes of this turn together.
        corked = true;
        socket?.cork();
      }
      if (frame.length <= BATCH_FRAME_MAX_BYTES) {
        if (batchBytes + frame.length > BATCH_MAX_BYTES) flushBatch();
        batch.push(frame);
        batchBytes += frame.length;
        // The session passes the same callback for most frames: once per message is enough.
        if (cb !== undefined && batchCallbacks.at(-1) !== cb) batchCallbacks.push(cb);
        return;
      }
      flushBatch();
      if (writer !== undefined) sendLarge(frame, cb, headroom);
      else sendMessage(frame, cb === undefined ? [] : [cb]);
    },
    atTurnEnd(fn) {
      turnEndHooks.push(fn);
      if (!turnScheduled) {
        turnScheduled = true;
        setImmediate(endTurn);
      }
    },
    get bufferedAmount() {
      return ws.bufferedAmount + batchBytes + (writer?.queuedBytes ?? 0);
    },
    close(code = 1000, reason = '') {
      flushBatch();
      writer?.flush();
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason);
    },
    terminate() {
      const callbacks = batchCallbacks;
      batch = [];
      batchCallbacks = [];
      batchBytes = 0;
      ws.terminate();
      const err = new Error('WebSocket terminated');
      for (const cb of callbacks) cb(err);
      writer?.fail(err);
    },
  };
  ws.on('message', (data, isBinary) => {
    if (closed) return;
    if (!isBinary) {
      transport.onFrame(Buffer.alloc(0)); // a text message is a malformed frame
      return;
    }
    transport.onFrame(data as Buffer);
  });
  let lastError: Error | undefined;
  ws.on('error', (err) => {
    lastError = err;
  });
  ws.on('close', (code, reason) => {
    if (closed) return;
    closed = true;
    const err =
      lastError ??
      (code === 1000 ? undefined : new Error(`WebSocket closed (${code} ${reason.toString()})`));
    writer?.fail(err ?? new Error('WebSocket closed'));
    transport.onClose(err);
  });
  return transport;
}

/** One end of an in-memory pair; see `memoryTransportPair`. */
class MemoryTransport implements FrameTransport {
  peer: MemoryTransport | undefined;
  closed = false;
  private buffered = 0;
  onFrame: (frame: Buffer) => void = noop;
  onClose: (err?: Error) => void = noop;

  send(frame: Buffer, cb?: (err?: Error) => void): void {
    if (this.closed) {
      cb?.(new Error('transport closed'));
      return;
    }
    this.buffered += frame.length;
    setImmediate(() => {
      this.buffered -= frame.length;
      const peer = this.peer;
      if (peer !== undefined && !peer.closed) peer.onFrame(frame);
      cb?.();
    });
  }

  get bufferedAmount(): number {
    return this.buffered;
  }

  close(): void {
    // Let queued frames arrive first, as a WebSocket close does.
    setImmediate(() => this.shut(undefined));
  }

  terminate(): void {
    this.shut(new Error('terminated'));
  }

  private shut(err: Error | undefined): void {
    for (const side of [this, this.peer]) {
      if (side === undefined || side.closed) continue;
      side.closed = true;
      side.onClose(side === this ? undefined : err);
    }
  }
}

/**
 * Two transports wired to each other in memory. Delivery is asynchronous
 * (setImmediate) so re-entrancy matches a real socket; `bufferedAmount` is the bytes
 * sent but not yet delivered.
 */
export function memoryTransportPair(): [FrameTransport, FrameTransport] {
  const a = new MemoryTransport();
  const b = new MemoryTransport();
  a.peer = b;
  b.peer = a;
  return [a, b];
}
