/**
 * Data integrity: 200 concurrent streams, opened from both sides, carrying random
 * payloads from 0 B to 64 MiB through an echo, checked by sha256. Runs over a real TLS
 * WebSocket on 127.0.0.1 and (smaller) over the in-memory transport.
 */
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { dataFramePool } from '../../shared/mux/session.js';
import { muxPair, type PairKind } from '../helpers/mux-pair.js';
import { Prng } from '../helpers/prng.js';
import { echoStreams, roundTrip, sha256 } from '../helpers/mux-streams.js';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Job {
  size: number;
  /** Opened by the client (else by the server). */
  fromClient: boolean;
}

/**
 * 200 jobs, alternately client- and server-opened: the sizes around frame and window
 * boundaries, a few large ones, and mostly small random ones.
 */
function plan(seed: number, largest: number, secondLargest: number): Job[] {
  const rng = new Prng(seed);
  const special = [
    0,
    1,
    2,
    64 * KiB - 1,
    64 * KiB,
    64 * KiB + 1,
    128 * KiB,
    256 * KiB - 1,
    256 * KiB,
    256 * KiB + 1,
    MiB,
    3 * MiB + 5,
    Math.min(8 * MiB, secondLargest),
    secondLargest,
    largest,
  ];
  const sizes = [...special];
  while (sizes.length < 200) {
    sizes.push(rng.chance(0.85) ? rng.int(0, 64 * KiB) : rng.int(64 * KiB, MiB));
  }
  return sizes.map((size, i) => ({ size, fromClient: i % 2 === 0 }));
}

const cases: { kind: PairKind; largest: number; secondLargest: number }[] = [
  { kind: 'tls-ws', largest: 64 * MiB, secondLargest: 16 * MiB },
  { kind: 'memory', largest: 8 * MiB, secondLargest: 4 * MiB },
];

for (const { kind, largest, secondLargest } of cases) {
  t.test(`200 concurrent streams both ways over ${kind}`, async (t) => {
    const pair = await muxPair(kind);
    t.teardown(() => pair.close());
    const serverErrors = echoStreams(pair.server);
    const clientErrors = echoStreams(pair.client);

    const pooled = { taken: dataFramePool.taken, reused: dataFramePool.reused };
    const jobs = plan(0xc0ffee, largest, secondLargest);
    t.equal(jobs.length, 200);
    const rng = new Prng(42);
    const started = performance.now();
    const results = await Promise.all(
      jobs.map(async (job) => {
        const payload = randomBytes(job.size);
        const opener = job.fromClient ? pair.client : pair.server;
        const echoed = await roundTrip(opener, payload, rng);
        return {
          job,
          ok: echoed.bytes === job.size && echoed.sha256 === sha256(payload),
          stream: echoed.stream,
        };
      }),
    );
    const elapsedMs = performance.now() - started;
    const bad = results.filter((r) => !r.ok).map((r) => r.job);
    t.same(bad, [], 'every echo matches its payload (sha256)');
    t.same(
      results.filter((r) => r.stream.bytesSent !== r.job.size).map((r) => r.job),
      [],
      'stream.bytesSent counts DATA payload',
    );
    const total = jobs.reduce((sum, job) => sum + job.size, 0);
    t.equal(pair.client.bytesSent, total, 'client sent every byte once');
    t.equal(pair.server.bytesReceived, total);
    t.equal(pair.server.bytesSent, total);
    t.equal(pair.client.bytesReceived, total);
    t.same(serverErrors, []);
    t.same(clientErrors, []);
    t.equal(pair.client.streamCount, 0, 'client stream table is empty');
    t.equal(pair.server.streamCount, 0, 'server stream table is empty');
    t.notOk(pair.client.closed);
    t.notOk(pair.server.closed);
    if (kind === 'memory') {
      // The peer gets the sent buffer itself: reusing it would corrupt its data.
      t.equal(dataFramePool.taken, pooled.taken, 'no pooled frame buffers in memory');
    } else {
      // The hashes above held while large frames were built in reused buffers.
      t.ok(dataFramePool.reused - pooled.reused > 1000, 'large frames reuse pooled buffers');
    }
    t.comment(
      `${(total / MiB).toFixed(1)} MiB each way in ${Math.round(elapsedMs)} ms ` +
        `(${((2 * total) / MiB / (elapsedMs / 1000)).toFixed(0)} MiB/s through the echo)`,
    );
  });
}
