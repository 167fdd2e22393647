/**
 * Habits from other tools (issue 21 §6), as processes: `http 3000` (ngrok), `--url`
 * (cloudflared), no arguments (help with examples), `-v`, an unknown flag named once, a
 * stray word named as typed (`quick-tunnel 3000 4000`), other tools' flags (`--subdomain`,
 * `--region`, ...) and `tcp 22` answered with what to do instead, and a reserved named
 * tunnel whose client is not running answers 503 "tunnel offline".
 */
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import t from 'tap';
import { VERSION } from '../../shared/version.js';
import { spawnCli, spawnRelay } from '../helpers/processes.js';
import { startOrigin, tempDir } from '../helpers/relay-env.js';

t.test('`http 3000` and `--url http://localhost:3000` expose the port', async (t) => {
  const { port } = await startOrigin(t, (req, res) => res.end(`habit ${req.url}`));
  const env = { QUICK_TUNNEL_CONFIG_DIR: await tempDir(t) };
  for (const args of [
    ['http', String(port)],
    ['--url', `http://localhost:${port}`],
  ]) {
    const cli = spawnCli(t, [...args, '--log', 'json'], { env });
    const ready = JSON.parse(await cli.waitFor(/"event":"ready"/, 'stdout')) as {
      directUrl: string;
      target: string;
    };
    t.match(ready.target, String(port), `${args.join(' ')}: the target`);
    const res = await fetch(`${ready.directUrl}/x`);
    t.equal(await res.text(), 'habit /x', `${args.join(' ')}: served`);
    cli.child.kill('SIGINT');
    t.equal(await cli.exited, 0);
  }
});

t.test('no arguments: the help with examples, exit 0', async (t) => {
  const cli = spawnCli(t, [], { env: { QUICK_TUNNEL_CONFIG_DIR: await tempDir(t) } });
  t.equal(await cli.exited, 0);
  const out = cli.stdout.join('\n');
  t.match(out, /Examples:/);
  t.match(out, /quick-tunnel http 3000/);
  t.match(out, /quick-tunnel --url http:\/\/localhost:3000/);
  t.notMatch(cli.stderr.join('\n'), /Not enough non-option arguments/);
});

t.test('-v prints the version', async (t) => {
  const cli = spawnCli(t, ['-v']);
  t.equal(await cli.exited, 0);
  t.equal(cli.stdout.join('\n').trim(), VERSION);
});

t.test('an unknown flag is named once', async (t) => {
  const cli = spawnCli(t, ['3000', '--bogus-flag']);
  t.equal(await cli.exited, 1);
  const err = cli.stderr.join('\n');
  t.match(err, /Unknown argument: --bogus-flag\b/);
  t.equal(err.match(/bogus/gi)?.length, 1, err);
});

t.test('a stray word is named as typed, not as a flag', async (t) => {
  const cases: [string[], RegExp, RegExp][] = [
    // Two ports: the message says how to run several tunnels.
    [
      ['3000', '4000'],
      /unexpected argument: 4000; quick-tunnel exposes one target .*'quick-tunnel start'/,
      /--4000/,
    ],
    [['localhost:3000', 'extra', 'words'], /unexpected arguments: extra words; /, /--extra/],
    // After a command word, no word about targets.
    [['tunnel', 'list', 'extra'], /unexpected argument: extra\n/, /one target|--extra/],
    // A word and a flag: each as typed.
    [['3000', 'extra', '--bogus'], /Unknown arguments: --bogus, extra\b/, /--extra/],
  ];
  for (const [args, said, notSaid] of cases) {
    const cli = spawnCli(t, args, { env: { QUICK_TUNNEL_CONFIG_DIR: await tempDir(t) } });
    t.equal(await cli.exited, 1, args.join(' '));
    const err = `${cli.stderr.join('\n')}\n`;
    t.match(err, said, args.join(' '));
    t.notMatch(err, notSaid, args.join(' '));
  }
});

t.test("other tools' flags and ngrok's tcp/tls get what to do instead", async (t) => {
  const cases: [string[], RegExp][] = [
    [
      ['--subdomain', 'myapp', '3000'],
      /Unknown argument: --subdomain; a fixed hostname is a named tunnel: 'quick-tunnel tunnel create NAME', then 'quick-tunnel 3000 --name NAME'\n/,
    ],
    [['3000', '--hostname', 'a.example.com'], /--hostname; a fixed hostname is a named tunnel/],
    [
      ['--port', '3000'],
      /Unknown argument: --port; give the port as the target: 'quick-tunnel 3000'/,
    ],
    [
      ['3000', '--region', 'eu', '--authtoken', 'x'],
      /Unknown arguments: --region, --authtoken; --region: there are no regions.*; --authtoken: the relay's access token is --token TOKEN/,
    ],
    [
      ['tcp', '22'],
      /raw TCP tunnels \('ngrok tcp 22'\) are not supported\. For a web app on that port: 'quick-tunnel 22'/,
    ],
    [['tls', '443'], /raw TLS tunnels \('ngrok tls 443'\) are not supported/],
    // A relay operator's typo gets no word about named tunnels.
    [['relay', '--subdomain', 'x'], /Unknown argument: --subdomain\n/],
  ];
  for (const [args, said] of cases) {
    const cli = spawnCli(t, args, { env: { QUICK_TUNNEL_CONFIG_DIR: await tempDir(t) } });
    t.equal(await cli.exited, 1, args.join(' '));
    t.match(`${cli.stderr.join('\n')}\n`, said, args.join(' '));
  }
});

t.test('a reserved named tunnel with no client: 503 tunnel offline', async (t) => {
  const relay = await spawnRelay(t, await tempDir(t));
  const env = { QUICK_TUNNEL_CONFIG_DIR: await tempDir(t) };
  const create = spawnCli(
    t,
    [
      'tunnel',
      'create',
      'webapp',
      '--relay',
      `https://qt.localhost:${relay.httpsPort}`,
      '--ca',
      relay.certPath,
    ],
    { env },
  );
  t.equal(await create.exited, 0, create.stderr.join('\n'));
  const ca = await readFile(relay.certPath, 'utf8');
  const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: relay.httpsPort,
        path: '/',
        headers: { host: 'webapp.qt.localhost' },
        servername: 'webapp.qt.localhost',
        ca,
        agent: false,
      },
      (r) => {
        let body = '';
        r.setEncoding('utf8');
        r.on('data', (c: string) => (body += c));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
  t.equal(res.status, 503);
  t.match(res.body, /Tunnel offline/);
  t.notMatch(res.body, /No such tunnel/);
});
