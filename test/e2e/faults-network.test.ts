/**
 * Fault suite, network side: a stalled tunnel connection, one HA connection cut, reaching the relay through an HTTP proxy.
 * Real relay and CLI processes on loopback; recovery times are printed as comments.
 */
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import t from 'tap';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { spawnCli, spawnRelay, spawnTunnelCli } from '../helpers/processes.js';
import { startOrigin, tempDir } from '../helpers/relay-env.js';
import { events, hit, readyHostname, until200 } from '../helpers/visitor.js';

t.test('stalled tunnel connection is detected and replaced within 20 s', async (t) => {
  const relay = await spawnRelay(t, await tempDir(t));
  const ca = await readFile(relay.certPath, 'utf8');
  const proxy = await FaultProxy.start(t, relay.httpsPort);
  const { port: originPort } = await startOrigin(t, (_req, res) => res.end('ok'));
  const cli = spawnTunnelCli(t, originPort, { port: proxy.port, certPath: relay.certPath }, [
    '--connections',
    '1',
  ]);
  const hostname = await readyHostname(cli);
  await until200(relay.httpsPort, hostname, ca, 5_000);
  const stalledAt = performance.now();
  proxy.stallAll();
  await cli.waitFor(/"event":"connection-lost"/, 'stdout', 25_000);
  const detectMs = performance.now() - stalledAt;
  const backMs = (await until200(relay.httpsPort, hostname, ca, 20_000)) + detectMs;
  t.comment(
    `stall: detected after ${Math.round(detectMs)} ms, serving again after ${Math.round(backMs)} ms`,
  );
  t.ok(detectMs <= 15_500, `silent peer detected within 15 s (${Math.round(detectMs)} ms)`);
  t.ok(backMs <= 20_000, `replaced and serving within 20 s (${Math.round(backMs)} ms)`);
  t.match(events(cli, 'connection-lost')[0], { error: /silent|heartbeat/ });
});

t.test('one of two HA connections cut: no request started after the cut fails', async (t) => {
  const relay = await spawnRelay(t, await tempDir(t));
  const ca = await readFile(relay.certPath, 'utf8');
  const proxy = await FaultProxy.start(t, relay.httpsPort);
  const { port: originPort } = await startOrigin(t, (_req, res) => res.end('ok'));
  const cli = spawnTunnelCli(t, originPort, { port: proxy.port, certPath: relay.certPath }, [
    '--connections',
    '2',
  ]);
  const hostname = await readyHostname(cli);
  await proxy.waitForConnections(2);
  await until200(relay.httpsPort, hostname, ca, 5_000);
  proxy.cut(proxy.connections[0]!);
  await cli.waitFor(/"event":"connection-lost"/, 'stdout');
  const results = await Promise.all(
    Array.from({ length: 100 }, () => hit(relay.httpsPort, hostname, ca)),
  );
  const failed = results.filter((r) => !('status' in r) || r.status !== 200);
  t.same(failed, [], '100 requests after the cut: zero failures');
});

t.test('through an HTTP proxy (HTTPS_PROXY), honouring NO_PROXY', async (t) => {
  const relay = await spawnRelay(t, await tempDir(t));
  const ca = await readFile(relay.certPath, 'utf8');
  // A minimal CONNECT proxy that records what it was asked for.
  const asked: string[] = [];
  const proxyServer = http.createServer((_req, res) => res.writeHead(405).end());
  proxyServer.on('connect', (req, socket) => {
    asked.push(req.url ?? '');
    const [host, port] = (req.url ?? '').split(':');
    void host; // loopback only: whatever the CLI asks for, connect to 127.0.0.1
    const upstream = net.connect({ host: '127.0.0.1', port: Number(port) }, () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  proxyServer.listen(0, '127.0.0.1');
  await once(proxyServer, 'listening');
  t.teardown(() => {
    proxyServer.closeAllConnections();
    proxyServer.close();
  });
  const proxyUrl = `http://127.0.0.1:${(proxyServer.address() as net.AddressInfo).port}`;
  const { port: originPort } = await startOrigin(t, (_req, res) => res.end('via proxy'));
  const args = [
    String(originPort),
    '--relay',
    `https://qt.localhost:${relay.httpsPort}`,
    '--ca',
    relay.certPath,
    '--log',
    'json',
  ];
  const cli = spawnCli(t, args, { env: { HTTPS_PROXY: proxyUrl, NO_PROXY: 'example.com' } });
  const hostname = await readyHostname(cli);
  const r = await hit(relay.httpsPort, hostname, ca);
  t.match(r, { status: 200, body: 'via proxy' });
  t.ok(
    asked.includes(`qt.localhost:${relay.httpsPort}`),
    'the CLI asked the proxy to CONNECT to the relay',
  );
  cli.child.kill('SIGINT');
  await cli.exited;

  const before = asked.length;
  const direct = spawnCli(t, args, { env: { HTTPS_PROXY: proxyUrl, NO_PROXY: '.localhost' } });
  await readyHostname(direct);
  t.equal(asked.length, before, 'NO_PROXY=.localhost: the relay is reached directly');
});
