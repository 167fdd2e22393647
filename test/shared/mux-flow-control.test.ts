/**
 * Flow control, with numbers: a stalled reader holds its sender to one window, credit
 * comes back in half-window WINDOW_UPDATEs, a stalled stream does not block the others
 * (no head-of-line blocking), and socket congestion pauses and resumes every stream.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import t from 'tap';
import type { MuxSession } from '../../shared/mux/session.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import type { FrameTransport } from '../../shared/mux/transport.js';
import { FRAME_HEADER_SIZE, FrameType, encodeU32 } from '../../shared/protocol/frame.js';
import { muxPair, type PairKind } from '../helpers/mux-pair.js';
import { rawServer } from '../helpers/raw-peer.js';
import { echoStreams, hashReader, roundTrip, sha256 } from '../helpers/mux-streams.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const kinds: PairKind[] = ['memory', 'tls-ws'];

/** One PING/PONG: every frame either side sent before it has been delivered. */
async function roundTripPing(session: MuxSession): Promise<void> {
  const rtt = once(session, 'rtt');
  session.ping();
  await rtt;
}

/** Ping until `done()` holds (each round trip lets in-flight frames land). */
async function pingUntil(session: MuxSession, done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (done()) return;
    await roundTripPing(session);
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** Watches what a session hands to its transport: DATA bytes and the largest backlog. */
function watchTransport(transport: FrameTransport): {
  dataBytes: () => number;
  maxBufferedBytes: () => number;
  reset: () => void;
} {
  let dataBytes = 0;
  let maxBufferedBytes = 0;
  const send = transport.send.bind(transport);
  transport.send = (frame, cb) => {
    if (frame[1] === FrameType.DATA) dataBytes += frame.length - FRAME_HEADER_SIZE;
    send(frame, cb);
    maxBufferedBytes = Math.max(maxBufferedBytes, transport.bufferedAmount);
  };
  return {
    dataBytes: () => dataBytes,
    maxBufferedBytes: () => maxBufferedBytes,
    reset: () => {
      dataBytes = 0;
      maxBufferedBytes = 0;
    },
  };
}

const windows = [
  { name: 'default window', server: {} as { windowBytes?: number; maxFrameBytes?: number } },
  {
    name: '100 000-byte window, 16 KiB frames',
    server: { windowBytes: 100_000, maxFrameBytes: 16 * KiB },
  },
];

for (const kind of kinds) {
  for (const { name, server } of windows) {
    t.test(
      `a reader that never reads holds the sender to one window (${name}, ${kind})`,
      async (t) => {
        const windowBytes = server.windowBytes ?? 256 * KiB;
        const frameBytes = server.maxFrameBytes ?? 64 * KiB;
        const pair = await muxPair(kind, { server });
        t.teardown(() => pair.close());
        const watch = watchTransport(pair.clientTransport);
        const accepted = new Promise<MuxStream>((resolve) => pair.server.once('stream', resolve));

        const payload = randomBytes(3 * MiB + 7);
        const s = pair.client.openStream({});
        s.end(payload);
        const reader = await accepted; // paused: nobody reads

        await pingUntil(pair.client, () => reader.recvWindow === 0, 'the window to fill');
        // A few more round trips: nothing else moves while the reader is paused.
        for (let i = 0; i < 3; i++) await roundTripPing(pair.client);

        t.equal(s.bytesSent, windowBytes, 'stream.bytesSent is exactly one window');
        t.ok(s.bytesSent <= windowBytes, 'bytesSent <= windowBytes while paused');
        t.equal(watch.dataBytes(), windowBytes, 'DATA handed to the transport: one window');
        const slack = Math.ceil(windowBytes / frameBytes + 1) * FRAME_HEADER_SIZE + frameBytes;
        t.ok(
          watch.maxBufferedBytes() <= windowBytes + slack,
          `transport backlog peaked at ${watch.maxBufferedBytes()} (window + one frame + headers)`,
        );
        t.equal(reader.readableLength, windowBytes, 'the receiver buffers one window');
        t.equal(reader.bytesReceived, windowBytes);
        t.equal(s.queuedBytes, payload.length - windowBytes, 'the rest waits in the sender');

        // Resume: everything arrives, intact.
        const got = hashReader(reader);
        await once(reader, 'end');
        t.same(got(), { sha256: sha256(payload), bytes: payload.length });
        t.equal(s.bytesSent, payload.length);
        reader.end();
        await finished(s.resume());
      },
    );
  }

  t.test(`a slow consumer never buffers more than the window (${kind})`, async (t) => {
    const windowBytes = 128 * KiB;
    // Fixed window (auto-tuning off): the bound is exactly one window.
    const pair = await muxPair(kind, { server: { windowBytes, maxWindowBytes: windowBytes } });
    t.teardown(() => pair.close());
    let maxBuffered = 0;
    let consumed = 0;
    let taken = 0; // bytes the consumer took out of the mux stream
    const done = new Promise<void>((resolve, reject) => {
      pair.server.once('stream', (s) => {
        s.on('data', (chunk: Buffer) => {
          taken += chunk.length;
        });
        const slow = new Writable({
          highWaterMark: 8 * KiB,
          write(chunk: Buffer, _enc, cb) {
            consumed += chunk.length;
            maxBuffered = Math.max(maxBuffered, s.readableLength);
            setImmediate(cb); // a consumer slower than the socket
          },
        });
        pipeline(s, slow).then(() => {
          s.end();
          resolve();
        }, reject);
      });
    });
    const s = pair.client.openStream({});
    let maxAhead = 0;
    s.on('drain', () => {
      maxAhead = Math.max(maxAhead, s.bytesSent - taken);
    });
    const payload = randomBytes(2 * MiB);
    for (let i = 0; i < payload.length; i += 32 * KiB) {
      maxAhead = Math.max(maxAhead, s.bytesSent - taken);
      if (!s.write(payload.subarray(i, i + 32 * KiB))) await once(s, 'drain');
    }
    s.end();
    await done;
    await finished(s.resume());
    t.equal(consumed, payload.length);
    t.ok(maxBuffered <= windowBytes, `receiver buffered at most ${maxBuffered} bytes`);
    t.ok(
      maxAhead <= windowBytes,
      `sender was at most ${maxAhead} bytes ahead of what the consumer took`,
    );
  });

  t.test(`head-of-line: a stalled stream does not block another (${kind})`, async (t) => {
    const pair = await muxPair(kind);
    t.teardown(() => pair.close());
    const stalled = new Promise<MuxStream>((resolve) => pair.server.once('stream', resolve));
    const a = pair.client.openStream({ name: 'A' });
    const aPayload = randomBytes(2 * MiB);
    a.end(aPayload);
    const aReader = await stalled;
    await pingUntil(pair.client, () => aReader.recvWindow === 0, 'stream A to stall');
    t.equal(a.bytesSent, 256 * KiB, 'A exhausted its window');

    // B echoes 1 MiB through the same session while A is stuck.
    const errors = echoStreams(pair.server);
    const b = randomBytes(MiB);
    const echoed = await roundTrip(pair.client, b);
    t.same({ sha256: echoed.sha256, bytes: echoed.bytes }, { sha256: sha256(b), bytes: MiB });
    t.equal(a.bytesSent, 256 * KiB, 'A is still stalled');
    t.equal(aReader.readableLength, 256 * KiB);

    const got = hashReader(aReader);
    await once(aReader, 'end');
    t.same(got(), { sha256: sha256(aPayload), bytes: aPayload.length });
    aReader.end();
    await finished(a.resume());
    t.same(errors, []);
  });

  t.test(`consumers that drain the whole buffer in one read() get more (${kind})`, async (t) => {
    // Readable calls _read before it removes the chunk being read; credit must still flow
    // to a consumer that empties a full window in one read() ('readable' + read(),
    // for await).
    const pair = await muxPair(kind);
    t.teardown(() => pair.close());
    for (const style of ['readable', 'for-await'] as const) {
      const accepted = new Promise<MuxStream>((resolve) => pair.server.once('stream', resolve));
      const payload = randomBytes(MiB + 1);
      const s = pair.client.openStream({});
      s.end(payload);
      const reader = await accepted;
      await pingUntil(pair.client, () => reader.recvWindow === 0, 'the window to fill');
      const chunks: Buffer[] = [];
      if (style === 'readable') {
        reader.on('readable', () => {
          for (let c: Buffer | null; (c = reader.read() as Buffer | null) !== null;) chunks.push(c);
        });
        await once(reader, 'end');
      } else {
        for await (const c of reader.iterator({ destroyOnReturn: false })) chunks.push(c as Buffer);
      }
      t.equal(sha256(Buffer.concat(chunks)), sha256(payload), style);
      reader.end();
      await finished(s.resume());
    }
  });

  t.test(`socket congestion pauses and resumes every stream (${kind})`, async (t) => {
    // A tiny high-water mark puts most streams in the drain queue most of the time.
    const pair = await muxPair(kind, {
      client: { sendHighWaterBytes: 16 * KiB },
      server: { sendHighWaterBytes: 16 * KiB },
    });
    t.teardown(() => pair.close());
    const errors = [...echoStreams(pair.server), ...echoStreams(pair.client)];
    const payloads = Array.from({ length: 60 }, (_, i) => randomBytes(50_000 + i * 7_000));
    const results = await Promise.all(
      payloads.map((p, i) => roundTrip(i % 2 === 0 ? pair.client : pair.server, p)),
    );
    t.same(
      results.map((r, i) => r.sha256 === sha256(payloads[i]!)),
      payloads.map(() => true),
    );
    t.same(errors, []);
  });
}

t.test('credit comes back in half-window WINDOW_UPDATEs', async (t) => {
  const raw = rawServer({ windowBytes: 100_000, maxWindowBytes: 100_000 });
  t.teardown(() => raw.session.close());
  await raw.handshake();
  raw.sendFrame(FrameType.OPEN, 1, Buffer.from('{}'));
  const updates = () =>
    raw.received
      .filter((f) => f.type === FrameType.WINDOW_UPDATE)
      .map((f) => [f.streamId, f.payload.readUInt32BE(0)]);
  raw.sendFrame(FrameType.DATA, 1, Buffer.alloc(49_999));
  await raw.settle();
  t.same(updates(), [], 'nothing below half the window');
  raw.sendFrame(FrameType.DATA, 1, Buffer.alloc(1));
  await raw.settle();
  t.same(updates(), [[1, 50_000]], 'half the window consumed: one update for 50 000');
  // The peer may now use 100 000 again: 50 000 left + 50 000 granted.
  raw.sendFrame(FrameType.DATA, 1, Buffer.alloc(50_000));
  raw.sendFrame(FrameType.DATA, 1, Buffer.alloc(50_000));
  await raw.settle();
  t.same(updates(), [
    [1, 50_000],
    [1, 50_000],
    [1, 50_000],
  ]);
  t.notOk(raw.session.closed);
});

t.test('the sender sends exactly its credit, in frames the peer accepts', async (t) => {
  const raw = rawServer();
  t.teardown(() => raw.session.close());
  // We (the raw client) grant 100 000 bytes and take frames of at most 10 000.
  await raw.handshake({ windowBytes: 100_000, maxFrameBytes: 10_000 });
  raw.sendFrame(FrameType.OPEN, 1, Buffer.from('{}'));
  await raw.settle();
  const stream = raw.streams[0]!;
  const payload = randomBytes(300_000);
  stream.write(payload);
  const data = () => raw.received.filter((f) => f.type === FrameType.DATA && f.streamId === 1);
  const total = () => data().reduce((n, f) => n + f.payload.length, 0);
  await raw.settle();
  t.equal(total(), 100_000, 'one window');
  t.ok(
    data().every((f) => f.payload.length <= 10_000),
    'no DATA frame above our maxFrameBytes',
  );
  t.equal(stream.bytesSent, 100_000);
  raw.sendFrame(FrameType.WINDOW_UPDATE, 1, encodeU32(25_000));
  await raw.settle();
  t.equal(total(), 125_000, 'exactly the credit granted');
  raw.sendFrame(FrameType.WINDOW_UPDATE, 1, encodeU32(1_000_000));
  await raw.settle();
  t.equal(total(), 300_000, 'the rest once credit allows');
  t.equal(Buffer.concat(data().map((f) => f.payload)).equals(payload), true);
  t.notOk(raw.session.closed);
});

t.test(
  'window auto-tuning: grows for a consumer that keeps up, within max and budget',
  async (t) => {
    const raw = rawServer({
      windowBytes: 100_000,
      maxWindowBytes: 400_000,
      windowBudgetBytes: 350_000,
      windowGrowthMs: 5,
    });
    t.teardown(() => raw.session.close());
    await raw.handshake();
    raw.sendFrame(FrameType.OPEN, 1, Buffer.from('{}'));
    raw.sendFrame(FrameType.OPEN, 3, Buffer.from('{}'));
    await raw.settle();
    const updates = (id: number) =>
      raw.received
        .filter((f) => f.type === FrameType.WINDOW_UPDATE && f.streamId === id)
        .map((f) => f.payload.readUInt32BE(0));
    // Half a window consumed at once (within 5 ms): credit back plus the window doubled.
    raw.sendFrame(FrameType.DATA, 1, Buffer.alloc(50_000));
    await raw.settle();
    t.same(updates(1), [50_000 + 100_000], 'window 100 000 → 200 000');
    // (DATA frames stay within the default 64 KiB frame limit.)
    for (let i = 0; i < 2; i++) raw.sendFrame(FrameType.DATA, 1, Buffer.alloc(50_000));
    await raw.settle();
    t.same(updates(1).slice(1), [100_000 + 200_000], 'window 200 000 → 400 000 (the max)');
    for (let i = 0; i < 4; i++) raw.sendFrame(FrameType.DATA, 1, Buffer.alloc(50_000));
    await raw.settle();
    t.same(updates(1).slice(2), [200_000], 'at maxWindowBytes: credit only');
    // Stream 3 gets only what is left of the session budget: 350 000 - 300 000.
    raw.sendFrame(FrameType.DATA, 3, Buffer.alloc(50_000));
    await raw.settle();
    t.same(updates(3), [50_000 + 50_000], 'the rest of the budget, no more');
    // Slow consumption (half a window per 10 ms > windowGrowthMs) never grows a window.
    raw.sendFrame(FrameType.OPEN, 5, Buffer.from('{}'));
    await raw.settle();
    for (let i = 0; i < 3; i++) {
      raw.timers.nowMs += 10;
      raw.sendFrame(FrameType.DATA, 5, Buffer.alloc(50_000));
      await raw.settle();
    }
    t.same(updates(5), [50_000, 50_000, 50_000], 'slow stream keeps its initial window');
    t.notOk(raw.session.closed);
  },
);
