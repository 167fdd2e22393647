/**
 * Frame codec of the mux protocol (see shared/PROTOCOL.md).
 *
 * A binary WebSocket message carries one or more whole frames back to back, each a
 * 12-byte big-endian header followed by the payload.
 *
 *   0       1       2               4                               8                              12
 *   +-------+-------+---------------+-------------------------------+-------------------------------+
 *   |version| type  |     flags     |           stream id           |        payload length         |
 *   +-------+-------+---------------+-------------------------------+-------------------------------+
 *
 * The version byte comes first and this layout never changes, so two peers of
 * different versions can always read each other's GOAWAY and report a clear error.
 */
import { ProtocolError } from '../errors.js';

export const PROTOCOL_VERSION = 1;
export const FRAME_HEADER_SIZE = 12;
/**
 * Room pooled frames keep free before their first byte for the transport's own header:
 * the largest WebSocket frame header (2 bytes, 8 of length, a 4-byte masking key).
 */
export const FRAME_HEADROOM = 14;

export const FrameType = {
  /** Handshake: JSON capabilities + application payload. Stream 0 only. */
  HELLO: 0x0,
  /** Opens a stream; payload is the stream's JSON metadata (e.g. a request head). */
  OPEN: 0x1,
  /** Stream bytes; counts against the receiver's window. */
  DATA: 0x2,
  /** Payload u32: extra bytes the receiver is ready to take on this stream. */
  WINDOW_UPDATE: 0x3,
  /** Half-close: the sender will send no more DATA on this stream. */
  FIN: 0x4,
  /** Abort a stream. Payload: u32 code + optional UTF-8 message. */
  RESET: 0x5,
  /** Payload: 8 opaque bytes echoed back in PONG. Stream 0 only. */
  PING: 0x6,
  PONG: 0x7,
  /** No new streams; open ones finish. Payload: u32 code + UTF-8 reason. Stream 0 only. */
  GOAWAY: 0x8,
  /** The accepting side's metadata for a stream (e.g. a response head); at most once. */
  REPLY: 0x9,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

const MAX_FRAME_TYPE = FrameType.REPLY;

/** Wire error codes carried by RESET and GOAWAY. */
export const ErrorCode = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  FRAME_SIZE_ERROR: 4,
  REFUSED_STREAM: 5,
  CANCEL: 6,
  VERSION_MISMATCH: 7,
  AUTH_FAILED: 8,
  KEEPALIVE_TIMEOUT: 9,
  SHUTDOWN: 10,
  /** The accepting side could not connect to its target (origin refused...). */
  CONNECT_ERROR: 11,
  /** The accepting side's target timed out. */
  TIMEOUT: 12,
  /** Application-level refusal during the handshake (name taken, bad request...). */
  REJECTED: 13,
  /**
   * The relay access token is missing or wrong (the handshake's AUTH_FAILED is then a
   * named tunnel's credential, or a cluster peer's secret).
   */
  TOKEN_REJECTED: 14,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export function errorCodeName(code: number): string {
  for (const [name, value] of Object.entries(ErrorCode)) if (value === code) return name;
  return `UNKNOWN_${code}`;
}

export interface Frame {
  version: number;
  type: FrameType;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** Encodes a frame into one buffer (header + payload copied once). */
export function encodeFrame(
  type: FrameType,
  streamId: number,
  payload?: Buffer,
  flags = 0,
  version = PROTOCOL_VERSION,
): Buffer {
  const length = payload === undefined ? 0 : payload.length;
  return writeFrame(
    Buffer.allocUnsafe(FRAME_HEADER_SIZE + length),
    type,
    streamId,
    payload,
    flags,
    version,
  );
}

/**
 * Encodes a frame at the start of `buf` (at least header + payload long) and returns
 * the view holding exactly the frame.
 */
export function writeFrame(
  buf: Buffer,
  type: FrameType,
  streamId: number,
  payload?: Buffer,
  flags = 0,
  version = PROTOCOL_VERSION,
): Buffer {
  const length = payload === undefined ? 0 : payload.length;
  buf[0] = version;
  buf[1] = type;
  buf.writeUInt16BE(flags, 2);
  buf.writeUInt32BE(streamId >>> 0, 4);
  buf.writeUInt32BE(length, 8);
  if (payload !== undefined && length > 0) payload.copy(buf, FRAME_HEADER_SIZE);
  return buf.length === FRAME_HEADER_SIZE + length
    ? buf
    : buf.subarray(0, FRAME_HEADER_SIZE + length);
}

/**
 * Reusable buffers for large DATA frames, shared by every session of the process.
 * A transfer sends thousands of 64 KiB frames a second; a fresh buffer for each is
 * garbage V8 collects only after tens of MiB have piled up (RSS) and frees on the
 * GC's time (CPU). A buffer goes back to the pool once the transport says the frame's
 * bytes were copied out (to the kernel or to TLS), so at most `maxBuffers` are kept.
 */
export class FrameBufferPool {
  private readonly free: Buffer[] = [];

  /**
   * `bufferBytes`: header + the largest payload a pooled frame carries. `headroom`:
   * bytes kept free before the frame, where a transport can put its own header so
   * that header and frame leave in one buffer (see FrameTransport.send).
   */
  constructor(
    readonly bufferBytes: number,
    private readonly maxBuffers: number,
    readonly headroom = 0,
  ) {}

  /** Frames built in a pooled buffer, and how many of those reused one (tests, metrics). */
  taken = 0;
  reused = 0;

  take(): Buffer {
    this.taken++;
    const buf = this.free.pop();
    if (buf === undefined)
      return Buffer.allocUnsafeSlow(this.headroom + this.bufferBytes).subarray(this.headroom);
    this.reused++;
    return buf;
  }

  give(buf: Buffer): void {
    if (this.free.length < this.maxBuffers && buf.length === this.bufferBytes) this.free.push(buf);
  }

  /** Buffers waiting for reuse (tests, metrics). */
  get size(): number {
    return this.free.length;
  }
}

/**
 * Decodes one WebSocket message into a frame. The payload is a view on `buf`, not a
 * copy. Throws ProtocolError for anything malformed: short header, length field
 * disagreeing with the message size, unknown type, payload above `maxPayload`.
 * The version is returned as-is; the session decides what a mismatch means.
 */
export function decodeFrame(buf: Buffer, maxPayload: number): Frame {
  const frame = decodeFrameAt(buf, 0, maxPayload);
  if (frame.end !== buf.length) {
    throw new ProtocolError(
      `frame length field says ${frame.payload.length} bytes but the message carries ${buf.length - FRAME_HEADER_SIZE}`,
    );
  }
  return frame;
}

/**
 * Decodes the frame that starts at `offset` of a message holding one or more frames
 * back to back (see shared/PROTOCOL.md §1); `end` is where the next one starts. The
 * payload is a view on `buf`. Throws ProtocolError like `decodeFrame`, and for a frame
 * whose length field runs past the end of the message.
 */
export function decodeFrameAt(
  buf: Buffer,
  offset: number,
  maxPayload: number,
): Frame & { end: number } {
  const left = buf.length - offset;
  if (left < FRAME_HEADER_SIZE) {
    throw new ProtocolError(`frame of ${left} bytes is shorter than the 12-byte header`);
  }
  const version = buf[offset]!;
  const type = buf[offset + 1]!;
  const flags = buf.readUInt16BE(offset + 2);
  const streamId = buf.readUInt32BE(offset + 4);
  const length = buf.readUInt32BE(offset + 8);
  if (length > left - FRAME_HEADER_SIZE) {
    throw new ProtocolError(
      `frame length field says ${length} bytes but the message carries ${left - FRAME_HEADER_SIZE}`,
    );
  }
  if (version === PROTOCOL_VERSION && type > MAX_FRAME_TYPE) {
    throw new ProtocolError(`unknown frame type 0x${type.toString(16)}`);
  }
  if (length > maxPayload) {
    throw new ProtocolError(`frame payload of ${length} bytes exceeds the limit of ${maxPayload}`);
  }
  const start = offset + FRAME_HEADER_SIZE;
  return {
    version,
    type: type as FrameType,
    flags,
    streamId,
    payload: buf.subarray(start, start + length),
    end: start + length,
  };
}

/** u32 code + UTF-8 message, the payload of RESET and GOAWAY. */
export function encodeCodeMessage(code: number, message: string): Buffer {
  const text = Buffer.from(message.slice(0, 1024), 'utf8');
  const buf = Buffer.allocUnsafe(4 + text.length);
  buf.writeUInt32BE(code >>> 0, 0);
  text.copy(buf, 4);
  return buf;
}

export function decodeCodeMessage(payload: Buffer): { code: number; message: string } {
  if (payload.length < 4) throw new ProtocolError('RESET/GOAWAY payload shorter than 4 bytes');
  return { code: payload.readUInt32BE(0), message: payload.subarray(4).toString('utf8') };
}

export function encodeU32(value: number): Buffer {
  const buf = Buffer.allocUnsafe(4);
  buf.writeUInt32BE(value >>> 0, 0);
  return buf;
}
