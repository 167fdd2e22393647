/**
 * Relay cluster, real processes: a relay SIGSTOPped for longer than its lease. Its tunnel
 * moves to another relay (new epoch); after SIGCONT the paused relay does not serve that
 * hostname from its stale connection (no split brain: the route lists only the new holder,
 * and its visitors are forwarded there), and it rejoins the mesh cleanly.
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
import { TEST_DOMAIN } from '../helpers/relay-env.js';
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

async function holders(label: string): Promise<string[]> {
  const res = await visit(a, TEST_DOMAIN, cert.cert, '/api/cluster', {
    headers: { authorization: 'Bearer admin-secret' },
  });
  const body = JSON.parse(res.body.toString()) as {
    tunnels: { label: string; epoch: number; holders: { url: string }[] }[];
  };
  return (body.tunnels.find((x) => x.label === label)?.holders ?? []).map((h) => h.url);
}

t.test('SIGSTOP beyond the lease, then SIGCONT: no split brain, clean rejoin', async (t) => {
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
  const label = hostname.split('.')[0]!;
  t.same(await holders(label), [b.url], 'B holds the tunnel');

  b.child.kill('SIGSTOP');
  t.teardown(() => {
    b.child.kill('SIGCONT');
  });
  // The client finds B dead (heartbeat) and moves; its lease on B has long expired.
  await cli.waitFor(/"event":"reconnected"/, 'stdout', 40_000);
  let moved: string[] = [];
  for (let i = 0; i < 100; i++) {
    moved = await holders(label);
    if (moved.length > 0 && !moved.includes(b.url)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(moved.length === 1 && !moved.includes(b.url), `the tunnel moved to ${moved.join(',')}`);
  t.equal((await visit(a, hostname, cert.cert)).status, 200, 'served through its new holder');

  b.child.kill('SIGCONT');
  // Right after waking up, B must not serve the hostname from its stale connection: it
  // forwards to the new holder. Several requests at once, while B catches up.
  const results = await Promise.all(
    Array.from({ length: 5 }, () =>
      visit(b, hostname, cert.cert, '/', { timeoutMs: 20_000 }).then(
        (r) => r.status,
        (e: Error) => e.message,
      ),
    ),
  );
  t.ok(
    results.every((s) => s === 200 || s === 502 || s === 503),
    `B's answers right after SIGCONT: ${results.join(',')}`,
  );
  await waitForMesh([a, b, c], cert.cert, 2);
  t.same(await holders(label), moved, 'the route still lists only the new holder (no split brain)');
  t.equal((await visit(b, hostname, cert.cert)).status, 200, 'B forwards to the new holder');

  // B rejoined: a tunnel connected to B is reachable from A.
  const again = spawnCli(t, [
    String(originPort),
    '--relay',
    b.url,
    '--ca',
    cert.certFile,
    '--log',
    'json',
    '--connections',
    '1',
  ]);
  const other = await readyHostname(again);
  t.equal((await visit(a, other, cert.cert)).status, 200, 'A reaches a new tunnel on B');
});
