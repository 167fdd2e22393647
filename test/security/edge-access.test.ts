/**
 * Per-tunnel visitor access control and limits, enforced at the relay before anything
 * reaches the laptop (test plan A3, A4, S2, F): --basic-auth (401 with a realm; the
 * app never sees the Authorization header; the credentials appear in no log line and
 * no CLI event), --allow-ip (403, IPv4 and IPv6), the per-tunnel request rate (429 +
 * Retry-After) and the tunnel's concurrent-stream limit (503). Denied visitors put 0
 * requests on the tunnel.
 */
import net from 'node:net';
import t from 'tap';
import { OriginProxy } from '../../cli/origin/proxy.js';
import { parseTarget } from '../../cli/origin/target.js';
import { handshake } from '../../cli/tunnel/client.js';
import { memoryTransportPair } from '../../shared/mux/transport.js';
import { basicAuthDigest } from '../../shared/access.js';
import { FrameType } from '../../shared/protocol/frame.js';
import { connectTunnel, startTestRelay } from '../helpers/relay-env.js';
import {
  bodyOf,
  captureLogger,
  get,
  headerOf,
  rawRequest,
  rawTunnelClient,
  startControl,
  startRecordingOrigin,
} from '../helpers/hostile.js';
import { delay } from '../helpers/wait.js';

const USER = 'demo';
const PASSWORD = 'hunter2-Pl4nted-Secret';
const basic = (userPass: string): string => `Basic ${Buffer.from(userPass).toString('base64')}`;

t.test('basic auth: 401 with a realm, credentials never forwarded or logged', async (t) => {
  const { logger, lines } = captureLogger();
  const env = await startTestRelay(t, { logger });
  const control = await startControl(t, env);
  const origin = await startRecordingOrigin(t);
  const digest = basicAuthDigest(`${USER}:${PASSWORD}`);
  const tunnel = await connectTunnel(t, env, String(origin.port), {
    access: { basicAuthSha256: digest },
  });
  const host = tunnel.hostname;
  const req = (extra: string[], path = '/'): string =>
    [`GET ${path} HTTP/1.1`, `Host: ${host}`, 'Connection: close', ...extra, '', ''].join('\r\n');
  const upgrade = (extra: string[]): string =>
    [
      'GET /ws HTTP/1.1',
      `Host: ${host}`,
      'Connection: Upgrade',
      'Upgrade: websocket',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      ...extra,
      '',
      '',
    ].join('\r\n');

  const cases = [
    { name: 'no credentials', send: req([]), status: 401 },
    { name: 'wrong password', send: req([`Authorization: ${basic(`${USER}:nope`)}`]), status: 401 },
    { name: 'wrong user', send: req([`Authorization: ${basic(`x:${PASSWORD}`)}`]), status: 401 },
    {
      name: 'Bearer instead of Basic',
      send: req([`Authorization: Bearer ${PASSWORD}`]),
      status: 401,
    },
    { name: 'not base64', send: req(['Authorization: Basic %%%%']), status: 401 },
    { name: 'empty Basic', send: req(['Authorization: Basic ']), status: 401 },
    {
      name: 'two Authorization headers, the right one second',
      send: req([
        `Authorization: ${basic(`${USER}:nope`)}`,
        `Authorization: ${basic(`${USER}:${PASSWORD}`)}`,
      ]),
      status: 401,
    },
    { name: 'upgrade without credentials', send: upgrade([]), status: 401 },
    {
      name: 'right credentials',
      send: req([`Authorization: ${basic(`${USER}:${PASSWORD}`)}`, 'Cookie: session=Pl4nted']),
      status: 200,
      reaches: true,
    },
    {
      name: 'right credentials, lower-case scheme',
      send: req([`authorization: basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`]),
      status: 200,
      reaches: true,
    },
    {
      name: 'upgrade with the right credentials',
      send: upgrade([`Authorization: ${basic(`${USER}:${PASSWORD}`)}`]),
      status: 200, // the origin is not a WebSocket server: it answers a plain 200
      reaches: true,
    },
  ];
  for (const c of cases) {
    for (const scheme of ['http', 'https'] as const) {
      await t.test(`${c.name} (${scheme})`, async (t) => {
        const before = origin.requests.length;
        const r = await rawRequest(
          scheme === 'http'
            ? { port: env.httpPort, send: c.send }
            : { port: env.httpsPort, tls: { servername: host }, send: c.send },
        );
        t.equal(r.status, c.status);
        if (c.status === 401) {
          t.equal(
            headerOf(r.text, 'www-authenticate'),
            'Basic realm="quick-tunnel", charset="UTF-8"',
            'challenge with a realm',
          );
          t.notMatch(bodyOf(r.text), /origin saw/);
        }
        await delay(30);
        const seen = origin.requests.slice(before);
        t.equal(seen.length, c.reaches === true ? 1 : 0, 'requests that reached the app');
        for (const s of seen) {
          t.equal(s.headers.authorization, undefined, 'the app never sees Authorization');
        }
      });
    }
  }
  await control.check(t, 'basic auth');
  const everything = [...lines, ...origin.raw, JSON.stringify(tunnel.events)].join('\n');
  const b64 = Buffer.from(`${USER}:${PASSWORD}`).toString('base64');
  t.ok(lines.length > 5, `the relay logged (${lines.length} lines at trace level)`);
  for (const secret of [PASSWORD, b64, digest]) {
    t.notOk(everything.includes(secret), `no relay log line, origin byte or CLI event holds it`);
  }
});

t.test('allow-ip: 403 for addresses outside the list (IPv4)', async (t) => {
  const env = await startTestRelay(t);
  const control = await startControl(t, env);
  const origin = await startRecordingOrigin(t);
  const allowed = await connectTunnel(t, env, String(origin.port), {
    access: { allowIps: ['127.0.0.1'] },
  });
  const denied = await connectTunnel(t, env, String(origin.port), {
    access: { allowIps: ['10.0.0.0/8', '2001:db8::/32'] },
  });
  const both = await connectTunnel(t, env, String(origin.port), {
    access: { allowIps: ['10.0.0.0/8', '127.0.0.0/8'], basicAuthSha256: basicAuthDigest('u:p') },
  });

  const ok = await get(env, allowed.hostname);
  t.equal('status' in ok && ok.status, 200, '127.0.0.1 allowed');
  const before = origin.requests.length;
  for (const scheme of ['http', 'https'] as const) {
    const r = await rawRequest({
      port: scheme === 'http' ? env.httpPort : env.httpsPort,
      ...(scheme === 'https' ? { tls: { servername: denied.hostname } } : {}),
      send: `GET / HTTP/1.1\r\nHost: ${denied.hostname}\r\nX-Forwarded-For: 10.1.1.1\r\nConnection: close\r\n\r\n`,
    });
    t.equal(r.status, 403, `${scheme}: loopback visitor refused by 10.0.0.0/8 (XFF ignored)`);
  }
  const noAuth = await get(env, both.hostname);
  t.equal('status' in noAuth && noAuth.status, 401, 'allowed address still needs the password');
  const withAuth = await get(env, both.hostname, { headers: { authorization: basic('u:p') } });
  t.equal('status' in withAuth && withAuth.status, 200, 'address and password: in');
  await delay(30);
  t.equal(origin.requests.length - before, 1, 'denied visitors put 0 requests on the tunnel');
  await control.check(t, 'allow-ip');
});

const hasIPv6Loopback = await new Promise<boolean>((resolve) => {
  const probe = net.createServer();
  probe.once('error', () => resolve(false));
  probe.listen(0, '::1', () => probe.close(() => resolve(true)));
});

t.test(
  'allow-ip over IPv6: ::1 visitors',
  { skip: hasIPv6Loopback ? false : '::1 is not available on this machine' },
  async (t) => {
    // A relay listening on ::1 (loopback only); the tunnel is attached in-process, as in
    // embedded mode, so no IPv4 path is needed.
    const env = await startTestRelay(t, { host: '::1' });
    const origin = await startRecordingOrigin(t);
    const attach = async (allowIps: string[]): Promise<string> => {
      const [relaySide, clientSide] = memoryTransportPair();
      env.relay.attach(relaySide);
      const { session, assignment } = await handshake(clientSide, {
        clientVersion: 'test',
        access: { allowIps },
      });
      const proxy = new OriginProxy({
        target: parseTarget(String(origin.port)),
        hostHeader: 'preserve',
        insecure: false,
      });
      session.on('stream', (s) => proxy.handle(s));
      t.teardown(() => {
        session.close();
        proxy.close();
      });
      return assignment.hostname;
    };
    const v6only = await attach(['::1']);
    const v6net = await attach(['fd00::/8', '::1/128']);
    const v4only = await attach(['127.0.0.0/8']);
    const visit = (host: string): Promise<number | undefined> =>
      rawRequest({
        host: '::1',
        port: env.httpPort,
        send: `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      }).then((r) => r.status);
    t.equal(await visit(v6only), 200, '::1 allowed by ::1');
    t.equal(await visit(v6net), 200, '::1 allowed by ::1/128');
    t.equal(await visit(v4only), 403, '::1 refused by 127.0.0.0/8');
    const r = await rawRequest({
      host: '::1',
      port: env.httpsPort,
      tls: { servername: v4only },
      send: `GET / HTTP/1.1\r\nHost: ${v4only}\r\nConnection: close\r\n\r\n`,
    });
    t.equal(r.status, 403, '::1 refused over TLS too');
    t.equal(origin.requests.length, 2, 'only the allowed visits reached the app');
  },
);

t.test('per-tunnel request rate: 429 with Retry-After, other tunnels unaffected', async (t) => {
  const env = await startTestRelay(t, { rateLimitPerTunnel: 20 });
  const control = await startControl(t, env); // 10 requests/s: under the limit
  const origin = await startRecordingOrigin(t);
  const tunnel = await connectTunnel(t, env, String(origin.port));
  const results = await Promise.all(
    Array.from({ length: 120 }, () =>
      rawRequest({
        port: env.httpPort,
        send: `GET / HTTP/1.1\r\nHost: ${tunnel.hostname}\r\nConnection: close\r\n\r\n`,
      }),
    ),
  );
  const ok = results.filter((r) => r.status === 200).length;
  const limited = results.filter((r) => r.status === 429);
  t.ok(ok >= 40 && ok < 120, `a burst of 40 and the refill pass (${ok} x 200)`);
  t.equal(ok + limited.length, 120, 'every other request got 429');
  t.ok(
    limited.every((r) => Number(headerOf(r.text, 'retry-after')) >= 1),
    'each 429 carries Retry-After',
  );
  await delay(30);
  t.equal(origin.requests.length, ok, 'refused requests never reached the tunnel');
  await control.check(t, 'rate limit');
});

t.test('concurrent streams over the tunnel limit: 503', async (t) => {
  const env = await startTestRelay(t);
  const control = await startControl(t, env);
  // A tunnel client that accepts 2 streams and never answers them.
  const raw = await rawTunnelClient(t, env);
  raw.sendFrame(
    FrameType.HELLO,
    0,
    Buffer.from(
      JSON.stringify({
        protocol: 1,
        windowBytes: 65536,
        maxStreams: 2,
        maxFrameBytes: 65536,
        app: { clientVersion: 'raw' },
      }),
    ),
  );
  const hello = await raw.waitFor((f) => f.type === FrameType.HELLO);
  const host = (JSON.parse(hello.payload.toString()) as { app: { hostname: string } }).app.hostname;
  const pending = [get(env, host, { timeoutMs: 20_000 }), get(env, host, { timeoutMs: 20_000 })];
  await raw.waitFor((f) => f.type === FrameType.OPEN && f.streamId === 4);
  const third = await get(env, host);
  t.equal('status' in third && third.status, 503, 'third concurrent request: 503');
  t.equal('headers' in third && third.headers['retry-after'], '1', 'with Retry-After');
  raw.close();
  const [p1, p2] = await Promise.all(pending);
  t.equal(p1 && 'status' in p1 && p1.status, 502, 'held requests fail cleanly when it goes');
  t.equal(p2 && 'status' in p2 && p2.status, 502);
  await control.check(t, 'stream limit');
});
