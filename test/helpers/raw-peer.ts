/**
 * A MuxSession wired to a raw in-memory peer: the test plays the other side by sending
 * hand-made (or broken) frames and reads what the session answers, frame by frame.
 * Used by the fuzz, malformed-input and exact flow-control tests.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { MuxSession, type MuxOptions, type Role } from '../../shared/mux/session.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import { memoryTransportPair, type FrameTransport } from '../../shared/mux/transport.js';
import {
  FRAME_HEADER_SIZE,
  FrameType,
  PROTOCOL_VERSION,
  decodeCodeMessage,
  encodeFrame,
} from '../../shared/protocol/frame.js';
import type { HelloMessage } from '../../shared/protocol/messages.js';
import { FakeClock } from './fake-clock.js';

/** A frame as the raw peer saw it (header fields read without validation). */
export interface RawFrame {
  version: number;
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

export interface RawPeer {
  /** The session under test. */
  session: MuxSession;
  /** Stream ids the raw peer may open: odd when it plays the client, even otherwise. */
  firstStreamId: number;
  /** The test's end of the connection. */
  peer: FrameTransport;
  /** Frames the session sent to us, in order. */
  received: RawFrame[];
  /** Streams the session accepted (each drains its input and ends when the peer does). */
  streams: MuxStream[];
  /** Errors the accepted streams emitted. */
  streamErrors: Error[];
  /** True once the connection is closed (by either side). */
  closed: boolean;
  timers: FakeClock;
  /** Sends raw bytes as one message. */
  send(buf: Buffer): void;
  sendFrame(type: number, streamId: number, payload?: Buffer, version?: number): void;
  /** Sends a valid HELLO and waits for the session to be ready. */
  handshake(hello?: Partial<HelloMessage>): Promise<void>;
  /** Lets everything sent so far be delivered and answered. */
  settle(turns?: number): Promise<void>;
  /** The GOAWAY the session sent, decoded, if any. */
  goAway(): { code: number; message: string } | undefined;
}

function readRaw(buf: Buffer): RawFrame {
  return {
    version: buf[0] ?? -1,
    type: buf[1] ?? -1,
    flags: buf.length >= 4 ? buf.readUInt16BE(2) : 0,
    streamId: buf.length >= 8 ? buf.readUInt32BE(4) : 0,
    payload: buf.subarray(FRAME_HEADER_SIZE),
  };
}

export interface RawPeerOptions extends MuxOptions {
  /** Leave accepted streams paused (default: drain them). */
  paused?: boolean;
}

/** A server session (fake timers, keepalive off unless asked) and a raw client peer. */
export function rawServer(options: RawPeerOptions = {}): RawPeer {
  return rawPeer('server', options);
}

/** A client session, already connecting, and a raw relay peer. */
export function rawClient(options: RawPeerOptions = {}): RawPeer {
  return rawPeer('client', options);
}

function rawPeer(role: Role, { paused = false, ...options }: RawPeerOptions): RawPeer {
  const [peer, transport] = memoryTransportPair();
  const timers = new FakeClock();
  const session = new MuxSession(transport, role, {
    keepAliveIntervalMs: 0,
    ...options,
    clock: timers,
  });
  const raw: RawPeer = {
    session,
    firstStreamId: role === 'server' ? 1 : 2,
    peer,
    received: [],
    streams: [],
    streamErrors: [],
    closed: false,
    timers,
    send(buf) {
      peer.send(buf);
    },
    sendFrame(type, streamId, payload, version = PROTOCOL_VERSION) {
      peer.send(encodeFrame(type as FrameType, streamId, payload, 0, version));
    },
    async handshake(hello = {}) {
      const msg: HelloMessage = {
        protocol: PROTOCOL_VERSION,
        windowBytes: 256 * 1024,
        maxStreams: 100,
        maxFrameBytes: 64 * 1024,
        app: {},
        ...hello,
      };
      raw.sendFrame(FrameType.HELLO, 0, Buffer.from(JSON.stringify(msg)));
      await raw.settle();
      if (!session.ready) throw new Error('the session did not complete the handshake');
    },
    async settle(turns = 6) {
      for (let i = 0; i < turns; i++) await nextTurn();
    },
    goAway() {
      const frame = raw.received.find((f) => f.type === FrameType.GOAWAY);
      return frame === undefined ? undefined : decodeCodeMessage(frame.payload);
    },
  };
  peer.onFrame = (buf) => raw.received.push(readRaw(buf));
  peer.onClose = () => {
    raw.closed = true;
  };
  // Tests judge the handshake through session.ready / closed / closeError instead.
  if (role === 'server') session.accept(() => ({ welcome: true })).catch(() => {});
  else session.connect({ hello: 'relay' }).catch(() => {});
  session.on('stream', (stream) => {
    raw.streams.push(stream);
    stream.on('error', (err) => raw.streamErrors.push(err));
    stream.on('end', () => stream.end());
    if (!paused) stream.resume();
  });
  return raw;
}
