/**
 * Malformed input, one case at a time: each closes only the session that received it,
 * with GOAWAY PROTOCOL_ERROR (VERSION_MISMATCH for a foreign version byte) and a
 * ProtocolError as `closeError`, while a bystander session carries on.
 */
import { once } from 'node:events';
import t from 'tap';
import { ProtocolError } from '../../shared/errors.js';
import {
  ErrorCode,
  FRAME_HEADER_SIZE,
  FrameType,
  encodeCodeMessage,
  encodeFrame,
  encodeU32,
} from '../../shared/protocol/frame.js';
import { muxPair } from '../helpers/mux-pair.js';
import { rawClient, rawServer, type RawPeer } from '../helpers/raw-peer.js';

const KiB = 1024;
const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
const META = json({});

/** A raw frame header with any fields, then `payloadBytes` zero bytes. */
function header(version: number, type: number, streamId: number, length: number, payloadBytes = 0) {
  const buf = Buffer.alloc(FRAME_HEADER_SIZE + payloadBytes);
  buf[0] = version;
  buf[1] = type;
  buf.writeUInt32BE(streamId, 4);
  buf.writeUInt32BE(length, 8);
  return buf;
}

interface Case {
  name: string;
  /** Send the bad input (the handshake is done unless `beforeHandshake`). */
  run: (raw: RawPeer) => void | Promise<void>;
  message: RegExp;
  beforeHandshake?: boolean;
  /** Expected GOAWAY code (default PROTOCOL_ERROR) and closeError code. */
  goAwayCode?: number;
  errorCode?: string;
  /** Session options for the victim. */
  options?: Parameters<typeof rawServer>[0];
  /** Test the client role instead (the raw peer plays the relay). */
  client?: boolean;
}

const openStream1 = (raw: RawPeer) => raw.sendFrame(FrameType.OPEN, 1, META);

const cases: Case[] = [
  {
    name: 'unknown frame type',
    run: (raw) => raw.send(header(1, 0x0a, 0, 0)),
    message: /unknown frame type 0xa/,
  },
  {
    name: 'length field larger than the message',
    run: (raw) => raw.send(header(1, FrameType.DATA, 1, 100, 10)),
    message: /length field says 100 bytes but the message carries 10/,
  },
  {
    // A message holds whole frames back to back: what follows the PING must be a frame.
    name: 'bytes after the last whole frame of a message',
    run: (raw) => raw.send(header(1, FrameType.PING, 0, 8, 11)),
    message: /frame of 3 bytes is shorter than the 12-byte header/,
  },
  {
    name: 'message shorter than a header',
    run: (raw) => raw.send(Buffer.from([1, 2, 0])),
    message: /shorter than the 12-byte header/,
  },
  {
    name: 'empty message (what a text WebSocket message becomes)',
    run: (raw) => raw.send(Buffer.alloc(0)),
    message: /frame of 0 bytes/,
  },
  {
    name: 'garbage bytes',
    run: (raw) => raw.send(Buffer.from('GET / HTTP/1.1\r\nHost: qt.localhost\r\n\r\n')),
    message: /length field says/,
  },
  {
    name: 'a frame split across two messages',
    run: (raw) => {
      const frame = encodeFrame(FrameType.DATA, 1, Buffer.alloc(100));
      raw.send(frame.subarray(0, 40));
      raw.send(frame.subarray(40));
    },
    message: /length field says 100 bytes but the message carries 28/,
  },
  {
    name: 'frame above the size limit',
    run: (raw) => raw.send(encodeFrame(FrameType.DATA, 1, Buffer.alloc(64 * KiB + 1))),
    message: /exceeds the limit of 65536/,
  },
  {
    name: 'DATA frame above maxFrameBytes (but below the metadata limit)',
    options: { maxFrameBytes: 16 * KiB },
    run: (raw) => {
      openStream1(raw);
      raw.sendFrame(FrameType.DATA, 1, Buffer.alloc(16 * KiB + 1));
    },
    message: /DATA frame of 16385 bytes exceeds 16384/,
  },
  {
    name: 'DATA beyond the window',
    options: { paused: true },
    run: (raw) => {
      openStream1(raw);
      for (let i = 0; i < 4; i++) raw.sendFrame(FrameType.DATA, 1, Buffer.alloc(64 * KiB));
      raw.sendFrame(FrameType.DATA, 1, Buffer.alloc(1)); // 256 KiB + 1
    },
    message: /peer sent 1 bytes on stream 1 with only 0 bytes of window/,
    errorCode: 'QT_ERR_FLOW_CONTROL',
  },
  {
    name: 'DATA for a never-opened stream',
    run: (raw) => raw.sendFrame(FrameType.DATA, 9, Buffer.from('x')),
    message: /DATA frame for stream 9, which was never opened/,
  },
  {
    name: 'DATA for a stream id of our parity we never opened',
    run: (raw) => raw.sendFrame(FrameType.DATA, 2, Buffer.from('x')),
    message: /DATA frame for stream 2, which was never opened/,
  },
  {
    name: 'FIN for a never-opened stream',
    run: (raw) => raw.sendFrame(FrameType.FIN, 11),
    message: /FIN frame for stream 11, which was never opened/,
  },
  {
    name: 'DATA on stream 0',
    run: (raw) => raw.sendFrame(FrameType.DATA, 0, Buffer.from('x')),
    message: /DATA frame on stream 0/,
  },
  {
    name: 'window overflow (WINDOW_UPDATE past 2^31-1)',
    run: (raw) => {
      openStream1(raw);
      raw.sendFrame(FrameType.WINDOW_UPDATE, 1, encodeU32(0x7fffffff));
    },
    message: /window overflow on stream 1/,
    errorCode: 'QT_ERR_FLOW_CONTROL',
  },
  {
    name: 'WINDOW_UPDATE of zero',
    run: (raw) => {
      openStream1(raw);
      raw.sendFrame(FrameType.WINDOW_UPDATE, 1, encodeU32(0));
    },
    message: /WINDOW_UPDATE of zero/,
  },
  {
    name: 'WINDOW_UPDATE with a 3-byte payload',
    run: (raw) => {
      openStream1(raw);
      raw.sendFrame(FrameType.WINDOW_UPDATE, 1, Buffer.alloc(3, 1));
    },
    message: /malformed WINDOW_UPDATE/,
  },
  {
    name: 'OPEN with our parity',
    run: (raw) => raw.sendFrame(FrameType.OPEN, 2, META),
    message: /peer opened stream 2 with our parity/,
  },
  {
    name: 'OPEN on stream 0',
    run: (raw) => raw.sendFrame(FrameType.OPEN, 0, META),
    message: /peer opened stream 0/,
  },
  {
    name: 'OPEN id not increasing',
    run: (raw) => {
      raw.sendFrame(FrameType.OPEN, 5, META);
      raw.sendFrame(FrameType.OPEN, 3, META);
    },
    message: /stream id 3 reused or not increasing/,
  },
  {
    name: 'OPEN id reused',
    run: (raw) => {
      openStream1(raw);
      openStream1(raw);
    },
    message: /stream id 1 reused/,
  },
  {
    name: 'OPEN metadata not JSON',
    run: (raw) => raw.sendFrame(FrameType.OPEN, 1, Buffer.from('{nope')),
    message: /OPEN metadata is not a JSON object/,
  },
  {
    name: 'OPEN metadata a JSON array',
    run: (raw) => raw.sendFrame(FrameType.OPEN, 1, json([1, 2])),
    message: /OPEN metadata is not a JSON object/,
  },
  {
    name: 'OPEN metadata above maxMetadataBytes',
    options: { maxMetadataBytes: 1000 },
    run: (raw) => raw.sendFrame(FrameType.OPEN, 1, json({ pad: 'x'.repeat(2000) })),
    message: /exceeds the limit of 65536|OPEN metadata too large/,
  },
  {
    name: 'DATA after FIN',
    run: (raw) => {
      openStream1(raw);
      raw.sendFrame(FrameType.FIN, 1);
      raw.sendFrame(FrameType.DATA, 1, Buffer.from('late'));
    },
    message: /DATA after FIN on stream 1/,
    options: { paused: true }, // keep the stream open on our side
  },
  {
    name: 'second FIN',
    run: (raw) => {
      openStream1(raw);
      raw.sendFrame(FrameType.FIN, 1);
      raw.sendFrame(FrameType.FIN, 1);
    },
    message: /second FIN on stream 1/,
    options: { paused: true },
  },
  {
    name: 'RESET with a short payload',
    run: (raw) => {
      openStream1(raw);
      raw.sendFrame(FrameType.RESET, 1, Buffer.from([0, 0]));
    },
    message: /RESET\/GOAWAY payload shorter than 4 bytes/,
  },
  {
    name: 'REPLY on a stream the peer opened',
    run: (raw) => {
      openStream1(raw);
      raw.sendFrame(FrameType.REPLY, 1, META);
    },
    message: /REPLY on a stream the peer opened/,
  },
  {
    name: 'PING with a 4-byte payload',
    run: (raw) => raw.sendFrame(FrameType.PING, 0, Buffer.alloc(4)),
    message: /malformed PING/,
  },
  {
    name: 'PING on a stream',
    run: (raw) => {
      openStream1(raw);
      raw.sendFrame(FrameType.PING, 1, Buffer.alloc(8));
    },
    message: /malformed PING/,
  },
  {
    name: 'PONG with a 9-byte payload',
    run: (raw) => raw.sendFrame(FrameType.PONG, 0, Buffer.alloc(9)),
    message: /malformed PONG/,
  },
  {
    name: 'GOAWAY on a stream',
    run: (raw) => raw.sendFrame(FrameType.GOAWAY, 1, encodeCodeMessage(0, '')),
    message: /GOAWAY on a non-zero stream/,
  },
  {
    name: 'second HELLO',
    run: (raw) => raw.sendFrame(FrameType.HELLO, 0, json({})),
    message: /second HELLO/,
  },
  {
    name: 'frame before the handshake',
    beforeHandshake: true,
    run: (raw) => openStream1(raw),
    message: /OPEN frame before the handshake completed/,
  },
  {
    name: 'HELLO that is not JSON',
    beforeHandshake: true,
    run: (raw) => raw.sendFrame(FrameType.HELLO, 0, Buffer.from('hello?')),
    message: /HELLO payload is not a valid hello message/,
  },
  {
    name: 'HELLO with a window above 2^31-1',
    beforeHandshake: true,
    run: (raw) =>
      raw.sendFrame(
        FrameType.HELLO,
        0,
        json({ protocol: 1, windowBytes: 2 ** 31, maxStreams: 1, maxFrameBytes: 1, app: {} }),
      ),
    message: /HELLO payload is not a valid hello message/,
  },
  {
    name: 'HELLO on a stream',
    beforeHandshake: true,
    run: (raw) => raw.sendFrame(FrameType.HELLO, 1, json({})),
    message: /HELLO on a non-zero stream/,
  },
  {
    name: 'another version byte mid-session',
    run: (raw) => raw.sendFrame(FrameType.PING, 0, Buffer.alloc(8), 3),
    message: /speaks tunnel protocol v1 but the client speaks v3/,
    goAwayCode: ErrorCode.VERSION_MISMATCH,
    errorCode: 'QT_ERR_VERSION_MISMATCH',
  },
  {
    name: 'client: OPEN with the client parity',
    client: true,
    run: (raw) => raw.sendFrame(FrameType.OPEN, 1, META),
    message: /peer opened stream 1 with our parity/,
  },
  {
    name: 'client: DATA for a never-opened stream',
    client: true,
    run: (raw) => raw.sendFrame(FrameType.DATA, 4, Buffer.from('x')),
    message: /DATA frame for stream 4, which was never opened/,
  },
  {
    name: 'client: relay HELLO that is not a hello',
    client: true,
    beforeHandshake: true,
    run: (raw) => raw.sendFrame(FrameType.HELLO, 0, json({ protocol: 1 })),
    message: /HELLO payload is not a valid hello message/,
  },
];

/** True if the session still answers a PING (the bystander must). */
async function answersPing(raw: RawPeer): Promise<boolean> {
  const before = raw.received.filter((f) => f.type === FrameType.PONG).length;
  raw.sendFrame(FrameType.PING, 0, Buffer.from('bystand!'));
  await raw.settle();
  const after = raw.received.filter((f) => f.type === FrameType.PONG).length;
  return !raw.session.closed && after === before + 1;
}

for (const c of cases) {
  t.test(c.name, async (t) => {
    const make = c.client === true ? rawClient : rawServer;
    const victim = make(c.options);
    const bystander = make(c.options);
    t.teardown(() => {
      victim.session.close();
      bystander.session.close();
    });
    await bystander.handshake();
    if (c.beforeHandshake !== true) await victim.handshake();
    const closed = once(victim.session, 'close');
    await c.run(victim);
    await victim.settle();
    t.ok(victim.session.closed, 'victim closed');
    const [err] = (await closed) as [Error];
    t.type(err, ProtocolError);
    t.match(err.message, c.message);
    t.equal((err as ProtocolError).code, c.errorCode ?? 'QT_ERR_PROTOCOL');
    t.equal(victim.session.closeError, err);
    t.same(victim.goAway()?.code, c.goAwayCode ?? ErrorCode.PROTOCOL_ERROR, 'GOAWAY code');
    t.match(victim.goAway()?.message, c.message, 'GOAWAY says why');
    t.ok(victim.closed, 'connection closed');
    t.equal(victim.session.streamCount, 0);
    // Streams the victim had accepted fail with the protocol error too.
    t.same(
      victim.streamErrors,
      victim.streams.map(() => err),
      `${victim.streams.length} open stream(s) failed with it`,
    );
    t.equal(victim.timers.pending, 0, 'no timer left');
    t.ok(await answersPing(bystander), 'bystander still answers PINGs');
  });
}

t.test('a text WebSocket message is a protocol error (tls-ws)', async (t) => {
  const victim = await muxPair('tls-ws');
  const bystander = await muxPair('tls-ws');
  t.teardown(async () => {
    await victim.close();
    await bystander.close();
  });
  const serverClosed = once(victim.server, 'close');
  const goaway = once(victim.client, 'goaway');
  victim.clientWs!.send('{"hello":"text"}');
  const [err] = (await serverClosed) as [ProtocolError];
  t.type(err, ProtocolError);
  t.match(err.message, /frame of 0 bytes/);
  const [code] = (await goaway) as [number, string];
  t.equal(code, ErrorCode.PROTOCOL_ERROR, 'the client is told why');
  if (!victim.client.closed) await once(victim.client, 'close');
  const rtt = once(bystander.client, 'rtt');
  bystander.client.ping();
  await rtt;
  t.notOk(bystander.server.closed, 'the other session is untouched');
});
