/**
 * Automatic certificates against a real Pebble (ACME CA) and pebble-challtestsrv (the
 * DNS server Pebble validates against): an exec hook sets the TXT records; the relay gets
 * one certificate for DOMAIN and *.DOMAIN, serves it, renews it when its (injected)
 * clock passes two thirds of the lifetime without dropping open connections.
 */
import { once } from 'node:events';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import pino from 'pino';
import t, { type Test } from 'tap';
import { startRelay, type Relay } from '../../relay/index.js';
import { execProvider } from '../../relay/acme/dns-provider.js';
import type { AcmeSettings } from '../../relay/acme/manager.js';
import { challTestSrvHook, startChallTestSrv, startPebble } from '../helpers/acme-servers.js';
import { parsePrometheusText, sampleValue } from '../helpers/prometheus.js';
import { tempDir } from '../helpers/relay-env.js';
import { FakeClock } from '../helpers/fake-clock.js';

const DOMAIN = 'relay.qt.test';
const ADMIN = 'admin-token-for-acme-tests';

async function relayWithAcme(
  t: Test,
  acme: AcmeSettings,
): Promise<{ relay: Relay; dataDir: string }> {
  const dataDir = await tempDir(t, 'qt-acme-');
  const relay = await startRelay({
    domain: DOMAIN,
    host: '127.0.0.1',
    httpsPort: 0,
    httpPort: 0,
    dataDir,
    tokens: [],
    adminTokens: [ADMIN],
    logger: pino({ level: 'silent' }),
    acme,
  });
  t.teardown(() => relay.close(100));
  return { relay, dataDir };
}

/** TLS handshake with SNI `servername`; resolves with the leaf or the handshake error. */
function handshake(
  port: number,
  servername: string,
  ca?: string,
): Promise<{ socket: tls.TLSSocket; cert: tls.PeerCertificate } | { error: Error }> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername,
      ...(ca === undefined ? { rejectUnauthorized: false } : { ca }),
    });
    socket.once('secureConnect', () => resolve({ socket, cert: socket.getPeerCertificate() }));
    socket.once('error', (error) => resolve({ error }));
  });
}

/** One HTTP/1.1 GET /healthz on an open TLS socket (keep-alive); resolves with the status. */
async function getOn(socket: tls.TLSSocket): Promise<number> {
  socket.write(`GET /healthz HTTP/1.1\r\nHost: ${DOMAIN}\r\n\r\n`);
  let buf = '';
  for (;;) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    buf += chunk.toString();
    const head = buf.indexOf('\r\n\r\n');
    if (head === -1) continue;
    const len = Number(/content-length: (\d+)/i.exec(buf)?.[1] ?? 0);
    if (buf.length >= head + 4 + len) return Number(buf.slice(9, 12));
  }
}

function get(port: number, path: string): Promise<string> {
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
          res.on('end', () => resolve(body));
        },
      )
      .once('error', reject);
  });
}

async function healthz(port: number): Promise<Record<string, unknown>> {
  return JSON.parse(await get(port, '/healthz')) as Record<string, unknown>;
}

t.test('exec hook → challtestsrv: a wildcard from Pebble, renewed without a restart', async (t) => {
  const cts = await startChallTestSrv(t);
  const pebble = await startPebble(t, { dnsServer: cts.dns, env: { PEBBLE_AUTHZREUSE: '0' } });
  const hook = await challTestSrvHook(t, cts.api);
  const clock = new FakeClock();
  clock.nowMs = Date.now();
  const { relay, dataDir } = await relayWithAcme(t, {
    email: 'ops@qt.test',
    directoryUrl: pebble.directoryUrl,
    directoryCa: pebble.ca,
    dns: execProvider(hook),
    resolver: cts.dns,
    propagationIntervalMs: 100,
    pollMinMs: 100,
    clock,
    random: () => 0.5,
  });
  const acme = relay.acme;
  if (acme === undefined || relay.httpsPort === undefined || relay.httpPort === undefined) {
    throw new Error('no ACME manager / ports');
  }
  // Listening at once: plain HTTP and the health check answer before any certificate.
  const before = await healthz(relay.httpPort);
  t.match(before, { ok: true, certificate: { state: 'obtaining', notAfter: null } });
  const early = await handshake(relay.httpsPort, DOMAIN);
  t.ok('error' in early, 'no certificate yet: the TLS handshake fails (nothing self-signed)');

  const first = once(acme, 'certificate');
  clock.advance(0); // the first attempt is due now
  await first;

  const intermediate = new X509Certificate(await pebble.intermediate());
  const seen: string[] = [];
  for (const name of [`random.${DOMAIN}`, DOMAIN]) {
    const r = await handshake(relay.httpsPort, name);
    if ('error' in r) throw r.error;
    const leaf = new X509Certificate(r.cert.raw);
    t.ok(leaf.checkIssued(intermediate), `${name}: issued by Pebble's intermediate`);
    t.ok(leaf.verify(intermediate.publicKey), `${name}: signed by it`);
    t.ok(leaf.checkHost(name), `${name}: covered`);
    t.match(r.cert.subjectaltname, `DNS:*.${DOMAIN}`);
    t.match(r.cert.subjectaltname, `DNS:${DOMAIN}`);
    seen.push(r.cert.serialNumber);
    r.socket.destroy();
  }
  t.equal(seen[0], seen[1], 'one certificate for the apex and every tunnel name');

  for (const file of [`acme/${DOMAIN}.crt`, `acme/${DOMAIN}.key`, 'acme/account.key']) {
    t.equal((await stat(path.join(dataDir, file))).mode & 0o777, 0o600, `${file} is 0600`);
  }
  const status = acme.status();
  t.equal(status.state, 'valid');
  const metrics = parsePrometheusText(await get(relay.httpPort, '/metrics'));
  t.equal(
    sampleValue(metrics, 'quick_tunnel_certificate_expiry_timestamp_seconds'),
    Date.parse(status.notAfter ?? '') / 1000,
    'metrics: the expiry',
  );
  t.equal(sampleValue(metrics, 'quick_tunnel_certificate_renewal_failing', { code: '' }), 0);
  const health = await healthz(relay.httpPort);
  t.match(health, { certificate: { state: 'valid', notAfter: status.notAfter, lastError: null } });
  const notBefore = Date.parse(status.notBefore ?? '');
  const notAfter = Date.parse(status.notAfter ?? '');
  const renewAt = Date.parse(status.renewAt ?? '');
  t.ok(
    renewAt > notBefore + (notAfter - notBefore) * 0.6 &&
      renewAt <= notBefore + ((notAfter - notBefore) * 2) / 3,
    'renewal planned at about two thirds of the lifetime, from notAfter',
  );

  // A connection opened before the renewal, kept alive across it.
  const old = await handshake(relay.httpsPort, DOMAIN);
  if ('error' in old) throw old.error;
  t.equal(await getOn(old.socket), 200);

  clock.advance(renewAt - clock.nowMs - 60_000);
  t.equal(acme.status().state, 'valid', 'nothing happens before the renewal time');
  const renewed = once(acme, 'certificate');
  clock.advance(120_000);
  await renewed;

  const fresh = await handshake(relay.httpsPort, `new.${DOMAIN}`);
  if ('error' in fresh) throw fresh.error;
  t.not(fresh.cert.serialNumber, seen[0], 'a new connection sees the new certificate');
  t.ok(new X509Certificate(fresh.cert.raw).checkHost(`new.${DOMAIN}`));
  fresh.socket.destroy();
  t.equal(await getOn(old.socket), 200, 'the connection opened before keeps working');
  t.equal(old.socket.getPeerCertificate().serialNumber, seen[0], '… on its old certificate');
  old.socket.destroy();
  t.ok(acme.status().lastRenewalAt !== undefined);
  t.notOk(acme.status().lastError);

  // A restart serves the stored certificate at once, without the CA.
  await relay.close(100);
  const again = await startRelay({
    domain: DOMAIN,
    host: '127.0.0.1',
    httpsPort: 0,
    httpPort: null,
    dataDir,
    tokens: [],
    logger: pino({ level: 'silent' }),
    acme: {
      email: 'ops@qt.test',
      directoryUrl: pebble.directoryUrl,
      directoryCa: pebble.ca,
      dns: execProvider(hook),
      resolver: cts.dns,
    },
  });
  t.teardown(() => again.close(100));
  const stored = await handshake(again.httpsPort ?? 0, `x.${DOMAIN}`);
  if ('error' in stored) throw stored.error;
  t.equal(stored.cert.serialNumber, fresh.cert.serialNumber, 'restart: the stored certificate');
  stored.socket.destroy();
});
