/**
 * The relay's control API (fastify app.inject): named-tunnel create/read/delete with
 * their auth rules and errors, the audit log, /healthz, and /metrics as strict
 * Prometheus text whose counters follow real traffic.
 */
import { EventEmitter } from 'node:events';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import t, { type Test } from 'tap';
import { buildAdminApp, type AdminDeps } from '../../relay/admin/app.js';
import { RelayStats } from '../../relay/stats.js';
import { NamedTunnels } from '../../relay/tunnels/named.js';
import { TunnelRegistry } from '../../relay/tunnels/registry.js';
import { MemoryTunnelStore } from '../../relay/tunnels/store.js';
import type { MuxSession } from '../../shared/mux/session.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import { parsePrometheusText, sampleValue } from '../helpers/prometheus.js';
import {
  connectTunnel,
  startOrigin,
  startTestRelay,
  TEST_DOMAIN,
  visit,
} from '../helpers/relay-env.js';

interface Fixture {
  app: FastifyInstance;
  deps: AdminDeps;
  store: MemoryTunnelStore;
  registry: TunnelRegistry;
  logLines: Record<string, unknown>[];
  rawLog: string[];
}

async function fixture(
  t: Test,
  options: { tokens?: string[]; adminTokens?: string[] } = {},
): Promise<Fixture> {
  const rawLog: string[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void rawLog.push(line) });
  const registry = new TunnelRegistry({ holdMs: 0 });
  const store = new MemoryTunnelStore();
  const named = new NamedTunnels({
    store,
    registry,
    domain: TEST_DOMAIN,
    urlsFor: (h) => [`https://${h}:8443`],
    log,
  });
  const deps: AdminDeps = {
    domain: TEST_DOMAIN,
    registry,
    relayVersion: '9.9.9',
    open: (options.tokens ?? []).length === 0,
    startedAt: Date.now(),
    named,
    stats: new RelayStats(),
    tokens: options.tokens ?? [],
    adminTokens: options.adminTokens ?? [],
  };
  const app = await buildAdminApp(deps);
  t.teardown(() => app.close());
  return {
    app,
    deps,
    store,
    registry,
    rawLog,
    get logLines() {
      return rawLog.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
  };
}

/** A stand-in for a live tunnel connection: what the registry and delete use. */
class FakeSession extends EventEmitter {
  closed = false;
  goingAway = false;
  receivedGoAway = false;
  streamCount = 0;
  goAways: [number, string][] = [];
  goAway(code: number, message: string): void {
    this.goingAway = true;
    this.goAways.push([code, message]);
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.emit('close');
  }
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

t.test('create: credential once, hash only in the store, audit line without secrets', async (t) => {
  const f = await fixture(t);
  const res = await f.app.inject({ method: 'POST', url: '/api/tunnels', payload: { name: 'Web' } });
  t.equal(res.statusCode, 201);
  t.equal(res.headers['cache-control'], 'no-store');
  const body = res.json<{ id: string; name: string; hostname: string; credential: string }>();
  t.match(body, {
    name: 'web',
    hostname: 'web.qt.localhost',
    urls: ['https://web.qt.localhost:8443'],
    credential: /^qtc_[A-Za-z0-9_-]{43}$/,
  });
  const stored = await f.store.get('web');
  t.equal(stored?.id, body.id);
  t.match(stored?.credentialHash, /^sha256:[0-9a-f]{64}$/);
  t.notOk(JSON.stringify(stored).includes(body.credential), 'the store never sees the credential');
  t.match(f.logLines, [{ event: 'created', tunnelId: body.id, name: 'web' }]);
  t.notOk(f.rawLog.join('').includes(body.credential), 'nor does the log');
});

t.test('create: bad, reserved and taken names are refused clearly', async (t) => {
  const f = await fixture(t);
  const create = (payload: unknown) =>
    f.app.inject({ method: 'POST', url: '/api/tunnels', payload: payload as object });
  t.equal((await create({ name: 'shop' })).statusCode, 201);
  const cases: [unknown, number, string, RegExp][] = [
    [{ name: 'shop' }, 409, 'QT_ERR_NAME_TAKEN', /'shop' is already taken/],
    [{ name: 'SHOP' }, 409, 'QT_ERR_NAME_TAKEN', /'shop' is already taken/],
    [{ name: 'ab' }, 400, 'QT_ERR_BAD_NAME', /3 to 63 characters/],
    [{ name: 'a_b_c' }, 400, 'QT_ERR_BAD_NAME', /lowercase letters, digits and hyphens/],
    [{ name: '-abc' }, 400, 'QT_ERR_BAD_NAME', /start or end with a hyphen/],
    [{ name: 'xn--abc' }, 400, 'QT_ERR_BAD_NAME', /3rd and 4th/],
    [{ name: 'admin' }, 400, 'QT_ERR_BAD_NAME', /'admin' is reserved/],
    [{ name: 'a'.repeat(64) }, 400, 'QT_ERR_BAD_NAME', /3 to 63/],
    [{}, 400, 'FST_ERR_VALIDATION', /required property 'name'/],
    [{ name: { x: 1 } }, 400, 'FST_ERR_VALIDATION', /must be string/],
  ];
  for (const [payload, status, code, message] of cases) {
    const res = await create(payload);
    t.equal(res.statusCode, status, JSON.stringify(payload));
    t.match(res.json(), { statusCode: status, code, message }, JSON.stringify(payload));
  }
  const big = await f.app.inject({
    method: 'POST',
    url: '/api/tunnels',
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ name: 'x'.repeat(20_000) }),
  });
  t.equal(big.statusCode, 413, 'bodies are capped');
});

t.test('create: a live ephemeral tunnel holding the label makes the name taken', async (t) => {
  const f = await fixture(t);
  const session = new FakeSession();
  f.registry.attach('busy-label', 'eph-id', 'ephemeral', session as unknown as MuxSession);
  const res = await f.app.inject({
    method: 'POST',
    url: '/api/tunnels',
    payload: { name: 'busy-label' },
  });
  t.equal(res.statusCode, 409);
  session.close();
});

t.test('create needs a relay token when the relay has tokens', async (t) => {
  const f = await fixture(t, { tokens: ['relay-secret'], adminTokens: ['admin-secret'] });
  const post = (headers: Record<string, string>) =>
    f.app.inject({ method: 'POST', url: '/api/tunnels', headers, payload: { name: 'abc' } });
  const none = await post({});
  t.equal(none.statusCode, 401);
  t.equal(none.headers['www-authenticate'], 'Bearer realm="quick-tunnel"');
  t.match(none.json(), { code: 'QT_ERR_AUTH', message: /requires an access token/ });
  t.match((await post(bearer('nope'))).json(), { message: /rejected the access token/ });
  t.equal((await post({ authorization: 'Basic cmVsYXk6c2VjcmV0' })).statusCode, 401);
  t.equal((await post(bearer('relay-secret'))).statusCode, 201);
  t.equal((await post(bearer('admin-secret'))).statusCode, 409, 'admin passes auth too');
});

t.test('read and delete need the credential (or the admin token)', async (t) => {
  const f = await fixture(t, { adminTokens: ['admin-secret'] });
  const created = (
    await f.app.inject({ method: 'POST', url: '/api/tunnels', payload: { name: 'mine' } })
  ).json<{ id: string; credential: string }>();

  const get = (headers: Record<string, string>, name = 'mine') =>
    f.app.inject({ method: 'GET', url: `/api/tunnels/${name}`, headers });
  const ok = await get(bearer(created.credential));
  t.equal(ok.statusCode, 200);
  t.match(ok.json(), {
    id: created.id,
    name: 'mine',
    hostname: 'mine.qt.localhost',
    connected: false,
    connections: 0,
    replicas: 0,
    lastSeenAt: null,
  });
  t.equal((await get(bearer('admin-secret'))).statusCode, 200);
  // Without its credential a taken name answers as a free one does (issue 16).
  const wrong = await get(bearer('qtc_wrong'));
  t.equal(wrong.statusCode, 404);
  t.match(wrong.json(), {
    code: 'QT_ERR_NO_SUCH_TUNNEL',
    message: /no tunnel named 'mine' that this credential opens/,
  });
  t.equal((await get({})).statusCode, 404);
  const missing = await get(bearer(created.credential), 'other');
  t.equal(missing.statusCode, 404);
  t.match(missing.json(), { code: 'QT_ERR_NO_SUCH_TUNNEL' });

  // Two connections of one client process and one of another: 2 replicas, 3 connections.
  const sessions = [new FakeSession(), new FakeSession(), new FakeSession()];
  sessions.forEach((s, i) => {
    f.registry.attach('mine', created.id, 'named', s as unknown as MuxSession);
    f.deps.named.noteClient(s as unknown as MuxSession, i < 2 ? 'client-a' : 'client-b');
  });
  t.match((await get(bearer(created.credential))).json(), {
    connected: true,
    connections: 3,
    replicas: 2,
  });

  const del = (query: string, headers = bearer(created.credential)) =>
    f.app.inject({ method: 'DELETE', url: `/api/tunnels/mine${query}`, headers });
  t.equal(
    (await del('', bearer('qtc_wrong'))).statusCode,
    404,
    'a wrong credential deletes nothing',
  );
  const refused = await del('');
  t.equal(refused.statusCode, 409);
  t.match(refused.json(), {
    code: 'QT_ERR_TUNNEL_CONNECTED',
    message: /'mine' is connected \(2 replica\(s\), 3 connection\(s\)\)/,
  });
  t.ok(await f.store.get('mine'), 'still there');

  const forced = await del('?force=true');
  t.equal(forced.statusCode, 200);
  t.same(forced.json(), { deleted: true, id: created.id, name: 'mine', connectionsClosed: 3 });
  for (const s of sessions) {
    t.ok(s.closed, 'connections are closed');
    t.same(s.goAways, [[ErrorCode.REJECTED, "tunnel 'mine' was deleted"]]);
  }
  t.equal(f.registry.lookup('mine'), undefined);
  t.equal(await f.store.get('mine'), undefined);
  t.match(f.logLines.at(-1), {
    event: 'deleted',
    tunnelId: created.id,
    name: 'mine',
    forced: true,
    connectionsClosed: 3,
  });
  t.notOk(f.rawLog.join('').includes(created.credential), 'no credential in the audit log');

  // The name is free again, with a new id and credential.
  const again = await f.app.inject({
    method: 'POST',
    url: '/api/tunnels',
    payload: { name: 'mine' },
  });
  t.equal(again.statusCode, 201);
  t.not(again.json<{ id: string }>().id, created.id);
  t.equal((await get(bearer(created.credential))).statusCode, 404, 'the old credential is dead');
});

t.test('delete without connections needs no force', async (t) => {
  const f = await fixture(t);
  const created = (
    await f.app.inject({ method: 'POST', url: '/api/tunnels', payload: { name: 'idle' } })
  ).json<{ credential: string }>();
  const res = await f.app.inject({
    method: 'DELETE',
    url: '/api/tunnels/idle',
    headers: bearer(created.credential),
  });
  t.equal(res.statusCode, 200);
  t.match(res.json(), { deleted: true, connectionsClosed: 0 });
});

t.test('admin endpoints: off without --admin-token, else need it', async (t) => {
  const off = await fixture(t);
  for (const url of ['/api/tunnels', '/metrics']) {
    const res = await off.app.inject({ method: 'GET', url, headers: bearer('anything') });
    t.equal(res.statusCode, 403, url);
    t.match(res.json(), { code: 'QT_ERR_ADMIN_DISABLED', message: /--admin-token/ });
  }
  const on = await fixture(t, { adminTokens: ['admin-secret'] });
  await on.app.inject({ method: 'POST', url: '/api/tunnels', payload: { name: 'one' } });
  await on.app.inject({ method: 'POST', url: '/api/tunnels', payload: { name: 'two' } });
  t.equal((await on.app.inject({ method: 'GET', url: '/api/tunnels' })).statusCode, 401);
  t.equal(
    (await on.app.inject({ method: 'GET', url: '/api/tunnels', headers: bearer('nope') }))
      .statusCode,
    401,
  );
  const list = await on.app.inject({
    method: 'GET',
    url: '/api/tunnels',
    headers: bearer('admin-secret'),
  });
  t.equal(list.statusCode, 200);
  t.match(list.json(), { tunnels: [{ name: 'one' }, { name: 'two' }] });
  t.notOk(list.body.includes('credential'), 'the list has no credential hashes');
});

t.test('healthz is public; unknown routes are JSON 404s', async (t) => {
  const f = await fixture(t, { tokens: ['x'] });
  const res = await f.app.inject({ method: 'GET', url: '/healthz' });
  t.equal(res.statusCode, 200);
  t.match(res.json(), { ok: true, version: '9.9.9', tunnels: 0 });
  const missing = await f.app.inject({ method: 'GET', url: '/nope?x=1' });
  t.equal(missing.statusCode, 404);
  t.match(missing.json(), { code: 'QT_ERR_NOT_FOUND', message: 'no route GET /nope' });
});

t.test('/metrics is strict Prometheus text and follows the counters', async (t) => {
  const f = await fixture(t, { adminTokens: ['admin-secret'] });
  const scrape = async () => {
    const res = await f.app.inject({
      method: 'GET',
      url: '/metrics',
      headers: bearer('admin-secret'),
    });
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    return parsePrometheusText(res.body);
  };
  const before = await scrape();
  for (const [name, type] of [
    ['quick_tunnel_tunnels_connected', 'gauge'],
    ['quick_tunnel_connections', 'gauge'],
    ['quick_tunnel_streams_open', 'gauge'],
    ['quick_tunnel_named_tunnels', 'gauge'],
    ['quick_tunnel_requests_total', 'counter'],
    ['quick_tunnel_bytes_in_total', 'counter'],
    ['quick_tunnel_bytes_out_total', 'counter'],
    ['quick_tunnel_connection_events_total', 'counter'],
  ] as const) {
    t.equal(before.get(name)?.type, type, `${name} is a ${type}`);
    t.ok(before.get(name)?.help, `${name} has help`);
  }
  t.equal(sampleValue(before, 'quick_tunnel_requests_total', { status_class: '2xx' }), 0);

  f.deps.stats.request({ status: 200, bytesIn: 10, bytesOut: 100 });
  f.deps.stats.request({ status: 204, bytesIn: 0, bytesOut: 0 });
  f.deps.stats.request({ status: 502, bytesIn: 5, bytesOut: 50 });
  f.deps.stats.connection('registered');
  f.deps.stats.connection('rejected');
  await f.app.inject({ method: 'POST', url: '/api/tunnels', payload: { name: 'counted' } });
  const s = new FakeSession();
  f.registry.attach('counted', 'id', 'named', s as unknown as MuxSession);
  s.streamCount = 3;

  const after = await scrape();
  t.equal(sampleValue(after, 'quick_tunnel_requests_total', { status_class: '2xx' }), 2);
  t.equal(sampleValue(after, 'quick_tunnel_requests_total', { status_class: '5xx' }), 1);
  t.equal(sampleValue(after, 'quick_tunnel_bytes_in_total'), 15);
  t.equal(sampleValue(after, 'quick_tunnel_bytes_out_total'), 150);
  t.equal(sampleValue(after, 'quick_tunnel_connection_events_total', { event: 'registered' }), 1);
  t.equal(sampleValue(after, 'quick_tunnel_connection_events_total', { event: 'rejected' }), 1);
  t.equal(sampleValue(after, 'quick_tunnel_tunnels_connected', { kind: 'named' }), 1);
  t.equal(sampleValue(after, 'quick_tunnel_connections', { kind: 'named' }), 1);
  t.equal(sampleValue(after, 'quick_tunnel_streams_open'), 3);
  t.equal(sampleValue(after, 'quick_tunnel_named_tunnels'), 1);
  s.close();
});

t.test('the strict parser refuses what Prometheus refuses', async (t) => {
  const bad = [
    'no_newline 1',
    'bad-name 1\n',
    'x{a="1} 1\n',
    'x{a="\\q"} 1\n',
    'x one\n',
    'x 1\nx 2\n',
    '# TYPE x counter\nx -1\n',
    'x 1\n# TYPE x gauge\n',
    '# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx{a="b"} 2\n',
  ];
  for (const text of bad) t.throws(() => parsePrometheusText(text), JSON.stringify(text));
  const ok = parsePrometheusText(
    '# HELP x a \\\\ help\n# TYPE x gauge\nx{a="q\\"uote",b="n\\nl"} +Inf 123\n\n',
  );
  t.same(ok.get('x')?.samples[0]?.labels, { a: 'q"uote', b: 'n\nl' });
});

t.test('real traffic through a relay moves the counters', async (t) => {
  const env = await startTestRelay(t, { adminTokens: ['admin-secret'], holdMs: 0 });
  const { port } = await startOrigin(t, (req, res) => {
    req.resume();
    req.on('end', () => res.end('0123456789'));
  });
  const scrape = async () => {
    const res = await visit(env, TEST_DOMAIN, {
      path: '/metrics',
      headers: bearer('admin-secret'),
    });
    t.equal(res.status, 200);
    return parsePrometheusText(res.body.toString('utf8'));
  };
  const before = await scrape();
  const tunnel = await connectTunnel(t, env, String(port));
  for (let i = 0; i < 3; i++) {
    const res = await visit(env, tunnel.hostname, { method: 'POST', body: 'abcde' });
    t.equal(res.status, 200);
  }
  const after = await scrape();
  const delta = (name: string, labels: Record<string, string> = {}) =>
    (sampleValue(after, name, labels) ?? NaN) - (sampleValue(before, name, labels) ?? 0);
  t.equal(delta('quick_tunnel_requests_total', { status_class: '2xx' }), 3);
  t.equal(delta('quick_tunnel_bytes_in_total'), 15);
  t.equal(delta('quick_tunnel_bytes_out_total'), 30);
  t.equal(delta('quick_tunnel_connection_events_total', { event: 'registered' }), 1);
  t.equal(sampleValue(after, 'quick_tunnel_tunnels_connected', { kind: 'ephemeral' }), 1);
});
