/**
 * The relay's log (issue 21 §7): readable lines with `--log-format text` (the default on a
 * terminal), JSON otherwise, and one `registered` line per tunnel, not one per HA
 * connection of its client.
 */
import t from 'tap';
import { spawnCli, spawnRelay } from '../helpers/processes.js';
import { startOrigin, tempDir } from '../helpers/relay-env.js';

t.test('JSON when piped: one registered line for a client with 2 connections', async (t) => {
  const relay = await spawnRelay(t, await tempDir(t));
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
