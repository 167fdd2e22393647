/**
 * The relay's log (issue 21 §7): readable lines with `--log-format text` (the default on a
 * terminal), JSON otherwise, and one `registered` line per tunnel, not one per HA
 * connection of its client.
 */
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import t from 'tap';
import { spawnCli, spawnRelay, type RelayProcess } from '../helpers/processes.js';
import { startOrigin, tempDir } from '../helpers/relay-env.js';

const ADMIN_TOKEN = 'relay-log-test-admin-token-0123456789';

/** The relay's count of live ephemeral tunnel connections, from its /metrics. */
async function ephemeralConnections(relay: RelayProcess): Promise<number> {
  const ca = await readFile(relay.certPath);
  const text = await new Promise<string>((resolve, reject) => {
    const req = https.get(
      {
        host: '127.0.0.1',
        port: relay.httpsPort,
        path: '/metrics',
        servername: 'qt.localhost',
        headers: {
          host: `qt.localhost:${relay.httpsPort}`,
          authorization: `Bearer ${ADMIN_TOKEN}`,
        },
        ca,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
      },
    );
    req.on('error', reject);
  });
  const m = /^quick_tunnel_connections\{kind="ephemeral"\} (\d+)$/m.exec(text);
  return m === null ? 0 : Number(m[1]);
}

t.test('JSON when piped: one registered line for a client with 2 connections', async (t) => {
  const relay = await spawnRelay(t, await tempDir(t), ['--admin-token', ADMIN_TOKEN]);
  const { port } = await startOrigin(t, (_req, res) => res.end('ok'));
  const cli = spawnCli(t, [
    String(port),
    '--relay',
    `https://qt.localhost:${relay.httpsPort}`,
    '--ca',
    relay.certPath,
    '--connections',
    '2',
    '--log',
    'json',
  ]);
  await cli.waitFor(/"event":"ready"/, 'stdout');
  await relay.waitFor(/"event":"registered"/, 'stdout');
  // Both connections attached before the client stops: a second connection that attached
  // only after the first had closed would (rightly) register the held tunnel again.
  for (let i = 0; i < 200 && (await ephemeralConnections(relay)) < 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.equal(await ephemeralConnections(relay), 2, 'both connections attached');
  cli.child.kill('SIGINT');
  t.equal(await cli.exited, 0);
  await relay.waitFor(/"event":"unregistered"/, 'stdout');
  t.equal(relay.stdout.filter((l) => l.includes('"event":"registered"')).length, 1);
  t.ok(
    relay.stdout.every((l) => l.startsWith('{')),
    'every stdout line is JSON',
  );
});

t.test('--log-format text: readable lines, no JSON', async (t) => {
  const relay = spawnCli(t, [
    'relay',
    '--domain',
    'qt.localhost',
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--http-port',
    '0',
    '--data-dir',
    await tempDir(t),
    '--log-format',
    'text',
  ]);
  const line = await relay.waitFor(/relay listening/, 'stdout');
  t.match(line, /^\d\d:\d\d:\d\d INFO  relay listening event=listening domain=qt\.localhost /);
  t.notMatch(line, /^\{/);
  relay.child.kill('SIGTERM');
  t.equal(await relay.exited, 0);
});
