/**
 * The web inspector's server in-process, over real loopback sockets: the JSON API, the
 * Host check (DNS rebinding), the page token on state-changing calls, replay (with
 * edits) reaching a real origin, clear, the live event stream, and the next free port.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { startInspector, type InspectorHandle } from '../../cli/inspector/server.js';
import { OriginProxy } from '../../cli/origin/proxy.js';
import { replayRequest } from '../../cli/origin/replay.js';
import { parseTarget } from '../../cli/origin/target.js';
import { TuiStore } from '../../cli/ui/tui/store.js';
import { exchange, makeStore, ready } from '../helpers/tui.js';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

async function startRecordingOrigin(t: Test) {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ok: true, n: seen.length }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { seen, port: (server.address() as AddressInfo).port };
}

async function setup(t: Test, port = 0) {
  const origin = await startRecordingOrigin(t);
  const proxy = new OriginProxy({ target: parseTarget(`127.0.0.1:${origin.port}`) });
  t.teardown(() => proxy.close());
  const { store } = makeStore();
  ready(store);
  exchange(store, 1, {
    method: 'POST',
    url: '/hooks/stripe?x=1',
    headers: [
      ['Host', 'k3mzq7x2ab.qt.localhost'],
      ['Content-Type', 'application/json'],
      ['Stripe-Signature', 't=1,v1=abc'],
    ],
    body: '{"type":"invoice.paid","amount":1200}',
    status: 200,
    responseHeaders: [['content-type', 'text/plain']],
    responseBody: 'thanks',
  });
  const inspector = await startInspector({
    tunnels: [
      {
        store,
        replay: (capture, edits) =>
          replayRequest(proxy, capture, edits === undefined ? {} : { edits }),
      },
    ],
    port,
  });
  t.teardown(() => inspector.close());
  return { store, inspector, origin };
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json: () => Record<string, unknown>;
}

function call(
  inspector: InspectorHandle,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: inspector.port,
        method,
        path,
        headers: { host: `127.0.0.1:${inspector.port}`, ...options.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString();
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            json: () => JSON.parse(body) as Record<string, unknown>,
          });
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

t.test('the API lists the tunnel and the captured requests', async (t) => {
  const { inspector } = await setup(t);
  t.match(inspector.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const tunnels = await call(inspector, 'GET', '/api/tunnels');
  t.equal(tunnels.status, 200);
  t.match(tunnels.json(), {
    tunnels: [
      {
        name: 'k3mzq7x2ab',
        public_url: 'https://k3mzq7x2ab.qt.localhost:8443',
        proto: 'https',
        target: 'localhost:3000',
        config: { addr: 'localhost:3000' },
        status: 'online',
      },
    ],
  });
  t.notOk(tunnels.headers['access-control-allow-origin'], 'no CORS');
  t.match(tunnels.headers['content-security-policy'], /default-src 'none'/);

  const list = await call(inspector, 'GET', '/api/requests');
  t.match(list.json(), {
    requests: [{ id: 1, method: 'POST', path: '/hooks/stripe?x=1', status: 200, replay_of: null }],
  });
  const one = (await call(inspector, 'GET', '/api/requests/1')).json() as {
    capture: { request: { body: { base64: string; content_type: string } } };
    curl: string;
  };
  t.equal(
    Buffer.from(one.capture.request.body.base64, 'base64').toString(),
    '{"type":"invoice.paid","amount":1200}',
  );
  t.equal(one.capture.request.body.content_type, 'application/json');
  t.match(one.curl, /^curl 'https:\/\/k3mzq7x2ab\.qt\.localhost:8443\/hooks\/stripe\?x=1'/);
  t.match(one.curl, /--data-binary '\{"type":"invoice\.paid","amount":1200\}'/);

  const missing = await call(inspector, 'GET', '/api/requests/99');
  t.equal(missing.status, 404);
  t.match(missing.json(), { error: /no request 99/ });
  t.equal((await call(inspector, 'GET', '/api/nothing')).status, 404);

  const page = await call(inspector, 'GET', '/');
  t.equal(page.status, 200);
  t.match(page.body, `<meta name="qt-token" content="${inspector.token}"`);
  for (const asset of ['/inspector.js', '/inspector.css', '/favicon.svg']) {
    t.equal((await call(inspector, 'GET', asset)).status, 200, asset);
  }
});

t.test('a foreign Host header gets 403 (DNS rebinding)', async (t) => {
  const { inspector } = await setup(t);
  const port = inspector.port;
  for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`]) {
    const ok = await call(inspector, 'GET', '/api/tunnels', { headers: { host } });
    t.equal(ok.status, 200, host);
  }
  for (const host of [
    `evil.example:${port}`,
    `localhost.evil.example:${port}`,
    'localhost',
    `127.0.0.1:${port + 1}`,
    `127.0.0.2:${port}`,
  ]) {
    const res = await call(inspector, 'GET', '/api/requests/1', { headers: { host } });
    t.equal(res.status, 403, host);
    t.notMatch(res.body, /invoice/, 'nothing captured leaks');
  }
  const page = await call(inspector, 'GET', '/', { headers: { host: `evil.example:${port}` } });
  t.equal(page.status, 403);
  t.notMatch(page.body, new RegExp(inspector.token), 'the token does not leak');
});

t.test('replay needs the page token; with it, edits reach the origin', async (t) => {
  const { inspector, origin, store } = await setup(t);
  const token = { 'x-quick-tunnel-token': inspector.token };

  const refused = [
    await call(inspector, 'POST', '/api/requests/1/replay'),
    await call(inspector, 'POST', '/api/requests/1/replay', {
      headers: { 'x-quick-tunnel-token': 'guess' },
    }),
    await call(inspector, 'POST', '/api/requests/1/replay', {
      headers: { ...token, origin: 'http://evil.example' },
    }),
    // A CORS preflight gets no permission.
    await call(inspector, 'OPTIONS', '/api/requests/1/replay', {
      headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' },
    }),
  ];
  for (const res of refused) {
    t.equal(res.status, 403);
    t.notOk(res.headers['access-control-allow-origin']);
  }
  t.match(refused[0]!.json(), { error: /needs the page's token/ });
  t.equal(origin.seen.length, 0, 'nothing reached the origin');
  t.equal(store.rowCount, 1, 'no replay row');

  const plain = await call(inspector, 'POST', '/api/requests/1/replay', { headers: token });
  t.equal(plain.status, 200);
  t.match(plain.json(), { id: 2, replay_of: 1, edited: false, status: 200, label: 'replay of #1' });
  t.equal(origin.seen.length, 1);
  t.match(origin.seen[0], {
    method: 'POST',
    url: '/hooks/stripe?x=1',
    body: '{"type":"invoice.paid","amount":1200}',
  });
  t.equal(origin.seen[0]!.headers['stripe-signature'], 't=1,v1=abc');

  const edited = await call(inspector, 'POST', '/api/requests/1/replay', {
    headers: { ...token, 'content-type': 'application/json' },
    body: JSON.stringify({
      method: 'PUT',
      path: '/hooks/edited',
      headers: [
        ['Content-Type', 'application/json'],
        ['X-Edited', 'yes'],
      ],
      body: '{"type":"invoice.failed"}',
    }),
  });
  t.equal(edited.status, 200);
  t.match(edited.json(), {
    id: 3,
    replay_of: 1,
    edited: true,
    method: 'PUT',
    path: '/hooks/edited',
  });
  t.match(origin.seen[1], {
    method: 'PUT',
    url: '/hooks/edited',
    body: '{"type":"invoice.failed"}',
  });
  t.equal(origin.seen[1]!.headers['x-edited'], 'yes');
  t.equal(origin.seen[1]!.headers['content-length'], '25', 'length recomputed');
  t.notOk(origin.seen[1]!.headers['stripe-signature'], 'headers replaced as edited');

  for (const [body, error] of [
    ['not json', /not valid JSON/],
    ['{"method":"GE T"}', /method must be/],
    ['{"path":"no-slash"}', /path must start with \//],
    ['{"headers":[["X-A","a\\r\\nInjected: 1"]]}', /line break/],
    ['{"headers":[["bad name","x"]]}', /not a valid header name/],
    ['{"bodyy":"x"}', /unknown field 'bodyy'/],
  ] as const) {
    const res = await call(inspector, 'POST', '/api/requests/1/replay', { headers: token, body });
    t.equal(res.status, 400, body);
    t.match(res.json(), { error }, body);
  }
  t.equal(origin.seen.length, 2, 'bad edits sent nothing');
  const gone = await call(inspector, 'POST', '/api/requests/42/replay', { headers: token });
  t.equal(gone.status, 404);
});

t.test('clear needs the token and empties the shared store', async (t) => {
  const { inspector, store } = await setup(t);
  t.equal((await call(inspector, 'DELETE', '/api/requests')).status, 403);
  t.equal(store.rowCount, 1);
  const res = await call(inspector, 'DELETE', '/api/requests', {
    headers: { 'x-quick-tunnel-token': inspector.token },
  });
  t.equal(res.status, 204);
  t.equal(store.rowCount, 0, 'the TUI store is the same store');
  t.same((await call(inspector, 'GET', '/api/requests')).json()['requests'], []);
});

t.test('the live stream sends a snapshot, then new requests and a queue marker', async (t) => {
  const { inspector, store } = await setup(t);
  const req = http.get({
    host: '127.0.0.1',
    port: inspector.port,
    path: '/api/events',
    headers: { host: `localhost:${inspector.port}` },
  });
  const [res] = (await once(req, 'response')) as [http.IncomingMessage];
  t.teardown(() => req.destroy());
  t.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8');
  let buffer = '';
  const events: { event: string; data: unknown }[] = [];
  const waiters: (() => void)[] = [];
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => {
    buffer += chunk;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event !== undefined && data !== undefined) {
        events.push({ event, data: JSON.parse(data) });
      }
      for (const w of waiters.splice(0)) w();
    }
  });
  const next = async (name: string): Promise<unknown> => {
    for (let i = 0; i < 50; i++) {
      const hit = events.findIndex((e) => e.event === name);
      if (hit >= 0) return events.splice(hit, 1)[0]!.data;
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 200).unref();
      });
    }
    throw new Error(`no ${name} event`);
  };
  t.match(await next('snapshot'), { tunnels: [{ status: 'online' }], requests: [{ id: 1 }] });
  exchange(store, 2, {
    method: 'POST',
    url: '/queued',
    headers: [
      ['X-Quick-Tunnel-Delivery-Id', 'dlv_7'],
      ['X-Quick-Tunnel-Queued-At', '2026-12-07T03:00:00.000Z'],
    ],
    body: 'x',
    status: 200,
  });
  t.match(await next('requests'), [
    {
      id: 2,
      path: '/queued',
      queued: { delivery_id: 'dlv_7', queued_at: '2026-12-07T03:00:00.000Z' },
    },
  ]);
  // The relay's own mark on the request head (what the TUI shows too).
  const queued = { deliveryId: 'd-9', queuedAt: '2026-12-07T02:00:00.000Z' };
  const base = { id: 3, method: 'POST', path: '/from-queue', upgrade: false, queued };
  store.onEvent({ event: 'request-start', ...base });
  store.onEvent({
    event: 'request',
    ...base,
    status: 200,
    durationMs: 3,
    bytesIn: 1,
    bytesOut: 2,
  });
  t.match(await next('requests'), [
    { id: 3, queued: { delivery_id: 'd-9', queued_at: '2026-12-07T02:00:00.000Z' } },
  ]);
  store.clear();
  t.match(await next('snapshot'), { requests: [] });
});

t.test('a taken port moves the inspector to the next free one', async (t) => {
  const blocker = http.createServer();
  blocker.listen(0, '127.0.0.1');
  await once(blocker, 'listening');
  t.teardown(() => blocker.close());
  const taken = (blocker.address() as AddressInfo).port;
  const { inspector } = await setup(t, taken);
  t.not(inspector.port, taken);
  t.equal(inspector.url, `http://127.0.0.1:${inspector.port}`);
  const res = await call(inspector, 'GET', '/api/tunnels');
  t.equal(res.status, 200, 'it answers on the port it took');
});

t.test(
  'several tunnels (quick-tunnel start): one list, unique ids, replay to the right one',
  async (t) => {
    let nextKey = 1;
    const tunnels = ['web', 'hooks'].map((name) => {
      const store = new TuiStore({ nextKey: () => nextKey++ });
      store.onEvent({
        event: 'ready',
        url: `https://${name}.qt.localhost:8443`,
        urls: [`https://${name}.qt.localhost:8443`],
        hostname: `${name}.qt.localhost`,
        kind: 'named',
        relay: 'qt.localhost:8443',
        target: 'localhost:3000',
        local: false,
        connections: 1,
        tunnel: name,
      });
      const replayed: string[] = [];
      return { name, store, replayed };
    });
    const [web, hooks] = tunnels as [(typeof tunnels)[0], (typeof tunnels)[0]];
    // Each proxy numbers its requests from 1: the store keys stay unique anyway.
    exchange(web.store, 1, { method: 'GET', url: '/page', status: 200 });
    exchange(hooks.store, 1, { method: 'POST', url: '/hook', body: 'x', status: 202 });
    exchange(web.store, 2, { method: 'GET', url: '/page2', status: 200 });
    const inspector = await startInspector({
      tunnels: tunnels.map((tn) => ({
        store: tn.store,
        name: tn.name,
        replay: async (capture) => {
          tn.replayed.push(capture.request.url);
          return { capture, status: 200, durationMs: 1, bytesIn: 0, bytesOut: 0 };
        },
      })),
      port: 0,
    });
    t.teardown(() => inspector.close());

    t.match((await call(inspector, 'GET', '/api/tunnels')).json(), {
      tunnels: [
        { name: 'web', public_url: 'https://web.qt.localhost:8443' },
        { name: 'hooks', public_url: 'https://hooks.qt.localhost:8443' },
      ],
    });
    const list = (await call(inspector, 'GET', '/api/requests')).json()['requests'] as {
      id: number;
      tunnel_name: string;
      path: string;
    }[];
    t.same(
      list.map((r) => [r.id, r.tunnel_name, r.path]),
      [
        [3, 'web', '/page2'],
        [2, 'hooks', '/hook'],
        [1, 'web', '/page'],
      ],
      'newest first, over both tunnels, ids unique',
    );
    const only = (await call(inspector, 'GET', '/api/requests?tunnel=hooks')).json();
    t.match(only, { requests: [{ id: 2, tunnel_name: 'hooks' }] });
    t.equal((only['requests'] as unknown[]).length, 1);
    t.match((await call(inspector, 'GET', '/api/requests/2')).json(), { tunnel_name: 'hooks' });

    const token = { 'x-quick-tunnel-token': inspector.token };
    const res = await call(inspector, 'POST', '/api/requests/2/replay', { headers: token });
    t.match(res.json(), { id: 4, tunnel_name: 'hooks', replay_of: 2 });
    t.same(hooks.replayed, ['/hook'], 'replayed through its own tunnel');
    t.same(web.replayed, []);
    t.equal(hooks.store.rowCount, 2, 'the replay row is in that tunnel');

    const cleared = await call(inspector, 'DELETE', '/api/requests?tunnel=web', { headers: token });
    t.equal(cleared.status, 204);
    t.equal(web.store.rowCount, 0);
    t.equal(hooks.store.rowCount, 2, 'the other tunnel keeps its list');
  },
);
