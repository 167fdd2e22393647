/**
 * Which HA connection a tunnel's new request goes over: round-robin across turns of the
 * event loop, sticky within one (so requests that arrive together share a TLS write),
 * never a connection that is closed or going away.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import t from 'tap';
import type { MuxSession } from '../../shared/mux/session.js';
import { Tunnel } from '../../relay/tunnels/registry.js';
import { speedTrickOn } from '../../shared/speed.js';

interface FakeSession {
  name: string;
  closed: boolean;
  goingAway: boolean;
  receivedGoAway: boolean;
}

function tunnelWith(...names: string[]): { tunnel: Tunnel; sessions: FakeSession[] } {
  const tunnel = new Tunnel('id', 'label', 'ephemeral');
  const sessions = names.map((name) => ({
    name,
    closed: false,
    goingAway: false,
    receivedGoAway: false,
  }));
  tunnel.sessions.push(...(sessions as unknown as MuxSession[]));
  return { tunnel, sessions };
}

const nameOf = (s: MuxSession | undefined): string | undefined =>
  (s as unknown as FakeSession | undefined)?.name;

t.test('requests in one turn share a connection; turns alternate', async (t) => {
  const { tunnel } = tunnelWith('a', 'b');
  if (!speedTrickOn('sticky-session')) {
    // QUICK_TUNNEL_SPEED_TRICKS without sticky-session: plain round-robin.
    const picks = [1, 2, 3].map(() => nameOf(tunnel.pickSession()));
    t.same(picks, ['a', 'b', 'a'], 'round-robin, turn or not');
    return;
  }
  const first = [1, 2, 3].map(() => nameOf(tunnel.pickSession()));
  t.same(first, ['a', 'a', 'a'], 'one turn: one connection');
  await nextTurn();
  const second = [1, 2].map(() => nameOf(tunnel.pickSession()));
  t.same(second, ['b', 'b'], 'the next turn: the next connection');
  await nextTurn();
  t.equal(nameOf(tunnel.pickSession()), 'a', 'and round again');
});

t.test('a connection that goes away mid-turn is left at once', async (t) => {
  const { tunnel, sessions } = tunnelWith('a', 'b');
  t.equal(nameOf(tunnel.pickSession()), 'a');
  sessions[0]!.goingAway = true;
  t.equal(nameOf(tunnel.pickSession()), 'b', 'same turn, but a is going away');
  sessions[1]!.closed = true;
  t.equal(tunnel.pickSession(), undefined, 'none left');
  await nextTurn();
  t.equal(tunnel.pickSession(), undefined);
  sessions[0]!.goingAway = false;
  t.equal(nameOf(tunnel.pickSession()), 'a', 'usable again');
});

t.test('a removed connection is never picked, even within its turn', async (t) => {
  const { tunnel } = tunnelWith('a', 'b');
  const a = tunnel.pickSession()!;
  t.equal(nameOf(a), 'a');
  t.ok(tunnel.removeSession(a), 'removed');
  t.notOk(tunnel.removeSession(a), 'only once');
  t.equal(nameOf(tunnel.pickSession()), 'b');
});
