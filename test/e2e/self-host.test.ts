/**
 * Self-hosting as the README tells it (issue 21 §3): the relay's banner prints a client
 * command that works as printed (URL with its port, the certificate pinned by
 * fingerprint, the token only with --print-token), the home page names the port, and a
 * wrong pin is refused.
 */
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import t from 'tap';
import { spawnCli, spawnRelay } from '../helpers/processes.js';
import { startOrigin, tempDir } from '../helpers/relay-env.js';

function get(
  port: number,
  host: string,
  ca: string,
  urlPath = '/',
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path: urlPath,
        headers: { host },
        servername: host,
        ca,
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The printed command's arguments after `quick-tunnel` (no quoting in what the relay prints). */
function argsOf(line: string): string[] {
  return line.trim().split(/\s+/).slice(1);
}

t.test('the banner command works as printed: login, then a tunnel with no flags', async (t) => {
  const relay = await spawnRelay(t, await tempDir(t), ['--token', 's3cret-token', '--print-token']);
  const loginLine = await relay.waitFor(/^\s+quick-tunnel login /, 'stderr');
  const runLine = await relay.waitFor(/^\s+quick-tunnel 3000 /, 'stderr');
  t.match(
    loginLine,
    new RegExp(
      `quick-tunnel login --relay https://qt\\.localhost:${relay.httpsPort} --ca-fingerprint SHA256:([0-9A-F]{2}:){31}[0-9A-F]{2} --token s3cret-token$`,
    ),
  );
  const ca = await readFile(relay.certPath, 'utf8');
  const { port } = await startOrigin(t, (req, res) => res.end(`self-hosted ${req.url}`));

  // One run, exactly as printed (3000 → the origin's port).
  const configDir = await tempDir(t);
  const env = { QUICK_TUNNEL_CONFIG_DIR: configDir };
  const once = spawnCli(t, [String(port), ...argsOf(runLine).slice(1), '--log', 'json'], { env });
  const ready = JSON.parse(await once.waitFor(/"event":"ready"/, 'stdout')) as { url: string };
  const host = new URL(ready.url).hostname;
  const res = await get(relay.httpsPort, host, ca, '/one-run');
  t.equal(res.status, 200);
  t.equal(res.body, 'self-hosted /one-run');
  once.child.kill('SIGINT');
  t.equal(await once.exited, 0);

  // login as printed, then a bare `quick-tunnel PORT`.
  const login = spawnCli(t, argsOf(loginLine), { env });
  t.equal(await login.exited, 0, login.stderr.join('\n'));
  t.match(login.stdout.join('\n'), /pinned certificate: SHA256:/);
  const saved = JSON.parse(await readFile(path.join(configDir, 'config.json'), 'utf8')) as Record<
    string,
    string
  >;
  t.match(saved, {
    relay: `https://qt.localhost:${relay.httpsPort}`,
    token: 's3cret-token',
    caFingerprint: /^SHA256:/,
  });
  const bare = spawnCli(t, [String(port), '--log', 'json'], { env });
  const ready2 = JSON.parse(await bare.waitFor(/"event":"ready"/, 'stdout')) as { url: string };
  const res2 = await get(relay.httpsPort, new URL(ready2.url).hostname, ca, '/after-login');
  t.equal(res2.body, 'self-hosted /after-login');
  bare.child.kill('SIGINT');
  t.equal(await bare.exited, 0);

  // The home page names the port, and asks for the pin without printing it.
  const home = await get(relay.httpsPort, 'qt.localhost', ca, '/');
  t.match(home.body, `--relay https://qt.localhost:${relay.httpsPort}`);
  t.match(home.body, '--ca-fingerprint SHA256:…');
  t.notMatch(home.body, 's3cret-token');
});

t.test('without --print-token the token is never printed or logged', async (t) => {
  const relay = await spawnRelay(t, await tempDir(t), ['--token', 'hidden-token-value']);
  const runLine = await relay.waitFor(/^\s+quick-tunnel 3000 /, 'stderr');
  t.match(runLine, /--token TOKEN$/);
  await relay.waitFor(/add --print-token/, 'stderr');
  relay.child.kill('SIGTERM');
  t.equal(await relay.exited, 0);
  t.notMatch([...relay.stdout, ...relay.stderr].join('\n'), 'hidden-token-value');
});

t.test('a wrong pin and an untrusted certificate: clear errors, exit 1', async (t) => {
  const relay = await spawnRelay(t, await tempDir(t));
  const env = { QUICK_TUNNEL_CONFIG_DIR: await tempDir(t) };
  const wrong = `SHA256:${'AB:'.repeat(31)}AB`;
  const pinned = spawnCli(
    t,
    ['3000', '--relay', `https://qt.localhost:${relay.httpsPort}`, '--ca-fingerprint', wrong],
    { env },
  );
  t.equal(await pinned.exited, 1);
  t.match(
    pinned.stderr.join('\n'),
    /presented a certificate with fingerprint SHA256:[0-9A-F:]+, not the SHA256:AB:AB/,
  );
  t.match(pinned.stderr.join('\n'), /pinned by --ca-fingerprint/);

  const bad = spawnCli(
    t,
    ['3000', '--relay', 'https://qt.localhost:1', '--ca-fingerprint', 'nope'],
    {
      env,
    },
  );
  t.equal(await bad.exited, 1);
  t.match(bad.stderr.join('\n'), /--ca-fingerprint 'nope' is not a SHA-256 fingerprint/);

  const untrusted = spawnCli(t, ['3000', '--relay', `https://qt.localhost:${relay.httpsPort}`], {
    env,
  });
  t.equal(await untrusted.exited, 1);
  t.match(untrusted.stderr.join('\n'), /not trusted.*--ca-fingerprint SHA256:…/);
});
