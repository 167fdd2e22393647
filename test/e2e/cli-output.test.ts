/**
 * Output details a new user trips over (issue 21 §7), as processes: with --log json an
 * error is also a JSON `error` event on stdout; `tunnel closed` is not printed after a
 * startup error; "nothing is listening" is said once, not again on the first request.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { writeConfigFile } from '../../cli/config.js';
import { spawnCli } from '../helpers/processes.js';
import { startOrigin, tempDir } from '../helpers/relay-env.js';

async function freePort(): Promise<number> {
  const server = http.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

t.test('--log json: an error is a JSON error event on stdout and text on stderr', async (t) => {
  const port = await freePort();
  const cli = spawnCli(t, ['3000', '--relay', `https://127.0.0.1:${port}`, '--log', 'json'], {
    env: { QUICK_TUNNEL_CONFIG_DIR: await tempDir(t) },
  });
  t.equal(await cli.exited, 1);
  const events = cli.stdout.map((l) => JSON.parse(l) as Record<string, unknown>);
  const error = events.find((e) => e['event'] === 'error');
  t.match(error, {
    event: 'error',
    code: 'QT_ERR_RELAY_UNREACHABLE',
    message: /cannot reach the relay at 127\.0\.0\.1:\d+: connection refused/,
  });
  t.match(cli.stderr.join('\n'), /^error: cannot reach the relay/m);
  t.notMatch(cli.stderr.join('\n'), /tunnel closed/, 'no tunnel ever opened');

  const usage = spawnCli(t, ['3000', '--bogus', '--log', 'json']);
  t.equal(await usage.exited, 1);
  t.match(JSON.parse(usage.stdout[0] ?? '{}'), { event: 'error', code: 'QT_ERR_USAGE' });
});

t.test('--log json: an error after the tunnel was up is a JSON error event too', async (t) => {
  // A real relay process; the named tunnel is deleted (--force) while its client runs:
  // the relay drops the client and refuses the reconnect for good.
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
    await tempDir(t, 'qt-relay-'),
  ]);
  const info = JSON.parse(await relay.waitFor(/"relay listening"/, 'stdout')) as {
    httpsPort: number;
    certificate: string;
  };
  const dir = await tempDir(t, 'qt-user-');
  await writeConfigFile(dir, {
    relay: `https://qt.localhost:${info.httpsPort}`,
    ca: info.certificate,
  });
  const env = { QUICK_TUNNEL_CONFIG_DIR: dir };
  const create = spawnCli(t, ['tunnel', 'create', 'gone'], { env });
  t.equal(await create.exited, 0, create.stderr.join('\n'));
  const { port } = await startOrigin(t, (_req, res) => res.end('ok'));
  const cli = spawnCli(t, ['tunnel', 'run', 'gone', '--url', String(port), '--log', 'json'], {
    env,
  });
  await cli.waitFor(/"event":"ready"/, 'stdout');

  const del = spawnCli(t, ['tunnel', 'delete', 'gone', '--force'], { env });
  t.equal(await del.exited, 0, del.stderr.join('\n'));
  await cli.waitFor(/"event":"error"/, 'stdout');
  await cli.waitFor(/^error: /, 'stderr');
  t.equal(await cli.exited, 1, 'the running tunnel stops with status 1');
  const events = cli.stdout.map((l) => JSON.parse(l) as Record<string, unknown>);
  const errors = events.filter((e) => e['event'] === 'error');
  t.equal(errors.length, 1, cli.stdout.join('\n'));
  t.match(errors[0], {
    event: 'error',
    code: 'QT_ERR_REJECTED',
    message: /no tunnel named 'gone'/,
    time: String,
  });
  t.match(cli.stderr.join('\n'), /^error: .*no tunnel named 'gone'/m, 'text on stderr too');
  relay.child.kill('SIGINT');
  await relay.exited;
});

t.test('text: no "tunnel closed" after a startup error', async (t) => {
  const port = await freePort();
  const cli = spawnCli(t, ['3000', '--relay', `https://127.0.0.1:${port}`, '--log', 'text'], {
    env: { QUICK_TUNNEL_CONFIG_DIR: await tempDir(t) },
  });
  t.equal(await cli.exited, 1);
  t.notMatch(cli.stderr.join('\n'), /tunnel closed/);
});

t.test('"nothing is listening" is said once, not again on the first request', async (t) => {
  const port = await freePort();
  const cli = spawnCli(t, [String(port), '--log', 'text'], {
    env: { QUICK_TUNNEL_CONFIG_DIR: await tempDir(t) },
  });
  const also = await cli.waitFor(/^Also at   http:\/\/127\.0\.0\.1:\d+/, 'stdout');
  await cli.waitFor(/nothing is listening/, 'stderr');
  const direct = /(http:\/\/127\.0\.0\.1:\d+)/.exec(also)![1]!;
  const res = await fetch(`${direct}/`);
  t.equal(res.status, 502);
  await res.text();
  await cli.waitFor(/ GET \/ 502 /, 'stdout');
  t.equal(
    cli.stderr.filter((l) => /nothing is listening/.test(l)).length,
    1,
    cli.stderr.join('\n'),
  );
  cli.child.kill('SIGINT');
  t.equal(await cli.exited, 0);
  t.match(cli.stderr.join('\n'), /tunnel closed/, 'an opened tunnel says it closed');
});
