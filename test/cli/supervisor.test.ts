/**
 * The supervisor's reconnect schedule, with time driven through a FakeClock (no sleeps):
 * jittered exponential backoff (fast phase, then up to the cap), no dial before the delay
 * is over, the attempt count reset after a stable connection, an immediate redial on
 * GOAWAY, and a first connection that gives up after `firstConnectAttempts`. Connections
 * are real mux sessions over an in-memory transport; the relay side is a server session.
 */
import { EventEmitter, once } from 'node:events';
import t from 'tap';
import { AuthError, ConnectionError, QuickTunnelError } from '../../shared/errors.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import type { TunnelAssignment, TunnelRequest } from '../../shared/protocol/tunnel.js';
import type { TunnelEvent } from '../../cli/events.js';
import type { TunnelConnection } from '../../cli/tunnel/client.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import { DEFAULT_BACKOFF, TunnelSupervisor } from '../../cli/tunnel/supervisor.js';
import { muxPair, type MuxPair } from '../helpers/mux-pair.js';
import { FakeClock } from '../helpers/fake-clock.js';

const assignment: TunnelAssignment = {
  tunnelId: 'tid',
  label: 'abc',
  hostname: 'abc.qt.localhost',
  urls: ['https://abc.qt.localhost'],
  kind: 'ephemeral',
  relayVersion: 'test',
  resumeToken: 'abc.token',
};

/** One scripted answer per dial: a live connection, or an error to throw. */
type Answer = 'connect' | Error;

class Harness extends EventEmitter {
  readonly clock = new FakeClock();
  readonly events: TunnelEvent[] = [];
  readonly dials: TunnelRequest[] = [];
  readonly pairs: MuxPair[] = [];
  readonly supervisor: TunnelSupervisor;
  private readonly answers: Answer[];

  constructor(answers: Answer[], options: { firstConnectAttempts?: number } = {}) {
    super();
    this.answers = answers;
    this.supervisor = new TunnelSupervisor({
      connect: (request) => this.dial(request),
      request: { clientVersion: 'test' },
      connections: 1,
      onStream: () => {},
      emit: (event) => {
        this.events.push(event);
        this.emit(event.event, event);
      },
      relay: 'wss://relay.test',
      target: 'http://127.0.0.1:1',
      local: false,
      // The top of each jitter range: the schedule is the policy's ceilings.
      random: () => 1,
      clock: this.clock,
      ...options,
    });
  }

  private async dial(request: TunnelRequest): Promise<TunnelConnection> {
    this.dials.push(request);
    this.emit('dial');
    // Bounded: a supervisor that redials without waiting stops here instead of spinning.
    if (this.dials.length > 100) throw new AuthError('too many dials (runaway reconnect loop)');
    const answer = this.answers.shift() ?? new ConnectionError('relay unreachable (scripted)');
    if (answer instanceof Error) throw answer;
    const pair = await muxPair('memory', {
      client: { keepAliveIntervalMs: 0 },
      server: { keepAliveIntervalMs: 0 },
    });
    this.pairs.push(pair);
    return { session: pair.client, assignment };
  }

  /** Stops the supervisor and closes every connection (test teardown). */
  async close(): Promise<void> {
    await this.supervisor.stop(0);
    await Promise.all(this.pairs.map((pair) => pair.close()));
  }

  /** The delays announced by 'reconnecting' events so far. */
  delays(): number[] {
    return this.events.flatMap((e) => (e.event === 'reconnecting' ? [e.delayMs] : []));
  }

  /** The relay drops the newest connection; resolves once the supervisor saw it. */
  async dropConnection(): Promise<void> {
    const lost = once(this, 'connection-lost');
    this.pairs.at(-1)!.server.close();
    await lost;
  }
}

t.test(
  'backoff: fast phase doubling to 2 s, then the 30 s cap; no dial before its time',
  async (t) => {
    const h = new Harness(['connect']);
    t.teardown(() => h.close());
    await h.supervisor.start();
    t.equal(h.dials.length, 1);
    await h.dropConnection();

    // 10 fast attempts, then the slow phase: the ceiling is min(cap, 500 ms × 2^n).
    const expected = [500, 1_000, 2_000, 2_000, 2_000, 2_000, 2_000, 2_000, 2_000, 2_000, 30_000];
    for (const [i, delayMs] of expected.entries()) {
      t.equal(h.delays()[i], delayMs, `reconnect ${i + 1} waits ${delayMs} ms`);
      t.same(h.clock.pendingDelays(), [delayMs], 'one timer: the backoff sleep');
      await h.clock.tick(delayMs - 1);
      t.equal(h.dials.length, 1 + i, 'no dial 1 ms before the delay is over');
      await h.clock.tick(1);
      t.equal(h.dials.length, 2 + i, 'the dial once it is');
    }
    // The last dial failed too: the next one waits the cap again.
    t.same(h.delays(), [...expected, 30_000], 'the whole schedule');
    t.equal(
      h.events.filter((e) => e.event === 'reconnecting').at(-1)?.attempt,
      expected.length + 1,
    );
    t.equal(h.supervisor.liveConnections, 0);
  },
);

t.test(
  'a reconnect that works resumes the hostname; a stable connection resets the count',
  async (t) => {
    const h = new Harness(['connect', new ConnectionError('down'), 'connect', 'connect']);
    t.teardown(() => h.close());
    await h.supervisor.start();

    await h.dropConnection();
    t.same(h.delays(), [500]);
    await h.clock.tick(500); // dial 2 fails
    t.same(h.delays(), [500, 1_000]);
    const reconnected = once(h, 'reconnected');
    await h.clock.tick(1_000); // dial 3 connects
    const [event] = (await reconnected) as [TunnelEvent];
    t.match(event, { event: 'reconnected', sameHostname: true });
    t.equal(h.dials[2]?.resume, 'abc.token', 'it presented the resume token');
    t.equal(h.supervisor.liveConnections, 1);

    // Up for less than stableMs: the next loss continues the schedule (attempt 2 → 2 s).
    await h.clock.tick(DEFAULT_BACKOFF.stableMs - 1);
    await h.dropConnection();
    t.same(h.delays(), [500, 1_000, 2_000], 'a short-lived connection does not reset');
    const back = once(h, 'reconnected');
    await h.clock.tick(2_000); // dial 4 connects
    await back;
    t.equal(h.supervisor.liveConnections, 1);

    // Up for stableMs: the count starts over.
    await h.clock.tick(DEFAULT_BACKOFF.stableMs);
    await h.dropConnection();
    t.same(h.delays(), [500, 1_000, 2_000, 500], 'a stable connection resets the backoff');
  },
);

t.test('a relay going away (GOAWAY) is redialled at once, without backoff', async (t) => {
  const h = new Harness(['connect', 'connect']);
  t.teardown(() => h.close());
  await h.supervisor.start();
  const lost = once(h, 'connection-lost');
  h.pairs[0]!.server.goAway(ErrorCode.NO_ERROR, 'relay restarting');
  await lost;
  // The redial follows the 'connection-lost' event synchronously; the fake clock has not moved.
  t.same(h.delays(), [], 'no reconnecting delay');
  t.equal(h.dials.length, 2);
  t.equal(h.clock.pendingDelays().length, 0, 'no backoff timer');
});

t.test('first connection: backs off between tries, gives up after the last', async (t) => {
  const h = new Harness([], { firstConnectAttempts: 3 });
  t.teardown(() => h.close());
  const started = h.supervisor.start();
  started.catch(() => {});
  await h.clock.tick(0);
  t.equal(h.dials.length, 1);
  t.same(h.clock.pendingDelays(), [500], 'first retry after 500 ms');
  await h.clock.tick(499);
  t.equal(h.dials.length, 1);
  await h.clock.tick(1);
  t.equal(h.dials.length, 2);
  t.same(h.clock.pendingDelays(), [1_000], 'second retry after 1 s');
  await h.clock.tick(1_000);
  t.equal(h.dials.length, 3);
  const err = await started.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, QuickTunnelError);
  t.equal((err as QuickTunnelError).code, 'QT_ERR_RELAY_UNREACHABLE');
  t.match((err as Error).message, /gave up after 3 attempts/);
  t.equal(h.clock.pending, 0, 'no timer left');
});

t.test('a permanent error on the first connection stops at once', async (t) => {
  const h = new Harness([new AuthError('token revoked')]);
  t.teardown(() => h.close());
  await t.rejects(h.supervisor.start(), { code: 'QT_ERR_AUTH' });
  t.equal(h.dials.length, 1, 'no retry');
  t.equal(h.clock.pending, 0, 'no backoff timer');
});

t.test('stop during a backoff sleep ends it at once', async (t) => {
  const h = new Harness(['connect']);
  t.teardown(() => h.close());
  await h.supervisor.start();
  await h.dropConnection();
  t.same(h.clock.pendingDelays(), [500]);
  await h.supervisor.stop(0);
  t.equal(h.dials.length, 1, 'no dial after stop');
  t.equal(h.clock.pending, 0, 'the backoff and grace timers are cleared');
  t.equal(h.events.at(-1)?.event, 'closed');
});

t.test('stop waits for an in-flight stream up to graceMs on the clock, then closes', async (t) => {
  const h = new Harness(['connect']);
  t.teardown(() => h.close());
  await h.supervisor.start();
  const pair = h.pairs[0]!;
  const accepted = once(pair.client, 'stream');
  const relaySide = pair.server.openStream({ note: 'in flight' });
  const [clientSide] = (await accepted) as [MuxStream];
  // Closing the session fails the stream on both sides: expected here.
  const streamErrors: string[] = [];
  for (const stream of [relaySide, clientSide]) {
    stream.on('error', (err: Error) => streamErrors.push(err.message));
  }

  let stopped = false;
  const stopping = h.supervisor.stop(5_000).then(() => (stopped = true));
  // The PING after the GOAWAY comes back over the in-memory transport; then only the
  // grace timer is left (the stream never ends).
  await once(pair.client, 'rtt');
  await h.clock.tick(0);
  t.same(h.clock.pendingDelays(), [5_000], 'the grace timer');
  await h.clock.tick(4_999);
  t.equal(pair.client.closed, false, 'the session stays open during the grace period');
  t.equal(stopped, false);
  await h.clock.tick(1);
  t.equal(pair.client.closed, true, 'closed once the grace period is over');
  await stopping;
  t.equal(h.events.at(-1)?.event, 'closed');
  t.equal(h.clock.pending, 0, 'no timer left');
  t.ok(streamErrors.length > 0, 'the unfinished stream was cut');
});
