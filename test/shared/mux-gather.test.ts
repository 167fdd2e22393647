/**
 * Small writes to a stream within one turn leave as one DATA frame (up to the frame
 * size), in order with large writes and before the FIN; a lone small write still leaves
 * in its own turn; nothing gathered is sent after a reset.
 */
import { once } from 'node:events';
import t, { type Test } from 'tap';
import { FrameType } from '../../shared/protocol/frame.js';
import { muxPair } from '../helpers/mux-pair.js';
import { rawServer, type RawPeer } from '../helpers/raw-peer.js';

const KiB = 1024;

/** A raw peer that opened stream 1 on the session under test; its accepted stream. */
async function opened(t: Test): Promise<{ raw: RawPeer; id: number }> {
  const raw = rawServer({ paused: true });
  t.teardown(() => raw.session.close());
  await raw.handshake();
  const id = raw.firstStreamId;
  raw.sendFrame(FrameType.OPEN, id, Buffer.from('{}'));
  raw.sendFrame(FrameType.FIN, id);
  await raw.settle();
  t.equal(raw.streams.length, 1, 'the session accepted the stream');
  return { raw, id };
}

function dataFrames(raw: RawPeer, id: number): Buffer[] {
  return raw.received
    .filter((f) => f.type === FrameType.DATA && f.streamId === id)
    .map((f) => f.payload);
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (seed * 31 + i) & 0xff;
  return b;
}

t.test('200 small writes in one turn: one DATA frame, then FIN', async (t) => {
  const { raw, id } = await opened(t);
  const stream = raw.streams[0]!;
  const chunks = Array.from({ length: 200 }, (_, i) => pattern(100, i));
  for (const c of chunks) stream.write(c);
  stream.end();
  await raw.settle();
  const data = dataFrames(raw, id);
  t.equal(data.length, 1, 'one DATA frame');
  t.same(Buffer.concat(data), Buffer.concat(chunks), 'bytes intact and in order');
  const types = raw.received.filter((f) => f.streamId === id).map((f) => f.type);
  t.same(types, [FrameType.DATA, FrameType.FIN], 'DATA before FIN');
});

t.test('a lone small write leaves in its own turn', async (t) => {
  const { raw, id } = await opened(t);
  const stream = raw.streams[0]!;
  stream.write(Buffer.from('data: event 1\n\n'));
  await raw.settle();
  t.same(
    dataFrames(raw, id).map((b) => b.toString()),
    ['data: event 1\n\n'],
    'sent without an end, a timer or more writes',
  );
  stream.write(Buffer.from('data: event 2\n\n'));
  await raw.settle();
  t.equal(dataFrames(raw, id).length, 2, 'the next one too');
});

t.test('small writes past a frame: full frames, order kept with large writes', async (t) => {
  const { raw, id } = await opened(t);
  const stream = raw.streams[0]!;
  const chunks: Buffer[] = [];
  for (let i = 0; i < 150; i++) chunks.push(pattern(1000, i)); // 150,000 bytes of small writes
  chunks.push(pattern(40 * KiB, 999)); // a large one in between
  for (let i = 0; i < 20; i++) chunks.push(pattern(10, 1000 + i));
  for (const c of chunks) stream.write(c);
  stream.end();
  // Past the initial 256 KiB window? 150,000 + 40,960 + 200 bytes: no.
  await raw.settle();
  const data = dataFrames(raw, id);
  t.same(Buffer.concat(data), Buffer.concat(chunks), 'bytes intact and in order');
  t.ok(
    data.every((b) => b.length <= 64 * KiB),
    'no frame above the peer maximum',
  );
  t.ok(data.length <= 6, `${data.length} DATA frames for ${chunks.length} writes`);
  t.equal(raw.received.filter((f) => f.streamId === id).at(-1)?.type, FrameType.FIN, 'FIN last');
});

t.test('nothing gathered is sent after a reset', async (t) => {
  const { raw, id } = await opened(t);
  const stream = raw.streams[0]!;
  stream.on('error', () => {});
  stream.write(Buffer.from('partial'));
  stream.reset();
  await raw.settle();
  const types = raw.received.filter((f) => f.streamId === id).map((f) => f.type);
  t.same(types, [FrameType.RESET], 'only the RESET');
});

t.test('over a real TLS WebSocket: small writes arrive as few DATA frames', async (t) => {
  const pair = await muxPair('tls-ws');
  t.teardown(() => pair.close());
  pair.server.on('stream', (s) => {
    const chunks = Array.from({ length: 500 }, (_, i) => pattern(64, i));
    for (const c of chunks) s.write(c);
    s.end();
    s.resume();
  });
  const stream = pair.client.openStream({});
  stream.end();
  let events = 0;
  const got: Buffer[] = [];
  stream.on('data', (c: Buffer) => {
    events++;
    got.push(c);
  });
  await once(stream, 'end');
  const want = Buffer.concat(Array.from({ length: 500 }, (_, i) => pattern(64, i)));
  t.same(Buffer.concat(got), want, 'bytes intact and in order');
  t.ok(events <= 2, `500 writes of 64 bytes arrived as ${events} chunk(s)`);
});
