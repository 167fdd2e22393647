import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { muxPair } from '../helpers/mux-pair.js';
import type { MuxStream } from '../../shared/mux/stream.js';

for (const kind of ['memory', 'tls-ws'] as const) {
  t.test(`echo over ${kind}`, async (t) => {
    const pair = await muxPair(kind);
    t.teardown(() => pair.close());
    pair.server.on('stream', (s: MuxStream) => {
      s.reply({ status: 200 });
      s.pipe(s);
    });
    const payload = randomBytes(5 * 1024 * 1024 + 7);
    const s = pair.client.openStream({ hello: 'world' });
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.end(payload);
    await new Promise((r) => s.on('end', r));
    t.same(s.replyMeta, { status: 200 });
    const got = Buffer.concat(chunks);
    t.equal(
      createHash('sha256').update(got).digest('hex'),
      createHash('sha256').update(payload).digest('hex'),
    );
    t.ok(pair.client.rttMs === undefined || pair.client.rttMs >= 0);
  });
}
