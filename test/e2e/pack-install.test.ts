/**
 * What someone without a clone gets: `npm pack` builds the tarball, `npm install -g
 * --prefix <tmp>` installs it as a user would on another machine (dependencies from the
 * npm registry or its cache), and the installed `quick-tunnel` binary runs: `--version`,
 * and a tunnel on the embedded relay that a real HTTP request goes through.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import path from 'node:path';
import { createInterface } from 'node:readline';
import t from 'tap';
import { VERSION } from '../../shared/version.js';
import { cleanEnv, runCommand as run } from '../helpers/commands.js';
import { startOrigin, tempDir } from '../helpers/relay-env.js';

// Heavy on a shared 2-core machine (npm, thousands of connections): more than .taprc's 120 s.
t.setTimeout(360_000);

function get(
  port: number,
  host: string,
  urlPath: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: urlPath, headers: { host }, agent: false },
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

t.test('npm pack → npm install -g --prefix → the installed binary works', async (t) => {
  const work = await tempDir(t, 'qt-pack-');
  const prefix = path.join(work, 'prefix');

  const packed = await run(t, 'npm', ['pack', '--pack-destination', work]);
  t.equal(packed.code, 0, `npm pack exits 0\n${packed.stderr}`);
  const tarball = path.join(work, packed.stdout.trim().split('\n').pop()!.trim());
  t.match(tarball, /quick-tunnel-.*\.tgz$/);

  const installed = await run(
    t,
    'npm',
    ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball],
    { cwd: work },
  );
  t.equal(installed.code, 0, `npm install -g exits 0\n${installed.stderr}`);
  t.notMatch(installed.stderr, /EBADENGINE/, 'no engine warning on this Node');

  const bin = path.join(prefix, 'bin', 'quick-tunnel');
  // A machine without the clone: run from the temp dir, with an empty config dir.
  const env = cleanEnv({
    QUICK_TUNNEL_CONFIG_DIR: path.join(work, 'config'),
    QUICK_TUNNEL_RELAY: '',
    QUICK_TUNNEL_TOKEN: '',
    NO_COLOR: '1',
  });
  const version = await run(t, bin, ['--version'], { cwd: work, env, timeoutMs: 30_000 });
  t.equal(version.code, 0);
  t.equal(version.stdout.trim(), VERSION, '--version prints the version');

  const { port } = await startOrigin(t, (req, res) => res.end(`installed ${req.url}`));
  const child = spawn(bin, [String(port), '--log', 'json'], {
    cwd: work,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit');
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const lines = createInterface({ input: child.stdout });
  const ready = await new Promise<{ url: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready event\n${stderr}`)), 30_000);
    lines.on('line', (line) => {
      const e = JSON.parse(line) as { event: string; url: string };
      if (e.event === 'ready') {
        clearTimeout(timer);
        resolve(e);
      }
    });
    child.once('exit', () => reject(new Error(`exited before ready\n${stderr}`)));
  });
  const url = new URL(ready.url);
  const res = await get(Number(url.port), url.host, '/from-the-tarball');
  t.equal(res.status, 200);
  t.equal(res.body, 'installed /from-the-tarball');
  child.kill('SIGINT');
  const [code] = await exited;
  t.equal(code, 0, 'Ctrl-C exits 0');
});
