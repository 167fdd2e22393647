/**
 * startRelay's `clock` reaches the parts that wait: a whole relay in-process (real
 * HTTPS listener, real tunnel client over a TLS WebSocket, real origin) on a FakeClock.
 * The edge's response timeout answers 504 exactly at responseTimeoutMs, the registry
 * holds a request for a tunnel that just dropped exactly holdMs, an HTTP/2 session gets
 * its first-request timer on the same clock, close(graceMs) waits for an exchange in
 * flight exactly graceMs, and the per-tunnel rate limit refills with it. The relay's mux
 * keepalive is off here: jumping 30 s of fake time with no traffic would (rightly) count
 * as a missed heartbeat.
 */
import { once } from 'node:events';
import type http from 'node:http';
import t, { type Test } from 'tap';
import { dialRelay } from '../../cli/tunnel/client.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { connectH2 } from '../helpers/h2-visitor.js';
import {
  connectTunnel,
  startOrigin,
  startTestRelay,
  visit,
  type TestRelay,
  type VisitResponse,
} from '../helpers/relay-env.js';

async function relayOnClock(
  t: Test,
  settings: { responseTimeoutMs?: number; holdMs?: number; rateLimitPerTunnel?: number } = {},
): Promise<{ clock: FakeClock; env: TestRelay }> {
  const clock = new FakeClock();
  const env = await startTestRelay(t, { clock, mux: { keepAliveIntervalMs: 0 }, ...settings });
  return { clock, env };
}

/** A visit, and whether it has been answered yet. */
function pendingVisit(
  env: TestRelay,
  hostname: string,
): { answer: Promise<VisitResponse>; answered: () => boolean } {
  let answered = false;
  const answer = visit(env, hostname, { path: '/slow' }).finally(() => (answered = true));
  return { answer, answered: () => answered };
}

/** Lets the sockets deliver what is already written. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Waits (bounded: 2,000 event-loop turns) until `cond()`; the registry has no events. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2_000 && !cond(); i++) await new Promise((r) => setImmediate(r));
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

t.test('the edge answers 504 at responseTimeoutMs on the relay clock', async (t) => {
  const { clock, env } = await relayOnClock(t, { responseTimeoutMs: 30_000 });
  const held: http.ServerResponse[] = [];
  const origin = await startOrigin(t, (_req, res) => held.push(res)); // never answers
  const tunnel = await connectTunnel(t, env, `http://127.0.0.1:${origin.port}`);

  const arrived = once(origin.server, 'request');
  const visitor = pendingVisit(env, tunnel.hostname);
  await arrived;
  t.ok(clock.pendingDelays().includes(30_000), 'the response timeout is on the relay clock');

  clock.advance(29_999);
  await settle();
  t.equal(visitor.answered(), false, 'no answer 1 ms before the timeout');
  clock.advance(1);
  const answer = await visitor.answer;
  t.equal(answer.status, 504);
  t.match(answer.body.toString(), /no response within 30 s/);
});

t.test('a request for a tunnel that just dropped is held holdMs on the relay clock', async (t) => {
  const { clock, env } = await relayOnClock(t, { holdMs: 10_000 });
  const conn = await dialRelay({ relay: env.url, request: { clientVersion: 'test' }, ca: env.ca });
  const { hostname, label } = conn.assignment;
  // The connection drops (no reconnect follows): the label enters its hold window.
  conn.session.close();
  await until(() => !env.relay.registry.has(label), 'the relay to see the drop');

  const visitor = pendingVisit(env, hostname);
  await until(() => env.relay.registry.held === 1, 'the request to be held');
  t.ok(clock.pendingDelays().includes(10_000), 'held for holdMs on the relay clock');
  clock.advance(9_999);
  await settle();
  t.equal(visitor.answered(), false, 'still held 1 ms before the hold ends');
  clock.advance(1);
  const answer = await visitor.answer;
  t.ok(answer.status >= 400, `then the tunnel's absence is answered (${answer.status})`);
});

t.test('an HTTP/2 session gets its first-request timer on the relay clock', async (t) => {
  const { clock, env } = await relayOnClock(t);
  const client = connectH2(env, 'nothing.qt.localhost');
  t.teardown(() => client.destroy());
  await once(client, 'remoteSettings');
  t.ok(clock.pendingDelays().includes(15_000), 'firstRequestTimeoutMs (headersTimeoutMs)');
  const closed = once(client, 'close');
  clock.advance(15_000);
  await closed;
  t.pass('the relay dropped the silent session');
});

t.test(
  'close(graceMs) waits for an exchange in flight exactly graceMs on the relay clock',
  async (t) => {
    const { clock, env } = await relayOnClock(t);
    const held: http.ServerResponse[] = [];
    const origin = await startOrigin(t, (_req, res) => held.push(res)); // never answers
    const tunnel = await connectTunnel(t, env, `http://127.0.0.1:${origin.port}`);
    const arrived = once(origin.server, 'request');
    const visitor = pendingVisit(env, tunnel.hostname);
    visitor.answer.catch(() => {}); // cut when the relay closes
    await arrived;

    let closed = false;
    const closing = env.relay.close(5_000).then(() => (closed = true));
    await until(() => clock.pendingDelays().includes(5_000), 'the grace timer');
    clock.advance(4_999);
    await settle();
    t.equal(closed, false, 'still draining 1 ms before the grace is over');
    clock.advance(1);
    await closing;
    t.equal(closed, true, 'closed once it is');
  },
);

t.test('the per-tunnel request rate refills with the relay clock', async (t) => {
  // 1 request/s, burst 2.
  const { clock, env } = await relayOnClock(t, { rateLimitPerTunnel: 1 });
  const origin = await startOrigin(t, (_req, res) => res.end('ok'));
  const tunnel = await connectTunnel(t, env, `http://127.0.0.1:${origin.port}`);
  const status = async (): Promise<number> => (await visit(env, tunnel.hostname)).status;
  t.same([await status(), await status()], [200, 200], 'the burst');
  t.equal(await status(), 429, 'then too many');
  clock.advance(999);
  t.equal(await status(), 429, 'still too many 1 ms before a token is back');
  clock.advance(1);
  t.equal(await status(), 200, 'one more after a second of the relay clock');
  t.equal(await status(), 429);
});
