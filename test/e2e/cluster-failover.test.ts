/**
 * Relay cluster failures, real processes: kill -9 of the relay holding a tunnel while 20
 * visitors send requests through the other relays (no request hangs, each succeeds or
 * gets a 502/503 during the gap, 200s again within 5 s, same hostname); Redis killed
 * for 5 s (tunnels already connected keep serving, a new tunnel gets a clear error,
 * everything recovers).
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import {
  CLUSTER_ADDRESSES,
  clusterCertificate,
  spawnClusterRelay,
  visit,
  waitForMesh,
  type ClusterRelay,
} from '../helpers/cluster.js';
import { spawnCli } from '../helpers/processes.js';
import { startRedis } from '../helpers/redis.js';
import { readyHostname } from '../helpers/visitor.js';

const redis = await startRedis(t);
const cert = await clusterCertificate(t);

const origin = http.createServer((_req, res) => res.end('ok'));
origin.listen(0, '127.0.0.1');
await once(origin, 'listening');
t.teardown(() => origin.close());
const originPort = (origin.address() as AddressInfo).port;

const relays: ClusterRelay[] = [];
for (const host of CLUSTER_ADDRESSES)
  relays.push(await spawnClusterRelay(t, host, redis.url, cert));
const [a, b, c] = relays as [ClusterRelay, ClusterRelay, ClusterRelay];
await waitForMesh(relays, cert.cert, 2);

t.test('kill -9 of the relay holding a tunnel: visitors are served again within 5 s', async (t) => {
  // The tunnel's one connection is on B; it knows A, B and C.
  const cli = spawnCli(t, [
    String(originPort),
    '--relay',
    `${b.url},${a.url},${c.url}`,
    '--ca',
    cert.certFile,
    '--log',
    'json',
    '--connections',
    '1',
  ]);
  const hostname = await readyHostname(cli);
  t.equal((await visit(a, hostname, cert.cert)).status, 200);

  const outcomes: { at: number; status: number | string }[] = [];
  let running = true;
  const visitors = Array.from({ length: 20 }, async (_, i) => {
    const via = i % 2 === 0 ? a : c;
    while (running) {
      const started = Date.now();
      const status = await visit(via, hostname, cert.cert, '/', { timeoutMs: 25_000 }).then(
        (r) => r.status,
        (err: Error) => err.message,
      );
      outcomes.push({ at: started, status });
      if (status !== 200) await new Promise((r) => setTimeout(r, 50));
    }
  });
  await new Promise((r) => setTimeout(r, 500));
  const killedAt = Date.now();
  b.child.kill('SIGKILL');
  // Wait until requests succeed again on both surviving relays.
  let back = 0;
  const until = killedAt + 20_000;
  while (Date.now() < until) {
    const after = outcomes.filter((o) => o.at > killedAt + 200);
    const lastA = after.filter((o) => o.status === 200);
    if (lastA.length >= 10) {
      back = Math.min(...lastA.map((o) => o.at)) - killedAt;
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 1_000));
  running = false;
  await Promise.all(visitors);
  const bad = outcomes.filter((o) => o.status !== 200 && o.status !== 502 && o.status !== 503);
  t.same(bad, [], 'every request succeeded or got a 502/503 (none hung)');
  const failed = outcomes.filter((o) => o.status !== 200).length;
  t.ok(back > 0 && back < 5_000, `requests succeed again ${back} ms after kill -9`);
  t.comment(
    `kill -9 gap: ${back} ms until requests succeeded again; ${failed} of ${outcomes.length} requests got 502/503`,
  );
  const ready = await visit(c, hostname, cert.cert);
  t.equal(ready.status, 200, 'the same hostname works through the survivors');
  t.match(cli.stdout.join('\n'), /"sameHostname":true/, 'the client kept its hostname');
});

t.test(
  'Redis down for 5 s: held tunnels serve, new ones get a clear error, then recovery',
  async (t) => {
    const cli = spawnCli(t, [
      String(originPort),
      '--relay',
      a.url,
      '--ca',
      cert.certFile,
      '--log',
      'json',
      '--connections',
      '1',
    ]);
    const hostname = await readyHostname(cli);
    t.equal((await visit(c, hostname, cert.cert)).status, 200, 'C reaches the tunnel on A');

    await redis.kill();
    const downAt = Date.now();
    t.equal((await visit(a, hostname, cert.cert)).status, 200, 'A still serves its own tunnel');
    t.equal((await visit(c, hostname, cert.cert)).status, 200, 'C still forwards (cached route)');
    const newcomer = spawnCli(t, [
      String(originPort),
      '--relay',
      c.url,
      '--ca',
      cert.certFile,
      '--log',
      'json',
      '--connections',
      '1',
    ]);
    const code = await newcomer.exited;
    t.not(code, 0, 'a new tunnel fails');
    t.match(newcomer.stderr.join('\n'), /cannot reach its cluster's shared state \(Redis\)/);
    const health = JSON.parse(
      (await visit(a, 'qt.localhost', cert.cert, '/healthz')).body.toString(),
    );
    t.equal(health.cluster.redis, false, '/healthz says Redis is down');

    await new Promise((r) => setTimeout(r, Math.max(0, 5_000 - (Date.now() - downAt))));
    t.equal((await visit(a, hostname, cert.cert)).status, 200, 'still serving after 5 s');
    await redis.restart();
    // New tunnels work again, and the old one is reachable from every relay.
    const later = spawnCli(t, [
      String(originPort),
      '--relay',
      c.url,
      '--ca',
      cert.certFile,
      '--log',
      'json',
      '--connections',
      '1',
    ]);
    const fresh = await readyHostname(later);
    t.equal((await visit(a, fresh, cert.cert)).status, 200);
    const until = Date.now() + 10_000;
    let status = 0;
    while (Date.now() < until) {
      status = (await visit(c, hostname, cert.cert)).status;
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    t.equal(status, 200, 'the old tunnel is routable cluster-wide again');
  },
);
