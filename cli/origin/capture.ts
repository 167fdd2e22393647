/**
 * What the origin proxy keeps of each exchange for inspection (the TUI's details view
 * and replay): the request and response heads and a capped copy of each body, taken
 * as the bytes stream past. Capturing never holds the stream back: it copies at most
 * `limit` bytes per body and only counts the rest.
 *
 * An `ExchangeCapture` is live: the proxy fills it in while the exchange runs (response
 * head, body bytes, WebSocket message counts) and sets `finishedAt` when it is over.
 * Consumers read it; they never write to it.
 */
import type { HeaderPairs } from '../../shared/protocol/tunnel.js';

/** Bytes kept of each body by default: enough for any webhook payload. */
export const CAPTURE_BODY_LIMIT_BYTES = 64 * 1024;

/** The first `limit` bytes of a body, and how many bytes the whole body had. */
export class BodyPreview {
  readonly limit: number;
  /** All bytes seen, kept or not. */
  totalBytes = 0;
  /** True once `release()` freed the kept bytes (memory budget). */
  released = false;
  private chunks: Buffer[] = [];
  private keptBytes = 0;
  private joined: Buffer | undefined;

  constructor(limit = CAPTURE_BODY_LIMIT_BYTES) {
    this.limit = limit;
  }

  /** Records a chunk passing by: copies what still fits (the caller may reuse `chunk`). */
  add(chunk: Buffer): void {
    this.totalBytes += chunk.length;
    if (this.released || this.keptBytes >= this.limit || chunk.length === 0) return;
    const part = chunk.subarray(0, this.limit - this.keptBytes);
    this.chunks.push(Buffer.from(part));
    this.keptBytes += part.length;
    this.joined = undefined;
  }

  /** Bytes kept (at most `limit`). */
  get capturedBytes(): number {
    return this.keptBytes;
  }

  /** True when the body was longer than what was kept (or the copy was released). */
  get truncated(): boolean {
    return this.totalBytes > this.keptBytes;
  }

  /** The kept bytes as one buffer. */
  bytes(): Buffer {
    if (this.joined === undefined) {
      this.joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      this.chunks = this.joined.length > 0 ? [this.joined] : [];
    }
    return this.joined;
  }

  /** Frees the kept bytes (the counts stay). */
  release(): void {
    this.released = true;
    this.chunks = [];
    this.joined = undefined;
    this.keptBytes = 0;
  }
}

/**
 * Counts WebSocket messages in one direction by reading only frame headers (RFC 6455
 * §5.2) and skipping payloads: a message ends with a data or continuation frame that
 * has FIN set; control frames (ping, pong, close) are not messages. Headers split
 * across chunks are handled. If the bytes stop looking like WebSocket frames (a
 * non-WebSocket upgrade, reserved opcodes), counting stops and `valid` turns false.
 */
export class WebSocketFrameCounter {
  messages = 0;
  bytes = 0;
  valid = true;
  private readonly header = Buffer.alloc(14);
  private headerBytes = 0;
  private headerNeed = 2;
  private skip = 0;

  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    let i = 0;
    while (this.valid && i < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      this.header[this.headerBytes++] = chunk[i++]!;
      if (this.headerBytes === 2) {
        const len7 = this.header[1]! & 0x7f;
        const masked = (this.header[1]! & 0x80) !== 0;
        this.headerNeed = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
      }
      if (this.headerBytes >= 2 && this.headerBytes === this.headerNeed) this.endHeader();
    }
  }

  private endHeader(): void {
    const b0 = this.header[0]!;
    const len7 = this.header[1]! & 0x7f;
    const opcode = b0 & 0x0f;
    let length: number;
    if (len7 === 126) length = this.header.readUInt16BE(2);
    else if (len7 === 127) {
      const big = this.header.readBigUInt64BE(2);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
        this.valid = false;
        return;
      }
      length = Number(big);
    } else length = len7;
    const fin = (b0 & 0x80) !== 0;
    // Reserved opcodes, RSV2/RSV3 (RSV1 is permessage-deflate), or a fragmented or
    // oversized control frame: not a WebSocket stream.
    if (
      (opcode > 2 && opcode < 8) ||
      opcode > 10 ||
      (b0 & 0x30) !== 0 ||
      (opcode >= 8 && (!fin || length > 125))
    ) {
      this.valid = false;
      return;
    }
    if (opcode < 8 && fin) this.messages++;
    this.skip = length;
    this.headerBytes = 0;
    this.headerNeed = 2;
  }
}

/** The request as the origin received it. */
export interface CapturedRequest {
  method: string;
  /** Path and query, as the visitor sent them. */
  url: string;
  httpVersion: string;
  /** Headers sent to the origin (hop-by-hop removed, X-Forwarded-* added by the relay). */
  headers: HeaderPairs;
  remoteAddress: string;
  scheme: 'http' | 'https';
}

export interface CapturedResponse {
  status: number;
  statusMessage?: string;
  headers: HeaderPairs;
}

/** One exchange as the proxy saw it; filled in while it runs. */
export class ExchangeCapture {
  readonly request: CapturedRequest;
  readonly requestBody: BodyPreview;
  readonly responseBody: BodyPreview;
  /** The origin's response head, once it arrived. */
  response: CapturedResponse | undefined;
  /** For an upgrade that the origin accepted: traffic each way (WebSocket messages counted). */
  upgraded: { toOrigin: WebSocketFrameCounter; toVisitor: WebSocketFrameCounter } | undefined;
  /** Epoch ms when the exchange ended; undefined while it runs. */
  finishedAt: number | undefined;

  constructor(request: CapturedRequest, bodyLimitBytes = CAPTURE_BODY_LIMIT_BYTES) {
    this.request = request;
    this.requestBody = new BodyPreview(bodyLimitBytes);
    this.responseBody = new BodyPreview(bodyLimitBytes);
  }

  /** Bytes of body kept in memory by this capture. */
  get retainedBytes(): number {
    return this.requestBody.capturedBytes + this.responseBody.capturedBytes;
  }

  /** Frees both body copies (heads and counts stay). */
  releaseBodies(): void {
    this.requestBody.release();
    this.responseBody.release();
  }
}
