/**
 * Frame codec: fixed wire bytes for every frame type, and every way a message can fail
 * to be one frame (split, truncated, wrong length field, unknown type, oversized,
 * garbage). Messages helpers (code+message payloads, HELLO validation) too.
 */
import t from 'tap';
import { ProtocolError } from '../../shared/errors.js';
import {
  ErrorCode,
  FRAME_HEADER_SIZE,
  FrameBufferPool,
  FrameType,
  PROTOCOL_VERSION,
  decodeCodeMessage,
  decodeFrame,
  encodeCodeMessage,
  encodeFrame,
  encodeU32,
  errorCodeName,
  writeFrame,
} from '../../shared/protocol/frame.js';
import { isHelloMessage, parseJson } from '../../shared/protocol/messages.js';
import { Prng } from '../helpers/prng.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const MAX = 64 * 1024;

t.test('constants', async (t) => {
  t.equal(PROTOCOL_VERSION, 1);
  t.equal(FRAME_HEADER_SIZE, 12);
  t.same(FrameType, {
    HELLO: 0,
    OPEN: 1,
    DATA: 2,
    WINDOW_UPDATE: 3,
    FIN: 4,
    RESET: 5,
    PING: 6,
    PONG: 7,
    GOAWAY: 8,
    REPLY: 9,
  });
  t.equal(ErrorCode.NO_ERROR, 0);
  t.equal(ErrorCode.PROTOCOL_ERROR, 1);
  t.equal(ErrorCode.REFUSED_STREAM, 5);
  t.equal(ErrorCode.VERSION_MISMATCH, 7);
  t.equal(ErrorCode.REJECTED, 13);
  t.equal(errorCodeName(ErrorCode.FLOW_CONTROL_ERROR), 'FLOW_CONTROL_ERROR');
  t.equal(errorCodeName(99), 'UNKNOWN_99');
});

// Each row: frame fields and the exact bytes on the wire.
const vectors: {
  name: string;
  type: FrameType;
  streamId: number;
  payload?: Buffer;
  flags?: number;
  version?: number;
  wire: string;
}[] = [
  {
    name: 'HELLO, empty payload, stream 0',
    type: FrameType.HELLO,
    streamId: 0,
    wire: '01 00 0000 00000000 00000000',
  },
  {
    name: 'HELLO with JSON',
    type: FrameType.HELLO,
    streamId: 0,
    payload: Buffer.from('{}'),
    wire: '01 00 0000 00000000 00000002 7b7d',
  },
  {
    name: 'OPEN stream 1',
    type: FrameType.OPEN,
    streamId: 1,
    payload: Buffer.from('{"a":1}'),
    wire: '01 01 0000 00000001 00000007 7b2261223a317d',
  },
  {
    name: 'DATA stream 5 "hi"',
    type: FrameType.DATA,
    streamId: 5,
    payload: Buffer.from('hi'),
    wire: '01 02 0000 00000005 00000002 6869',
  },
  {
    name: 'WINDOW_UPDATE stream 3 +128 KiB',
    type: FrameType.WINDOW_UPDATE,
    streamId: 3,
    payload: encodeU32(128 * 1024),
    wire: '01 03 0000 00000003 00000004 00020000',
  },
  {
    name: 'FIN stream 2',
    type: FrameType.FIN,
    streamId: 2,
    wire: '01 04 0000 00000002 00000000',
  },
  {
    name: 'RESET stream 7 REFUSED_STREAM "no"',
    type: FrameType.RESET,
    streamId: 7,
    payload: encodeCodeMessage(ErrorCode.REFUSED_STREAM, 'no'),
    wire: '01 05 0000 00000007 00000006 00000005 6e6f',
  },
  {
    name: 'PING',
    type: FrameType.PING,
    streamId: 0,
    payload: hex('0000000000000001'),
    wire: '01 06 0000 00000000 00000008 0000000000000001',
  },
  {
    name: 'PONG',
    type: FrameType.PONG,
    streamId: 0,
    payload: hex('0000000000000001'),
    wire: '01 07 0000 00000000 00000008 0000000000000001',
  },
  {
    name: 'GOAWAY SHUTDOWN "bye"',
    type: FrameType.GOAWAY,
    streamId: 0,
    payload: encodeCodeMessage(ErrorCode.SHUTDOWN, 'bye'),
    wire: '01 08 0000 00000000 00000007 0000000a 627965',
  },
  {
    name: 'REPLY stream 9',
    type: FrameType.REPLY,
    streamId: 9,
    payload: Buffer.from('{}'),
    wire: '01 09 0000 00000009 00000002 7b7d',
  },
  {
    name: 'flags and the largest stream id',
    type: FrameType.FIN,
    streamId: 0xffffffff,
    flags: 0xa5f0,
    wire: '01 04 a5f0 ffffffff 00000000',
  },
  {
    name: 'another version byte',
    type: FrameType.GOAWAY,
    streamId: 0,
    payload: encodeCodeMessage(ErrorCode.VERSION_MISMATCH, ''),
    version: 2,
    wire: '02 08 0000 00000000 00000004 00000007',
  },
];

t.test('encodeFrame / decodeFrame with fixed bytes', async (t) => {
  for (const v of vectors) {
    const wire = hex(v.wire);
    const encoded = encodeFrame(v.type, v.streamId, v.payload, v.flags, v.version);
    t.equal(encoded.toString('hex'), wire.toString('hex'), `encode: ${v.name}`);
    const frame = decodeFrame(wire, MAX);
    t.same(
      {
        version: frame.version,
        type: frame.type,
        flags: frame.flags,
        streamId: frame.streamId,
        payload: frame.payload.toString('hex'),
      },
      {
        version: v.version ?? PROTOCOL_VERSION,
        type: v.type,
        flags: v.flags ?? 0,
        streamId: v.streamId,
        payload: (v.payload ?? Buffer.alloc(0)).toString('hex'),
      },
      `decode: ${v.name}`,
    );
  }
});

t.test('decodeFrame returns a view on the message, not a copy', async (t) => {
  const wire = hex('01 02 0000 00000001 00000003 616263');
  const frame = decodeFrame(wire, MAX);
  wire[FRAME_HEADER_SIZE] = 0x7a;
  t.equal(frame.payload.toString(), 'zbc');
});

t.test('encodeFrame copies the payload once', async (t) => {
  const payload = Buffer.from('abc');
  const encoded = encodeFrame(FrameType.DATA, 1, payload);
  payload[0] = 0x7a;
  t.equal(encoded.subarray(FRAME_HEADER_SIZE).toString(), 'abc');
  t.equal(encodeFrame(FrameType.DATA, 1, Buffer.alloc(0)).length, FRAME_HEADER_SIZE);
});

/** What decodeFrame throws for a malformed message. */
const protocolError = (message: RegExp) => ({
  name: 'ProtocolError',
  code: 'QT_ERR_PROTOCOL',
  message,
});

t.test('writeFrame into a larger buffer returns a view of exactly the frame', async (t) => {
  const buf = Buffer.alloc(FRAME_HEADER_SIZE + 100, 0xee);
  const payload = Buffer.from('hello');
  const frame = writeFrame(buf, FrameType.DATA, 7, payload);
  t.equal(frame.length, FRAME_HEADER_SIZE + 5);
  t.equal(frame.buffer, buf.buffer, 'written in place');
  t.same(frame, encodeFrame(FrameType.DATA, 7, payload), 'same bytes as encodeFrame');
  const decoded = decodeFrame(frame, MAX);
  t.equal(decoded.payload.toString(), 'hello');
});

t.test('FrameBufferPool keeps at most maxBuffers of its own size', async (t) => {
  const pool = new FrameBufferPool(64, 2);
  const a = pool.take();
  const b = pool.take();
  const c = pool.take();
  t.equal(a.length, 64);
  t.equal(pool.reused, 0, 'an empty pool allocates');
  pool.give(a);
  pool.give(b);
  pool.give(c);
  t.equal(pool.size, 2, 'the third buffer is dropped');
  pool.give(Buffer.alloc(32));
  t.equal(pool.size, 2, 'a buffer of another size is never kept');
  const again = pool.take();
  t.ok(again === a || again === b, 'a given-back buffer is reused');
  t.equal(pool.reused, 1);
  t.equal(pool.taken, 4);
});

t.test('decodeFrame errors', async (t) => {
  for (let n = 0; n < FRAME_HEADER_SIZE; n++) {
    t.throws(
      () => decodeFrame(Buffer.alloc(n), MAX),
      protocolError(/shorter than the 12-byte header/),
      `${n}-byte message`,
    );
  }
  t.throws(
    () => decodeFrame(hex('01 02 0000 00000001 00000005 6869'), MAX),
    protocolError(/length field says 5 bytes but the message carries 2/),
    'length field larger than the message',
  );
  t.throws(
    () => decodeFrame(hex('01 02 0000 00000001 00000001 6869'), MAX),
    protocolError(/length field says 1 bytes but the message carries 2/),
    'length field smaller than the message',
  );
  t.throws(
    () => decodeFrame(hex('01 02 0000 00000001 ffffffff'), MAX),
    protocolError(/length field says 4294967295/),
    'length field near 2^32',
  );
  for (const type of [0x0a, 0x0b, 0x7f, 0xff]) {
    t.throws(
      () =>
        decodeFrame(hex(`01 ${type.toString(16).padStart(2, '0')} 0000 00000000 00000000`), MAX),
      protocolError(/unknown frame type/),
      `unknown type 0x${type.toString(16)}`,
    );
  }
  t.throws(
    () => decodeFrame(encodeFrame(FrameType.DATA, 1, Buffer.alloc(101)), 100),
    protocolError(/exceeds the limit of 100/),
    'payload above maxPayload',
  );
  t.equal(decodeFrame(encodeFrame(FrameType.DATA, 1, Buffer.alloc(100)), 100).payload.length, 100);
  // Another version: the type is not judged (the session reports the mismatch instead).
  t.equal(decodeFrame(hex('02 ff 0000 00000000 00000000'), MAX).version, 2);
});

t.test('a frame split across two messages is two malformed messages', async (t) => {
  const frames = vectors.map((v) => encodeFrame(v.type, v.streamId, v.payload, v.flags, v.version));
  frames.push(encodeFrame(FrameType.DATA, 3, Buffer.alloc(1000, 0x61)));
  let checked = 0;
  const failures: string[] = [];
  const rejects = (buf: Buffer): boolean => {
    try {
      decodeFrame(buf, MAX);
      return false;
    } catch (err) {
      return err instanceof ProtocolError;
    }
  };
  for (const wire of frames) {
    for (let at = 1; at < wire.length; at++) {
      const head = wire.subarray(0, at);
      const tail = wire.subarray(at);
      // Neither chunk is a frame: the head is short or its length field disagrees, and the
      // tail's "length field" would have to match exactly the bytes left.
      if (!rejects(head)) failures.push(`head ${head.toString('hex')}`);
      if (!rejects(tail)) failures.push(`tail ${tail.toString('hex')}`);
      // Joined again, the chunks are the original frame.
      const joined = decodeFrame(Buffer.concat([head, tail]), MAX);
      if (joined.streamId !== wire.readUInt32BE(4)) failures.push(`join ${wire.toString('hex')}`);
      checked++;
    }
  }
  t.same(failures, [], `${checked} split points`);
  t.ok(checked > 1000);
});

t.test('two frames in one message are rejected', async (t) => {
  const a = encodeFrame(FrameType.FIN, 1);
  const b = encodeFrame(FrameType.FIN, 3);
  t.throws(() => decodeFrame(Buffer.concat([a, b]), MAX), ProtocolError);
});

t.test('garbage never throws anything but ProtocolError', async (t) => {
  const rng = new Prng(0x5eed);
  let rejected = 0;
  let accepted = 0;
  const failures: string[] = [];
  for (let i = 0; i < 20_000; i++) {
    const length = rng.int(0, 40);
    const buf = rng.bytes(length);
    // Bias some messages towards plausible headers so the later checks are reached.
    if (length >= FRAME_HEADER_SIZE && rng.chance(0.5)) {
      if (rng.chance(0.8)) buf[0] = PROTOCOL_VERSION;
      buf[1] = rng.int(0, 12);
      buf.writeUInt32BE(rng.chance(0.7) ? length - FRAME_HEADER_SIZE : rng.int(0, 64), 8);
    }
    try {
      const frame = decodeFrame(buf, 16);
      const ok =
        frame.payload.length === buf.readUInt32BE(8) &&
        frame.payload.length <= 16 &&
        (frame.version !== PROTOCOL_VERSION || frame.type <= FrameType.REPLY);
      if (!ok) failures.push(`accepted ${buf.toString('hex')}`);
      accepted++;
    } catch (err) {
      if (!(err instanceof ProtocolError))
        failures.push(`${String(err)} on ${buf.toString('hex')}`);
      rejected++;
    }
  }
  t.same(failures, []);
  t.ok(accepted > 100, `${accepted} accepted`);
  t.ok(rejected > 10_000, `${rejected} rejected`);
});

t.test('code + message payloads', async (t) => {
  t.equal(
    encodeCodeMessage(ErrorCode.CANCEL, 'héllo').toString('hex'),
    '00000006' + Buffer.from('héllo').toString('hex'),
  );
  t.same(decodeCodeMessage(hex('0000000b 6f6f7073')), { code: 11, message: 'oops' });
  t.same(decodeCodeMessage(hex('00000000')), { code: 0, message: '' });
  t.same(decodeCodeMessage(hex('ffffffff')), { code: 0xffffffff, message: '' });
  t.throws(() => decodeCodeMessage(hex('000000')), ProtocolError);
  t.throws(() => decodeCodeMessage(Buffer.alloc(0)), ProtocolError);
  // Messages are capped at 1024 characters.
  const long = encodeCodeMessage(ErrorCode.INTERNAL_ERROR, 'x'.repeat(5000));
  t.equal(long.length, 4 + 1024);
  t.equal(encodeU32(0xdeadbeef).toString('hex'), 'deadbeef');
});

t.test('HELLO message validation', async (t) => {
  const good = {
    protocol: 1,
    windowBytes: 262144,
    maxStreams: 1000,
    maxFrameBytes: 65536,
    app: {},
  };
  t.ok(isHelloMessage(good));
  t.ok(isHelloMessage({ ...good, maxStreams: 0 }), 'maxStreams 0 refuses every stream');
  t.ok(isHelloMessage({ ...good, windowBytes: 0x7fffffff }));
  for (const [name, bad] of [
    ['null', null],
    ['array', []],
    ['string', 'hello'],
    ['no protocol', { ...good, protocol: undefined }],
    ['fractional protocol', { ...good, protocol: 1.5 }],
    ['window 0', { ...good, windowBytes: 0 }],
    ['window above 2^31-1', { ...good, windowBytes: 0x80000000 }],
    ['negative maxStreams', { ...good, maxStreams: -1 }],
    ['maxFrameBytes 0', { ...good, maxFrameBytes: 0 }],
    ['maxFrameBytes as string', { ...good, maxFrameBytes: '65536' }],
  ] as const) {
    t.notOk(isHelloMessage(bad), name);
  }
  t.same(parseJson(Buffer.from('{"a":1}')), { a: 1 });
  t.equal(parseJson(Buffer.from('{nope')), undefined);
  t.equal(parseJson(hex('ff fe')), undefined);
});
