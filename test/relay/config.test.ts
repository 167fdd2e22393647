/**
 * The relay's one config (relay/config.ts): defaults filled in once, frozen, and a
 * mistake given to startRelay is a ConfigError (the CLI prints it and exits 1), raised
 * before anything is opened: no port bound, no data dir locked.
 */
import t from 'tap';
import { ConfigError } from '../../shared/errors.js';
import { RELAY_DEFAULTS, resolveRelayConfig, type RelayConfig } from '../../relay/config.js';
import { startRelay } from '../../relay/index.js';
import { TEST_DOMAIN, tempDir } from '../helpers/relay-env.js';
import { spawnCli } from '../helpers/processes.js';

const base: RelayConfig = {
  domain: TEST_DOMAIN,
  host: '127.0.0.1',
  httpsPort: null,
  httpPort: 0,
  dataDir: null,
  tokens: [],
};

t.test('every default is filled in, and the result is frozen', async (t) => {
  const c = resolveRelayConfig({ ...base, domain: 'QT.Localhost.' });
  t.equal(c.domain, 'qt.localhost', 'lowercased, trailing dot dropped');
  t.equal(c.responseTimeoutMs, RELAY_DEFAULTS.responseTimeoutMs);
  t.equal(c.holdMs, RELAY_DEFAULTS.holdMs);
  t.same(c.guard, { maxUrlBytes: 8 * 1024, maxHeaders: 100 });
  t.same(c.visitorConnections, { maxConnections: 10_000, maxConnectionsPerIp: 500 });
  t.equal(c.rateLimitPerTunnel, 0);
  t.same(c.tokens, []);
  t.same(c.extraHttpHosts, []);
  t.equal(c.soleTunnelOnIpHosts, false);
  t.match(c.http2, {
    idleTimeoutMs: RELAY_DEFAULTS.keepAliveTimeoutMs,
    firstRequestTimeoutMs: RELAY_DEFAULTS.headersTimeoutMs,
    maxHeaderPairs: 108,
    maxConcurrentStreams: 100,
  });
  t.same(c.queue, RELAY_DEFAULTS.queue);
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.guard) && Object.isFrozen(c.tokens));
  t.ok(Object.isFrozen(RELAY_DEFAULTS) && Object.isFrozen(RELAY_DEFAULTS.http2));
  t.throws(() => {
    (c as { holdMs: number }).holdMs = 1;
  }, TypeError);

  const tuned = resolveRelayConfig({
    ...base,
    keepAliveTimeoutMs: 5_000,
    headersTimeoutMs: 2_000,
    maxHeaders: 50,
    http2: { maxConcurrentStreams: 7 },
  });
  t.match(tuned.http2, {
    idleTimeoutMs: 5_000,
    firstRequestTimeoutMs: 2_000,
    maxHeaderPairs: 58,
    maxConcurrentStreams: 7,
  });
  t.equal(resolveRelayConfig({ ...base, http2: false }).http2, false);
});

const mistakes: [string, Partial<RelayConfig> & Record<string, unknown>, RegExp][] = [
  ['a port out of range', { httpPort: 70_000 }, /httpPort must be a port number/],
  ['a fractional port', { httpsPort: 443.5, dataDir: '/tmp/x' }, /httpsPort must be a port/],
  ['a negative port', { httpPort: -1 }, /httpPort must be a port/],
  ['a public port of 0', { publicHttpPort: 0 }, /publicHttpPort must be a port number between 1/],
  ['an invalid domain', { domain: 'bad_domain!' }, /domain 'bad_domain!' is not a valid/],
  ['an empty domain', { domain: '' }, /is not a valid domain/],
  ['no listener at all', { httpPort: null }, /listen nowhere/],
  ['a cert without a key', { certFile: '/tmp/cert.pem' }, /certFile and keyFile go together/],
  [
    'HTTPS with no certificate and no data dir',
    { httpsPort: 0 },
    /HTTPS relay needs --cert\/--key or a data dir/,
  ],
  [
    'extra HTTP hosts without the HTTP listener',
    { httpPort: null, httpsPort: 0, dataDir: '/tmp/x', extraHttpHosts: ['127.0.0.2'] },
    /extraHttpHosts .* HTTP listener, which is off/,
  ],
  ['a negative hold', { holdMs: -5 }, /holdMs must be a number of at least 0/],
  ['a zero response timeout', { responseTimeoutMs: 0 }, /responseTimeoutMs must be .* at least 1/],
  ['a NaN limit', { maxVisitorConnections: Number.NaN }, /maxVisitorConnections must be/],
  ['a bad h2 limit', { http2: { maxConcurrentStreams: 0 } }, /http2.maxConcurrentStreams/],
  ['a bad queue limit', { queue: { maxItems: -1 } }, /queue.maxItems/],
  ['an empty token', { tokens: ['ok', ''] }, /tokens must be a list of non-empty strings/],
  [
    'a cluster on every address without a node URL',
    { host: '0.0.0.0', cluster: { redisUrl: 'redis://127.0.0.1:1', secret: 's' } },
    /pass --node-url/,
  ],
];

t.test('a config mistake is a ConfigError from startRelay, before anything opens', async (t) => {
  for (const [what, patch, message] of mistakes) {
    const config = { ...base, ...patch } as RelayConfig;
    t.throws(() => resolveRelayConfig(config), ConfigError, `${what}: resolveRelayConfig`);
    const err = await startRelay(config).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, ConfigError, `${what}: startRelay rejects with a ConfigError`);
    t.match(err, { code: 'QT_ERR_CONFIG', message }, what);
  }
});

t.test('ACME conflicts with certificate files and needs the HTTPS listener', async (t) => {
  const acme = { email: 'a@example.com', dns: {} } as unknown as NonNullable<RelayConfig['acme']>;
  t.throws(
    () =>
      resolveRelayConfig({
        ...base,
        httpsPort: 0,
        certFile: '/tmp/c',
        keyFile: '/tmp/k',
        acme,
      }),
    { code: 'QT_ERR_CONFIG', message: /acme and certFile\/keyFile/ },
  );
  t.throws(() => resolveRelayConfig({ ...base, acme }), {
    code: 'QT_ERR_CONFIG',
    message: /acme needs the HTTPS listener/,
  });
});

t.test('a refused config leaves the data dir unlocked', async (t) => {
  const dataDir = await tempDir(t);
  await t.rejects(startRelay({ ...base, dataDir, httpPort: 65_536 }), ConfigError);
  const relay = await startRelay({ ...base, dataDir });
  t.teardown(() => relay.close(100));
  t.type(relay.httpPort, 'number', 'the same data dir starts a relay right after');
});

t.test('the CLI reports a config mistake startRelay found and exits 1', async (t) => {
  const dataDir = await tempDir(t);
  const cli = spawnCli(t, [
    'relay',
    '--domain',
    TEST_DOMAIN,
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--http-port',
    '0',
    '--data-dir',
    dataDir,
    '--public-port',
    '70000',
  ]);
  t.equal(await cli.exited, 1);
  t.match(cli.stderr.join('\n'), /error: relay config: publicHttpsPort must be a port number/);
  t.notMatch(cli.stderr.join('\n'), /crashed|please report/);
});
