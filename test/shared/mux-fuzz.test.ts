/**
 * Fuzzing: a seeded generator builds thousands of frame sequences (valid ones, and
 * valid ones with frames mutated, truncated, split, duplicated or replaced by garbage)
 * and feeds them straight into a session's transport. The process must survive with no
 * uncaught exception or unhandled rejection; every session either stays healthy (it
 * still answers a PING) or closes with a ProtocolError and tells its peer with GOAWAY.
 * Sequences without mutation must always leave the session healthy.
 */
import t from 'tap';
import { ProtocolError } from '../../shared/errors.js';
import {
  ErrorCode,
  FRAME_HEADER_SIZE,
  FrameType,
  PROTOCOL_VERSION,
  encodeCodeMessage,
  encodeFrame,
  encodeU32,
} from '../../shared/protocol/frame.js';
import { Prng } from '../helpers/prng.js';
import { rawClient, rawServer, type RawPeer } from '../helpers/raw-peer.js';

const SEED = 0x9e3779b9;
const CASES = 10_000;
const CLIENT_CASES = 2_000;
const SESSION_WINDOW = 256 * 1024; // the sessions' default receive window

interface StreamState {
  sent: number;
  fin: boolean;
}

interface Sequence {
  messages: Buffer[];
  mutated: boolean;
}

/**
 * A sequence a well-behaved peer could send (from `firstId`, stepping by 2), with each
 * message mutated with probability `mutateRate`.
 */
function generate(rng: Prng, firstId: number, mutateRate: number): Sequence {
  const messages: Buffer[] = [];
  let mutated = false;
  const streams = new Map<number, StreamState>();
  let nextId = firstId;
  let windowGranted = 0;
  const windowBytes = rng.int(1, 1 << 20);
  const frame = (type: FrameType, id: number, payload?: Buffer) =>
    encodeFrame(type, id, payload, 0, PROTOCOL_VERSION);
  const open = () => [...streams.entries()].filter(([, s]) => !s.fin);

  const hello = frame(
    FrameType.HELLO,
    0,
    Buffer.from(
      JSON.stringify({
        protocol: PROTOCOL_VERSION,
        windowBytes,
        maxStreams: rng.int(0, 50),
        maxFrameBytes: rng.int(1, 70_000),
        app: rng.chance(0.5) ? {} : { token: 'x'.repeat(rng.int(0, 100)) },
      }),
    ),
  );
  const valid: Buffer[] = [hello];
  const length = rng.int(0, 30);
  while (valid.length <= length) {
    const roll = rng.next();
    const candidates = open();
    if (roll < 0.2 || candidates.length === 0) {
      const meta = rng.chance(0.8) ? { method: 'GET', url: `/${rng.int(0, 1e6)}` } : {};
      valid.push(frame(FrameType.OPEN, nextId, Buffer.from(JSON.stringify(meta))));
      streams.set(nextId, { sent: 0, fin: false });
      nextId += 2;
      continue;
    }
    const [id, state] = rng.pick(candidates);
    if (roll < 0.55) {
      const room = SESSION_WINDOW - state.sent;
      const size = Math.min(room, rng.chance(0.9) ? rng.int(0, 3000) : rng.int(0, 64 * 1024));
      state.sent += size;
      valid.push(frame(FrameType.DATA, id, Buffer.alloc(size, id)));
    } else if (roll < 0.65) {
      // Keep the peer's send window (our windowBytes + grants) at most 2^31-1.
      const delta = rng.int(1, 1 << 20);
      if (windowBytes + windowGranted + delta > 0x7fffffff) continue;
      windowGranted += delta;
      valid.push(frame(FrameType.WINDOW_UPDATE, id, encodeU32(delta)));
    } else if (roll < 0.75) {
      state.fin = true;
      valid.push(frame(FrameType.FIN, id));
    } else if (roll < 0.8) {
      streams.delete(id);
      valid.push(frame(FrameType.RESET, id, encodeCodeMessage(rng.int(0, 20), 'fuzz')));
    } else if (roll < 0.9) {
      valid.push(frame(FrameType.PING, 0, rng.bytes(8)));
    } else if (roll < 0.97) {
      valid.push(frame(FrameType.PONG, 0, rng.bytes(8)));
    } else {
      valid.push(frame(FrameType.GOAWAY, 0, encodeCodeMessage(ErrorCode.NO_ERROR, 'later')));
    }
  }

  for (const message of valid) {
    if (!rng.chance(mutateRate)) {
      messages.push(message);
      continue;
    }
    mutated = true;
    const m = Buffer.from(message);
    switch (rng.int(0, 10)) {
      case 0: // flip bytes anywhere
        for (let i = rng.int(1, 4); i > 0; i--) m[rng.int(0, m.length - 1)] = rng.int(0, 255);
        messages.push(m);
        break;
      case 1: // truncate
        messages.push(m.subarray(0, rng.int(0, m.length - 1)));
        break;
      case 2: // trailing junk
        messages.push(Buffer.concat([m, rng.bytes(rng.int(1, 20))]));
        break;
      case 3: // garbage instead of the frame
        messages.push(rng.bytes(rng.int(0, 64)));
        break;
      case 4: // random type
        m[1] = rng.chance(0.5) ? rng.int(0, 9) : rng.int(10, 255);
        messages.push(m);
        break;
      case 5: // random version
        m[0] = rng.int(0, 255);
        messages.push(m);
        break;
      case 6: // random stream id
        m.writeUInt32BE(rng.chance(0.5) ? rng.int(0, 20) : rng.int(0, 0xffffffff), 4);
        messages.push(m);
        break;
      case 7: // random length field
        m.writeUInt32BE(rng.chance(0.5) ? rng.int(0, 100) : rng.int(0, 0xffffffff), 8);
        messages.push(m);
        break;
      case 8: {
        // split in two messages
        const at = rng.int(1, m.length - 1);
        messages.push(m.subarray(0, at), m.subarray(at));
        break;
      }
      case 9: // sent twice
        messages.push(m, m);
        break;
      default: // random payload of the same type
        messages.push(
          encodeFrame(m[1]! as FrameType, m.readUInt32BE(4), rng.bytes(rng.int(0, 16))),
        );
        break;
    }
  }
  // Sometimes the connection just stops mid-sequence.
  if (rng.chance(0.2)) messages.length = rng.int(0, messages.length);
  return { messages, mutated };
}

/** Feeds one sequence and classifies the outcome; returns a failure description or ''. */
async function runCase(raw: RawPeer, seq: Sequence): Promise<'closed' | 'healthy' | string> {
  try {
    for (const m of seq.messages) raw.send(m);
    await raw.settle(8);
    const s = raw.session;
    if (s.closed) {
      if (!seq.mutated && !s.receivedGoAway) {
        return `valid sequence closed the session: ${String(s.closeError)}`;
      }
      const err = s.closeError;
      if (s.streamCount !== 0) return 'closed with streams in the table';
      if (raw.timers.pending !== 0) return 'closed with timers pending';
      if (err instanceof ProtocolError) {
        const goAway = raw.goAway();
        const expected: (number | undefined)[] =
          err.code === 'QT_ERR_VERSION_MISMATCH'
            ? [ErrorCode.VERSION_MISMATCH, undefined] // no GOAWAY if theirs was one
            : [ErrorCode.PROTOCOL_ERROR];
        if (!expected.includes(goAway?.code)) {
          return `ProtocolError "${err.message}" but GOAWAY ${JSON.stringify(goAway)}`;
        }
        if (!raw.closed) return 'protocol error but the connection is still open';
        return 'closed';
      }
      // Not a protocol error: only a (valid) GOAWAY from the fuzzer may close a session.
      if (s.receivedGoAway) return 'closed';
      return `closed with ${String(err)}`;
    }
    if (!s.ready) {
      return seq.messages.length === 0 || !seq.mutated ? 'healthy' : 'neither closed nor ready';
    }
    // Still open: it must still work.
    const pongs = raw.received.filter((f) => f.type === FrameType.PONG).length;
    raw.sendFrame(FrameType.PING, 0, Buffer.from('health!!'));
    await raw.settle();
    const answered = raw.received.filter((f) => f.type === FrameType.PONG).length === pongs + 1;
    if (!answered || s.closed) return 'open session does not answer PING';
    return 'healthy';
  } finally {
    raw.session.close();
  }
}

const unhandled: unknown[] = [];
const onRejection = (reason: unknown): void => {
  unhandled.push(reason);
};
const onException = (err: unknown): void => {
  unhandled.push(err);
};
process.on('unhandledRejection', onRejection);
process.on('uncaughtExceptionMonitor', onException);
t.teardown(() => {
  process.off('unhandledRejection', onRejection);
  process.off('uncaughtExceptionMonitor', onException);
});

for (const role of ['server', 'client'] as const) {
  const count = role === 'server' ? CASES : CLIENT_CASES;
  t.test(`${count} random sequences into a ${role} session (seed ${SEED})`, async (t) => {
    const rng = new Prng(SEED + (role === 'server' ? 0 : 1));
    const outcomes = { closed: 0, healthy: 0, validHealthy: 0 };
    const failures: string[] = [];
    for (let i = 0; i < count; i++) {
      const raw = role === 'server' ? rawServer() : rawClient();
      const mutateRate = rng.pick([0, 0.02, 0.1, 0.3]);
      const seq = generate(rng, raw.firstStreamId, mutateRate);
      const outcome = await runCase(raw, seq);
      if (outcome === 'closed') outcomes.closed++;
      else if (outcome === 'healthy') {
        outcomes.healthy++;
        if (!seq.mutated) outcomes.validHealthy++;
      } else failures.push(`case ${i}: ${outcome}`);
    }
    t.same(failures, [], 'every session closed with a protocol error or stayed healthy');
    t.same(unhandled, [], 'no uncaught exception, no unhandled rejection');
    t.ok(outcomes.closed > count / 10, `${outcomes.closed} closed`);
    t.ok(outcomes.validHealthy > count / 10, `${outcomes.validHealthy} valid and healthy`);
    t.comment(JSON.stringify(outcomes));
  });
}

t.test('header-only garbage of every type and length', async (t) => {
  // Every type byte with a header whose length field disagrees, plus zero-payload frames
  // of every type: exhaustive rather than random.
  const failures: string[] = [];
  for (let type = 0; type < 256; type++) {
    for (const lengthField of [0, 1, 8, FRAME_HEADER_SIZE]) {
      const raw = rawServer();
      await raw.handshake();
      const m = Buffer.alloc(FRAME_HEADER_SIZE);
      m[0] = PROTOCOL_VERSION;
      m[1] = type;
      m.writeUInt32BE(1, 4);
      m.writeUInt32BE(lengthField, 8);
      const outcome = await runCase(raw, { messages: [m], mutated: true });
      if (outcome !== 'closed' && outcome !== 'healthy') {
        failures.push(`type ${type} length ${lengthField}: ${outcome}`);
      }
    }
  }
  t.same(failures, []);
  t.same(unhandled, []);
});
