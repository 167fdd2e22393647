/**
 * One mux stream as a Node Duplex, so `stream.pipeline()` works with backpressure in
 * both directions.
 *
 * Flow control is credit-based (yamux / HTTP/2): we may send at most `sendWindow`
 * bytes of DATA that the peer has not acknowledged with WINDOW_UPDATE, and we grant
 * the peer new credit only when our consumer has actually taken bytes out of the
 * readable side. A stream piped into a slow socket therefore holds its sender back,
 * and memory per stream stays below one window.
 */
import { Duplex } from 'node:stream';
import { StreamResetError } from '../errors.js';
import { ErrorCode, errorCodeName } from '../protocol/frame.js';
import type { MuxSession } from './session.js';

type Meta = Record<string, unknown>;

/**
 * DATA slices shorter than this are gathered per stream until the end of the turn (or
 * until a full frame's worth is there) and leave as one frame; see `sendSlice`.
 */
export const GATHER_SLICE_MAX_BYTES = 16 * 1024;

interface PendingWrite {
  chunk: Buffer;
  offset: number;
  cb: (err?: Error | null) => void;
}

export class MuxStream extends Duplex {
  readonly id: number;
  /** Metadata sent with OPEN (by whichever side opened the stream). */
  readonly meta: Meta;
  /** Metadata the accepting side sent back with REPLY, once it arrived. */
  replyMeta: Meta | undefined;

  /** @internal */ sendWindow: number;
  /** @internal bytes the peer may still send before it must wait for our credit */
  recvWindow: number;
  /** @internal */ readonly initialRecvWindow: number;
  /** @internal Current window size: grows from initialRecvWindow by auto-tuning. */
  windowSize: number;
  private lastGrantAt: number;
  /** @internal */ remoteFin = false;
  /** @internal */ localFin = false;
  /** @internal */ replied = false;

  private readonly session: MuxSession;
  private pending: PendingWrite | undefined;
  private finalCb: ((err?: Error | null) => void) | undefined;
  private pushedBytes = 0;
  private creditedBytes = 0;
  private closedByPeer = false;
  /** @internal set while the stream waits in the session's congestion queue */
  queuedForDrain = false;
  /** Small DATA slices of this turn, not yet framed (see sendSlice). */
  private gathered: Buffer[] | undefined;
  private gatheredBytes = 0;

  /** Total DATA bytes sent and received, for metrics and request logs. */
  bytesSent = 0;
  bytesReceived = 0;

  constructor(
    session: MuxSession,
    id: number,
    meta: Meta,
    sendWindow: number,
    recvWindow: number,
    highWaterMark: number,
  ) {
    super({
      allowHalfOpen: true,
      readableHighWaterMark: highWaterMark,
      writableHighWaterMark: highWaterMark,
    });
    this.session = session;
    this.id = id;
    this.meta = meta;
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
    this.initialRecvWindow = recvWindow;
    this.windowSize = recvWindow;
    this.lastGrantAt = session.clock.now();
  }

  /** Sends the accepting side's metadata (e.g. response status and headers). */
  reply(meta: Meta): void {
    if (this.replied) throw new Error(`stream ${this.id} already replied`);
    if (this.destroyed) return;
    this.replied = true;
    this.session.sendReply(this, meta);
  }

  /** Aborts the stream in both directions and tells the peer why. */
  reset(code: number = ErrorCode.CANCEL, message = ''): void {
    if (this.destroyed) return;
    this.session.sendReset(this, code, message);
    this.closedByPeer = true; // nothing more to tell the peer
    this.destroy(
      new StreamResetError(code, `stream reset locally: ${errorCodeName(code)} ${message}`.trim(), {
        reason: message,
      }),
    );
  }

  /** Bytes written by our producer that wait for window or for the socket. */
  get queuedBytes(): number {
    // writableLength already counts the chunk in `pending` until its callback runs;
    // only the part of it sent so far has left.
    return this.writableLength - (this.pending ? this.pending.offset : 0);
  }

  // ---- called by the session -------------------------------------------------

  /** @internal */
  onData(payload: Buffer): void {
    this.recvWindow -= payload.length;
    this.bytesReceived += payload.length;
    this.pushedBytes += payload.length;
    this.push(payload);
    this.maybeGrantCredit();
  }

  /** @internal */
  onRemoteFin(): void {
    this.remoteFin = true;
    this.push(null);
    this.session.maybeForget(this);
  }

  /** @internal */
  onReset(code: number, message: string): void {
    this.closedByPeer = true;
    const detail = message ? `: ${message}` : '';
    this.destroy(
      new StreamResetError(code, `stream reset by peer (${errorCodeName(code)})${detail}`, {
        reason: message,
      }),
    );
  }

  /** @internal */
  onWindowUpdate(delta: number): void {
    this.sendWindow += delta;
    this.flush();
  }

  /** @internal the session went away: fail everything still open. */
  onSessionClosed(err: Error): void {
    this.closedByPeer = true;
    this.destroy(err);
  }

  /**
   * @internal Sends as much of the pending write as window and socket allow. Returns
   * false if it stopped because the socket is congested (the session re-calls us on
   * drain).
   */
  flush(): boolean {
    while (this.pending !== undefined) {
      if (this.destroyed) return true;
      if (this.sendWindow <= 0) return true; // wait for WINDOW_UPDATE
      if (this.session.congested) {
        this.session.waitForDrain(this);
        return false;
      }
      const p = this.pending;
      const n = Math.min(
        p.chunk.length - p.offset,
        this.sendWindow,
        this.session.peerMaxFrameBytes,
      );
      const slice = p.chunk.subarray(p.offset, p.offset + n);
      p.offset += n;
      this.sendWindow -= n;
      this.bytesSent += n;
      this.sendSlice(slice);
      if (p.offset >= p.chunk.length) {
        this.pending = undefined;
        p.cb();
      }
    }
    if (this.finalCb !== undefined) {
      const cb = this.finalCb;
      this.finalCb = undefined;
      this.sendFin();
      cb();
    }
    return true;
  }

  // ---- Duplex implementation ---------------------------------------------------

  override _read(): void {
    this.maybeGrantCredit();
  }

  /**
   * Readable calls `_read` before it takes the chunk being read out of its buffer, so
   * at that point `readableLength` still counts bytes the consumer is taking. A consumer
   * that drains the whole buffer in one `read()` (`for await`, 'readable' + `read()`)
   * would then never grant credit and both sides would wait forever. Checking after
   * every `read()` sees what was really consumed.
   */
  override read(size?: number): any {
    const chunk: unknown = super.read(size);
    this.maybeGrantCredit();
    return chunk;
  }

  override _write(
    chunk: Buffer,
    _encoding: BufferEncoding,
    cb: (err?: Error | null) => void,
  ): void {
    if (chunk.length === 0) {
      cb();
      return;
    }
    this.pending = { chunk, offset: 0, cb };
    this.flush();
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.pending === undefined) {
      this.sendFin();
      cb();
    } else {
      this.finalCb = cb;
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.closedByPeer && !(this.localFin && this.remoteFin)) {
      this.session.sendReset(this, err ? ErrorCode.INTERNAL_ERROR : ErrorCode.CANCEL, '');
    }
    const p = this.pending;
    this.pending = undefined;
    this.gathered = undefined;
    this.gatheredBytes = 0;
    this.session.forget(this);
    p?.cb(err ?? new Error('stream destroyed'));
    cb(err);
  }

  /**
   * Small slices (an origin that writes many small chunks: a chunked body arrives as one
   * `write` per chunk) are gathered and leave as one DATA frame when the turn ends, or
   * at once when a full frame's worth is there, or before the FIN. A lone small write
   * is not delayed: the transport sends the frames of a turn at the end of that turn
   * anyway (transport.ts). Window and byte counts were taken when the slice was cut.
   * The slices are views on the written chunks, which a stream owns once written.
   */
  private sendSlice(slice: Buffer): void {
    if (slice.length >= GATHER_SLICE_MAX_BYTES) {
      this.flushGathered();
      this.session.sendData(this, slice);
      return;
    }
    const max = this.session.peerMaxFrameBytes;
    if (this.gatheredBytes + slice.length > max) this.flushGathered();
    if (this.gathered === undefined) {
      this.gathered = [slice];
      this.session.flushAtTurnEnd(this);
    } else this.gathered.push(slice);
    this.gatheredBytes += slice.length;
    if (this.gatheredBytes >= max) this.flushGathered();
  }

  /** @internal Sends the gathered slices as one DATA frame (the session's turn end). */
  flushGathered(): void {
    const parts = this.gathered;
    if (parts === undefined) return;
    const bytes = this.gatheredBytes;
    this.gathered = undefined;
    this.gatheredBytes = 0;
    if (this.destroyed) return; // reset: the peer drops the stream's data anyway
    this.session.sendData(this, parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes));
  }

  private sendFin(): void {
    if (this.localFin || this.destroyed) return;
    this.flushGathered();
    this.localFin = true;
    this.session.sendFin(this);
    this.session.maybeForget(this);
  }

  /**
   * Credit goes back only for bytes the consumer has taken (pushed minus still
   * buffered), and in batches of half a window so updates stay rare.
   */
  private maybeGrantCredit(): void {
    if (this.remoteFin || this.destroyed) return;
    const consumed = this.pushedBytes - this.readableLength;
    const grant = consumed - this.creditedBytes;
    if (grant <= 0) return;
    if (grant >= this.windowSize / 2 || this.recvWindow <= 0) {
      this.creditedBytes = consumed;
      const now = this.session.clock.now();
      // Half a window gone in a few ms with nothing left buffered: the window, not the
      // consumer, is what limits this stream. Grow it (within the session's budget).
      const extra =
        this.readableLength === 0 && grant >= this.windowSize / 2
          ? this.session.growWindow(this, now - this.lastGrantAt)
          : 0;
      this.lastGrantAt = now;
      this.windowSize += extra;
      this.recvWindow += grant + extra;
      this.session.sendWindowUpdate(this, grant + extra);
    }
  }
}
