/**
 * Store-and-forward in cluster mode: two in-process relays (127.0.0.2/.3) sharing a real
 * redis-server. Requests kept by relay A while a queue-enabled named tunnel is offline
 * reach the origin when the tunnel's client connects to relay B only: A delivers its
 * queue through the peer link (once each, in order, with the delivery id).
 */
import type http from 'node:http';
import t from 'tap';
import { startRelay, type Relay } from '../../relay/index.js';
import {
  CLUSTER_ADDRESSES,
  CLUSTER_SECRET,
  clusterCertificate,
  visit,
} from '../helpers/cluster.js';
import { startRedis } from '../helpers/redis.js';
import {
  connectTunnel,
  startOrigin,
  tempDir,
  TEST_DOMAIN,
  type TestRelay,
} from '../helpers/relay-env.js';

t.setTimeout(120_000);

const redis = await startRedis(t);
const cert = await clusterCertificate(t);

async function start(host: string): Promise<Relay> {
  const dataDir = await tempDir(t, 'qt-queue-cluster-');
  const relay = await startRelay({
    domain: TEST_DOMAIN,
    host,
    httpsPort: 0,
    httpPort: null,
    dataDir,
    certFile: cert.certFile,
    keyFile: cert.keyFile,
    tokens: [],
    holdMs: 0,
    cluster: { redisUrl: redis.url, secret: CLUSTER_SECRET },
  });
  t.teardown(() => relay.close(100));
  return relay;
}

const [hostA, hostB] = CLUSTER_ADDRESSES as [string, string];
const relayA = await start(hostA);
const relayB = await start(hostB);
const a = { host: hostA, port: relayA.httpsPort ?? 0 };

t.test('a queue kept by relay A reaches a client connected to relay B', async (t) => {
  const seen: { url: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
  const { port } = await startOrigin(t, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      res.end('ok');
    });
  });

  const { credential } = await relayA.named.create('hooks', { queue: true });
  const hostname = `hooks.${TEST_DOMAIN}`;
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const res = await visit(a, hostname, cert.cert, `/hook/${i}`, {
      method: 'POST',
      body: Buffer.from(`body ${i}`),
      headers: { 'content-type': 'text/plain', 'x-signature': `sig-${i}` },
    });
    t.equal(res.status, 202, `POST ${i} kept by relay A`);
    ids.push(String(res.headers['x-quick-tunnel-delivery-id']));
  }
  t.equal(seen.length, 0, 'nothing delivered while offline');

  // The client connects to relay B only.
  const envB = {
    url: new URL(`https://${hostB}:${relayB.httpsPort ?? 0}`),
    ca: cert.cert,
  } as TestRelay;
  await connectTunnel(t, envB, String(port), { named: { name: 'hooks', credential } });

  const until = Date.now() + 30_000;
  while (seen.length < 5 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  t.equal(seen.length, 5, 'all five reached the origin');
  t.same(
    seen.map((s) => s.headers['x-quick-tunnel-delivery-id']),
    ids,
    'in arrival order, with their delivery ids',
  );
  for (const [i, s] of seen.entries()) {
    t.equal(s.url, `/hook/${i}`);
    t.equal(s.body, `body ${i}`);
    t.equal(s.headers['x-signature'], `sig-${i}`);
    t.match(s.headers['x-quick-tunnel-queued-at'], /^\d{4}-\d\d-\d\dT/);
  }
  // Nothing is delivered twice: A's queue is empty, later checks send nothing more.
  const settle = Date.now() + 3_500;
  while (Date.now() < settle) await new Promise((r) => setTimeout(r, 100));
  t.equal(seen.length, 5, 'exactly once');
  const view = await visit(a, TEST_DOMAIN, cert.cert, '/api/tunnels/hooks/queue', {
    headers: { authorization: `Bearer ${credential}` },
  });
  t.match(JSON.parse(view.body.toString()), { waiting: 0, failed: 0 }, "relay A's queue is empty");
});
