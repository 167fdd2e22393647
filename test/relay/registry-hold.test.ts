/**
 * The registry's reconnect hold, with time driven through a FakeClock (no sleeps): when a
 * tunnel loses its last connection its hostname label stays known for `holdMs`, visitor
 * requests wait for the client to come back, a reconnect within the window wakes them at
 * once (on the new connection), and after the window the label is released.
 */
import { EventEmitter } from 'node:events';
import { setImmediate as nextTurn } from 'node:timers/promises';
import t from 'tap';
import type { MuxSession } from '../../shared/mux/session.js';
import { TunnelRegistry } from '../../relay/tunnels/registry.js';
import { FakeClock } from '../helpers/fake-clock.js';

const HOLD_MS = 10_000;

/** What the registry reads of a session: its state flags and its 'close' event. */
class FakeSession extends EventEmitter {
  closed = false;
  goingAway = false;
  receivedGoAway = false;
  constructor(readonly name: string) {
    super();
  }
  close(): void {
    this.closed = true;
    this.emit('close');
  }
}

function session(name: string): { fake: FakeSession; session: MuxSession } {
  const fake = new FakeSession(name);
  return { fake, session: fake as unknown as MuxSession };
}

/** A promise's outcome so far, without waiting for it. */
function track<T>(promise: Promise<T>): { settled: boolean; value: T | undefined } {
  const state: { settled: boolean; value: T | undefined } = { settled: false, value: undefined };
  promise.then(
    (value) => {
      state.settled = true;
      state.value = value;
    },
    () => {
      state.settled = true;
    },
  );
  return state;
}

function registry(clock: FakeClock, restarted = false): TunnelRegistry {
  return new TunnelRegistry({ holdMs: HOLD_MS, clock, restarted });
}

t.test('a reconnect within the hold wakes the held request at once', async (t) => {
  const clock = new FakeClock();
  const reg = registry(clock);
  const first = session('first');
  reg.attach('abc', 'id', 'ephemeral', first.session);
  first.fake.close();
  t.notOk(reg.has('abc'), 'no live tunnel once its last connection closed');
  t.ok(reg.wasRecentlyOnline('abc'), 'but the label is held');
  t.equal(reg.holdBudgetMs('abc'), HOLD_MS, 'for the whole hold window');

  clock.advance(4_000);
  t.equal(reg.holdBudgetMs('abc'), HOLD_MS - 4_000, 'the budget shrinks with time');
  const held = track(reg.waitForSession('abc', reg.holdBudgetMs('abc')));
  t.equal(reg.held, 1, 'one request held');
  await nextTurn();
  t.notOk(held.settled, 'waiting for the client');

  const second = session('second');
  const tunnel = reg.attach('abc', 'id', 'ephemeral', second.session);
  await nextTurn();
  // No time passed: only the reconnect can have answered it.
  t.ok(held.settled, 'answered on reconnect, without waiting for the hold to end');
  t.equal(held.value, second.session, 'over the new connection');
  t.equal(reg.held, 0, 'nothing held any more');
  t.equal(reg.lookup('abc'), tunnel, 'the same label is live again');
  t.equal(clock.pending, 0, "the held request's timer is cleared");
  t.notOk(reg.wasRecentlyOnline('abc'), 'live, not "recently online"');
});

t.test('every held request is woken, each gets a live connection', async (t) => {
  const clock = new FakeClock();
  const reg = registry(clock);
  const first = session('first');
  reg.attach('abc', 'id', 'ephemeral', first.session);
  first.fake.close();
  const held = [1, 2, 3].map(() => track(reg.waitForSession('abc', reg.holdBudgetMs('abc'))));
  const other = track(reg.waitForSession('xyz', 5_000));
  t.equal(reg.held, 4);
  const back = session('back');
  reg.attach('abc', 'id', 'ephemeral', back.session);
  await nextTurn();
  t.same(
    held.map((h) => h.value),
    [back.session, back.session, back.session],
    'all three go over the new connection',
  );
  t.notOk(other.settled, "another label's request keeps waiting");
  t.equal(reg.held, 1);
  clock.advance(5_000);
  await nextTurn();
  t.ok(other.settled, 'until its own timeout');
  t.equal(other.value, undefined);
  t.equal(reg.held, 0);
});

t.test(
  'no reconnect: the request waits exactly the hold, then the label is released',
  async (t) => {
    const clock = new FakeClock();
    const reg = registry(clock);
    const first = session('first');
    reg.attach('abc', 'id', 'ephemeral', first.session);
    first.fake.close();
    const held = track(reg.waitForSession('abc', reg.holdBudgetMs('abc')));

    clock.advance(HOLD_MS - 1);
    await nextTurn();
    t.notOk(held.settled, 'still held 1 ms before the hold ends');
    t.ok(reg.wasRecentlyOnline('abc'));
    t.equal(reg.holdBudgetMs('abc'), 1);

    clock.advance(1);
    await nextTurn();
    t.ok(held.settled, 'answered when the hold ends');
    t.equal(held.value, undefined, 'with no session (the edge answers 503)');
    t.equal(reg.held, 0);
    t.notOk(reg.wasRecentlyOnline('abc'), 'the label is released');
    t.equal(reg.holdBudgetMs('abc'), 0, 'no hold budget left');

    const late = track(reg.waitForSession('abc', reg.holdBudgetMs('abc')));
    await nextTurn();
    t.ok(late.settled, 'a later request is not held at all');
    t.equal(late.value, undefined);
    t.equal(clock.pending, 0, 'no timer left');

    // A client that comes back after the hold still gets its label (the endpoint decides
    // by resume token); the registry just serves it again.
    const again = session('again');
    reg.attach('abc', 'id', 'ephemeral', again.session);
    t.equal(await reg.waitForSession('abc', 0), again.session, 'served again once reconnected');
  },
);

t.test('one of two connections closing holds nothing: the other serves', async (t) => {
  const clock = new FakeClock();
  const reg = registry(clock);
  const a = session('a');
  const b = session('b');
  reg.attach('abc', 'id', 'ephemeral', a.session);
  reg.attach('abc', 'id', 'ephemeral', b.session);
  a.fake.close();
  t.ok(reg.has('abc'));
  t.notOk(reg.wasRecentlyOnline('abc'), 'the tunnel never went offline');
  t.equal(await reg.waitForSession('abc', HOLD_MS), b.session);
  t.equal(clock.pending, 0);
});

t.test('after a relay restart, unknown labels are held for the first holdMs', async (t) => {
  const clock = new FakeClock();
  clock.nowMs = 50_000;
  const reg = registry(clock, true);
  t.equal(reg.holdBudgetMs('any'), HOLD_MS, 'a label nobody has registered yet');
  t.notOk(reg.wasRecentlyOnline('any'), 'though it is not known to have been online');
  const held = track(reg.waitForSession('any', reg.holdBudgetMs('any')));
  clock.advance(3_000);
  const client = session('client');
  reg.attach('any', 'id', 'ephemeral', client.session);
  await nextTurn();
  t.equal(held.value, client.session, 'its client reconnecting after the restart wakes it');
  clock.advance(HOLD_MS - 3_000);
  t.equal(reg.holdBudgetMs('other'), 0, 'the post-start window is over');
  const fresh = new TunnelRegistry({ holdMs: HOLD_MS, clock });
  t.equal(fresh.holdBudgetMs('any'), 0, 'a relay that did not restart holds nothing');
});

t.test('holdMs 0 turns the hold off', async (t) => {
  const clock = new FakeClock();
  const reg = new TunnelRegistry({ holdMs: 0, clock });
  const a = session('a');
  reg.attach('abc', 'id', 'ephemeral', a.session);
  a.fake.close();
  t.notOk(reg.wasRecentlyOnline('abc'));
  t.equal(reg.holdBudgetMs('abc'), 0);
  t.equal(await reg.waitForSession('abc', 0), undefined, 'answered at once');
  t.equal(clock.pending, 0);
});

t.test('held requests are bounded and released on shutdown', async (t) => {
  const clock = new FakeClock();
  const reg = new TunnelRegistry({ holdMs: HOLD_MS, maxHeldRequests: 2, clock });
  const a = session('a');
  reg.attach('abc', 'id', 'ephemeral', a.session);
  a.fake.close();
  const held = [1, 2].map(() => track(reg.waitForSession('abc', HOLD_MS)));
  t.equal(await reg.waitForSession('abc', HOLD_MS), undefined, 'the third is answered at once');
  t.equal(reg.held, 2);
  reg.releaseAll();
  await nextTurn();
  t.same(
    held.map((h) => [h.settled, h.value]),
    [
      [true, undefined],
      [true, undefined],
    ],
    'shutdown answers every held request',
  );
  t.equal(reg.held, 0);
  t.equal(clock.pending, 0, 'and clears their timers');
});
