/**
 * Keepalive, RTT and handshake timeouts, with time driven through an injected `Clock`
 * (no sleeps): a silent peer is declared dead with QT_ERR_HEARTBEAT, a live one is not,
 * and rttMs is measured from PING/PONG.
 */
import { once } from 'node:events';
import t from 'tap';
import { ConnectionError } from '../../shared/errors.js';
import { FrameType } from '../../shared/protocol/frame.js';
import { muxPair, sessionPair, type PairKind } from '../helpers/mux-pair.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { rawServer } from '../helpers/raw-peer.js';
import { closeError } from '../helpers/mux-streams.js';

const kinds: PairKind[] = ['memory', 'tls-ws'];
const keepAlive = { keepAliveIntervalMs: 5_000, keepAliveTimeoutMs: 12_000 };

for (const kind of kinds) {
  t.test(`a silent peer is declared dead (${kind})`, async (t) => {
    const clock = new FakeClock();
    const pair = await muxPair(kind, {
      client: { ...keepAlive, clock },
      server: { keepAliveIntervalMs: 0 },
    });
    t.teardown(() => pair.close());
    pair.server.on('stream', (s) => {
      s.on('error', () => {});
      s.resume();
    });
    const s = pair.client.openStream({});
    s.write('hello');
    await once(pair.server, 'stream');
    const streamErr = closeError(s);
    const closed = once(pair.client, 'close');

    // From now on the server hears nothing, so it answers nothing.
    pair.serverTransport.onFrame = () => {};
    clock.advance(5_000); // PING, unanswered
    clock.advance(5_000); // 10 s of silence: still below the 12 s timeout, PING again
    t.notOk(pair.client.closed, 'alive at 10 s');
    clock.advance(5_000); // 15 s of silence
    t.ok(pair.client.closed, 'dead at 15 s');
    const [err] = (await closed) as [ConnectionError];
    t.type(err, ConnectionError);
    t.equal(err.code, 'QT_ERR_HEARTBEAT');
    t.equal(err.retryable, true);
    t.match(err.message, /silent for 15000 ms/);
    t.equal(pair.client.closeError, err);
    t.equal(await streamErr, err, 'open streams fail with the heartbeat error');
    t.equal(clock.pending, 0, 'no timer left behind');
    // The dead session drops the connection, so the other side notices too.
    if (!pair.server.closed) await once(pair.server, 'close');
  });

  t.test(`a live peer is never declared dead (${kind})`, async (t) => {
    const clock = new FakeClock();
    const pair = await muxPair(kind, {
      client: { ...keepAlive, clock },
      server: { ...keepAlive, clock },
    });
    t.teardown(() => pair.close());
    for (let i = 0; i < 12; i++) {
      const rtts = [once(pair.client, 'rtt'), once(pair.server, 'rtt')];
      clock.advance(5_000); // both sides PING
      await Promise.all(rtts);
    }
    t.notOk(pair.client.closed);
    t.notOk(pair.server.closed);
    t.equal(pair.client.rttMs, 0, 'the fake clock did not move during the round trip');
  });

  t.test(`rttMs is measured from PING/PONG (${kind})`, async (t) => {
    const clock = new FakeClock();
    const pair = await muxPair(kind, { client: { ...keepAlive, clock } });
    t.teardown(() => pair.close());
    t.equal(pair.client.rttMs, undefined, 'unknown before the first PONG');
    const rtt = once(pair.client, 'rtt');
    pair.client.ping();
    clock.advance(42);
    t.same(await rtt, [42]);
    t.equal(pair.client.rttMs, 42);

    // With real time, over a real socket.
    const real = await muxPair(kind);
    t.teardown(() => real.close());
    const realRtt = once(real.client, 'rtt');
    real.client.ping();
    const [ms] = (await realRtt) as [number];
    t.ok(ms >= 0 && ms < 5_000, `rtt ${ms.toFixed(3)} ms`);
    t.equal(real.client.rttMs, ms);
  });

  t.test(`the client gives up on a silent relay during the handshake (${kind})`, async (t) => {
    const clock = new FakeClock();
    const pair = await sessionPair(kind, { client: { clock } });
    t.teardown(() => pair.close());
    pair.serverTransport.onFrame = () => {}; // a relay that never answers
    let settled = false;
    const connecting = pair.client.connect({}).finally(() => {
      settled = true;
    });
    clock.advance(9_999);
    await new Promise((resolve) => setImmediate(resolve));
    t.notOk(settled, 'still waiting at 9.999 s');
    clock.advance(1);
    await t.rejects(connecting, { code: 'QT_ERR_HANDSHAKE_TIMEOUT', message: /10000 ms/ });
    t.ok(pair.client.closed);
    t.equal(clock.pending, 0);
  });
}

t.test('the server gives up on a client that never says HELLO', async (t) => {
  const raw = rawServer({ handshakeTimeoutMs: 3_000 });
  const closed = once(raw.session, 'close');
  raw.timers.advance(3_000);
  const [err] = (await closed) as [ConnectionError];
  t.equal(err.code, 'QT_ERR_HANDSHAKE_TIMEOUT');
  await raw.settle();
  t.ok(raw.closed, 'connection dropped');
});

t.test('keepalive 0 disables PINGs', async (t) => {
  const raw = rawServer({ keepAliveIntervalMs: 0 });
  t.teardown(() => raw.session.close());
  await raw.handshake();
  t.equal(raw.timers.pending, 0, 'no interval, and the handshake timer is cleared');
  raw.timers.advance(60_000);
  await raw.settle();
  t.notOk(raw.received.some((f) => f.type === FrameType.PING));
  t.notOk(raw.session.closed);
});

t.test('PINGs follow the interval and are answered; stray PONGs are ignored', async (t) => {
  const raw = rawServer(keepAlive);
  t.teardown(() => raw.session.close());
  await raw.handshake();
  raw.timers.advance(5_000);
  await raw.settle();
  const pings = raw.received.filter((f) => f.type === FrameType.PING);
  t.equal(pings.length, 1);
  t.equal(pings[0]!.payload.length, 8);
  // Our PING is echoed.
  raw.sendFrame(FrameType.PING, 0, Buffer.from('12345678'));
  // A PONG that answers nothing the server sent: ignored, no RTT.
  raw.sendFrame(FrameType.PONG, 0, Buffer.from('abcdefgh'));
  await raw.settle();
  const pong = raw.received.find((f) => f.type === FrameType.PONG);
  t.equal(pong?.payload.toString(), '12345678');
  t.equal(raw.session.rttMs, undefined);
  // The right PONG measures the RTT.
  raw.timers.advance(7);
  raw.sendFrame(FrameType.PONG, 0, pings[0]!.payload);
  await raw.settle();
  t.equal(raw.session.rttMs, 7);
  t.notOk(raw.session.closed);
});
