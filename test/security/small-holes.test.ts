/**
 * Issue 16 item 5, the smaller holes: forwarding headers a visitor could set (and Host
 * removable through `Connection`), unthrottled guessing of secrets, a hostile relay
 * against the CLI (escape sequences, endless answers), a WebSocket upgrade pipelined
 * behind a request in flight, name existence leaking through the control API, plain
 * ws:// without a warning, and the data dir's mode and lock.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import t from 'tap';
import { callRelayApi, relayApi } from '../../cli/tunnel/api.js';
import { dialRelay, plainRelayWarning } from '../../cli/tunnel/client.js';
import { lineView } from '../../cli/ui/lines.js';
import type { TunnelEvent } from '../../cli/events.js';
import { startRelay } from '../../relay/index.js';
import {
  TEST_DOMAIN,
  connectTunnel,
  startOrigin,
  startTestRelay,
  tempDir,
} from '../helpers/relay-env.js';
import { captureLogger, get, rawRequest, startRecordingOrigin } from '../helpers/hostile.js';

t.test('forwarding headers are the relay’s, and Host cannot be removed', async (t) => {
  const env = await startTestRelay(t);
  const origin = await startRecordingOrigin(t);
  const tunnel = await connectTunnel(t, env, String(origin.port));
  const r = await rawRequest({
    port: env.httpPort,
    send:
      `GET /h HTTP/1.1\r\nHost: ${tunnel.hostname}\r\nConnection: close, host\r\n` +
      'Forwarded: for=6.6.6.6;proto=https\r\nX-Real-IP: 6.6.6.6\r\nTrue-Client-IP: 6.6.6.6\r\n' +
      'Client-IP: 6.6.6.6\r\nX-Forwarded-Port: 443\r\nX-Forwarded-Prefix: /admin\r\n' +
      'X_Forwarded_For: 6.6.6.6\r\nX-Forwarded-Server: evil\r\n\r\n',
  });
  t.equal(r.status, 200);
  const seen = origin.requests.find((q) => q.url === '/h');
  t.ok(seen, 'the request reached the origin');
  const raw = (seen?.rawHeaders ?? []).join('\n');
  t.notMatch(raw, /6\.6\.6\.6|\/admin|evil|X-Forwarded-Port|X_Forwarded/i, 'no visitor value');
  t.equal(seen?.headers['x-real-ip'], '127.0.0.1', 'X-Real-IP is the peer address');
  t.equal(
    seen?.headers['forwarded'],
    `for=127.0.0.1;proto=http;host="${tunnel.hostname}"`,
    'Forwarded per RFC 7239',
  );
  t.equal(seen?.headers.host, tunnel.hostname, "Host survives (not the CLI's localhost:PORT)");
});

t.test('failed secrets are throttled per IP and logged', async (t) => {
  const { logger, lines } = captureLogger();
  const env = await startTestRelay(t, {
    tokens: ['right-token-0123456789abcdef'],
    adminTokens: ['admin-token-0123456789abcdef'],
    maxFailedAuthPerMinute: 5,
    logger,
  });
  const messages: string[] = [];
  for (let i = 0; i < 7; i++) {
    try {
      const c = await dialRelay({
        relay: env.url,
        request: { clientVersion: 'test', token: `guess-${i}` },
        ca: env.ca,
      });
      c.session.close();
      messages.push('accepted');
    } catch (err) {
      messages.push((err as Error).message);
    }
  }
  t.match(messages[0], /rejected the access token/, 'a wrong token is refused');
  t.match(messages[6], /too many failed authentication attempts/, 'then the address is blocked');
  const admin = await get(env, TEST_DOMAIN, {
    path: '/api/tunnels',
    headers: { authorization: 'Bearer admin-token-0123456789abcdef' },
  });
  t.equal('status' in admin ? admin.status : admin.error, 429, 'the admin API too, even right');
  t.ok(
    lines.some((l) => l.includes('"event":"auth-failed"')),
    'each failure leaves a log line',
  );
  t.notOk(
    lines.some((l) => l.includes('guess-')),
    'the log never holds the guessed secrets',
  );
});

t.test('a hostile relay cannot write escape sequences or fill the CLI’s memory', async (t) => {
  const out: string[] = [];
  const view = lineView('text', { out: (l) => out.push(l), err: (l) => out.push(l) });
  const evil = 'https://x.example\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07\x9b2J';
  view({
    event: 'ready',
    url: evil,
    urls: [evil],
    target: 'http://localhost:3000',
    local: false,
  } as unknown as TunnelEvent);
  view({ event: 'reconnecting', error: 'GOAWAY \x1b[2Jbye', attempt: 1 } as unknown as TunnelEvent);
  t.ok(out.length > 0, 'lines were printed');
  t.notOk(
    out.some((l) => /[\x00-\x1f\x7f-\x9f]/.test(l)),
    'no control character reaches the terminal',
  );

  const endless = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const pump = (): void => {
      while (res.write(chunk));
    };
    res.on('drain', pump);
    pump();
  });
  endless.listen(0, '127.0.0.1');
  await once(endless, 'listening');
  t.teardown(() => {
    endless.closeAllConnections();
    endless.close();
  });
  const port = (endless.address() as AddressInfo).port;
  await t.rejects(
    callRelayApi({ relay: new URL(`http://127.0.0.1:${port}`) }, 'POST', '/api/tunnels', {
      body: { name: 'x' },
    }),
    /larger than/,
    'an endless answer is cut off with a clear error',
  );
});

t.test('an upgrade pipelined behind a request in flight is answered after it', async (t) => {
  const env = await startTestRelay(t);
  const { server, port } = await startOrigin(t, (_req, res) => {
    setTimeout(() => res.end('slow done'), 300);
  });
  server.on('upgrade', (_req, socket) => {
    socket.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nraw');
  });
  const tunnel = await connectTunnel(t, env, String(port));
  const r = await rawRequest({
    port: env.httpPort,
    send:
      `GET /slow HTTP/1.1\r\nHost: ${tunnel.hostname}\r\n\r\n` +
      `GET /ws HTTP/1.1\r\nHost: ${tunnel.hostname}\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n`,
    timeoutMs: 4_000,
  });
  t.same(r.statuses, [200, 101], 'the 200 comes first, then the 101');
  t.ok(r.text.indexOf('slow done') < r.text.indexOf('HTTP/1.1 101'), 'the body before the 101');
});

t.test('GET /api/tunnels/NAME answers the same for taken and free names', async (t) => {
  const env = await startTestRelay(t);
  await relayApi.create({ relay: env.url, ca: env.ca }, 'taken-name', undefined);
  const ask = (name: string, credential?: string) =>
    get(env, TEST_DOMAIN, {
      path: `/api/tunnels/${name}`,
      headers: credential === undefined ? {} : { authorization: `Bearer ${credential}` },
    });
  const shape = (r: Awaited<ReturnType<typeof ask>>) =>
    'status' in r ? [r.status, (JSON.parse(r.body) as { code: string }).code] : [r.error];
  t.same(shape(await ask('taken-name')), shape(await ask('free-name')), 'no credential');
  t.same(
    shape(await ask('taken-name', 'qtc_wrong')),
    shape(await ask('free-name', 'qtc_wrong')),
    'a wrong credential',
  );
});

t.test('plain ws:// warns like --relay-insecure (except on loopback)', async (t) => {
  t.match(plainRelayWarning(new URL('http://relay.example.com:8080')), /in clear/);
  t.equal(plainRelayWarning(new URL('https://relay.example.com')), undefined);
  t.equal(plainRelayWarning(new URL('http://127.0.0.1:8080')), undefined);
  t.equal(plainRelayWarning(new URL(`http://${TEST_DOMAIN}:8080`)), undefined);
});

t.test('the data dir is 0700 and used by one relay at a time', async (t) => {
  const dataDir = path.join(await tempDir(t), 'relay');
  await mkdir(dataDir, { mode: 0o755 });
  await chmod(dataDir, 0o755);
  const base = {
    domain: TEST_DOMAIN,
    host: '127.0.0.1',
    httpsPort: null,
    httpPort: 0,
    dataDir,
    tokens: [],
  };
  const first = await startRelay(base);
  t.teardown(() => first.close(100));
  t.equal((await stat(dataDir)).mode & 0o777, 0o700, 'an existing 0755 dir becomes 0700');
  await t.rejects(startRelay(base), /another relay \(pid \d+\) is using the data dir/);
  await first.close(100);

  const dead = spawnSync(process.execPath, ['-e', '0']).pid;
  await writeFile(path.join(dataDir, 'relay.lock'), `${dead}\n`);
  const second = await startRelay(base);
  t.teardown(() => second.close(100));
  t.pass('a stale lock from a dead pid is taken over');
});
