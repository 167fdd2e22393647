/**
 * Seeded fuzz of the tunnel endpoint: hundreds of hostile tunnel clients over real TLS
 * WebSockets, each sending a sequence of frames drawn from what a client may send
 * (HELLO, OPEN, DATA, WINDOW_UPDATE, FIN, RESET, PING, PONG, GOAWAY, REPLY) and then
 * mutated (header fields, lengths, versions, stream ids, JSON payloads, truncation,
 * garbage, text messages). In half the sessions a visitor request is in flight, so
 * the fuzz reaches the relay's handling of response heads and bodies on a stream it
 * opened. No crash, no unhandled rejection, no visitor left hanging; the control
 * tunnel never fails; connections, tunnels, mux streams, sockets and heap return to
 * their baseline. Reproduce a run with its seed (in the test name).
 */
import t from 'tap';
import {
  FRAME_HEADER_SIZE,
  FrameType,
  encodeCodeMessage,
  encodeFrame,
  encodeU32,
} from '../../shared/protocol/frame.js';
import { startTestRelay } from '../helpers/relay-env.js';
import { Prng } from '../helpers/prng.js';
import {
  MiB,
  helloPayload,
  rawRequest,
  rawTunnelClient,
  relayStreams,
  settledHeap,
  startControl,
  type RawTunnelClient,
} from '../helpers/hostile.js';
import { delay, eventually, within } from '../helpers/wait.js';

// Heavy on a shared 2-core machine (npm, thousands of connections): more than .taprc's 120 s.
t.setTimeout(360_000);

const SEED = 0xf00d_5eed;
const SESSIONS = 1_000;
const MAX_FRAMES_PER_SESSION = 30;
const CONCURRENCY = 12;

function tcpSockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
}

function randomJson(rng: Prng, depth = 0): unknown {
  switch (rng.int(0, depth > 2 ? 4 : 7)) {
    case 0:
      return rng.int(-1e9, 1e9);
    case 1:
      return rng.pick(['', 'x'.repeat(rng.int(0, 300)), '\r\n', '\u0000', '__proto__']);
    case 2:
      return rng.pick([null, true, false, 1e308, -0, 0.5]);
    case 3:
      return rng.pick([101, 200, 204, 304, 99, 1000, 599]);
    case 4:
      return [];
    case 5:
      return Array.from({ length: rng.int(0, 4) }, () => randomJson(rng, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = 0, n = rng.int(0, 4); i < n; i++) {
        o[rng.pick(['status', 'headers', 'statusMessage', 'app', 'protocol', 'x', '__proto__'])] =
          randomJson(rng, depth + 1);
      }
      return o;
    }
  }
}

/** A response head, often valid, sometimes hostile. */
function replyHead(rng: Prng): Buffer {
  if (rng.chance(0.3)) return Buffer.from(JSON.stringify(randomJson(rng)));
  const headers: [string, string][] = [];
  for (let i = 0, n = rng.int(0, 5); i < n; i++) {
    headers.push([
      rng.pick([
        'content-type',
        'content-length',
        'x-a',
        'set-cookie',
        'transfer-encoding',
        'x\r\nb',
        'connection',
      ]),
      rng.pick([
        'text/plain',
        String(rng.int(0, 100)),
        'v',
        'a=b',
        'chunked',
        'x\r\nInjected: 1',
        '-1',
        '1, 2',
      ]),
    ]);
  }
  return Buffer.from(
    JSON.stringify({
      status: rng.pick([200, 200, 404, 101, 204, 304, 500, 99]),
      ...(rng.chance(0.2) ? { statusMessage: rng.pick(['OK', 'a\r\nb', 'é', '']) } : {}),
      headers,
    }),
  );
}

/** One frame a client could send, for a session whose client ids start at 1. */
function frame(rng: Prng, state: { nextId: number; relayStream: number | undefined }): Buffer {
  const id = (): number => {
    const r = state.relayStream;
    return rng.pick([r ?? 2, r ?? 2, state.nextId - 2, 0, rng.int(0, 2 ** 32 - 1), rng.int(1, 20)]);
  };
  const type = rng.int(0, 11);
  switch (type) {
    case FrameType.HELLO:
      return encodeFrame(
        FrameType.HELLO,
        0,
        rng.chance(0.5) ? helloPayload() : Buffer.from(JSON.stringify(randomJson(rng))),
      );
    case FrameType.OPEN: {
      const streamId = state.nextId;
      state.nextId += 2;
      return encodeFrame(FrameType.OPEN, streamId, Buffer.from(JSON.stringify(randomJson(rng))));
    }
    case FrameType.DATA:
      return encodeFrame(FrameType.DATA, id(), rng.bytes(rng.int(0, 3_000)));
    case FrameType.WINDOW_UPDATE:
      return encodeFrame(
        FrameType.WINDOW_UPDATE,
        id(),
        encodeU32(rng.pick([0, 1, 65536, 0x7fffffff, 0xffffffff, rng.int(0, 2 ** 32 - 1)])),
      );
    case FrameType.FIN:
      return encodeFrame(FrameType.FIN, id());
    case FrameType.RESET:
      return encodeFrame(FrameType.RESET, id(), encodeCodeMessage(rng.int(0, 20), 'fuzz'));
    case FrameType.PING:
    case FrameType.PONG:
      return encodeFrame(type, 0, rng.bytes(rng.chance(0.9) ? 8 : rng.int(0, 16)));
    case FrameType.GOAWAY:
      return encodeFrame(FrameType.GOAWAY, 0, encodeCodeMessage(rng.int(0, 14), 'bye'));
    case FrameType.REPLY:
      return encodeFrame(FrameType.REPLY, id(), replyHead(rng));
    default:
      return rng.bytes(rng.int(0, 40)); // garbage
  }
}

function mutate(rng: Prng, buf: Buffer): Buffer {
  const b = Buffer.from(buf);
  switch (rng.int(0, 7)) {
    case 0:
      if (b.length > 0) b[0] = rng.int(0, 255); // version
      return b;
    case 1:
      if (b.length > 1) b[1] = rng.int(0, 255); // type
      return b;
    case 2:
      if (b.length >= 8) b.writeUInt32BE(rng.int(0, 2 ** 32 - 1), 4); // stream id
      return b;
    case 3:
      if (b.length >= FRAME_HEADER_SIZE) b.writeUInt32BE(rng.int(0, 2 ** 32 - 1), 8); // length
      return b;
    case 4:
      return b.subarray(0, rng.int(0, b.length)); // truncated
    case 5:
      return Buffer.concat([b, rng.bytes(rng.int(1, 20))]); // trailing garbage
    case 6: {
      const at = rng.int(0, Math.max(0, b.length - 1));
      if (b.length > 0) b[at] = b[at]! ^ (1 << rng.int(0, 7)); // one bit
      return b;
    }
    default:
      return b;
  }
}

interface Outcome {
  handshake: boolean;
  closedByRelay: boolean;
  visitor: string | undefined;
}

t.test(
  `tunnel endpoint fuzz: ${SESSIONS} hostile clients (seed 0x${SEED.toString(16)})`,
  async (t) => {
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown): void => void rejections.push(reason);
    process.on('unhandledRejection', onRejection);
    t.teardown(() => void process.off('unhandledRejection', onRejection));

    const env = await startTestRelay(t, {
      creationsPerMinute: 0,
      mux: { maxQueuedBytes: 1024 * 1024 },
    });
    const control = await startControl(t, env);
    const baseline = {
      connections: env.relay.connections,
      tunnels: env.relay.registry.size,
      sockets: tcpSockets(),
    };
    await settledHeap();
    const heapBefore = await settledHeap();
    const rng = new Prng(SEED);
    let frames = 0;

    const session = async (s: Prng): Promise<Outcome> => {
      const outcome: Outcome = { handshake: false, closedByRelay: false, visitor: undefined };
      let raw: RawTunnelClient;
      try {
        raw = await rawTunnelClient(t, env, {}, { autoClose: false });
      } catch {
        return outcome;
      }
      const state = { nextId: 1, relayStream: undefined as number | undefined };
      let visitor: Promise<string> | undefined;
      if (s.chance(0.7)) {
        const answer = await raw.hello({ clientVersion: 'fuzz' }).catch(() => undefined);
        outcome.handshake = answer?.type === FrameType.HELLO;
        if (outcome.handshake && s.chance(0.7)) {
          const hostname = (JSON.parse(answer!.payload.toString()) as { app: { hostname: string } })
            .app.hostname;
          visitor = rawRequest({
            port: env.httpPort,
            send: `GET /fuzz HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n\r\n`,
            timeoutMs: 8_000,
          }).then((r) => (r.closedByPeer ? String(r.status ?? 'closed') : 'hung'));
          const open = await raw
            .waitFor((f) => f.type === FrameType.OPEN, 2_000)
            .catch(() => undefined);
          state.relayStream = open?.streamId;
        }
      }
      const n = s.int(1, MAX_FRAMES_PER_SESSION);
      for (let i = 0; i < n && !raw.isClosed(); i++) {
        const f = frame(s, state);
        const bytes = s.chance(0.3) ? mutate(s, f) : f;
        if (s.chance(0.02))
          raw.ws.send(bytes.toString('latin1')); // a text message
        else raw.send(bytes);
        frames++;
        if (s.chance(0.2)) await delay(s.int(0, 5));
      }
      await within(raw.closed, 50);
      outcome.closedByRelay = raw.isClosed();
      raw.close();
      await raw.closed;
      if (visitor !== undefined) outcome.visitor = await visitor;
      return outcome;
    };

    const seeds = Array.from({ length: SESSIONS }, () => rng.int(0, 2 ** 32 - 1));
    const outcomes: Outcome[] = [];
    const started = performance.now();
    let next = 0;
    const heaps: number[] = [];
    const rounds = 4;
    for (let round = 1; round <= rounds; round++) {
      const end = (SESSIONS * round) / rounds;
      const worker = async (): Promise<void> => {
        while (next < end) outcomes.push(await session(new Prng(seeds[next++]!)));
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      heaps.push((await settledHeap()).heapUsed);
    }
    const seconds = (performance.now() - started) / 1000;

    const visitors = new Map<string, number>();
    for (const o of outcomes) {
      if (o.visitor !== undefined) visitors.set(o.visitor, (visitors.get(o.visitor) ?? 0) + 1);
    }
    t.comment(
      `${SESSIONS} sessions, ${frames} frames in ${seconds.toFixed(1)} s; ` +
        `${outcomes.filter((o) => o.handshake).length} completed HELLO, ` +
        `${outcomes.filter((o) => o.closedByRelay).length} closed by the relay; ` +
        `visitors: ${JSON.stringify(Object.fromEntries(visitors))}`,
    );
    t.ok(frames >= 10_000, `thousands of frames sent (${frames})`);
    t.equal(visitors.get('hung') ?? 0, 0, 'no visitor request left hanging');
    t.ok(
      [...visitors.keys()].every((k) => /^(200|204|304|404|500|502|504|closed)$/.test(k)),
      'visitors got a response from the tunnel, a 502/504, or a closed connection',
    );
    t.ok(
      await eventually(() => env.relay.connections === baseline.connections),
      `relay connections back to ${baseline.connections} (now ${env.relay.connections})`,
    );
    t.ok(
      await eventually(() => env.relay.registry.size === baseline.tunnels),
      'no fuzz tunnel left registered',
    );
    t.ok(await eventually(() => relayStreams(env) === 0), 'mux streams back to 0');
    t.ok(
      await eventually(() => tcpSockets() <= baseline.sockets + 4),
      `TCP sockets back to baseline (${baseline.sockets} before, ${tcpSockets()} now)`,
    );
    const heapAfter = await settledHeap();
    const growth = heapAfter.heapUsed - heapBefore.heapUsed;
    t.comment(
      `heap ${(heapBefore.heapUsed / MiB).toFixed(1)} → ${(heapAfter.heapUsed / MiB).toFixed(1)} MiB ` +
        `(after each round: ${heaps.map((h) => (h / MiB).toFixed(1)).join(', ')}), ` +
        `rss ${(heapBefore.rss / MiB).toFixed(0)} → ${(heapAfter.rss / MiB).toFixed(0)} MiB`,
    );
    t.ok(growth < 32 * MiB, `heap growth ${(growth / MiB).toFixed(1)} MiB < 32 MiB`);
    const lateGrowth = heaps[rounds - 1]! - heaps[0]!;
    t.ok(
      lateGrowth < 4 * MiB,
      `heap flat after the first round: +${(lateGrowth / MiB).toFixed(1)} MiB (< 4)`,
    );
    t.ok(
      heapAfter.rss - heapBefore.rss < 256 * MiB,
      `RSS growth ${((heapAfter.rss - heapBefore.rss) / MiB).toFixed(0)} MiB < 256 MiB`,
    );
    t.same(rejections, [], 'no unhandled rejection');
    await control.check(t, 'after the endpoint fuzz');
  },
);
