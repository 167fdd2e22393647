/**
 * openTunnel() against real relays on loopback: the embedded relay (shared by the
 * process's tunnels), an HTTPS relay pinned by fingerprint, aborts, and the typed errors.
 */
import { once } from 'node:events';
import http from 'node:http';
import t from 'tap';
import { openTunnel } from '../../cli/api/index.js';
import { normalizeFingerprint } from '../../cli/tunnel/client.js';
import { QuickTunnelError } from '../../shared/errors.js';
import { startOrigin, startTestRelay, visit } from '../helpers/relay-env.js';

/** GET through the embedded relay: 127.0.0.1:<port> with the tunnel's Host. */
function get(url: string, path: string): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    http
      .get(
        { host: '127.0.0.1', port: u.port, path, headers: { host: u.host }, agent: false },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      )
      .on('error', reject);
  });
}

t.test('two tunnels share one embedded relay; events; close', async (t) => {
  const { port: a } = await startOrigin(t, (_req, res) => res.end('a'));
  const { port: b } = await startOrigin(t, (_req, res) => res.end('b'));
  const first = await openTunnel({ target: a });
  const second = await openTunnel({ target: `http://localhost:${b}`, basicAuth: 'u:p' });
  t.teardown(() => Promise.all([first.close(), second.close()]));
  t.not(first.hostname, second.hostname);
  t.equal(new URL(first.url).port, new URL(second.url).port, 'one embedded relay, one port');
  const seen = once(first, 'request');
  t.same(await get(first.url, '/x'), { status: 200, body: 'a' });
  const [event] = (await seen) as [{ path: string; status: number; method: string }];
  t.match(event, { method: 'GET', path: '/x', status: 200 });
  t.equal((await get(second.url, '/')).status, 401, 'basicAuth enforced by the relay');

  const closed = once(first, 'closed');
  await first.close();
  t.same((await closed)[0], {}, 'closed after close(): no error');
  t.equal((await get(second.url, '/')).status, 401, 'the other tunnel still serves');
  await second.close();
});

t.test("embedded relay: directUrl (http://127.0.0.1:PORT) works with Node's fetch", async (t) => {
  const { port } = await startOrigin(t, (req, res) => res.end(`direct ${req.url}`));
  const tunnel = await openTunnel({ target: port });
  t.teardown(() => tunnel.close());
  t.match(tunnel.directUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.equal(new URL(tunnel.directUrl!).port, new URL(tunnel.url).port, "the relay's port");
  t.ok(tunnel.urls.includes(tunnel.directUrl!), 'listed in urls');
  t.equal(tunnel.urls[0], tunnel.url);
  // The *.localhost URL is what Node's fetch cannot resolve; the direct one it can.
  const res = await fetch(`${tunnel.directUrl}/hello?x=1`);
  t.equal(res.status, 200);
  t.equal(await res.text(), 'direct /hello?x=1');
});

t.test('HTTPS relay pinned by fingerprint: right pin works, wrong pin refused', async (t) => {
  const env = await startTestRelay(t);
  const { port } = await startOrigin(t, (_req, res) => res.end('pinned'));
  const fingerprint = env.relay.certificate!.fingerprint256;
  const tunnel = await openTunnel({
    target: port,
    relay: env.url,
    caFingerprint: `SHA256:${fingerprint}`,
  });
  t.teardown(() => tunnel.close());
  t.match(tunnel.url, /^https:\/\//);
  t.equal(tunnel.directUrl, undefined, 'a remote relay has no direct URL');
  const res = await visit(env, tunnel.hostname, { path: '/' });
  t.equal(res.body.toString(), 'pinned');

  const wrong = 'SHA256:' + '00:'.repeat(31) + '00';
  const err = await openTunnel({ target: port, relay: env.url, caFingerprint: wrong }).catch(
    (e: unknown) => e,
  );
  t.ok(err instanceof QuickTunnelError);
  t.match(err, { code: 'QT_ERR_TLS', message: /fingerprint/, hint: /fingerprint/ });

  const noTrust = await openTunnel({ target: port, relay: env.url }).catch((e: unknown) => e);
  t.match(noTrust, { code: 'QT_ERR_TLS' }, 'without ca / pin the self-signed relay is refused');
  const withCa = await openTunnel({ target: port, relay: env.url.href, ca: env.ca });
  t.teardown(() => withCa.close());
  t.equal((await visit(env, withCa.hostname)).body.toString(), 'pinned', 'ca as PEM text works');
});

t.test('fingerprint formats', async (t) => {
  const hex = 'ab'.repeat(32);
  const colons = hex.match(/../g)!.join(':').toUpperCase();
  t.equal(normalizeFingerprint(colons), hex);
  t.equal(normalizeFingerprint(`SHA256:${colons}`), hex);
  t.equal(normalizeFingerprint(`sha256:${Buffer.from(hex, 'hex').toString('base64')}`), hex);
  t.throws(() => normalizeFingerprint('SHA256:abcd'), { code: 'QT_ERR_CONFIG' });
});

t.test('abort, bad options, unreachable relay: typed errors, nothing left open', async (t) => {
  const controller = new AbortController();
  controller.abort();
  await t.rejects(openTunnel({ target: 3000, signal: controller.signal }), {
    code: 'QT_ERR_ABORTED',
  });
  await t.rejects(openTunnel({ target: 'localhost' }), { code: 'QT_ERR_CONFIG' });
  await t.rejects(openTunnel({ target: 3000, basicAuth: 'nocolon' }), {
    code: 'QT_ERR_CONFIG',
    message: /basicAuth takes USER:PASS/,
  });
  await t.rejects(openTunnel({ target: 3000, ca: '/nonexistent/ca.pem' }), {
    code: 'QT_ERR_CONFIG',
    hint: /PEM/,
  });
  // A port nothing listens on: refused at once, three attempts, then the typed error.
  const server = http.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const dead = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  const aborting = new AbortController();
  const pending = openTunnel({
    target: 3000,
    relay: `http://127.0.0.1:${dead}`,
    signal: aborting.signal,
  });
  setImmediate(() => aborting.abort());
  await t.rejects(pending, { code: /QT_ERR_ABORTED|QT_ERR_RELAY_UNREACHABLE/ });
});

t.test('a token the relay refuses: QT_ERR_AUTH; the right one works', async (t) => {
  const env = await startTestRelay(t, { tokens: ['good'] });
  const { port } = await startOrigin(t, (_req, res) => res.end('ok'));
  await t.rejects(openTunnel({ target: port, relay: env.url, ca: env.ca, token: 'bad' }), {
    code: 'QT_ERR_AUTH',
  });
  const tunnel = await openTunnel({ target: port, relay: env.url, ca: env.ca, token: 'good' });
  t.teardown(() => tunnel.close());
  t.equal((await visit(env, tunnel.hostname)).body.toString(), 'ok');
});
