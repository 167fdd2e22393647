/**
 * ACME in cluster mode (`--redis`), with a real redis-server shared by two relays (each
 * with its own cluster node and data dir, as two processes would have): when both start at once
 * exactly one obtains the certificate (a lock in Redis) and the other serves the same one
 * from the shared state; a renewal by either reaches the other without a restart; two
 * renewals at once: one runs, the other is told another relay is renewing.
 */
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import pino from 'pino';
import t, { type Test } from 'tap';
import { startRelay, type Relay } from '../../relay/index.js';
import { execProvider } from '../../relay/acme/dns-provider.js';
import type { CertificatePem } from '../../relay/acme/manager.js';
import { challTestSrvHook, startChallTestSrv, startPebble } from '../helpers/acme-servers.js';
import { startRedis } from '../helpers/redis.js';
import { tempDir } from '../helpers/relay-env.js';

const DOMAIN = 'cluster.qt.test';

function serialOf(pem: CertificatePem): string {
  return new X509Certificate(pem.cert).serialNumber;
}

function servedSerial(relay: Relay): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port: relay.httpsPort ?? 0,
      servername: `x.${DOMAIN}`,
      rejectUnauthorized: false,
    });
    s.once('secureConnect', () => {
      resolve(new X509Certificate(s.getPeerCertificate().raw).serialNumber);
      s.destroy();
    });
    s.once('error', reject);
  });
}

t.test('two relays, one Redis: one obtains, both serve; renewals reach both', async (t) => {
  const redis = await startRedis(t);
  const cts = await startChallTestSrv(t);
  const pebble = await startPebble(t, { dnsServer: cts.dns, env: { PEBBLE_AUTHZREUSE: '0' } });
  const hook = await challTestSrvHook(t, cts.api);

  const issued: string[] = [];
  const start = async (t: Test, name: string): Promise<Relay> => {
    const logger = pino(
      { level: 'info' },
      {
        write: (line: string) => {
          if ((JSON.parse(line) as { event?: string }).event === 'acme_issued') issued.push(name);
        },
      },
    );
    const relay = await startRelay({
      domain: DOMAIN,
      host: '127.0.0.1',
      httpsPort: 0,
      httpPort: null,
      dataDir: await tempDir(t, `qt-acme-${name}-`),
      tokens: [],
      logger,
      acme: {
        email: 'ops@qt.test',
        directoryUrl: pebble.directoryUrl,
        directoryCa: pebble.ca,
        dns: execProvider(hook),
        resolver: cts.dns,
        propagationIntervalMs: 100,
        pollMinMs: 100,
        clusterPollMs: 100,
      },
      // Cluster mode as `--redis URL --cluster-secret S` sets it up.
      cluster: { redisUrl: redis.url, secret: 'acme-cluster-test-secret-0123456789' },
    });
    t.teardown(() => relay.close(100));
    return relay;
  };
  const [a, b] = await Promise.all([start(t, 'a'), start(t, 'b')]);
  const [pa, pb] = await Promise.all([a.acme!.whenCertificate(), b.acme!.whenCertificate()]);
  t.equal(serialOf(pa), serialOf(pb), 'both serve the same certificate');
  t.equal(issued.length, 1, `one relay obtained it (${issued.join(', ')})`);
  t.equal(await servedSerial(a), serialOf(pa));
  t.equal(await servedSerial(b), serialOf(pa));

  // The relay that did not obtain it renews now: the other reloads it.
  const renewer = issued[0] === 'a' ? b : a;
  const other = renewer === a ? b : a;
  const reloaded = once(other.acme!, 'certificate');
  await renewer.acme!.renewNow();
  const [fresh] = (await reloaded) as [CertificatePem];
  t.not(serialOf(fresh), serialOf(pa), 'a new certificate');
  t.equal(await servedSerial(other), serialOf(fresh), 'the other relay serves it, no restart');
  t.equal(await servedSerial(renewer), serialOf(fresh));
  t.equal(issued.length, 2);

  // Both at once: one renews, the other is told so.
  const results = await Promise.allSettled([a.acme!.renewNow(), b.acme!.renewNow()]);
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'one renewal ran');
  const refused = results.find((r) => r.status === 'rejected');
  t.match((refused as PromiseRejectedResult | undefined)?.reason, {
    code: 'QT_ERR_ACME_CLUSTER',
    message: `another relay of the cluster is renewing the certificate for ${DOMAIN}`,
  });
  t.equal(issued.length, 3);
});
