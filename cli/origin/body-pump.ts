/**
 * The request body's way from the mux stream to the origin: read with backpressure
 * (only what the origin takes; the stream grants the relay credit as we read), with
 * the bytes already sent kept, up to a limit, so the request can be replayed on a fresh
 * connection. The origin client reads it as a Readable (`BodyStream`), one per attempt.
 */
import { Readable } from 'node:stream';

/** Request body bytes kept so a request can be replayed on a fresh connection. */
export const REPLAY_LIMIT_BYTES = 64 * 1024;

/**
 * Moves the request body from the mux stream into the origin request with
 * backpressure (read only what the origin takes; the stream grants the relay credit
 * as we read), and keeps the bytes already sent, up to a limit, so the request can be
 * replayed on a fresh connection.
 */
export class BodyPump {
  private readonly source: Readable;
  private readonly replayLimit: number;
  private readonly onProgress: () => void;
  /** Every chunk read so far while their total fits the limit; undefined after. */
  private replay: Buffer[] | undefined = [];
  private replayBytes = 0;
  /** Chunks read before a destination was attached (the framing peek). */
  private held: Buffer[] = [];
  private dest: BodyStream | undefined;
  private waitingDrain = false;
  private ended = false;
  private stopped = false;
  private onFirst: ((hasBody: boolean) => void) | undefined;
  /** Sees every chunk once as it is read (inspection capture). */
  private readonly preview: { add(chunk: Buffer): void } | undefined;

  constructor(
    source: Readable,
    replayLimit: number,
    onProgress: () => void,
    preview?: { add(chunk: Buffer): void },
  ) {
    this.source = source;
    this.replayLimit = replayLimit;
    this.onProgress = onProgress;
    this.preview = preview;
  }

  /** With `onFirst`, reads ahead until the first chunk or the end and reports which. */
  start(onFirst?: (hasBody: boolean) => void): void {
    this.onFirst = onFirst;
    this.source.on('readable', this.pull);
    this.source.once('end', this.onEnd);
    if (onFirst !== undefined) this.pull();
  }

  get replayable(): boolean {
    return this.replay !== undefined;
  }

  /** The origin answered: no retry any more, free the copy. */
  stopReplay(): void {
    this.replay = undefined;
    this.replayBytes = 0;
  }

  /** Sends what was read so far (everything when `replay`) into `dest`, then follows on. */
  attach(dest: BodyStream, replay: boolean): void {
    const chunks = replay ? (this.replay ?? []) : this.held;
    this.held = [];
    this.dest = dest;
    this.waitingDrain = false;
    let ok = true;
    for (const chunk of chunks) ok = dest.write(chunk);
    if (this.ended) {
      dest.end();
      return;
    }
    if (!ok) this.waitForDrain(dest);
    else this.pull();
  }

  detach(): void {
    this.dest?.off('drain', this.onDrain);
    this.dest = undefined;
    this.waitingDrain = false;
  }

  stop(): void {
    this.stopped = true;
    this.detach();
    this.source.off('readable', this.pull);
  }

  /** Reads the rest of the body into nothing (the origin no longer wants it). */
  discard(): void {
    this.stop();
    this.source.resume();
  }

  private readonly pull = (): void => {
    if (this.stopped || this.waitingDrain) return;
    const dest = this.dest;
    if (dest === undefined) {
      if (this.onFirst === undefined) return;
      const chunk = this.source.read() as Buffer | null;
      if (chunk !== null) {
        this.record(chunk);
        this.held.push(chunk);
        this.fireFirst(true);
      }
      return;
    }
    let chunk: Buffer | null;
    while ((chunk = this.source.read() as Buffer | null) !== null) {
      this.record(chunk);
      this.onProgress();
      if (!dest.write(chunk)) {
        this.waitForDrain(dest);
        return;
      }
    }
  };

  private waitForDrain(dest: BodyStream): void {
    this.waitingDrain = true;
    dest.once('drain', this.onDrain);
  }

  private readonly onDrain = (): void => {
    this.waitingDrain = false;
    this.onProgress();
    this.pull();
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    this.fireFirst(false);
    if (this.dest !== undefined && !this.stopped) this.dest.end();
  };

  private fireFirst(hasBody: boolean): void {
    const cb = this.onFirst;
    this.onFirst = undefined;
    cb?.(hasBody);
  }

  private record(chunk: Buffer): void {
    this.preview?.add(chunk);
    if (this.replay === undefined) return;
    this.replayBytes += chunk.length;
    if (this.replayBytes > this.replayLimit) this.stopReplay();
    else this.replay.push(chunk);
  }
}

/**
 * One attempt's body as the origin client reads it: the pump writes, the client reads
 * ('drain' when it wants more). Destroyed when the attempt ends.
 */
export class BodyStream extends Readable {
  constructor() {
    super({ highWaterMark: 64 * 1024 });
  }

  override _read(): void {
    this.emit('drain');
  }

  write(chunk: Buffer): boolean {
    return this.destroyed ? true : this.push(chunk);
  }

  end(): void {
    if (!this.destroyed) this.push(null);
  }
}
