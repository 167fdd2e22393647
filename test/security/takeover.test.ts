/**
 * Issue 16 item 1: an ephemeral tunnel's hostname cannot be taken over while its owner
 * is away. The owner drops (a network cut with the relay up; a relay restart on the same
 * data dir), an attacker hammers `POST /api/tunnels {name: <label>}` and a HELLO that
 * claims the label as a named tunnel, and the owner comes back with its resume token:
 * it keeps its hostname, and the attacker got a clear refusal every time.
 */
import t from 'tap';
import type { Test } from 'tap';
import { RelayApiError, relayApi } from '../../cli/tunnel/api.js';
import { dialRelay, type TunnelConnection } from '../../cli/tunnel/client.js';
import type { TunnelRequest } from '../../shared/protocol/tunnel.js';
import { startTestRelay, type TestRelay } from '../helpers/relay-env.js';
import { delay, eventually } from '../helpers/wait.js';

async function dial(env: TestRelay, request: Omit<TunnelRequest, 'clientVersion'>) {
  return dialRelay({ relay: env.url, request: { clientVersion: 'test', ...request }, ca: env.ca });
}

/** Closes the owner's connection and waits until the relay has let go of the label. */
async function drop(env: TestRelay, conn: TunnelConnection): Promise<void> {
  conn.session.close();
  await conn.closed;
  await eventually(() => !env.relay.registry.has(conn.assignment.label));
}

/** The attacker: create and claim the label over and over; returns every outcome. */
async function hammer(env: TestRelay, label: string, rounds: number): Promise<string[]> {
  const outcomes: string[] = [];
  for (let i = 0; i < rounds; i++) {
    try {
      await relayApi.create({ relay: env.url, ca: env.ca }, label, undefined);
      outcomes.push('created');
    } catch (err) {
      outcomes.push(err instanceof RelayApiError ? `${err.status} ${err.apiCode}` : String(err));
    }
    try {
      const conn = await dial(env, { name: label, credential: 'qtc_guess' });
      outcomes.push('claimed');
      conn.session.close();
    } catch (err) {
      outcomes.push(`hello ${(err as { code?: string }).code ?? String(err)}`);
    }
    await delay(5);
  }
  return outcomes;
}

function checkRefusals(t: Test, outcomes: string[]): void {
  t.notOk(outcomes.includes('created'), 'no reservation of the label was ever created');
  t.notOk(outcomes.includes('claimed'), 'no HELLO ever claimed the label');
  t.ok(
    outcomes.filter((o) => o === '400 QT_ERR_BAD_NAME').length > 0,
    'create is refused with 400 QT_ERR_BAD_NAME',
  );
}

t.test('network cut, relay up: the owner keeps its hostname', async (t) => {
  const env = await startTestRelay(t);
  const owner = await dial(env, {});
  const { label, resumeToken } = owner.assignment;
  t.ok(resumeToken, 'the owner holds a resume token');
  await drop(env, owner);

  const outcomes = await hammer(env, label, 15);
  checkRefusals(t, outcomes);
  try {
    await relayApi.create({ relay: env.url, ca: env.ca }, label, undefined);
  } catch (err) {
    t.match((err as Error).message, /kept for random tunnel hostnames/, 'the refusal says why');
  }

  const back = await dial(env, { resume: resumeToken! });
  t.teardown(() => back.session.close());
  t.equal(back.assignment.label, label, 'the owner got its own hostname back');
  t.equal(env.relay.registry.lookup(label)?.kind, 'ephemeral', 'served as the ephemeral tunnel');
});

t.test('relay restart: the owner keeps its hostname', async (t) => {
  const first = await startTestRelay(t, { httpPort: null });
  const owner = await dial(first, {});
  const { label, resumeToken } = owner.assignment;
  await first.relay.close(100);
  await owner.closed;

  const env = await startTestRelay(t, {
    dataDir: first.dataDir,
    httpsPort: first.httpsPort,
    httpPort: null,
  });
  const outcomes = await hammer(env, label, 15);
  checkRefusals(t, outcomes);
  t.equal(await env.relay.named.get(label), undefined, 'the store holds no reservation of it');

  const back = await dial(env, { resume: resumeToken! });
  t.teardown(() => back.session.close());
  t.equal(back.assignment.label, label, 'the owner got its own hostname back after the restart');
});
