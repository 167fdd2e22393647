/**
 * Store-and-forward (relay/queue/) over real sockets: a relay with a data dir, a named
 * tunnel that opted in, visitors over HTTPS and a real tunnel client + origin. Kept
 * while offline (202 + delivery id), refused with a page that names the reason (too
 * large, queue full, storage full, expired), GET still 503, access rules before
 * anything is kept, delivery in order with the delivery headers, retries then failed,
 * purge.
 */
import { existsSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import t, { type Test } from 'tap';
import { basicAuthDigest } from '../../shared/access.js';
import type { RelayConfig } from '../../relay/index.js';
import {
  connectTunnel,
  startOrigin,
  startTestRelay,
  visit,
  type TestRelay,
} from '../helpers/relay-env.js';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** An origin that records every request and answers `status()` (200 by default). */
async function recordingOrigin(
  t: Test,
  status: () => number = () => 200,
): Promise<{ port: number; seen: Seen[]; next: (n: number) => Promise<void> }> {
  const seen: Seen[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const { port } = await startOrigin(t, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks),
      });
      for (const w of [...waiters]) {
        if (seen.length >= w.n) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
      res.statusCode = status();
      res.end('ok');
    });
  });
  return {
    port,
    seen,
    next: (n) =>
      seen.length >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve })),
  };
}

/** A relay whose log lines are kept in `lines`. */
async function relayWithLog(
  t: Test,
  overrides: Partial<RelayConfig>,
): Promise<{ env: TestRelay; lines: Record<string, unknown>[] }> {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l !== '') lines.push(JSON.parse(l));
      cb();
    },
  });
  const env = await startTestRelay(t, {
    holdMs: 0,
    logger: pino({ level: 'info' }, sink),
    ...overrides,
  });
  return { env, lines };
}

async function api(
  env: TestRelay,
  method: string,
  path: string,
  credential: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const data = body === undefined ? undefined : JSON.stringify(body);
  const res = await visit(env, env.url.hostname, {
    method,
    path,
    headers: {
      authorization: `Bearer ${credential}`,
      ...(data !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(data !== undefined ? { body: data } : {}),
  });
  return {
    status: res.status,
    json: JSON.parse(res.body.toString('utf8')) as Record<string, unknown>,
  };
}

/** Polls the queue view until `check` passes (bounded). */
async function queueUntil(
  env: TestRelay,
  name: string,
  credential: string,
  check: (v: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>> {
  for (let i = 0; i < 400; i++) {
    const { json } = await api(env, 'GET', `/api/tunnels/${name}/queue`, credential);
    if (check(json)) return json;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`queue of ${name} never reached the expected state`);
}

t.test('kept while offline, refused with a reason, delivered in order', async (t) => {
  const { env } = await relayWithLog(t, {
    queue: { maxBodyBytes: 2048, maxItems: 5 },
    adminTokens: ['admin-secret'],
  });
  const { credential } = await env.relay.named.create('hooks', { queue: true });
  await env.relay.named.create('plain');
  const hooks = env.relay.named.hostname('hooks');
  const origin = await recordingOrigin(t);

  const bodies = [
    Buffer.from('{"n":1}'),
    Buffer.from([0, 1, 2, 255, 254, 13, 10, 0]),
    Buffer.from('third'),
    Buffer.alloc(2048, 7), // exactly the limit
  ];
  const methods = ['POST', 'PUT', 'PATCH', 'DELETE'];
  const ids: string[] = [];
  for (const [i, body] of bodies.entries()) {
    const res = await visit(env, hooks, {
      method: methods[i]!,
      path: `/hook/${i}?q=a%20b`,
      headers: { 'x-signature': `sig-${i}`, 'X-Mixed-Case': 'Value' },
      body,
    });
    t.equal(res.status, 202, `${methods[i]} kept`);
    const json = JSON.parse(res.body.toString('utf8')) as { deliveryId: string; queued: boolean };
    t.equal(json.queued, true);
    t.equal(res.headers['x-quick-tunnel-delivery-id'], json.deliveryId);
    ids.push(json.deliveryId);
  }

  const get = await visit(env, hooks, { path: '/hook' });
  t.equal(get.status, 503, 'GET while offline is still 503');
  t.equal(get.headers['x-quick-tunnel-queue'], undefined, '... the plain offline page');
  const head = await visit(env, hooks, { method: 'HEAD', path: '/hook' });
  t.equal(head.status, 503, 'HEAD too');

  const plain = await visit(env, env.relay.named.hostname('plain'), {
    method: 'POST',
    body: 'x',
  });
  t.not(plain.status, 202, 'a tunnel that did not opt in keeps nothing');
  t.ok(plain.status === 503 || plain.status === 404, '... and answers as offline');

  const big = await visit(env, hooks, {
    method: 'POST',
    body: Buffer.alloc(2049, 1),
    headers: { accept: 'text/html' },
  });
  t.equal(big.status, 503, 'too large: 503');
  t.equal(big.headers['x-quick-tunnel-queue'], 'too-large');
  t.match(big.body.toString(), /too large to keep/);

  // Chunked (no Content-Length) over the limit is found while reading.
  const chunked = await new Promise<number>((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: env.httpPort,
      method: 'POST',
      path: '/chunked',
      headers: { host: hooks, 'transfer-encoding': 'chunked' },
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.write(Buffer.alloc(1500, 2));
    req.end(Buffer.alloc(1500, 3));
  });
  t.equal(chunked, 503, 'a chunked body over the limit: 503');

  const fifth = await visit(env, hooks, { method: 'POST', path: '/fifth', body: 'five' });
  t.equal(fifth.status, 202, 'the fifth fits');
  ids.push((JSON.parse(fifth.body.toString()) as { deliveryId: string }).deliveryId);
  const full = await visit(env, hooks, { method: 'POST', path: '/sixth', body: 'six' });
  t.equal(full.status, 503, 'queue full: 503');
  t.equal(full.headers['x-quick-tunnel-queue'], 'full');
  t.match(full.body.toString(), /queue full/);

  const view = await api(env, 'GET', '/api/tunnels/hooks/queue', credential);
  t.equal(view.status, 200);
  t.match(view.json, { name: 'hooks', enabled: true, connected: false, waiting: 5, failed: 0 });
  t.same(
    (view.json['items'] as { deliveryId: string }[]).map((i) => i.deliveryId),
    ids,
    'listed in arrival order',
  );
  const metrics = await visit(env, env.url.hostname, {
    path: '/metrics',
    headers: { authorization: 'Bearer admin-secret' },
  });
  t.match(metrics.body.toString(), /quick_tunnel_queue_requests\{state="waiting"\} 5/);
  t.match(metrics.body.toString(), /quick_tunnel_queue_bytes [1-9]\d*/);
  const nobody = await api(env, 'GET', '/api/tunnels/hooks/queue', 'qtc_wrong');
  t.equal(nobody.status, 401, 'the queue is the owner’s only');

  const client = await connectTunnel(t, env, String(origin.port), {
    named: { name: 'hooks', credential },
  });
  await origin.next(5);
  t.same(
    origin.seen.map((s) => s.headers['x-quick-tunnel-delivery-id']),
    ids,
    'delivered once each, in arrival order',
  );
  for (const [i, body] of bodies.entries()) {
    const s = origin.seen[i]!;
    t.equal(s.method, methods[i]);
    t.equal(s.url, `/hook/${i}?q=a%20b`);
    t.ok(s.body.equals(body), `body ${i} byte-identical`);
    t.equal(s.headers['x-signature'], `sig-${i}`);
    t.equal(s.headers['x-mixed-case'], 'Value');
    t.match(s.headers['x-quick-tunnel-queued-at'], /^\d{4}-\d\d-\d\dT/);
  }
  await queueUntil(env, 'hooks', credential, (v) => v['waiting'] === 0);
  const queuedEvents = client.events.filter((e) => e.event === 'request' && e.queued !== undefined);
  t.equal(queuedEvents.length, 5, 'the CLI marks deliveries from the queue in its events');

  // Online now: requests pass live, with any spoofed delivery headers removed.
  const live = await visit(env, hooks, {
    method: 'POST',
    path: '/live',
    body: 'live',
    headers: { 'x-quick-tunnel-delivery-id': 'forged' },
  });
  t.equal(live.status, 200);
  await origin.next(6);
  t.equal(origin.seen[5]!.headers['x-quick-tunnel-delivery-id'], undefined, 'forged id dropped');
});

t.test('access rules apply before anything is kept, also after a relay restart', async (t) => {
  const { env: before } = await relayWithLog(t, {});
  const { credential, record } = await before.relay.named.create('locked', { queue: true });
  const origin = await recordingOrigin(t);
  const access = { basicAuthSha256: basicAuthDigest('me:secret') };
  const first = await connectTunnel(t, before, String(origin.port), {
    named: { name: 'locked', credential },
    access,
  });
  // The rules of the tunnel's last connection are kept on disk with its queue.
  const accessFile = path.join(before.dataDir, 'queue', record.id, 'access.json');
  for (let i = 0; i < 200 && !existsSync(accessFile); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  t.ok(existsSync(accessFile), 'access rules saved');
  await first.supervisor.stop(100);
  await before.relay.close(100);
  const { env } = await relayWithLog(t, { dataDir: before.dataDir });
  const host = env.relay.named.hostname('locked');

  const anonymous = await visit(env, host, { method: 'POST', body: 'x' });
  t.equal(anonymous.status, 401, 'no password: 401, not kept');
  const auth = `Basic ${Buffer.from('me:secret').toString('base64')}`;
  const kept = await visit(env, host, {
    method: 'POST',
    path: '/ok',
    body: 'y',
    headers: { authorization: auth },
  });
  t.equal(kept.status, 202, 'with the password: kept');
  const view = await api(env, 'GET', '/api/tunnels/locked/queue', credential);
  t.equal(view.json['waiting'], 1, 'only the authorised one is kept');

  await connectTunnel(t, env, String(origin.port), {
    named: { name: 'locked', credential },
    access,
  });
  await origin.next(1);
  t.equal(origin.seen[0]!.url, '/ok');
  t.equal(origin.seen[0]!.headers.authorization, undefined, 'the tunnel password is not passed on');
});

t.test('5xx is retried, then kept as failed; purge clears it', async (t) => {
  const { env, lines } = await relayWithLog(t, {
    queue: { maxAttempts: 3, retryBaseMs: 20, retryMaxMs: 40 },
  });
  const { credential } = await env.relay.named.create('flaky', { queue: true });
  let answers = 0;
  const origin = await recordingOrigin(t, () => (++answers === 2 ? 200 : 500));
  const host = env.relay.named.hostname('flaky');
  t.equal((await visit(env, host, { method: 'POST', path: '/a', body: 'a' })).status, 202);
  t.equal((await visit(env, host, { method: 'POST', path: '/b', body: 'b' })).status, 202);
  await connectTunnel(t, env, String(origin.port), { named: { name: 'flaky', credential } });
  // /a: 500, then 200 → delivered. /b: 500 ×3 → failed.
  const view = await queueUntil(env, 'flaky', credential, (v) => v['failed'] === 1);
  t.equal(view['waiting'], 0);
  const [item] = view['items'] as {
    path: string;
    state: string;
    attempts: number;
    failed: { reason: string; lastStatus: number };
  }[];
  t.match(item, {
    path: '/b',
    state: 'failed',
    attempts: 3,
    failed: { reason: 'attempts', lastStatus: 500 },
  });
  t.same(
    origin.seen.map((s) => s.url),
    ['/a', '/a', '/b', '/b', '/b'],
    'same item retried before the next (order kept)',
  );
  t.equal(
    new Set(origin.seen.slice(0, 2).map((s) => s.headers['x-quick-tunnel-delivery-id'])).size,
    1,
    'a retry carries the same delivery id',
  );
  t.ok(
    lines.some((l) => l['event'] === 'queue-failed'),
    'a failed item is logged',
  );
  const purged = await api(env, 'DELETE', '/api/tunnels/flaky/queue?which=failed', credential);
  t.same(purged.json, { purged: 1 });
  t.match((await api(env, 'GET', '/api/tunnels/flaky/queue', credential)).json, {
    waiting: 0,
    failed: 0,
    items: [],
  });
});

t.test('age limit: an old request is not delivered, and says so', async (t) => {
  const { env } = await relayWithLog(t, { queue: { maxAgeMs: 300 } });
  const { credential } = await env.relay.named.create('slow', { queue: true });
  const host = env.relay.named.hostname('slow');
  t.equal((await visit(env, host, { method: 'POST', path: '/old', body: 'old' })).status, 202);
  // The age limit is about time passing: list until the request has expired (bounded).
  const expired = await queueUntil(env, 'slow', credential, (v) => v['failed'] === 1);
  t.match(expired['items'], [
    {
      path: '/old',
      state: 'failed',
      failed: { reason: 'expired', message: /not delivered within 300 ms/ },
    },
  ]);
  t.equal(expired['waiting'], 0);
  const origin = await recordingOrigin(t);
  await connectTunnel(t, env, String(origin.port), { named: { name: 'slow', credential } });
  const live = await visit(env, host, { method: 'POST', path: '/live', body: 'live' });
  t.equal(live.status, 200, 'online: live');
  t.same(
    origin.seen.map((s) => s.url),
    ['/live'],
    'the expired request is never delivered',
  );
  const view = await queueUntil(env, 'slow', credential, () => true);
  t.match(view['items'], [{ path: '/old', state: 'failed' }], 'still listed, purgeable');
});

t.test('relay-wide disk cap: 503 and a log line, the queue intact', async (t) => {
  const { env, lines } = await relayWithLog(t, { queue: { diskCapBytes: 1200 } });
  const { credential } = await env.relay.named.create('tiny', { queue: true });
  const host = env.relay.named.hostname('tiny');
  t.equal((await visit(env, host, { method: 'POST', path: '/1', body: 'one' })).status, 202);
  const refused = await visit(env, host, { method: 'POST', path: '/2', body: Buffer.alloc(900) });
  t.equal(refused.status, 503);
  t.equal(refused.headers['x-quick-tunnel-queue'], 'storage-full');
  t.ok(
    lines.some((l) => l['event'] === 'queue-refused' && l['reason'] === 'storage-full'),
    'logged',
  );
  const origin = await recordingOrigin(t);
  await connectTunnel(t, env, String(origin.port), { named: { name: 'tiny', credential } });
  await origin.next(1);
  t.same(
    origin.seen.map((s) => s.url),
    ['/1'],
    'what was kept is delivered',
  );
});

t.test('turned on and off later; a deleted tunnel takes its queue along', async (t) => {
  const { env } = await relayWithLog(t, {});
  const { credential } = await env.relay.named.create('later');
  const host = env.relay.named.hostname('later');
  t.not((await visit(env, host, { method: 'POST', body: 'x' })).status, 202, 'off by default');
  const on = await api(env, 'PATCH', '/api/tunnels/later', credential, { queue: true });
  t.equal(on.status, 200);
  t.equal(on.json['queue'], true);
  t.equal((await visit(env, host, { method: 'POST', body: 'x' })).status, 202, 'on');
  const bad = await api(env, 'PATCH', '/api/tunnels/later', credential, { queue: 'yes' });
  t.equal(bad.status, 400, 'a bad body is refused');
  const off = await api(env, 'PATCH', '/api/tunnels/later', credential, { queue: false });
  t.equal(off.json['queue'], false);
  t.not((await visit(env, host, { method: 'POST', body: 'x' })).status, 202, 'off again');
  const del = await api(env, 'DELETE', '/api/tunnels/later', credential);
  t.equal(del.status, 200);
  const again = await env.relay.named.create('later', { queue: true });
  const view = await api(env, 'GET', '/api/tunnels/later/queue', again.credential);
  t.equal(view.json['waiting'], 0, 'a new owner of the name gets an empty queue');
});

t.test('over HTTP/2 too', async (t) => {
  const { env } = await relayWithLog(t, { queue: { maxBodyBytes: 100 } });
  const { credential } = await env.relay.named.create('h2hooks', { queue: true });
  const host = env.relay.named.hostname('h2hooks');
  const client = http2.connect(`https://${host}:${env.httpsPort}`, {
    ca: env.ca,
    lookup: (_h, _o, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]),
  });
  t.teardown(() => client.close());
  const h2 = (method: string, body?: Buffer): Promise<{ status: number; queue: unknown }> =>
    new Promise((resolve, reject) => {
      const req = client.request({ ':method': method, ':path': '/h2', 'x-sig': 'abc' });
      req.on('response', (headers) => {
        req.resume();
        req.on('end', () =>
          resolve({ status: Number(headers[':status']), queue: headers['x-quick-tunnel-queue'] }),
        );
      });
      req.on('error', reject);
      req.end(body);
    });
  t.same(await h2('POST', Buffer.from('over h2')), { status: 202, queue: undefined }, 'kept');
  t.equal((await h2('GET')).status, 503, 'GET: 503');
  t.same(await h2('POST', Buffer.alloc(101)), { status: 503, queue: 'too-large' }, 'too large');
  const origin = await recordingOrigin(t);
  await connectTunnel(t, env, String(origin.port), { named: { name: 'h2hooks', credential } });
  await origin.next(1);
  t.equal(origin.seen[0]!.body.toString(), 'over h2');
  t.equal(origin.seen[0]!.headers['x-sig'], 'abc');
});
