/**
 * Which HA connection a tunnel's new request goes over: round-robin, never a connection
 * that is closed or going away.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import t from 'tap';
import type { MuxSession } from '../../shared/mux/session.js';
import { Tunnel } from '../../relay/tunnels/registry.js';

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

t.test('requests alternate over the connections, in one turn or across turns', async (t) => {
  const { tunnel } = tunnelWith('a', 'b');
  const first = [1, 2, 3].map(() => nameOf(tunnel.pickSession()));
  t.same(first, ['a', 'b', 'a'], 'round-robin within a turn');
  await nextTurn();
  t.equal(nameOf(tunnel.pickSession()), 'b', 'and on in the next one');
});

t.test('a connection that goes away is left at once', async (t) => {
  const { tunnel, sessions } = tunnelWith('a', 'b');
  t.equal(nameOf(tunnel.pickSession()), 'a');
  sessions[0]!.goingAway = true;
  t.equal(nameOf(tunnel.pickSession()), 'b', 'a is going away');
  sessions[1]!.closed = true;
  t.equal(tunnel.pickSession(), undefined, 'none left');
  await nextTurn();
  t.equal(tunnel.pickSession(), undefined);
  sessions[0]!.goingAway = false;
  t.equal(nameOf(tunnel.pickSession()), 'a', 'usable again');
});

t.test('a removed connection is never picked', async (t) => {
  const { tunnel } = tunnelWith('a', 'b');
  const a = tunnel.pickSession()!;
  t.equal(nameOf(a), 'a');
  t.ok(tunnel.removeSession(a), 'removed');
  t.notOk(tunnel.removeSession(a), 'only once');
  t.equal(nameOf(tunnel.pickSession()), 'b');
});
