/**
 * Automatic certificates when things go wrong, against real servers on loopback: a DNS
 * hook that never makes the record appear, a CA that is not there, a CA that rate-limits
 * with Retry-After, a CA whose TLS certificate is not trusted. Each failure is one clear
 * log line, the relay stays up (HTTP, /healthz, /metrics show the error) and serves no
 * certificate it does not have.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import pino from 'pino';
import t, { type Test } from 'tap';
import { startRelay, type Relay } from '../../relay/index.js';
import { execProvider } from '../../relay/acme/dns-provider.js';
import type { AcmeError } from '../../relay/acme/errors.js';
import type { AcmeSettings } from '../../relay/acme/manager.js';
import {
  freePort,
  silentHook,
  startChallTestSrv,
  startPebble,
  challTestSrvHook,
} from '../helpers/acme-servers.js';
import { parsePrometheusText, sampleValue } from '../helpers/prometheus.js';
import { tempDir } from '../helpers/relay-env.js';

const DOMAIN = 'fail.qt.test';
const ADMIN = 'admin-token-for-acme-tests';

async function relayWithAcme(
  t: Test,
  acme: AcmeSettings,
): Promise<{ relay: Relay; lines: Record<string, unknown>[] }> {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'info' },
    { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  );
  const relay = await startRelay({
    domain: DOMAIN,
    host: '127.0.0.1',
    httpsPort: 0,
    httpPort: 0,
    dataDir: await tempDir(t, 'qt-acme-'),
    tokens: [],
    adminTokens: [ADMIN],
    logger,
    acme,
  });
  t.teardown(() => relay.close(100));
  return { relay, lines };
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(
        {
          host: '127.0.0.1',
          port,
          path,
          headers: { host: DOMAIN, authorization: `Bearer ${ADMIN}` },
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      )
      .once('error', reject);
  });
}

function tlsFails(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port,
      servername: DOMAIN,
      rejectUnauthorized: false,
    });
    s.once('secureConnect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

const failures = (lines: Record<string, unknown>[]): Record<string, unknown>[] =>
  lines.filter((l) => l['event'] === 'acme_failed');

t.test('DNS never propagates: one clear error within the timeout, relay still up', async (t) => {
  const cts = await startChallTestSrv(t);
  const pebble = await startPebble(t, { dnsServer: cts.dns });
  const { relay, lines } = await relayWithAcme(t, {
    email: 'ops@qt.test',
    directoryUrl: pebble.directoryUrl,
    directoryCa: pebble.ca,
    dns: execProvider(await silentHook(t)),
    resolver: cts.dns,
    propagationTimeoutMs: 2_000,
    propagationIntervalMs: 100,
    retryMinMs: 600_000,
  });
  const [err] = (await once(relay.acme!, 'failed')) as [AcmeError];
  t.equal(err.code, 'QT_ERR_ACME_PROPAGATION');
  t.match(err.message, `the TXT record _acme-challenge.${DOMAIN}`);
  t.match(err.message, `did not appear at DNS server ${cts.dns} within 2 s`);
  const logged = failures(lines);
  t.equal(logged.length, 1, 'one log line for the failure');
  t.equal(logged[0]?.['level'], 50, 'at error level: there is no certificate at all');
  t.match(
    String(logged[0]?.['msg']),
    /could not obtain a certificate .*HTTPS stays off.*did not appear.*next attempt in/,
  );

  const port = relay.httpPort ?? 0;
  const health = await get(port, '/healthz');
  t.equal(health.status, 200, 'plain HTTP and the health check keep working');
  t.match(JSON.parse(health.body), {
    ok: true,
    certificate: { state: 'obtaining', lastError: { code: 'QT_ERR_ACME_PROPAGATION' } },
  });
  t.ok(await tlsFails(relay.httpsPort ?? 0), 'no certificate served, not even a self-signed one');
  const metrics = parsePrometheusText((await get(port, '/metrics')).body);
  t.equal(
    sampleValue(metrics, 'quick_tunnel_certificate_renewal_failing', {
      code: 'QT_ERR_ACME_PROPAGATION',
    }),
    1,
  );
  t.equal(sampleValue(metrics, 'quick_tunnel_certificate_renewal_failures_total'), 1);
});

t.test('the CA is unreachable: retries with backoff, one clear line each', async (t) => {
  const closedPort = await freePort();
  const { relay, lines } = await relayWithAcme(t, {
    email: 'ops@qt.test',
    directoryUrl: `https://127.0.0.1:${closedPort}/dir`,
    dns: execProvider('/bin/true'),
    retryMinMs: 50,
    retryMaxMs: 200,
  });
  const errors: AcmeError[] = [];
  while (errors.length < 3) {
    const [err] = (await once(relay.acme!, 'failed')) as [AcmeError];
    errors.push(err);
  }
  for (const err of errors) {
    t.equal(err.code, 'QT_ERR_ACME_CA_UNREACHABLE');
    t.match(
      err.message,
      `cannot reach the ACME server https://127.0.0.1:${closedPort} (ECONNREFUSED)`,
    );
    t.match(err.message, /check --acme-directory/);
  }
  t.equal(failures(lines).length, 3, 'one line per failed attempt');
  t.match(
    failures(lines).map((l) => l['attempt']),
    [1, 2, 3],
  );
  const status = relay.acme!.status();
  t.equal(status.failures, 3);
  t.ok(status.nextAttemptAt !== undefined, 'the next attempt is scheduled');
  const health = await get(relay.httpPort ?? 0, '/healthz');
  t.match(JSON.parse(health.body), {
    certificate: { lastError: { code: 'QT_ERR_ACME_CA_UNREACHABLE' } },
  });
});

t.test('a CA answering 429 with Retry-After is retried no sooner than it asked', async (t) => {
  let hits = 0;
  const ca = http.createServer((_req, res) => {
    hits++;
    res.writeHead(429, { 'retry-after': '120', 'content-type': 'application/problem+json' });
    res.end(
      JSON.stringify({
        type: 'urn:ietf:params:acme:error:rateLimited',
        detail: 'too many certificates',
      }),
    );
  });
  ca.listen(0, '127.0.0.1');
  await once(ca, 'listening');
  t.teardown(() => ca.close());
  const { relay } = await relayWithAcme(t, {
    email: 'ops@qt.test',
    directoryUrl: `http://127.0.0.1:${(ca.address() as AddressInfo).port}/dir`,
    dns: execProvider('/bin/true'),
    retryMinMs: 50,
  });
  const [err] = (await once(relay.acme!, 'failed')) as [AcmeError];
  t.equal(err.code, 'QT_ERR_ACME_RATE_LIMITED');
  t.match(
    err.message,
    /rate-limiting this account \(HTTP 429: too many certificates\); retrying after 120 s/,
  );
  t.equal(hits, 1, 'one request: acme-client does not sleep and retry inside it');
  const next = Date.parse(relay.acme!.status().nextAttemptAt ?? '');
  t.ok(next - Date.now() > 110_000, 'next attempt after Retry-After, not after the 50 ms backoff');
});

t.test(
  'a CA whose TLS certificate is not trusted: the error names --acme-directory-ca',
  async (t) => {
    const cts = await startChallTestSrv(t);
    const pebble = await startPebble(t, { dnsServer: cts.dns });
    const { relay } = await relayWithAcme(t, {
      email: 'ops@qt.test',
      directoryUrl: pebble.directoryUrl,
      dns: execProvider(await challTestSrvHook(t, cts.api)),
      retryMinMs: 600_000,
    });
    const [err] = (await once(relay.acme!, 'failed')) as [AcmeError];
    t.equal(err.code, 'QT_ERR_ACME_CA_UNREACHABLE');
    t.match(err.message, /not trusted: for a private CA pass --acme-directory-ca FILE/);
  },
);
