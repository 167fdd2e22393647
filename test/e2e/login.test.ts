/**
 * login, logout and where settings come from (issue 21 §5), as processes: login checks
 * the relay and the token before saving anything, takes the URL as an argument, errors
 * name the flag / variable / config file a setting came from, logout goes back to the
 * embedded relay, and --help shows the effective default relay.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { spawnCli, spawnRelay } from '../helpers/processes.js';
import { startOrigin, tempDir } from '../helpers/relay-env.js';

t.test('login, token errors by source, logout, --help', async (t) => {
  const relay = await spawnRelay(t, await tempDir(t), ['--token', 'right-token']);
  const url = `https://qt.localhost:${relay.httpsPort}`;
  const configDir = await tempDir(t);
  const configFile = path.join(configDir, 'config.json');
  const env = { QUICK_TUNNEL_CONFIG_DIR: configDir };

  await t.test('a wrong token is refused and nothing is saved', async (t) => {
    const cli = spawnCli(t, ['login', url, '--ca', relay.certPath, '--token', 'wrong'], { env });
    t.equal(await cli.exited, 1);
    const err = cli.stderr.join('\n');
    t.match(err, /rejected the access token from --token \(nothing was saved\)/);
    t.equal(existsSync(configFile), false, 'no config file written');
  });

  await t.test('an unreachable relay: nothing is saved', async (t) => {
    const cli = spawnCli(t, ['login', 'https://qt.localhost:1', '--token', 'x'], { env });
    t.equal(await cli.exited, 1);
    t.match(cli.stderr.join('\n'), /cannot reach the relay.*nothing was saved/);
    t.equal(existsSync(configFile), false);
  });

  await t.test('login URL (positional) with the right token saves; --help shows it', async (t) => {
    const cli = spawnCli(t, ['login', url, '--ca', relay.certPath, '--token', 'right-token'], {
      env,
    });
    t.equal(await cli.exited, 0, cli.stderr.join('\n'));
    t.match(cli.stdout.join('\n'), `Saved ${url} as the default relay in ${configFile}`);
    const help = spawnCli(t, ['--help'], { env });
    t.equal(await help.exited, 0);
    t.match(
      help.stdout.join(' ').replace(/\s+/g, ' '),
      `relay URL (default: ${url} (from ${configFile}`,
    );
  });

  await t.test('a saved token that stopped working names the config file', async (t) => {
    await writeFile(
      configFile,
      JSON.stringify({ relay: url, token: 'revoked', ca: relay.certPath }),
    );
    const cli = spawnCli(t, ['3000'], { env });
    t.equal(await cli.exited, 1);
    const err = cli.stderr.join('\n');
    t.match(err, `rejected the access token from the config file ${configFile}`);
    t.match(err, /hint: .*quick-tunnel login --relay URL --token TOKEN.*quick-tunnel logout/);
    t.notMatch(err, /check --token/);
  });

  await t.test('QUICK_TUNNEL_TOKEN is named when it is the source', async (t) => {
    const cli = spawnCli(t, ['3000'], { env: { ...env, QUICK_TUNNEL_TOKEN: 'from-env' } });
    t.equal(await cli.exited, 1);
    t.match(cli.stderr.join('\n'), /rejected the access token from QUICK_TUNNEL_TOKEN/);
  });

  await t.test('logout: back to the embedded relay', async (t) => {
    const out = spawnCli(t, ['logout'], { env });
    t.equal(await out.exited, 0);
    t.match(out.stdout.join('\n'), /Forgot https:\/\/qt\.localhost:\d+ and its token/);
    t.equal(existsSync(configFile), false);
    const { port } = await startOrigin(t, (_req, res) => res.end('ok'));
    const cli = spawnCli(t, [String(port), '--log', 'json'], { env });
    const ready = JSON.parse(await cli.waitFor(/"event":"ready"/, 'stdout')) as { local: boolean };
    t.equal(ready.local, true, 'the embedded relay again');
    cli.child.kill('SIGINT');
    t.equal(await cli.exited, 0);
    const help = spawnCli(t, ['--help'], { env });
    t.equal(await help.exited, 0);
    t.match(
      help.stdout.join(' ').replace(/\s+/g, ' '),
      /relay URL \(default: a local relay in this process\)/,
    );
  });
});
