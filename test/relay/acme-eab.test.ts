/**
 * External account binding against Pebble's EAB configuration (as ZeroSSL and Google
 * require it): without a key id the account is refused with a message naming the flags;
 * with Pebble's example key id and HMAC key the relay gets its certificate.
 */
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import pino from 'pino';
import t, { type Test } from 'tap';
import { startRelay, type Relay } from '../../relay/index.js';
import { execProvider } from '../../relay/acme/dns-provider.js';
import type { AcmeSettings } from '../../relay/acme/manager.js';
import {
  challTestSrvHook,
  PEBBLE_EAB,
  startChallTestSrv,
  startPebble,
} from '../helpers/acme-servers.js';
import { tempDir } from '../helpers/relay-env.js';

const DOMAIN = 'eab.qt.test';

async function relayWithAcme(t: Test, acme: AcmeSettings): Promise<{ relay: Relay }> {
  const relay = await startRelay({
    domain: DOMAIN,
    host: '127.0.0.1',
    httpsPort: 0,
    httpPort: null,
    dataDir: await tempDir(t, 'qt-acme-'),
    tokens: [],
    logger: pino({ level: 'silent' }),
    acme,
  });
  t.teardown(() => relay.close(100));
  return { relay };
}

t.test('external account binding: Pebble requiring EAB issues with the key id', async (t) => {
  const cts = await startChallTestSrv(t);
  const pebble = await startPebble(t, { dnsServer: cts.dns, eab: true });
  const hook = await challTestSrvHook(t, cts.api);
  const base = {
    email: 'ops@qt.test',
    directoryUrl: pebble.directoryUrl,
    directoryCa: pebble.ca,
    dns: execProvider(hook),
    resolver: cts.dns,
    propagationIntervalMs: 100,
    pollMinMs: 100,
    retryMinMs: 60_000,
  };
  const without = await relayWithAcme(t, base);
  const [err] = (await once(without.relay.acme!, 'failed')) as [Error & { code: string }];
  t.equal(err.code, 'QT_ERR_ACME_ORDER');
  t.match(
    err.message,
    /creating the ACME account failed: .*externalAccountBinding.*--acme-eab-kid/,
  );

  const { relay } = await relayWithAcme(t, { ...base, eab: PEBBLE_EAB });
  const pem = await relay.acme!.whenCertificate();
  t.ok(new X509Certificate(pem.cert).checkHost(`any.${DOMAIN}`), 'issued with EAB');
});
