/**
 * `quick-tunnel relay --acme …` as a user runs it: the real binary gets a wildcard from
 * Pebble through an exec hook and serves it; bad flag combinations are refused with a
 * message that says what to do.
 */
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import tls from 'node:tls';
import t from 'tap';
import { acmeSettingsFromFlags } from '../../cli/commands/relay-acme.js';
import { challTestSrvHook, startChallTestSrv, startPebble } from '../helpers/acme-servers.js';
import { spawnCli } from '../helpers/processes.js';
import { tempDir } from '../helpers/relay-env.js';

const DOMAIN = 'cli.qt.test';

t.test('the relay binary gets and serves a wildcard from Pebble', async (t) => {
  const cts = await startChallTestSrv(t);
  const pebble = await startPebble(t, { dnsServer: cts.dns });
  const hook = await challTestSrvHook(t, cts.api);
  const dataDir = await tempDir(t, 'qt-acme-');
  const relay = spawnCli(t, [
    'relay',
    '--domain',
    DOMAIN,
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--http-port',
    '0',
    '--data-dir',
    dataDir,
    '--acme',
    '--acme-email',
    'ops@qt.test',
    '--acme-dns',
    `exec:${hook}`,
    '--acme-directory',
    pebble.directoryUrl,
    '--acme-directory-ca',
    pebble.caFile,
    '--acme-dns-resolver',
    cts.dns,
  ]);
  const listening = JSON.parse(await relay.waitFor(/"relay listening"/, 'stdout')) as {
    httpsPort: number;
  };
  await relay.waitFor(
    /obtaining one for cli\.qt\.test and \*\.cli\.qt\.test by ACME DNS-01/,
    'stderr',
  );
  const issued = JSON.parse(await relay.waitFor(/"acme_issued"/, 'stdout', 60_000)) as {
    msg: string;
  };
  t.match(
    issued.msg,
    /certificate for cli\.qt\.test and \*\.cli\.qt\.test issued by Pebble Intermediate/,
  );
  const cert = await new Promise<tls.PeerCertificate>((resolve, reject) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port: listening.httpsPort,
      servername: `abc.${DOMAIN}`,
      rejectUnauthorized: false,
    });
    s.once('secureConnect', () => {
      resolve(s.getPeerCertificate());
      s.destroy();
    });
    s.once('error', reject);
  });
  const leaf = new X509Certificate(cert.raw);
  t.ok(leaf.checkHost(`abc.${DOMAIN}`));
  t.ok(leaf.checkIssued(new X509Certificate(await pebble.intermediate())));
  relay.child.kill('SIGTERM');
  t.equal(await relay.exited, 0);
});

t.test('a bad --acme flag exits 1 with what to do', async (t) => {
  const cli = spawnCli(t, [
    'relay',
    '--domain',
    DOMAIN,
    '--port',
    '0',
    '--http-port',
    '0',
    '--acme',
  ]);
  t.equal(await cli.exited, 1);
  t.match(cli.stderr.join('\n'), /--acme needs --acme-email you@example.com/);
});

t.test('flag checks', async (t) => {
  const ctx = { domain: DOMAIN, hasCertFiles: false };
  const dir = await tempDir(t);
  const secretFile = path.join(dir, 'tsig.key');
  await writeFile(
    secretFile,
    'key "acme-key" {\n\talgorithm hmac-sha256;\n\tsecret "c2VjcmV0LWZvci10aGUtcXVpY2stdHVubmVsLXRlc3Q=";\n};\n',
  );
  const base = { acme: true, email: 'ops@qt.test' };
  t.equal(await acmeSettingsFromFlags({ acme: false }, ctx), undefined);
  await t.rejects(acmeSettingsFromFlags({ acme: false, email: 'a@b.c' }, ctx), {
    code: 'QT_ERR_CONFIG',
    message: '--acme-email only applies with --acme',
  });
  await t.rejects(
    acmeSettingsFromFlags({ ...base, dns: 'exec:/bin/true' }, { ...ctx, hasCertFiles: true }),
    {
      message: /--acme and --cert\/--key exclude each other/,
    },
  );
  await t.rejects(
    acmeSettingsFromFlags({ ...base, dns: 'exec:/bin/true' }, { ...ctx, domain: 'localhost' }),
    {
      message: /--acme needs --domain/,
    },
  );
  await t.rejects(acmeSettingsFromFlags({ ...base }, ctx), { message: /--acme needs --acme-dns/ });
  await t.rejects(acmeSettingsFromFlags({ ...base, dns: 'route53' }, ctx), {
    message: /--acme-dns must be exec:\/path\/to\/hook, rfc2136 or acme-dns/,
  });
  await t.rejects(acmeSettingsFromFlags({ ...base, dns: `exec:${dir}/missing` }, ctx), {
    message: /no executable file there/,
  });
  await t.rejects(
    acmeSettingsFromFlags(
      { ...base, dns: 'rfc2136', dnsServer: '127.0.0.1:53', tsigKey: 'k' },
      ctx,
    ),
    {
      message:
        /--acme-dns-tsig-secret-file FILE or QUICK_TUNNEL_ACME_TSIG_SECRET \(never on the command line\)/,
    },
  );
  await t.rejects(
    acmeSettingsFromFlags(
      { ...base, dns: 'exec:/bin/true', directory: 'https://x/dir', staging: true },
      ctx,
    ),
    { message: /exclude each other/ },
  );
  await t.rejects(acmeSettingsFromFlags({ ...base, dns: 'exec:/bin/true', eabKid: 'k' }, ctx), {
    message: /--acme-eab-kid and --acme-eab-hmac-key go together/,
  });
  const fromFile = await acmeSettingsFromFlags(
    {
      ...base,
      dns: 'rfc2136',
      dnsServer: '127.0.0.1:5353',
      tsigKey: 'acme-key',
      tsigSecretFile: secretFile,
    },
    ctx,
  );
  t.equal(fromFile?.dns.description, 'rfc2136 127.0.0.1:5353');
  t.equal(fromFile?.directoryUrl, 'https://acme-v02.api.letsencrypt.org/directory');
  const fromEnv = await acmeSettingsFromFlags(
    { ...base, dns: 'rfc2136', dnsServer: '127.0.0.1', tsigKey: 'acme-key', staging: true },
    { ...ctx, tsigSecretEnv: 'c2VjcmV0' },
  );
  t.equal(fromEnv?.directoryUrl, 'https://acme-staging-v02.api.letsencrypt.org/directory');
  t.notMatch(JSON.stringify(fromEnv), /c2VjcmV0|secret/, 'the secret is not in anything printable');
});
