/**
 * Small frames sent in one turn share one WebSocket message (PROTOCOL.md §1), large
 * DATA frames go alone and in order, and a session reads every frame of a message.
 */
import { once } from 'node:events';
import t from 'tap';
import { FrameType, encodeFrame } from '../../shared/protocol/frame.js';
import { muxPair } from '../helpers/mux-pair.js';
import { echoStreams, sha256 } from '../helpers/mux-streams.js';
import { rawServer } from '../helpers/raw-peer.js';

const KiB = 1024;

t.test('a session reads every frame of a message, in order', async (t) => {
  const raw = rawServer();
  await raw.handshake();
  const ping = (seq: number): Buffer => {
    const p = Buffer.alloc(8);
    p.writeUInt32BE(seq, 4);
    return p;
  };
  raw.send(
    Buffer.concat([
      encodeFrame(FrameType.PING, 0, ping(1)),
      encodeFrame(FrameType.PING, 0, ping(2)),
      encodeFrame(FrameType.PING, 0, ping(3)),
    ]),
  );
  await raw.settle();
  const pongs = raw.received
    .filter((f) => f.type === FrameType.PONG)
    .map((f) => f.payload.readUInt32BE(4));
  t.same(pongs, [1, 2, 3], 'three PINGs in one message, three PONGs in order');
  t.notOk(raw.closed, 'not a protocol error');
});

t.test('over a real WebSocket, one turn of small frames is one message', async (t) => {
  const pair = await muxPair('tls-ws');
  t.teardown(() => pair.close());
  echoStreams(pair.server);
  let messages = 0;
  pair.serverWs!.on('message', () => messages++);
  // 20 streams opened and ended in one turn: 40 frames (OPEN, FIN) from the client.
  const streams = Array.from({ length: 20 }, (_, i) => {
    const s = pair.client.openStream({ i });
    s.end();
    s.resume();
    return s;
  });
  await Promise.all(streams.map((s) => once(s, 'end')));
  t.ok(messages > 0 && messages <= 4, `40 small frames arrived in ${messages} message(s)`);
});

for (const clientMasking of ['zero', 'random'] as const) {
  t.test(
    `large DATA frames keep their order among small frames (${clientMasking} mask)`,
    async (t) => {
      const pair = await muxPair('tls-ws', { clientMasking });
      t.teardown(() => pair.close());
      echoStreams(pair.server);
      // Writes of every size around the batching limits, on several streams at once.
      const sizes = [1, 100, 4 * KiB, 4 * KiB + 1, 16 * KiB, 70 * KiB, 3, 300 * KiB, 5];
      const results = await Promise.all(
        [0, 1, 2].map(async (n) => {
          const stream = pair.client.openStream({ n });
          const chunks = sizes.map((size, i) => Buffer.alloc(size, (n * 31 + i) & 0xff));
          const sent = Buffer.concat(chunks);
          const got: Buffer[] = [];
          stream.on('data', (c: Buffer) => got.push(c));
          for (const c of chunks) stream.write(c);
          stream.end();
          await once(stream, 'end');
          return sha256(Buffer.concat(got)) === sha256(sent);
        }),
      );
      t.same(results, [true, true, true], 'every echo matches what was written');
    },
  );
}
