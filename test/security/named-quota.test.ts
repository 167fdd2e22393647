/**
 * Issue 16 item 4: named-tunnel reservations are limited. A client (relay token, else
 * IP) holds at most `maxNamedTunnelsPerClient` named tunnels (403 QT_ERR_QUOTA beyond)
 * and creates at most `namedTunnelCreationsPerHour` (429 with Retry-After beyond); and
 * the store is not rewritten on every connect and disconnect of a named tunnel (the
 * last-seen times are saved in batches), whatever the number of records.
 */
import { stat, readFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import t from 'tap';
import { RelayApiError, relayApi } from '../../cli/tunnel/api.js';
import { dialRelay } from '../../cli/tunnel/client.js';
import { JsonFileTunnelStore, STORE_FILE } from '../../relay/tunnels/store.js';
import { TEST_DOMAIN, startTestRelay, tempDir, type TestRelay } from '../helpers/relay-env.js';

const TOKEN_A = 'quota-token-A-0123456789abcdef';
const TOKEN_B = 'quota-token-B-0123456789abcdef';

/** POST /api/tunnels; resolves with the status, Retry-After and the JSON answer. */
function create(
  env: TestRelay,
  name: string,
  token?: string,
): Promise<{ status: number; retryAfter: string | undefined; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ name });
    const req = https.request(
      {
        host: '127.0.0.1',
        port: env.httpsPort,
        method: 'POST',
        path: '/api/tunnels',
        servername: TEST_DOMAIN,
        ca: env.ca,
        agent: false,
        headers: {
          host: `${TEST_DOMAIN}:${env.httpsPort}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          const retry = res.headers['retry-after'];
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: typeof retry === 'string' ? retry : undefined,
            body: JSON.parse(text) as Record<string, unknown>,
          });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

t.test('a quota of named tunnels per relay token', async (t) => {
  const env = await startTestRelay(t, {
    tokens: [TOKEN_A, TOKEN_B],
    maxNamedTunnelsPerClient: 3,
    namedTunnelCreationsPerHour: 0,
  });
  const credentials: string[] = [];
  for (const name of ['qa-one', 'qa-two', 'qa-three']) {
    const r = await create(env, name, TOKEN_A);
    t.equal(r.status, 201, `${name} created`);
    credentials.push(String(r.body['credential']));
  }
  const over = await create(env, 'qa-four', TOKEN_A);
  t.equal(over.status, 403, 'the 4th of one token is refused');
  t.equal(over.body['code'], 'QT_ERR_QUOTA');
  t.match(String(over.body['message']), /already holds 3 named tunnels/, 'saying why');
  t.equal(await env.relay.named.get('qa-four'), undefined, 'nothing was reserved');
  t.equal((await create(env, 'qb-one', TOKEN_B)).status, 201, 'another token is not affected');

  await relayApi.delete({ relay: env.url, ca: env.ca }, 'qa-one', credentials[0]!, false);
  t.equal((await create(env, 'qa-four', TOKEN_A)).status, 201, 'deleting one frees a slot');
});

t.test('a creation rate limit per client IP (429 + Retry-After)', async (t) => {
  const env = await startTestRelay(t, {
    maxNamedTunnelsPerClient: 0,
    namedTunnelCreationsPerHour: 25, // burst of 5
  });
  for (let i = 0; i < 5; i++) {
    t.equal((await create(env, `rate-${i}`)).status, 201, `creation ${i + 1} of the burst`);
  }
  const limited = await create(env, 'rate-5');
  t.equal(limited.status, 429, 'the 6th within the hour is refused');
  t.equal(limited.body['code'], 'QT_ERR_RATE_LIMITED');
  t.ok(Number(limited.retryAfter) > 0, `with Retry-After (${limited.retryAfter} s)`);
  t.equal(await env.relay.named.get('rate-5'), undefined, 'nothing was reserved');
  try {
    await relayApi.create({ relay: env.url, ca: env.ca }, 'rate-6', undefined);
    t.fail('the CLI call is refused too');
  } catch (err) {
    t.ok(err instanceof RelayApiError && err.status === 429, 'the CLI sees the 429');
  }
});

t.test('connects and disconnects do not rewrite the store', async (t) => {
  const dataDir = await tempDir(t, 'qt-quota-');
  const seed = await JsonFileTunnelStore.open(dataDir);
  await Promise.all(
    Array.from({ length: 2000 }, (_, i) =>
      seed.create({
        id: `id-${i}`,
        name: `seed-${i}`,
        credentialHash: `sha256:${'ab'.repeat(32)}`,
        createdAt: new Date(0).toISOString(),
        lastSeenAt: null,
      }),
    ),
  );
  await seed.close();
  const store = await JsonFileTunnelStore.open(dataDir, { seenFlushMs: 60_000 });
  const env = await startTestRelay(t, { dataDir, store, namedTunnelCreationsPerHour: 0 });
  const made = await relayApi.create({ relay: env.url, ca: env.ca }, 'churny', undefined);
  const file = path.join(dataDir, STORE_FILE);
  const before = await stat(file);

  for (let i = 0; i < 10; i++) {
    const conn = await dialRelay({
      relay: env.url,
      request: { clientVersion: 'test', name: 'churny', credential: made.credential },
      ca: env.ca,
    });
    conn.session.close();
    await conn.closed;
  }
  const after = await stat(file);
  t.equal(after.ino, before.ino, 'the store file was not replaced during 10 connects');
  t.equal(after.mtimeMs, before.mtimeMs, 'nor written to');
  const status = await relayApi.status({ relay: env.url, ca: env.ca }, 'churny', made.credential);
  t.not(status.lastSeenAt, null, 'the last-seen time is known meanwhile');

  await env.relay.close(100);
  const saved = JSON.parse(await readFile(file, 'utf8')) as {
    tunnels: { name: string; lastSeenAt: string | null }[];
  };
  t.equal(
    saved.tunnels.find((r) => r.name === 'churny')?.lastSeenAt,
    status.lastSeenAt,
    'and it is saved when the relay stops',
  );
  t.equal(saved.tunnels.length, 2001, 'every record is still there');
});
