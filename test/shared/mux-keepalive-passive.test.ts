/**
 * `keepAlivePassive` (the relay's setting): the session answers the peer's PINGs and
 * sends none of its own while they keep coming; a peer that stops PINGing (or never
 * does) gets PINGs again; dead-peer detection is unchanged. Time is driven through
 * FakeClock.
 */
import { once } from 'node:events';
import t from 'tap';
import type { ConnectionError } from '../../shared/errors.js';
import { FrameType } from '../../shared/protocol/frame.js';
import { rawServer } from '../helpers/raw-peer.js';

const keepAlive = { keepAliveIntervalMs: 4_000, keepAliveTimeoutMs: 10_000 };

const pingFrame = (seq: number): Buffer => {
  const payload = Buffer.alloc(8);
  payload.writeUInt32BE(seq, 4);
  return payload;
};

t.test('no PINGs of its own while the peer PINGs; PONGs to every PING', async (t) => {
  const raw = rawServer({ ...keepAlive, keepAlivePassive: true });
  t.teardown(() => raw.session.close());
  await raw.handshake();
  for (let i = 1; i <= 10; i++) {
    raw.sendFrame(FrameType.PING, 0, pingFrame(i)); // the client's heartbeat, every 4 s
    await raw.settle();
    raw.timers.advance(4_000);
    await raw.settle();
  }
  const sent = (type: number): number => raw.received.filter((f) => f.type === type).length;
  t.equal(sent(FrameType.PONG), 10, 'every PING answered');
  t.equal(sent(FrameType.PING), 0, 'no PING of its own in 40 s');
  t.notOk(raw.session.closed);
});

t.test('PINGs a peer that does not PING (an older or quieter client)', async (t) => {
  const raw = rawServer({ ...keepAlive, keepAlivePassive: true });
  t.teardown(() => raw.session.close());
  await raw.handshake();
  raw.timers.advance(4_000);
  await raw.settle();
  const pings = raw.received.filter((f) => f.type === FrameType.PING);
  t.equal(pings.length, 1, 'PINGs as a non-passive session would');
  raw.sendFrame(FrameType.PONG, 0, pings[0]!.payload);
  await raw.settle();
  t.notOk(raw.session.closed);
});

t.test('resumes PINGing once the peer stops, and still detects a dead peer', async (t) => {
  const raw = rawServer({ ...keepAlive, keepAlivePassive: true });
  await raw.handshake();
  raw.sendFrame(FrameType.PING, 0, pingFrame(1));
  await raw.settle();
  raw.timers.advance(4_000); // peer PINGed 4 s ago: quiet
  await raw.settle();
  t.notOk(raw.received.some((f) => f.type === FrameType.PING));
  const closed = once(raw.session, 'close');
  raw.timers.advance(4_000); // 8 s: over 1.5 intervals without a PING → ours
  await raw.settle();
  t.ok(
    raw.received.some((f) => f.type === FrameType.PING),
    'PINGs the silent peer',
  );
  raw.timers.advance(4_000); // 12 s of silence: dead
  const [err] = (await closed) as [ConnectionError];
  t.equal(err.code, 'QT_ERR_HEARTBEAT');
  t.equal(raw.timers.pending, 0, 'no timer left behind');
});
