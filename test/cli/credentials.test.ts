/**
 * Named-tunnel credential files on the CLI side: where they go (one per relay and
 * name, mode 0600), that a name can never escape the directory, and the errors a user
 * sees when one is missing or broken.
 */
import { stat, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { ago } from '../../cli/commands/tunnel.js';
import {
  credentialDir,
  credentialPath,
  listCredentials,
  loadCredential,
  namedTunnelCredential,
  saveCredential,
  type CredentialFile,
} from '../../cli/tunnel/credentials.js';
import { tempDir } from '../helpers/relay-env.js';

const relay = new URL('https://qt.localhost:8443');
const sample: CredentialFile = {
  relay: 'https://qt.localhost:8443',
  id: 'id-1',
  name: 'web',
  hostname: 'web.qt.localhost',
  createdAt: '2025-01-01T00:00:00.000Z',
  credential: 'qtc_secret',
};

t.test('one private file per relay and name', async (t) => {
  const dir = await tempDir(t);
  t.equal(credentialDir(dir, relay), path.join(dir, 'tunnels', 'qt.localhost_8443'));
  t.equal(
    credentialDir(dir, new URL('https://tunnel.example.com')),
    path.join(dir, 'tunnels', 'tunnel.example.com'),
  );
  const file = credentialPath(dir, relay, 'Web');
  t.equal(file, path.join(dir, 'tunnels', 'qt.localhost_8443', 'web.json'));
  await saveCredential(file, sample);
  t.equal((await stat(file)).mode & 0o777, 0o600);
  t.equal((await stat(path.dirname(file))).mode & 0o777, 0o700);
  t.same((await loadCredential(dir, relay, 'web')).data, sample);
  t.same(
    (await listCredentials(dir, relay)).map((c) => c.data.name),
    ['web'],
  );
  t.same(await listCredentials(dir, new URL('https://other.example')), []);
  t.same(await namedTunnelCredential(dir, relay.href, 'web'), {
    name: 'web',
    credential: 'qtc_secret',
  });
});

t.test('names cannot escape the credential directory', async (t) => {
  for (const name of ['../x', 'a/b', '..', 'a\\b', '']) {
    t.throws(() => credentialPath('/cfg', relay, name), { code: 'QT_ERR_CONFIG' }, name);
  }
});

t.test('clear errors: no relay, no credential, broken file', async (t) => {
  const dir = await tempDir(t);
  await t.rejects(namedTunnelCredential(dir, undefined, 'web'), {
    message: /named tunnels live on a relay: pass --relay URL/,
  });
  await t.rejects(loadCredential(dir, relay, 'web'), {
    code: 'QT_ERR_CONFIG',
    message: /no credential for tunnel 'web' on qt\.localhost:8443.*tunnel create web/,
  });
  const file = credentialPath(dir, relay, 'web');
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, '{');
  await t.rejects(loadCredential(dir, relay, 'web'), { message: /not valid JSON/ });
  await writeFile(file, '{"name":"web"}');
  await t.rejects(loadCredential(dir, relay, 'web'), { message: /not a tunnel credential/ });
});

t.test('last-seen times read as durations', async (t) => {
  const now = 1_000_000_000;
  t.equal(ago(now, now - 5_000), '5s ago');
  t.equal(ago(now, now - 3 * 60_000), '3m ago');
  t.equal(ago(now, now - 2 * 3_600_000), '2h ago');
  t.equal(ago(now, now - 4 * 86_400_000), '4d ago');
  t.equal(ago(now, now + 1_000), '0s ago', 'clock skew never goes negative');
});
