/**
 * Who may open tunnels on a relay (test plan M9, A1, A2, S2, S3): relay tokens (none /
 * wrong / right, also from a tokens file), named-tunnel credentials, the per-IP cap on
 * tunnel connections (429 on the upgrade), new tunnels per minute per token or IP, and
 * that no token, credential or visitor password shows up in the relay's logs or the
 * CLI's output, in process and with the real binaries.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import WebSocket from 'ws';
import { dialRelay, localhostAwareLookup } from '../../cli/tunnel/client.js';
import { AuthError } from '../../shared/errors.js';
import { ErrorCode, FrameType } from '../../shared/protocol/frame.js';
import { TUNNEL_ENDPOINT_PATH, type TunnelRequest } from '../../shared/protocol/tunnel.js';
import { spawnCli, spawnRelay } from '../helpers/processes.js';
import {
  TEST_DOMAIN,
  startOrigin,
  startTestRelay,
  tempDir,
  type TestRelay,
} from '../helpers/relay-env.js';
import { captureLogger, get, rawTunnelClient, startControl } from '../helpers/hostile.js';

const TOKEN_A = 'tok-A-Pl4nted-0123456789';
const TOKEN_B = 'tok-B-Pl4nted-9876543210';

/** Dials and handshakes; resolves with the assignment or the error's code and message. */
async function dial(
  t: Test,
  env: TestRelay,
  request: Omit<TunnelRequest, 'clientVersion'>,
): Promise<{ hostname: string } | { code: string; message: string; relayTokenRefused?: boolean }> {
  try {
    const conn = await dialRelay({
      relay: env.url,
      request: { clientVersion: 'test', ...request },
      ca: env.ca,
    });
    t.teardown(() => conn.session.close());
    return { hostname: conn.assignment.hostname };
  } catch (err) {
    const e = err as Error & { code?: string };
    return {
      code: e.code ?? '',
      message: e.message,
      ...(err instanceof AuthError ? { relayTokenRefused: err.relayTokenRefused } : {}),
    };
  }
}

t.test('relay tokens and named credentials', async (t) => {
  const { logger, lines } = captureLogger();
  const env = await startTestRelay(t, { tokens: [TOKEN_A, TOKEN_B], logger });
  // The relay says which secret it refused by its wire code (TOKEN_REJECTED vs AUTH_FAILED).
  t.match(await dial(t, env, {}), {
    code: 'QT_ERR_AUTH',
    message: /requires an access token/,
    relayTokenRefused: true,
  });
  t.match(await dial(t, env, { token: 'wrong' }), {
    code: 'QT_ERR_AUTH',
    message: /rejected the access token/,
  });
  t.match(await dial(t, env, { token: TOKEN_A.slice(0, -1) }), { code: 'QT_ERR_AUTH' });
  t.match(await dial(t, env, { token: `${TOKEN_A}x` }), { code: 'QT_ERR_AUTH' });
  t.match(await dial(t, env, { token: '' }), { code: 'QT_ERR_AUTH' });
  t.match(await dial(t, env, { token: TOKEN_A }), { hostname: /\.qt\.localhost$/ });
  t.match(await dial(t, env, { token: TOKEN_B }), { hostname: /\.qt\.localhost$/ });

  // Raw: a HELLO without a token gets GOAWAY TOKEN_REJECTED and the socket closes.
  const raw = await rawTunnelClient(t, env);
  await raw.hello({ clientVersion: 'raw', token: 42 });
  t.equal(raw.goAway()?.code, ErrorCode.TOKEN_REJECTED, 'raw client: GOAWAY TOKEN_REJECTED');
  await raw.closed;

  // Named tunnels: the credential, not the name, decides.
  const { credential } = await env.relay.named.create('owned');
  t.match(await dial(t, env, { token: TOKEN_A, name: 'owned' }), {
    code: 'QT_ERR_AUTH',
    relayTokenRefused: false,
  });
  t.match(await dial(t, env, { token: TOKEN_A, name: 'owned', credential: `${credential}x` }), {
    code: 'QT_ERR_AUTH',
    relayTokenRefused: false,
  });
  t.match(await dial(t, env, { name: 'owned', credential }), {
    code: 'QT_ERR_AUTH',
    message: /requires an access token/,
    relayTokenRefused: true,
  });
  t.match(await dial(t, env, { token: TOKEN_A, name: 'owned', credential }), {
    hostname: `owned.${TEST_DOMAIN}`,
  });
  t.match(await dial(t, env, { token: TOKEN_A, name: 'unknown', credential }), {
    code: /QT_ERR/,
  });

  const all = lines.join('\n');
  t.ok(lines.length > 10, `relay logged ${lines.length} lines at trace level`);
  for (const [name, secret] of [
    ['token A', TOKEN_A],
    ['token B', TOKEN_B],
    ['named credential', credential],
  ] as const) {
    t.notOk(all.includes(secret), `${name} appears in no log line`);
  }
});

t.test('per-IP cap on tunnel connections: 429 on the upgrade', async (t) => {
  const env = await startTestRelay(t, { maxConnectionsPerIp: 4 });
  const control = await startControl(t, env); // 1 of the 4
  const open = [];
  for (let i = 0; i < 3; i++) open.push(await rawTunnelClient(t, env));
  const refused = await new Promise<{ status: number; body: string; retryAfter?: string }>(
    (resolve, reject) => {
      const ws = new WebSocket(`wss://${TEST_DOMAIN}:${env.httpsPort}${TUNNEL_ENDPOINT_PATH}`, {
        ca: env.ca,
        lookup: localhostAwareLookup,
      } as WebSocket.ClientOptions);
      ws.on('error', () => {});
      ws.once('open', () => reject(new Error('the fifth connection was accepted')));
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => {
          const r: { status: number; body: string; retryAfter?: string } = {
            status: res.statusCode ?? 0,
            body,
          };
          if (typeof res.headers['retry-after'] === 'string') {
            r.retryAfter = res.headers['retry-after'];
          }
          resolve(r);
        });
      });
    },
  );
  t.equal(refused.status, 429, 'the connection over the cap gets 429');
  t.equal(refused.retryAfter, '60');
  t.match(refused.body, /too many tunnel connections/);
  open[0]!.close();
  await open[0]!.closed;
  // The slot is released once that socket has closed.
  let again: Awaited<ReturnType<typeof rawTunnelClient>> | undefined;
  for (let i = 0; i < 50 && again === undefined; i++) {
    again = await rawTunnelClient(t, env).catch(() => undefined);
    if (again === undefined) await new Promise((r) => setTimeout(r, 20));
  }
  t.ok(again, 'a freed slot can be used again');
  await control.check(t, 'per-IP cap');
});

t.test('new tunnels per minute: per token, else per IP', async (t) => {
  const env = await startTestRelay(t, { tokens: [TOKEN_A, TOKEN_B], creationsPerMinute: 3 });
  const made = [];
  for (let i = 0; i < 3; i++) made.push(await dial(t, env, { token: TOKEN_A }));
  t.ok(
    made.every((m) => 'hostname' in m),
    'three new tunnels within the budget',
  );
  t.match(await dial(t, env, { token: TOKEN_A }), {
    code: 'QT_ERR_REJECTED',
    message: /too many new tunnels from this client; try again in \d+ s/,
  });
  t.match(await dial(t, env, { token: TOKEN_B }), { hostname: /qt\.localhost$/ }, 'other token');

  // Over a raw socket: the refusal is a GOAWAY REJECTED, and the relay stays usable.
  const raw = await rawTunnelClient(t, env);
  await raw.hello({ clientVersion: 'raw', token: TOKEN_A });
  t.equal(raw.goAway()?.code, ErrorCode.REJECTED);
  await raw.closed;

  // Open relay: the budget is per client IP.
  const open = await startTestRelay(t, { creationsPerMinute: 2 });
  t.match(await dial(t, open, {}), { hostname: /qt\.localhost$/ });
  t.match(await dial(t, open, {}), { hostname: /qt\.localhost$/ });
  t.match(await dial(t, open, {}), { code: 'QT_ERR_REJECTED' });
  // A visitor-facing tunnel still serves while its owner is over the budget.
  const host = (made[0] as { hostname: string }).hostname;
  const r = await get(env, host, { timeoutMs: 2_000 });
  t.ok('status' in r, `existing tunnel still routed (${'status' in r ? r.status : r.error})`);
});

t.test('real processes: tokens file, secrets absent from every output', async (t) => {
  const dir = await tempDir(t);
  const tokensFile = path.join(dir, 'tokens');
  await writeFile(tokensFile, `# relay tokens\n\n${TOKEN_A}\n  ${TOKEN_B}  \n`, { mode: 0o600 });
  const relay = await spawnRelay(t, path.join(dir, 'data'), [
    '--tokens-file',
    tokensFile,
    '--log-level',
    'trace',
  ]);
  const ca = await readFile(relay.certPath, 'utf8');
  const { port } = await startOrigin(t, (req, res) => res.end(`app ${req.headers.authorization}`));
  const password = 'Pl4nted-visitor-pass';
  const cli = spawnCli(
    t,
    [
      String(port),
      '--relay',
      `https://${TEST_DOMAIN}:${relay.httpsPort}`,
      '--ca',
      relay.certPath,
      '--log',
      'json',
      '--basic-auth',
      `demo:${password}`,
    ],
    { env: { QUICK_TUNNEL_TOKEN: TOKEN_B, QUICK_TUNNEL_CONFIG_DIR: dir } },
  );
  const ready = JSON.parse(await cli.waitFor(/"event":"ready"/, 'stdout')) as { hostname: string };
  const env = { httpsPort: relay.httpsPort, ca } as TestRelay;
  const denied = await get(env, ready.hostname);
  t.equal('status' in denied && denied.status, 401, 'the relay enforces --basic-auth');
  const auth = `Basic ${Buffer.from(`demo:${password}`).toString('base64')}`;
  const ok = await get(env, ready.hostname, { headers: { authorization: auth } });
  t.same('status' in ok && [ok.status, ok.body], [200, 'app undefined'], 'app sees no password');
  await cli.waitFor(/"event":"request"/, 'stdout');

  const wrong = spawnCli(
    t,
    [String(port), '--relay', `https://${TEST_DOMAIN}:${relay.httpsPort}`, '--ca', relay.certPath],
    { env: { QUICK_TUNNEL_TOKEN: 'not-a-token', QUICK_TUNNEL_CONFIG_DIR: dir } },
  );
  t.equal(await wrong.exited, 1, 'a wrong token from the environment is refused');
  t.notOk(
    relay.stderr.some((l) => /relay is OPEN/.test(l)),
    'a relay with a tokens file does not call itself open',
  );
  cli.child.kill('SIGTERM');
  await cli.exited;
  relay.child.kill('SIGTERM');
  await relay.exited;
  const output = [...relay.stdout, ...relay.stderr, ...cli.stdout, ...cli.stderr].join('\n');
  t.ok(relay.stdout.length > 3, `relay wrote ${relay.stdout.length} log lines at trace`);
  for (const [name, secret] of [
    ['token A', TOKEN_A],
    ['token B', TOKEN_B],
    ['visitor password', password],
    ['Authorization value', auth.slice(6)],
  ] as const) {
    t.notOk(output.includes(secret), `${name}: in no relay or CLI output`);
  }
});
