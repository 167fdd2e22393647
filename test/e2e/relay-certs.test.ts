/**
 * Certificates and keys as a self-hoster gets them wrong (issue 21 §4): an unreadable key
 * names the file and the permission problem, swapped --cert/--key is a user error (not a
 * crash), a certificate for other names starts with a warning naming what it covers, and
 * a --ca file that is not PEM is refused at once.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { generateCertificate } from '../../relay/edge/certificate.js';
import { REPO_ROOT, spawnCli } from '../helpers/processes.js';
import { tempDir } from '../helpers/relay-env.js';
import { testCertificate } from '../helpers/certs.js';

const relayArgs = (dataDir: string, cert: string, key: string): string[] => [
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
  dataDir,
  '--cert',
  cert,
  '--key',
  key,
];

async function pemFiles(
  t: Test,
  domain?: string,
): Promise<{ dir: string; cert: string; key: string }> {
  const dir = await tempDir(t);
  const pair = domain === undefined ? await testCertificate() : await generateCertificate(domain);
  const cert = path.join(dir, 'fullchain.pem');
  const key = path.join(dir, 'privkey.pem');
  await writeFile(cert, pair.cert);
  await writeFile(key, pair.key, { mode: 0o600 });
  return { dir, cert, key };
}

t.test('--cert and --key swapped: a user error, exit 1, no stack trace', async (t) => {
  const { dir, cert, key } = await pemFiles(t);
  const relay = spawnCli(t, relayArgs(dir, key, cert));
  t.equal(await relay.exited, 1);
  const err = relay.stderr.join('\n');
  t.match(err, /--cert and --key are swapped/);
  t.match(err, `pass --cert ${cert} --key ${key}`);
  t.notMatch(err, /crashed|at .*\.ts:\d+/);
});

t.test('a certificate for other names: starts, with a warning naming what it covers', async (t) => {
  const { dir, cert, key } = await pemFiles(t, 'other.example');
  const relay = spawnCli(t, relayArgs(dir, cert, key));
  await relay.waitFor(/"relay listening"/, 'stdout');
  const warning = await relay.waitFor(/^warning: the certificate/, 'stderr');
  t.match(
    warning,
    /does not cover qt\.localhost and \*\.qt\.localhost: it covers other\.example, \*\.other\.example/,
  );
  relay.child.kill('SIGTERM');
  t.equal(await relay.exited, 0);
});

t.test('a certificate that covers DOMAIN and *.DOMAIN: no warning', async (t) => {
  const { dir, cert, key } = await pemFiles(t);
  const relay = spawnCli(t, relayArgs(dir, cert, key));
  await relay.waitFor(/"relay listening"/, 'stdout');
  await relay.waitFor(/admin endpoints/, 'stderr');
  t.notMatch(relay.stderr.join('\n'), /does not cover/);
  relay.child.kill('SIGTERM');
  t.equal(await relay.exited, 0);
});

t.test('a key the relay user cannot read names the file and the fix', async (t) => {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    t.comment('skipped: needs root to run the relay as another user');
    return;
  }
  const { dir, cert, key } = await pemFiles(t);
  await chmod(dir, 0o777); // the relay (as nobody) writes its data dir here; the key stays 0600 root
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'cli/main.ts', ...relayArgs(path.join(dir, 'data'), cert, key)],
    {
      cwd: REPO_ROOT,
      uid: 65534,
      gid: 65534,
      env: { ...process.env, HOME: dir, NO_COLOR: '1' },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const [code] = await once(child, 'exit');
  t.equal(code, 1, stderr);
  t.match(stderr, `--key ${key}: permission denied`);
  t.match(stderr, /mode 0600, owner uid 0/);
  t.match(stderr, /In Docker the image runs as user `node`/);
  t.notMatch(stderr, /not allowed to listen|ports below 1024/);
});

t.test('--ca with a file that is not a PEM certificate is refused at once', async (t) => {
  const dir = await tempDir(t);
  const notPem = path.join(dir, 'hostname');
  await writeFile(notPem, 'my-laptop\n');
  const cli = spawnCli(t, ['3000', '--relay', 'https://qt.localhost:1', '--ca', notPem], {
    env: { QUICK_TUNNEL_CONFIG_DIR: dir },
  });
  t.equal(await cli.exited, 1);
  t.match(
    cli.stderr.join('\n'),
    `the CA file ${notPem} (from --ca) is not usable: it holds no PEM certificate`,
  );
  t.notMatch(cli.stderr.join('\n'), /cannot reach/);

  const { key } = await pemFiles(t);
  const keyAsCa = spawnCli(t, ['3000', '--relay', 'https://qt.localhost:1', '--ca', key], {
    env: { QUICK_TUNNEL_CONFIG_DIR: dir },
  });
  t.equal(await keyAsCa.exited, 1);
  t.match(keyAsCa.stderr.join('\n'), /holds a private key, not a certificate/);
});
