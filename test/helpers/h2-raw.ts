/**
 * A raw HTTP/2 client for the hostile-input suite: TLS with ALPN h2, then hand-made
 * frames (RFC 9113 §4.1) with literal, unindexed HPACK header blocks, so a test can
 * send what a well-behaved client library never would (floods, resets, CONTINUATION
 * without end, more streams than allowed). It reads back frame types, RST_STREAM
 * codes and GOAWAY, and acknowledges the relay's SETTINGS as a real client does.
 */
import tls from 'node:tls';
import type { TestRelay } from './relay-env.js';

export const FrameType = {
  DATA: 0,
  HEADERS: 1,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;
export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export function frame(
  type: number,
  flags: number,
  streamId: number,
  payload: Buffer = Buffer.alloc(0),
): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** HPACK integer with an `n`-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, n: number, first: number): Buffer {
  const max = (1 << n) - 1;
  if (value < max) return Buffer.from([first | value]);
  const out = [first | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return Buffer.from(out);
}

/** A header block of literal fields without indexing, new names, no Huffman coding. */
export function hpack(headers: [string, string][]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of headers) {
    const n = Buffer.from(name, 'latin1');
    const v = Buffer.from(value, 'latin1');
    parts.push(Buffer.from([0x00]), hpackInt(n.length, 7, 0), n, hpackInt(v.length, 7, 0), v);
  }
  return Buffer.concat(parts);
}

/** A GET request's header block for `authority` and `path`. */
export function requestBlock(
  authority: string,
  path = '/',
  extra: [string, string][] = [],
): Buffer {
  return hpack([
    [':method', 'GET'],
    [':scheme', 'https'],
    [':authority', authority],
    [':path', path],
    ...extra,
  ]);
}

export interface RawH2 {
  /** Frames received so far: type, flags, stream and (for RST_STREAM/GOAWAY) the code. */
  readonly frames: { type: number; flags: number; streamId: number; code?: number }[];
  readonly goaway: { code: number } | undefined;
  /** Resolves once the relay closed (or reset) the connection. */
  readonly closed: Promise<void>;
  readonly isClosed: boolean;
  write(data: Buffer): void;
  destroy(): void;
}

/** Connects with ALPN h2 and SNI `servername`, sends the preface and empty SETTINGS. */
export async function rawH2(env: TestRelay, servername: string): Promise<RawH2> {
  const socket = tls.connect({
    host: '127.0.0.1',
    port: env.httpsPort,
    servername,
    ca: env.ca,
    ALPNProtocols: ['h2'],
  });
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  if (socket.alpnProtocol !== 'h2') throw new Error(`ALPN chose ${String(socket.alpnProtocol)}`);
  const frames: RawH2['frames'] = [];
  let goaway: { code: number } | undefined;
  let isClosed = false;
  let buffered = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 9) {
      const length = buffered.readUIntBE(0, 3);
      if (buffered.length < 9 + length) break;
      const type = buffered[3]!;
      const flags = buffered[4]!;
      const streamId = buffered.readUInt32BE(5) & 0x7fffffff;
      const payload = buffered.subarray(9, 9 + length);
      buffered = buffered.subarray(9 + length);
      const f: RawH2['frames'][number] = { type, flags, streamId };
      if (type === FrameType.RST_STREAM) f.code = payload.readUInt32BE(0);
      if (type === FrameType.GOAWAY) {
        f.code = payload.readUInt32BE(4);
        goaway = { code: f.code };
      }
      frames.push(f);
      if (type === FrameType.SETTINGS && (flags & Flag.ACK) === 0 && socket.writable) {
        socket.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
      }
    }
  });
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      isClosed = true;
      resolve();
    }),
  );
  socket.write(Buffer.concat([PREFACE, frame(FrameType.SETTINGS, 0, 0)]));
  return {
    frames,
    get goaway() {
      return goaway;
    },
    closed,
    get isClosed() {
      return isClosed;
    },
    write(data) {
      if (socket.writable) socket.write(data);
    },
    destroy() {
      socket.destroy();
    },
  };
}
