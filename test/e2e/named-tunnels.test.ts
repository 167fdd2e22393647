/**
 * Named tunnels with real processes, as a user runs them: `login`, `tunnel create`,
 * `tunnel run`, `tunnel list`, `tunnel delete`, and a relay that is killed and
 * restarted on its data dir. The hostname belongs to the credential and survives
 * restarts of both sides; replicas share the traffic.
 */
import { once } from 'node:events';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import t, { type Test } from 'tap';
import { dialRelay } from '../../cli/tunnel/client.js';
import { writeConfigFile } from '../../cli/config.js';
import { startOrigin, tempDir } from '../helpers/relay-env.js';
import { spawnCli, type CliProcess } from '../helpers/processes.js';

// Heavy on a shared 2-core machine (npm, thousands of connections): more than .taprc's 120 s.
t.setTimeout(360_000);

interface RelayProc extends CliProcess {
  httpsPort: number;
  certPath: string;
  dataDir: string;
}

/** `quick-tunnel relay` on 127.0.0.1; `port` 0 = any free one. */
async function startRelayProc(t: Test, dataDir: string, port = 0): Promise<RelayProc> {
  const proc = spawnCli(t, [
    'relay',
    '--domain',
    'qt.localhost',
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--http-port',
    '0',
    '--data-dir',
    dataDir,
  ]);
  const line = await proc.waitFor(/"relay listening"/, 'stdout');
  const info = JSON.parse(line) as { httpsPort: number; certificate: string };
  return { ...proc, httpsPort: info.httpsPort, certPath: info.certificate, dataDir };
}

/** A user: a config dir pointing at the relay (as `login` leaves it). */
async function user(t: Test, relay: RelayProc): Promise<{ env: NodeJS.ProcessEnv; dir: string }> {
  const dir = await tempDir(t, 'qt-user-');
  await writeConfigFile(dir, {
    relay: `https://qt.localhost:${relay.httpsPort}`,
    ca: relay.certPath,
  });
  return { dir, env: { QUICK_TUNNEL_CONFIG_DIR: dir } };
}

/** Runs a short CLI command to its end. */
async function run(
  t: Test,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const cli = spawnCli(t, args, { env });
  // 'close' comes after stdout and stderr are drained (every line has been read).
  const [code, signal] = (await once(cli.child, 'close')) as [number | null, string | null];
  return {
    code: code ?? String(signal),
    stdout: cli.stdout.join('\n'),
    stderr: cli.stderr.join('\n'),
  };
}

function get(
  relay: RelayProc,
  ca: string,
  host: string,
  agent: https.Agent | false = false,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: relay.httpsPort,
        path: '/',
        headers: { host },
        servername: host,
        ca,
        agent,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const readyUrl = async (cli: CliProcess): Promise<URL> =>
  new URL((JSON.parse(await cli.waitFor(/"event":"ready"/, 'stdout')) as { url: string }).url);

t.test(
  'create → run → kill -9 the relay → restart it: the same CLI reconnects, same hostname',
  async (t) => {
    const dataDir = await tempDir(t, 'qt-relay-');
    const relay1 = await startRelayProc(t, dataDir);
    const ca = await readFile(relay1.certPath, 'utf8');
    const configDir = await tempDir(t, 'qt-user-');
    const env = { QUICK_TUNNEL_CONFIG_DIR: configDir };

    const login = await run(
      t,
      ['login', '--relay', `https://qt.localhost:${relay1.httpsPort}`, '--ca', relay1.certPath],
      env,
    );
    t.equal(login.code, 0, login.stderr);
    t.equal((await stat(path.join(configDir, 'config.json'))).mode & 0o777, 0o600);

    const created = await run(t, ['tunnel', 'create', 'web'], env);
    t.equal(created.code, 0, created.stderr);
    const credFile = path.join(
      configDir,
      'tunnels',
      `qt.localhost_${relay1.httpsPort}`,
      'web.json',
    );
    t.match(created.stdout, `credential: ${credFile}`);
    t.equal((await stat(credFile)).mode & 0o777, 0o600, 'the credential file is private');
    const cred = JSON.parse(await readFile(credFile, 'utf8')) as { credential: string };
    const storeText = await readFile(path.join(dataDir, 'tunnels.json'), 'utf8');
    t.notOk(storeText.includes(cred.credential), 'the relay keeps only a hash');
    t.notOk(relay1.stdout.join('\n').includes(cred.credential), 'and never logs it');
    await relay1.waitFor(/"event":"created".*"name":"web"/, 'stdout');

    const { port } = await startOrigin(t, (_req, res) => res.end('named origin'));
    const cli = spawnCli(t, ['tunnel', 'run', 'web', '--url', String(port), '--log', 'json'], {
      env,
    });
    const url = await readyUrl(cli);
    t.equal(url.hostname, 'web.qt.localhost');
    t.same(await get(relay1, ca, url.hostname), { status: 200, body: 'named origin' });

    relay1.child.kill('SIGKILL');
    t.equal(await relay1.exited, 'SIGKILL');
    await cli.waitFor(/"event":"reconnecting"/, 'stdout');

    // Same data dir, same port: the relay comes back with the reservation.
    const relay2 = await startRelayProc(t, dataDir, relay1.httpsPort);
    t.equal(relay2.httpsPort, relay1.httpsPort);
    const reconnected = JSON.parse(
      await cli.waitFor(/"event":"reconnected"/, 'stdout', 30_000),
    ) as { url: string; sameHostname: boolean };
    t.equal(reconnected.sameHostname, true);
    t.equal(new URL(reconnected.url).hostname, 'web.qt.localhost');
    t.same(await get(relay2, ca, url.hostname), { status: 200, body: 'named origin' });
    await relay2.waitFor(/"event":"registered".*"name":"web"/, 'stdout');

    cli.child.kill('SIGINT');
    t.equal(await cli.exited, 0);
  },
);

t.test('one relay, several users', async (t) => {
  const relay = await startRelayProc(t, await tempDir(t, 'qt-relay-'));
  const ca = await readFile(relay.certPath, 'utf8');

  await t.test('kill the CLI, run again: same hostname', async (t) => {
    const { env } = await user(t, relay);
    t.equal((await run(t, ['tunnel', 'create', 'again'], env)).code, 0);
    const { port } = await startOrigin(t, (_req, res) => res.end('again'));
    const args = ['tunnel', 'run', 'again', '--url', String(port), '--log', 'json'];
    const first = spawnCli(t, args, { env });
    const url1 = await readyUrl(first);
    first.child.kill('SIGKILL');
    await first.exited;
    // --url is remembered: the second run needs only the name.
    const second = spawnCli(t, ['tunnel', 'run', 'again', '--log', 'json'], { env });
    const url2 = await readyUrl(second);
    t.equal(url2.href, url1.href);
    t.same(await get(relay, ca, url2.hostname), { status: 200, body: 'again' });
    second.child.kill('SIGTERM');
    t.equal(await second.exited, 0);
  });

  await t.test('two replicas: 200 requests all answered while one stops midway', async (t) => {
    const { env } = await user(t, relay);
    t.equal((await run(t, ['tunnel', 'create', 'pool'], env)).code, 0);
    const originA = await startOrigin(t, (_req, res) => res.end('A'));
    const originB = await startOrigin(t, (_req, res) => res.end('B'));
    const replicaA = spawnCli(
      t,
      ['tunnel', 'run', 'pool', '--url', String(originA.port), '--log', 'json'],
      { env },
    );
    // `quick-tunnel TARGET --name NAME` is the other way to run a named tunnel.
    const b = spawnCli(t, [String(originB.port), '--name', 'pool', '--log', 'json'], { env });
    t.equal((await readyUrl(replicaA)).hostname, 'pool.qt.localhost');
    t.equal((await readyUrl(b)).hostname, 'pool.qt.localhost');

    const listed = await run(t, ['tunnel', 'list', '--json'], env);
    t.equal(listed.code, 0, listed.stderr);
    t.match(JSON.parse(listed.stdout), {
      tunnels: [{ name: 'pool', state: 'connected', replicas: 2, connections: 4 }],
    });

    const agent = new https.Agent({ keepAlive: true, maxSockets: 10 });
    t.teardown(() => agent.destroy());
    const results: { status: number; body: string }[] = [];
    let next = 0;
    let stopped: Promise<number | string> | undefined;
    const worker = async (): Promise<void> => {
      while (next < 200) {
        next++;
        // A failed request is recorded, not thrown, so the assertion below lists them all.
        results.push(
          await get(relay, ca, 'pool.qt.localhost', agent).catch((err: Error) => ({
            status: 0,
            body: err.message,
          })),
        );
        if (results.length === 100) {
          replicaA.child.kill('SIGINT'); // graceful: GOAWAY, finish in-flight, exit
          stopped = replicaA.exited;
        }
      }
    };
    await Promise.all(Array.from({ length: 10 }, worker));
    t.equal(results.length, 200);
    t.same(
      results.filter((r) => r.status !== 200),
      [],
      'every request answered 200',
    );
    const fromA = results.filter((r) => r.body === 'A').length;
    const fromB = results.filter((r) => r.body === 'B').length;
    t.ok(fromA > 0 && fromB > 0, `both replicas served (A ${fromA}, B ${fromB})`);
    t.equal(fromA + fromB, 200);
    t.equal(await stopped, 0, 'the stopped replica exited cleanly');
    // After A left, B serves everything.
    t.same(await get(relay, ca, 'pool.qt.localhost'), { status: 200, body: 'B' });
    b.child.kill('SIGINT');
    t.equal(await b.exited, 0);
  });

  await t.test('ownership: taken names, missing and wrong credentials, delete', async (t) => {
    const owner = await user(t, relay);
    const other = await user(t, relay);
    t.equal((await run(t, ['tunnel', 'create', 'owned'], owner.env)).code, 0);
    const { port } = await startOrigin(t, (_req, res) => res.end('owner'));
    const serving = spawnCli(
      t,
      ['tunnel', 'run', 'owned', '--url', String(port), '--log', 'json'],
      { env: owner.env },
    );
    await readyUrl(serving);

    const taken = await run(t, ['tunnel', 'create', 'owned'], other.env);
    t.equal(taken.code, 1);
    t.match(taken.stderr, /the name 'owned' is already taken on this relay/);

    const noCred = await run(t, [String(port), '--name', 'owned'], other.env);
    t.equal(noCred.code, 1);
    t.match(noCred.stderr, /no credential for tunnel 'owned'.*tunnel create owned/);

    // A client that asks for the name without a credential is refused by the relay.
    await t.rejects(
      dialRelay({
        relay: new URL(`https://qt.localhost:${relay.httpsPort}`),
        request: { clientVersion: 'test', name: 'owned' },
        ca,
      }),
      { code: 'QT_ERR_AUTH', message: /none was presented/ },
    );

    // A forged credential file: same name, wrong secret.
    const ownerFile = path.join(
      owner.dir,
      'tunnels',
      `qt.localhost_${relay.httpsPort}`,
      'owned.json',
    );
    const forged = JSON.parse(await readFile(ownerFile, 'utf8')) as Record<string, string>;
    forged['credential'] = `qtc_${'A'.repeat(43)}`;
    const forgedDir = path.join(other.dir, 'tunnels', `qt.localhost_${relay.httpsPort}`);
    await mkdir(forgedDir, { recursive: true });
    await writeFile(path.join(forgedDir, 'owned.json'), JSON.stringify(forged));
    const wrong = await run(t, ['tunnel', 'run', 'owned', '--url', String(port)], other.env);
    t.equal(wrong.code, 1);
    t.match(wrong.stderr, /the credential for tunnel 'owned' was refused/);
    t.same(await get(relay, ca, 'owned.qt.localhost'), { status: 200, body: 'owner' });

    const listOther = await run(t, ['tunnel', 'list'], other.env);
    // Without the right credential the relay answers as for a free name (issue 16).
    t.match(listOther.stdout, /owned .* deleted/);

    const refused = await run(t, ['tunnel', 'delete', 'owned'], owner.env);
    t.equal(refused.code, 1);
    t.match(refused.stderr, /'owned' is connected .*--force/);

    const deleted = await run(t, ['tunnel', 'delete', 'owned', '--force'], owner.env);
    t.equal(deleted.code, 0, deleted.stderr);
    t.match(deleted.stdout, /Deleted tunnel 'owned'.*free again/);
    await serving.waitFor(/no tunnel named 'owned'/, 'stderr');
    t.equal(await serving.exited, 1, 'the running tunnel stops');
    await t.rejects(stat(ownerFile), { code: 'ENOENT' }, 'the local credential is gone');
    await relay.waitFor(/"event":"deleted".*"name":"owned"/, 'stdout');

    // The name is free: the other user takes it (after dropping the forged file).
    await rm(path.join(forgedDir, 'owned.json'));
    const retaken = await run(t, ['tunnel', 'create', 'owned', '--json'], other.env);
    t.equal(retaken.code, 0, retaken.stderr);
    t.match(JSON.parse(retaken.stdout), { event: 'created', name: 'owned' });
    const list = await run(t, ['tunnel', 'list'], other.env);
    t.match(list.stdout, /^NAME +URL +STATUS/);
    t.match(list.stdout, /owned +https:\/\/owned\.qt\.localhost:\d+ +offline +0 +0/);
  });
});
