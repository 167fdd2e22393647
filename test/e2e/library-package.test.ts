/**
 * The library as a user gets it: `npm pack`, `npm install <tarball>` into a fresh
 * project, and there an ESM script imports `quick-tunnel` and `quick-tunnel/relay`,
 * opens tunnels and fetches through them, and exits by itself after close(); a
 * TypeScript file using the API type-checks with `tsc --strict` against the shipped
 * declarations; internal modules are not reachable through `exports`.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { cleanEnv, runCommand as run } from '../helpers/commands.js';
import { tempDir } from '../helpers/relay-env.js';

/** Runs in the installed project: every check prints one `ok …` line, then exits by itself. */
const SCRIPT = `
import http from 'node:http';
import { once } from 'node:events';

const before = {
  sigint: process.listenerCount('SIGINT'),
  sigterm: process.listenerCount('SIGTERM'),
  exit: process.listenerCount('exit'),
  resources: process.getActiveResourcesInfo().length,
};
const lib = await import('quick-tunnel');
const relayLib = await import('quick-tunnel/relay');
const after = {
  sigint: process.listenerCount('SIGINT'),
  sigterm: process.listenerCount('SIGTERM'),
  exit: process.listenerCount('exit'),
  resources: process.getActiveResourcesInfo().length,
};
if (JSON.stringify(before) !== JSON.stringify(after)) throw new Error('import changed the process: ' + JSON.stringify({ before, after }));
console.log('ok import changes nothing');

for (const internal of ['quick-tunnel/dist/cli/main.js', 'quick-tunnel/dist/relay/index.js', 'quick-tunnel/cli/api/index.js']) {
  try {
    await import(internal);
    throw new Error(internal + ' is reachable');
  } catch (err) {
    if (err.code !== 'ERR_PACKAGE_PATH_NOT_EXPORTED') throw err;
  }
}
console.log('ok internals not exported');

try {
  await lib.openTunnel({ target: 'ftp://nope' });
  throw new Error('a bad target opened');
} catch (err) {
  if (!(err instanceof lib.QuickTunnelError) || err.code !== 'QT_ERR_CONFIG') throw err;
}
console.log('ok bad target rejects with QT_ERR_CONFIG');

const origin = http.createServer((req, res) => res.end('hello from ' + req.url));
origin.listen(0, '127.0.0.1');
await once(origin, 'listening');
const port = origin.address().port;

function get(url, path) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: u.port, path, headers: { host: u.host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    }).on('error', reject);
  });
}

// 1. The embedded relay (no relay option).
const tunnel = await lib.openTunnel({ target: port });
if (!/^http:\\/\\/[a-z0-9-]+\\.localhost:\\d+$/.test(tunnel.url)) throw new Error('url ' + tunnel.url);
const seen = once(tunnel, 'request');
const res = await get(tunnel.url, '/via-embedded');
if (res.status !== 200 || res.body !== 'hello from /via-embedded') throw new Error(JSON.stringify(res));
const [event] = await seen;
if (event.path !== '/via-embedded' || event.status !== 200) throw new Error(JSON.stringify(event));
console.log('ok embedded relay: ' + tunnel.hostname + ' answered, request event seen');

// 2. A relay from quick-tunnel/relay, over a real socket.
const relay = await relayLib.startRelay();
const second = await lib.openTunnel({ target: 'localhost:' + port, relay: relay.url, hostHeader: 'rewrite' });
const res2 = await get(second.url, '/via-relay');
if (res2.status !== 200 || res2.body !== 'hello from /via-relay') throw new Error(JSON.stringify(res2));
console.log('ok startRelay + openTunnel({ relay }): answered');

const closed = once(tunnel, 'closed');
await tunnel.close();
await closed;
await second.close();
await relay.close(1000);
origin.close();
console.log('ok closed');
// No process.exit: the test checks that the process ends by itself.
`;

const TYPED = `
import { openTunnel, QuickTunnelError, type OpenTunnelOptions, type Tunnel, type TunnelRequestEvent } from 'quick-tunnel';
import { startRelay, type RelayServer } from 'quick-tunnel/relay';

export async function example(): Promise<void> {
  const relay: RelayServer = await startRelay({ domain: 'localhost', httpPort: 0 });
  const options: OpenTunnelOptions = { target: 3000, relay: relay.url, basicAuth: 'a:b', allowIp: ['127.0.0.1'], signal: AbortSignal.timeout(5000) };
  const tunnel: Tunnel = await openTunnel(options);
  const url: string = tunnel.url;
  const urls: readonly string[] = tunnel.urls;
  tunnel.on('request', (e: TunnelRequestEvent) => console.log(e.method, e.path, e.status, e.durationMs, url, urls));
  tunnel.on('reconnecting', (e) => console.log(e.attempt, e.delayMs));
  tunnel.on('reconnected', (e) => console.log(e.sameHostname));
  tunnel.on('error', (err) => console.log(err.code, err.hint));
  tunnel.on('closed', (e) => console.log(e.error?.code));
  try {
    await openTunnel({ target: 'x' });
  } catch (err) {
    if (err instanceof QuickTunnelError) console.log(err.code, err.message, err.hint);
  }
  await tunnel.close();
  await relay.close();
}
`;

/** Misuse the declarations must reject. */
const WRONG = `
import { openTunnel } from 'quick-tunnel';

const tunnel = await openTunnel({ port: 3000 });
tunnel.on('request', (e) => e.nope);
`;

// Heavy on a shared 2-core machine (npm, thousands of connections): more than .taprc's 120 s.
t.setTimeout(360_000);

t.test('npm pack → npm install in a project → import, open, fetch, close, exit', async (t) => {
  const work = await tempDir(t, 'qt-lib-');
  const project = path.join(work, 'project');

  const packed = await run(t, 'npm', ['pack', '--pack-destination', work]);
  t.equal(packed.code, 0, packed.code === 0 ? 'npm pack exits 0' : packed.stderr);
  const tarball = path.join(work, packed.stdout.trim().split('\n').pop()!.trim());

  await run(t, 'mkdir', ['-p', project]);
  await writeFile(
    path.join(project, 'package.json'),
    JSON.stringify({ name: 'uses-quick-tunnel', private: true, type: 'module' }),
  );
  const installed = await run(
    t,
    'npm',
    [
      'install',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      tarball,
      '@types/node@^20.19.0',
      'typescript@~5.9.3',
    ],
    { cwd: project },
  );
  t.equal(installed.code, 0, installed.code === 0 ? 'npm install exits 0' : installed.stderr);

  await writeFile(path.join(project, 'check.mjs'), SCRIPT);
  const env = cleanEnv({
    QUICK_TUNNEL_CONFIG_DIR: path.join(work, 'config'),
    QUICK_TUNNEL_RELAY: 'https://must-not-be-read.invalid',
  });
  const script = await run(t, process.execPath, ['check.mjs'], {
    cwd: project,
    env,
    timeoutMs: 60_000,
  });
  t.equal(
    script.code,
    0,
    script.code === 0 ? 'the script exits 0 by itself' : `${script.stdout}\n${script.stderr}`,
  );
  t.match(script.stdout, /ok import changes nothing/);
  t.match(script.stdout, /ok internals not exported/);
  t.match(script.stdout, /ok bad target rejects/);
  t.match(script.stdout, /ok embedded relay: .* answered, request event seen/);
  t.match(script.stdout, /ok startRelay \+ openTunnel/);
  t.match(script.stdout, /ok closed/);

  await writeFile(path.join(project, 'typed.ts'), TYPED);
  await writeFile(path.join(project, 'wrong.ts'), WRONG);
  const tsc = path.join(project, 'node_modules', 'typescript', 'bin', 'tsc');
  const flags = [
    '--strict',
    '--noEmit',
    '--module',
    'nodenext',
    '--moduleResolution',
    'nodenext',
    '--target',
    'es2022',
    '--types',
    'node',
    '--skipLibCheck',
    'false',
  ];
  const typed = await run(t, process.execPath, [tsc, ...flags, 'typed.ts'], {
    cwd: project,
    timeoutMs: 120_000,
  });
  t.equal(
    typed.code,
    0,
    typed.code === 0 ? 'tsc --strict accepts the API use' : typed.stdout + typed.stderr,
  );
  const wrong = await run(t, process.execPath, [tsc, ...flags, 'wrong.ts'], {
    cwd: project,
    timeoutMs: 120_000,
  });
  t.not(wrong.code, 0, 'tsc rejects misuse');
  t.match(wrong.stdout, /'port' does not exist/, 'an unknown option');
  t.match(wrong.stdout, /'nope' does not exist/, 'an unknown event field');
});
