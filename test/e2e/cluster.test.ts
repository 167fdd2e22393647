/**
 * Relay cluster, real processes: three relays (127.0.0.2/.3/.4) sharing one redis-server.
 * A visitor on any relay reaches a tunnel connected to another one (HTTP, a 20 MiB body
 * checked by hash, SSE, a WebSocket echo); a relay with the wrong cluster secret cannot
 * join, and a relay that cannot prove the secret is never sent visitors' traffic.
 */
import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import t from 'tap';
import WebSocket, { WebSocketServer } from 'ws';
import { RedisConnection } from '../../relay/cluster/redis.js';
import {
  CLUSTER_ADDRESSES,
  clusterCertificate,
  sha256,
  spawnClusterRelay,
  visit,
  waitForMesh,
  type ClusterRelay,
} from '../helpers/cluster.js';
import { spawnCli } from '../helpers/processes.js';
import { startRedis } from '../helpers/redis.js';
import { TEST_DOMAIN } from '../helpers/relay-env.js';
import { readyHostname } from '../helpers/visitor.js';

// Heavy on a shared 2-core machine (npm, thousands of connections): more than .taprc's 120 s.
t.setTimeout(360_000);

const redis = await startRedis(t);
const cert = await clusterCertificate(t);

/** The local app: hello, a body hash, SSE and a WebSocket echo. */
const origin = http.createServer((req, res) => {
  if (req.url === '/upload') {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => res.end(sha256(Buffer.concat(chunks))));
    return;
  }
  if (req.url === '/sse') {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let n = 0;
    const timer = setInterval(() => {
      res.write(`data: tick ${++n}\n\n`);
      if (n === 3) {
        clearInterval(timer);
        res.end();
      }
    }, 20);
    return;
  }
  res.end(`hello from the origin ${req.headers['x-forwarded-host'] ?? ''}`);
});
const wss = new WebSocketServer({ server: origin });
wss.on('connection', (ws) => ws.on('message', (m, binary) => ws.send(m, { binary })));
origin.listen(0, '127.0.0.1');
await once(origin, 'listening');
t.teardown(() => {
  wss.close();
  origin.close();
});
const originPort = (origin.address() as AddressInfo).port;

const relays: ClusterRelay[] = [];
for (const host of CLUSTER_ADDRESSES)
  relays.push(await spawnClusterRelay(t, host, redis.url, cert));
const [a, b, c] = relays as [ClusterRelay, ClusterRelay, ClusterRelay];
await waitForMesh(relays, cert.cert, 2);

t.test('a visitor on each relay reaches a tunnel connected to another one', async (t) => {
  // One connection, to B only: A and C must forward.
  const cli = spawnCli(t, [
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
  const hostname = await readyHostname(cli);
  t.match(hostname, /\.qt\.localhost$/);

  for (const via of [a, b, c]) {
    const res = await visit(via, hostname, cert.cert, '/');
    t.equal(res.status, 200, `GET through ${via.host}`);
    t.equal(res.body.toString(), `hello from the origin ${hostname}`);
  }

  // HTTP/2 visitors take the same forwarded path.
  const h2 = http2.connect(`https://${a.host}:${a.port}`, { ca: cert.cert, servername: hostname });
  t.teardown(() => h2.close());
  const h2req = h2.request({ ':path': '/', ':authority': hostname });
  const h2chunks: Buffer[] = [];
  h2req.on('data', (c: Buffer) => h2chunks.push(c));
  const [h2head] = (await once(h2req, 'response')) as [http2.IncomingHttpHeaders];
  await once(h2req, 'end');
  t.equal(h2head[':status'], 200, 'HTTP/2 GET through A');
  t.equal(Buffer.concat(h2chunks).toString(), `hello from the origin ${hostname}`);
  h2.close();

  const body = randomBytes(20 * 1024 * 1024);
  for (const via of [a, c]) {
    const res = await visit(via, hostname, cert.cert, '/upload', {
      method: 'POST',
      body,
      headers: { 'content-length': body.length },
      timeoutMs: 60_000,
    });
    t.equal(res.body.toString(), sha256(body), `20 MiB upload through ${via.host}: same hash`);
  }

  const sse = await visit(c, hostname, cert.cert, '/sse');
  t.equal(sse.headers['content-type'], 'text/event-stream');
  t.equal(sse.body.toString(), 'data: tick 1\n\ndata: tick 2\n\ndata: tick 3\n\n', 'SSE through C');

  const ws = new WebSocket(`wss://${a.host}:${a.port}/`, {
    headers: { host: hostname },
    servername: hostname,
    ca: cert.cert,
  } as WebSocket.ClientOptions);
  await once(ws, 'open');
  const echoes: string[] = [];
  ws.on('message', (m) => echoes.push(m.toString()));
  for (let i = 0; i < 3; i++) ws.send(`ping ${i}`);
  const until = Date.now() + 10_000;
  while (echoes.length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  t.same(echoes, ['ping 0', 'ping 1', 'ping 2'], 'WebSocket echo through A');
  ws.close();

  // An unknown hostname is a 404 on every relay; the admin API lists the tunnel's holder.
  t.equal((await visit(a, `nosuchname2.${TEST_DOMAIN}`, cert.cert)).status, 404);
  const list = await visit(c, TEST_DOMAIN, cert.cert, '/api/cluster', {
    headers: { authorization: 'Bearer admin-secret' },
  });
  const cluster = JSON.parse(list.body.toString()) as {
    tunnels: { label: string; holders: { url: string }[] }[];
    peers: unknown[];
  };
  const entry = cluster.tunnels.find((x) => `${x.label}.${TEST_DOMAIN}` === hostname);
  t.same(
    entry?.holders.map((h) => h.url),
    [b.url],
    'the admin API on C lists the tunnel and that B holds it',
  );
  t.equal(cluster.peers.length, 2);
  const metrics = await visit(a, TEST_DOMAIN, cert.cert, '/metrics', {
    headers: { authorization: 'Bearer admin-secret' },
  });
  t.match(
    metrics.body.toString(),
    new RegExp(`quick_tunnel_cluster_forwarded_requests_total\\{peer="${b.node}"\\} [1-9]`),
    'A counts the requests it forwarded to B',
  );
  t.match(metrics.body.toString(), /quick_tunnel_cluster_redis_up 1/);
});

t.test('a client with two connections keeps them on two relays', async (t) => {
  const cli = spawnCli(t, [
    String(originPort),
    '--relay',
    `${a.url},${b.url}`,
    '--ca',
    cert.certFile,
    '--log',
    'json',
  ]);
  const hostname = await readyHostname(cli);
  const label = hostname.split('.')[0]!;
  const until = Date.now() + 15_000;
  let holders: string[] = [];
  while (Date.now() < until) {
    const res = await visit(c, TEST_DOMAIN, cert.cert, '/api/cluster', {
      headers: { authorization: 'Bearer admin-secret' },
    });
    const body = JSON.parse(res.body.toString()) as {
      tunnels: { label: string; holders: { url: string }[] }[];
    };
    holders = (body.tunnels.find((x) => x.label === label)?.holders ?? []).map((h) => h.url);
    if (holders.length >= 2) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.equal(new Set(holders).size, 2, `held by two relays: ${holders.join(', ')}`);
  t.equal((await visit(c, hostname, cert.cert)).status, 200, 'and C reaches it');
});

t.test('the wrong cluster secret cannot join or receive forwarded traffic', async (t) => {
  const stranger = spawnCli(t, [
    'relay',
    '--domain',
    TEST_DOMAIN,
    '--host',
    '127.0.0.4',
    '--port',
    '0',
    '--http-port',
    '0',
    '--cert',
    cert.certFile,
    '--key',
    cert.keyFile,
    '--data-dir',
    `/tmp/qt-never-${process.pid}`,
    '--redis',
    redis.url,
    '--cluster-secret',
    'a-different-secret-0123456789',
  ]);
  t.equal(await stranger.exited, 1, 'a relay with another secret refuses to start');
  t.match(stranger.stderr.join('\n'), /another --cluster-secret/);

  // A relay that claims a place in the cluster without the secret (its record written
  // into Redis directly, as an attacker with Redis access could): the others dial it,
  // it cannot prove the secret, and nothing is forwarded to it.
  const rogue = await spawnClusterRelay(t, '127.0.0.4', `${redis.url}/1`, cert, [], {
    secret: 'rogue-secret-0123456789abcdef',
  });
  const conn = new RedisConnection({ url: redis.url });
  await conn.connect();
  t.teardown(() => conn.close());
  const prefix = `qt:${TEST_DOMAIN}:`;
  const far = String(Date.now() + 3_600_000);
  await conn.command(['ZADD', `${prefix}nodes`, far, 'n-rogue']);
  await conn.command([
    'SET',
    `${prefix}node:n-rogue`,
    JSON.stringify({ id: 'n-rogue', url: rogue.url }),
  ]);
  await conn.command([
    'HSET',
    `${prefix}route:stolen`,
    'owner',
    'e:stolen',
    'epoch',
    '999',
    'kind',
    'ephemeral',
    'access',
    '{}',
    'h:n-rogue',
    far,
  ]);
  await a.waitFor(
    /"peer-refused"|refused a relay-to-relay connection|"peer-unreachable".*n-rogue/,
    'stdout',
  );
  const res = await visit(a, `stolen.${TEST_DOMAIN}`, cert.cert, '/', { timeoutMs: 30_000 });
  t.equal(res.status, 503, 'a route to a relay without the secret is not used');
  t.notMatch(rogue.stdout.join('\n'), /forwarded-in/, 'the rogue relay received nothing');
  await conn.command(['ZREM', `${prefix}nodes`, 'n-rogue']);
  await conn.command(['DEL', `${prefix}node:n-rogue`, `${prefix}route:stolen`]);
});
