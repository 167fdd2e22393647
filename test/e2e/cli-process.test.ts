/**
 * The real `quick-tunnel` processes as a user runs them: embedded default, relay +
 * client over TLS, and each startup error with its message and exit status.
 */
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { WebSocketServer } from 'ws';
import { generateCertificate } from '../../relay/edge/certificate.js';
import {
  encodeCodeMessage,
  encodeFrame,
  ErrorCode,
  FrameType,
} from '../../shared/protocol/frame.js';
import { startOrigin, tempDir } from '../helpers/relay-env.js';
import { spawnCli, spawnRelay } from '../helpers/processes.js';

function get(
  port: number,
  host: string,
  path = '/',
  tls?: { ca: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const lib = tls ? https : http;
    const req = lib.request(
      {
        host: '127.0.0.1',
        port,
        path,
        headers: { host },
        servername: host,
        ca: tls?.ca,
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

t.test('embedded default: http://<label>.localhost:<port> serves the local app', async (t) => {
  const { port } = await startOrigin(t, (req, res) => res.end(`hi from origin ${req.url}`));
  const cli = spawnCli(t, [String(port), '--log', 'json'], {
    env: { QUICK_TUNNEL_CONFIG_DIR: await tempDir(t) },
  });
  const line = await cli.waitFor(/"event":"ready"/, 'stdout');
  t.equal(cli.stdout[0], line, 'ready is the first stdout line');
  const ready = JSON.parse(line) as { url: string; local: boolean };
  t.match(ready.url, /^http:\/\/[a-z2-9]{10}\.localhost:\d+$/);
  t.equal(ready.local, true);
  await cli.waitFor(/local-only/, 'stderr');
  const url = new URL(ready.url);
  const res = await get(Number(url.port), url.hostname, '/hello?q=1');
  t.equal(res.status, 200);
  t.equal(res.body, 'hi from origin /hello?q=1');
  const reqLine = await cli.waitFor(/"event":"request"/, 'stdout');
  t.match(JSON.parse(reqLine), {
    event: 'request',
    method: 'GET',
    path: '/hello?q=1',
    status: 200,
  });
  t.ok(
    cli.stdout.every((l) => typeof JSON.parse(l).event === 'string'),
    'every stdout line is JSON with event',
  );
  cli.child.kill('SIGINT');
  t.equal(await cli.exited, 0, 'Ctrl-C exits 0');
});

t.test(
  'relay process + CLI process over TLS with the pinned self-signed certificate',
  async (t) => {
    const relay = await spawnRelay(t, await tempDir(t));
    await relay.waitFor(/WARNING: this relay is OPEN/, 'stderr');
    await relay.waitFor(/SHA-256 fingerprint/, 'stderr');
    const ca = await readFile(relay.certPath, 'utf8');
    const { port } = await startOrigin(t, (_req, res) => res.end('through the relay'));
    const cli = spawnCli(t, [
      String(port),
      '--relay',
      `https://qt.localhost:${relay.httpsPort}`,
      '--ca',
      relay.certPath,
      '--log',
      'text',
    ]);
    const line = await cli.waitFor(/^Forwarding https:\/\//, 'stdout');
    const url = new URL(line.split(' ')[1]!);
    t.match(url.hostname, /^[a-z2-9]{10}\.qt\.localhost$/);
    const res = await get(relay.httpsPort, url.hostname, '/', { ca });
    t.equal(res.status, 200);
    t.equal(res.body, 'through the relay');
    await cli.waitFor(/GET \/ 200 \d+ms/, 'stdout');
    cli.child.kill('SIGTERM');
    t.equal(await cli.exited, 0);
    relay.child.kill('SIGTERM');
    t.equal(await relay.exited, 0, 'relay exits 0 on SIGTERM');
  },
);

t.test('startup errors: clear message on stderr, exit status 1', async (t) => {
  const configDir = await tempDir(t);
  const env = { QUICK_TUNNEL_CONFIG_DIR: configDir };

  await t.test('bad target', async (t) => {
    const cli = spawnCli(t, ['abc'], { env });
    t.equal(await cli.exited, 1);
    t.match(cli.stderr.join('\n'), /'abc' is not a port or URL/);
  });

  await t.test('relay unreachable', async (t) => {
    const server = http.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    const cli = spawnCli(t, ['3000', '--relay', `https://127.0.0.1:${port}`], { env });
    t.equal(await cli.exited, 1);
    t.match(
      cli.stderr.join('\n'),
      /cannot reach the relay at 127\.0\.0\.1:\d+: connection refused/,
    );
  });

  const relay = await spawnRelay(t, await tempDir(t), ['--token', 'right-token']);

  await t.test('TLS verification failure says how to trust the relay', async (t) => {
    const cli = spawnCli(
      t,
      ['3000', '--relay', `https://qt.localhost:${relay.httpsPort}`, '--token', 'right-token'],
      {
        env,
      },
    );
    t.equal(await cli.exited, 1);
    const err = cli.stderr.join('\n');
    t.match(err, /TLS certificate is not trusted/);
    t.match(err, /--ca/);
  });

  await t.test('token rejected', async (t) => {
    const cli = spawnCli(
      t,
      [
        '3000',
        '--relay',
        `https://qt.localhost:${relay.httpsPort}`,
        '--ca',
        relay.certPath,
        '--token',
        'wrong',
      ],
      { env },
    );
    t.equal(await cli.exited, 1);
    t.match(cli.stderr.join('\n'), /rejected the access token/);
  });

  await t.test('token missing', async (t) => {
    const cli = spawnCli(
      t,
      ['3000', '--relay', `https://qt.localhost:${relay.httpsPort}`, '--ca', relay.certPath],
      {
        env,
      },
    );
    t.equal(await cli.exited, 1);
    t.match(cli.stderr.join('\n'), /requires an access token/);
  });

  await t.test('protocol version mismatch', async (t) => {
    // A relay from the future: answers every HELLO with a v2 GOAWAY.
    const { cert, key } = await generateCertificate('qt.localhost');
    const server = https.createServer({ cert, key });
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => {
      ws.once('message', () => {
        ws.send(
          encodeFrame(
            FrameType.GOAWAY,
            0,
            encodeCodeMessage(
              ErrorCode.VERSION_MISMATCH,
              'this relay speaks tunnel protocol v2; upgrade quick-tunnel',
            ),
            0,
            2,
          ),
        );
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.teardown(() => {
      wss.close();
      server.closeAllConnections();
      server.close();
    });
    const { writeFile } = await import('node:fs/promises');
    const caFile = `${configDir}/future.crt`;
    await writeFile(caFile, cert);
    const port = (server.address() as AddressInfo).port;
    const cli = spawnCli(t, ['3000', '--relay', `https://qt.localhost:${port}`, '--ca', caFile], {
      env,
    });
    t.equal(await cli.exited, 1);
    t.match(cli.stderr.join('\n'), /protocol v2/);
  });

  await t.test('nothing listening on the target: warns and keeps serving 502s', async (t) => {
    const server = http.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    const cli = spawnCli(
      t,
      [
        String(port),
        '--relay',
        `https://qt.localhost:${relay.httpsPort}`,
        '--ca',
        relay.certPath,
        '--token',
        'right-token',
      ],
      { env },
    );
    const line = await cli.waitFor(/^Forwarding https:\/\//, 'stdout');
    await cli.waitFor(new RegExp(`nothing is listening on localhost:${port}`), 'stderr');
    const url = new URL(line.split(' ')[1]!);
    const ca = await readFile(relay.certPath, 'utf8');
    const res = await get(relay.httpsPort, url.hostname, '/', { ca });
    t.equal(res.status, 502);
    t.match(res.body, new RegExp(`localhost:${port}`));
    cli.child.kill('SIGINT');
    t.equal(await cli.exited, 0);
  });
});
