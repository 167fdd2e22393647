/**
 * `--acme-dns rfc2136` against a real BIND `named` (TSIG key, update-policy limited to
 * TXT at _acme-challenge.DOMAIN) that Pebble validates against: issuance works, the relay
 * removes exactly the TXT values it added (a value someone else put there stays, checked
 * with dig), and a wrong secret, an unknown key or a refused name give clear errors.
 */
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import pino from 'pino';
import t from 'tap';
import { startRelay } from '../../relay/index.js';
import type { AcmeError } from '../../relay/acme/errors.js';
import { rfc2136Provider } from '../../relay/acme/rfc2136.js';
import { digTxt, startNamed, startPebble } from '../helpers/acme-servers.js';
import { tempDir } from '../helpers/relay-env.js';

const ZONE = 'qt.test';
const DOMAIN = `rfc.${ZONE}`;
const NAME = `_acme-challenge.${DOMAIN}`;

t.test('rfc2136 → named: a wildcard, and only our TXT values removed', async (t) => {
  const named = await startNamed(t, { zone: ZONE, updatable: DOMAIN });
  const pebble = await startPebble(t, { dnsServer: named.server, env: { PEBBLE_AUTHZREUSE: '0' } });
  const key = { name: named.keyName, secret: Buffer.from(named.secret, 'base64') };
  // A value someone else keeps at the same name: cleanup must leave it alone.
  const dns = rfc2136Provider({ server: named.server, key });
  await dns.present(`${NAME}.`, 'someone-elses-value');
  t.same(await digTxt(named.server, NAME), ['someone-elses-value']);

  const relay = await startRelay({
    domain: DOMAIN,
    host: '127.0.0.1',
    httpsPort: 0,
    httpPort: null,
    dataDir: await tempDir(t, 'qt-acme-'),
    tokens: [],
    logger: pino({ level: 'silent' }),
    acme: {
      email: 'ops@qt.test',
      directoryUrl: pebble.directoryUrl,
      directoryCa: pebble.ca,
      dns: rfc2136Provider({ server: named.server, key }), // zone found by SOA: qt.test
      resolver: named.server,
      propagationIntervalMs: 100,
      pollMinMs: 100,
    },
  });
  t.teardown(() => relay.close(100));
  const pem = await relay.acme!.whenCertificate();
  const leaf = new X509Certificate(pem.cert);
  t.ok(leaf.checkHost(DOMAIN) && leaf.checkHost(`tunnel.${DOMAIN}`), 'covers DOMAIN and *.DOMAIN');
  t.match(leaf.issuer, /Pebble Intermediate/);
  t.same(await digTxt(named.server, NAME), ['someone-elses-value'], 'our two values are gone');
  await dns.cleanup(`${NAME}.`, 'someone-elses-value');
  t.same(await digTxt(named.server, NAME), []);
});

t.test('rfc2136: wrong secret, unknown key, refused name: clear errors', async (t) => {
  const named = await startNamed(t, { zone: ZONE, updatable: DOMAIN });
  const secret = Buffer.from(named.secret, 'base64');
  const wrong = Buffer.from(secret);
  wrong[0] = (wrong[0] ?? 0) ^ 0xff;

  const badSecret = rfc2136Provider({
    server: named.server,
    key: { name: named.keyName, secret: wrong },
  });
  await t.rejects(badSecret.present(`${NAME}.`, 'v'), {
    code: 'QT_ERR_ACME_DNS',
    message: `${named.server} refused the DNS update: TSIG BADSIG, the secret for key 'acme-key' does not match the server's; check --acme-dns-tsig-secret-file`,
  });
  const badKey = rfc2136Provider({ server: named.server, key: { name: 'other-key', secret } });
  await t.rejects(badKey.present(`${NAME}.`, 'v'), { message: /TSIG BADKEY.*'other-key'/ });
  const good = rfc2136Provider({ server: named.server, key: { name: named.keyName, secret } });
  await t.rejects(good.present(`_acme-challenge.elsewhere.${ZONE}.`, 'v'), {
    message: /REFUSED.*update-policy must let key 'acme-key' change TXT records/,
  });
  t.same(await digTxt(named.server, NAME), [], 'nothing was written');

  // Through the relay: the failure is reported, with the same words.
  const pebble = await startPebble(t, { dnsServer: named.server });
  const relay = await startRelay({
    domain: DOMAIN,
    host: '127.0.0.1',
    httpsPort: 0,
    httpPort: null,
    dataDir: await tempDir(t, 'qt-acme-'),
    tokens: [],
    logger: pino({ level: 'silent' }),
    acme: {
      email: 'ops@qt.test',
      directoryUrl: pebble.directoryUrl,
      directoryCa: pebble.ca,
      dns: badSecret,
      resolver: named.server,
      retryMinMs: 600_000,
    },
  });
  t.teardown(() => relay.close(100));
  const [err] = (await once(relay.acme!, 'failed')) as [AcmeError];
  t.equal(err.code, 'QT_ERR_ACME_DNS');
  t.match(err.message, /TSIG BADSIG/);
  t.match(relay.acme!.status().lastError, { code: 'QT_ERR_ACME_DNS', message: /BADSIG/ });
});
