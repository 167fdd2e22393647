/**
 * Reaching the relay through an HTTP proxy (cli/tunnel/proxy-agent.ts on
 * https-proxy-agent, cli/config.ts relayProxy on proxy-from-env): a real CONNECT proxy
 * on loopback in front of a TLS WebSocket server and an HTTPS server; what the proxy is
 * asked, and what a user reads when it refuses, wants credentials, stalls or is down.
 */
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Test } from 'tap';
import t from 'tap';
import WebSocket, { WebSocketServer } from 'ws';
import { relayProxy } from '../../cli/config.js';
import { dialRelay } from '../../cli/tunnel/client.js';
import { pinnedRelayCa } from '../../cli/tunnel/pin.js';
import { connectThroughProxy, proxyAgent } from '../../cli/tunnel/proxy-agent.js';
import { proxyAgentFor } from '../../cli/tunnel/proxy.js';
import { remoteRelay } from '../../cli/tunnel/relay-connector.js';
import { ConfigError, QuickTunnelError } from '../../shared/errors.js';
import { TEST_DOMAIN, testCertificate } from '../helpers/certs.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { clusterCertificate } from '../helpers/cluster.js';
import { startTestRelay } from '../helpers/relay-env.js';

interface TestProxy {
  url: URL;
  /** CONNECT targets asked for, in order. */
  asked: string[];
  /** Proxy-Authorization headers received, in order. */
  auth: (string | undefined)[];
}

/**
 * A CONNECT proxy on 127.0.0.1. `answer` decides per request: 200 tunnels to 127.0.0.1
 * at the asked port (the host is whatever the client asked for), 'stall' never answers,
 * anything else is that status.
 */
async function startProxy(
  t: Test,
  answer: (req: http.IncomingMessage) => number | 'stall' = () => 200,
): Promise<TestProxy> {
  const asked: string[] = [];
  const auth: (string | undefined)[] = [];
  const server = http.createServer((_req, res) => res.writeHead(405).end());
  server.on('connect', (req: http.IncomingMessage, socket: net.Socket) => {
    asked.push(req.url ?? '');
    auth.push(req.headers['proxy-authorization']);
    socket.on('error', () => {});
    const verdict = answer(req);
    if (verdict === 'stall') return;
    if (verdict !== 200) {
      socket.end(`HTTP/1.1 ${verdict} No\r\nProxy-Authenticate: Basic realm="qt"\r\n\r\n`);
      return;
    }
    const port = Number((req.url ?? '').split(':').pop());
    const upstream = net.connect({ host: '127.0.0.1', port }, () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('close', () => upstream.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as net.AddressInfo).port;
  return { url: new URL(`http://127.0.0.1:${port}`), asked, auth };
}

/** An HTTPS server for `qt.localhost` answering GET with 'hello' and a WebSocket echo. */
async function startTarget(t: Test): Promise<{ port: number; ca: string }> {
  const { cert, key } = await testCertificate();
  const server = https.createServer({ cert, key }, (_req, res) => res.end('hello'));
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (data) => ws.send(data)));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, ca: cert };
}

function get(port: number, ca: string, agent: http.Agent): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: `www.${TEST_DOMAIN}`, port, path: '/', ca, agent, servername: `www.${TEST_DOMAIN}` },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve(body));
      },
    );
    req.on('error', reject);
  });
}

t.test('https through the proxy: CONNECT to the target, TLS verified end to end', async (t) => {
  const proxy = await startProxy(t);
  const target = await startTarget(t);
  t.equal(await get(target.port, target.ca, proxyAgent(proxy.url, true)), 'hello');
  t.same(proxy.asked, [`www.${TEST_DOMAIN}:${target.port}`]);
  t.same(proxy.auth, [undefined], 'no credentials when the proxy URL has none');

  // The TLS inside the tunnel is the client's: without the CA the certificate is refused.
  await t.rejects(
    new Promise((resolve, reject) => {
      https
        .get({ host: `www.${TEST_DOMAIN}`, port: target.port, agent: proxyAgent(proxy.url, true) })
        .on('response', resolve)
        .on('error', reject);
    }),
    { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' },
  );
});

t.test('a WebSocket (ws) through the proxy', async (t) => {
  const proxy = await startProxy(t);
  const target = await startTarget(t);
  const ws = new WebSocket(`wss://${TEST_DOMAIN}:${target.port}/`, {
    agent: proxyAgent(proxy.url, true),
    ca: target.ca,
  });
  t.teardown(() => ws.terminate());
  await once(ws, 'open');
  ws.send('ping');
  const [data] = (await once(ws, 'message')) as [Buffer];
  t.equal(data.toString(), 'ping');
  t.same(proxy.asked, [`${TEST_DOMAIN}:${target.port}`]);
});

t.test('credentials in the proxy URL go as Proxy-Authorization: Basic', async (t) => {
  const proxy = await startProxy(t, (req) =>
    req.headers['proxy-authorization'] === undefined ? 407 : 200,
  );
  const target = await startTarget(t);
  const withCreds = new URL(proxy.url);
  withCreds.username = 'me';
  withCreds.password = 'p%40ss';
  t.equal(await get(target.port, target.ca, proxyAgent(withCreds, true)), 'hello');
  t.same(proxy.auth, [`Basic ${Buffer.from('me:p@ss').toString('base64')}`]);
});

t.test('the proxy refuses: QT_ERR_PROXY saying what to do, not "not a relay"', async (t) => {
  const target = await startTarget(t);
  const p407 = await startProxy(t, () => 407);
  const p403 = await startProxy(t, () => 403);
  const p502 = await startProxy(t, () => 502);
  await t.rejects(get(target.port, target.ca, proxyAgent(p407.url, true)), {
    code: 'QT_ERR_PROXY',
    retryable: false,
    message: /wants credentials \(407\).*http:\/\/user:pass@proxy:port/,
  });
  await t.rejects(get(target.port, target.ca, proxyAgent(p403.url, true)), {
    code: 'QT_ERR_PROXY',
    retryable: false,
    message: `the proxy ${p403.url.host} refused to connect to www.${TEST_DOMAIN}:${target.port}: 403 No`,
  });
  await t.rejects(get(target.port, target.ca, proxyAgent(p502.url, true)), {
    code: 'QT_ERR_PROXY',
    retryable: true,
  });

  // Through the tunnel client: the proxy's error as is (was: "answered HTTP 407 on
  // /_tunnel: is it a quick-tunnel relay?").
  const err = await dialRelay({
    relay: new URL(`https://${TEST_DOMAIN}:${target.port}`),
    request: { clientVersion: '0.0.0' },
    ca: target.ca,
    agent: proxyAgent(p407.url, true),
  }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof QuickTunnelError);
  t.match(err, { code: 'QT_ERR_PROXY', message: /wants credentials/ });
});

t.test('a proxy that never answers, and one that is down', async (t) => {
  const target = await startTarget(t);
  const stalled = await startProxy(t, () => 'stall');
  await t.rejects(get(target.port, target.ca, proxyAgent(stalled.url, true, 300)), {
    code: 'QT_ERR_PROXY',
    retryable: true,
    message: `the proxy ${stalled.url.host} did not answer within 300 ms`,
  });
  t.equal(stalled.asked.length, 1);

  const closed = net.createServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const port = (closed.address() as net.AddressInfo).port;
  closed.close();
  await once(closed, 'close');
  await t.rejects(
    get(target.port, target.ca, proxyAgent(new URL(`http://127.0.0.1:${port}`), true)),
    { code: 'QT_ERR_PROXY', message: `cannot reach the proxy 127.0.0.1:${port}: ECONNREFUSED` },
  );
});

t.test("the time limit on the proxy's answer runs on the clock, not 1 ms early", async (t) => {
  const clock = new FakeClock();
  const stalled = await startProxy(t, () => 'stall');
  let settled = false;
  const connecting = connectThroughProxy(stalled.url, `relay.${TEST_DOMAIN}`, 443, 10_000, clock);
  void connecting.then(
    () => (settled = true),
    () => (settled = true),
  );
  t.same(clock.pendingDelays(), [10_000], 'the time limit');
  // Bounded: the proxy receives the CONNECT (and never answers it).
  for (let i = 0; i < 2_000 && stalled.asked.length === 0; i++) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  t.same(stalled.asked, [`relay.${TEST_DOMAIN}:443`]);
  clock.advance(9_999);
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
  t.equal(settled, false, 'still waiting 1 ms before the limit');
  clock.advance(1);
  await t.rejects(connecting, {
    code: 'QT_ERR_PROXY',
    message: `the proxy ${stalled.url.host} did not answer within 10000 ms`,
  });
  t.equal(clock.pending, 0, 'no timer left');
});

t.test('--ca-fingerprint through the proxy: the pin is checked on a CONNECT tunnel', async (t) => {
  const proxy = await startProxy(t);
  const target = await startTarget(t);
  const relay = new URL(`https://${TEST_DOMAIN}:${target.port}`);
  const fingerprint = new X509Certificate(target.ca).fingerprint256;
  const pem = await pinnedRelayCa(relay, fingerprint, '--ca-fingerprint', proxy.url);
  t.equal(pem?.trim(), new X509Certificate(target.ca).toString().trim());
  t.same(proxy.asked, [`${TEST_DOMAIN}:${target.port}`]);
});

t.test('relayProxy: HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY', async (t) => {
  const names = ['HTTPS_PROXY', 'HTTP_PROXY', 'ALL_PROXY', 'NO_PROXY'];
  const saved = new Map<string, string | undefined>();
  for (const n of [...names, ...names.map((x) => x.toLowerCase())]) {
    saved.set(n, process.env[n]);
    delete process.env[n];
  }
  t.teardown(() => {
    for (const [n, v] of saved) {
      if (v === undefined) delete process.env[n];
      else process.env[n] = v;
    }
  });
  const relay = new URL('https://relay.example.com');
  t.equal(relayProxy(relay), undefined, 'no proxy set: direct');

  process.env['HTTPS_PROXY'] = 'http://proxy.corp:3128';
  t.equal(relayProxy(relay)?.href, 'http://proxy.corp:3128/');
  t.equal(relayProxy(new URL('http://relay.example.com')), undefined, 'plain http: HTTP_PROXY');
  process.env['HTTP_PROXY'] = 'http://plain.corp:8080';
  t.equal(relayProxy(new URL('http://relay.example.com'))?.host, 'plain.corp:8080');

  process.env['NO_PROXY'] = '.example.com';
  t.equal(relayProxy(relay), undefined, 'NO_PROXY .example.com');
  process.env['NO_PROXY'] = 'other.org, relay.example.com:8443';
  t.ok(relayProxy(relay), 'NO_PROXY for another port: still the proxy');
  t.equal(relayProxy(new URL('https://relay.example.com:8443')), undefined);
  process.env['NO_PROXY'] = '*';
  t.equal(relayProxy(relay), undefined, 'NO_PROXY=*');
  delete process.env['NO_PROXY'];

  process.env['HTTPS_PROXY'] = 'proxy.corp:3128';
  t.equal(relayProxy(relay)?.href, 'http://proxy.corp:3128/', 'no scheme: http://, as curl');
  delete process.env['HTTPS_PROXY'];
  process.env['all_proxy'] = 'http://all.corp:1';
  t.equal(relayProxy(relay)?.host, 'all.corp:1', 'ALL_PROXY when nothing more specific');
  process.env['all_proxy'] = 'socks5://all.corp:1080';
  t.throws(() => relayProxy(relay), ConfigError);
  t.throws(() => relayProxy(relay), { message: /'socks5:\/\/all\.corp:1080' is not an http/ });
});

t.test(
  'cluster relays: each gets its own proxy choice, and one NO_PROXY leaves out is dialled directly',
  async (t) => {
    // One certificate for both, as a cluster has (two self-signed ones with one subject
    // would confuse OpenSSL's lookup by name).
    const cert = await clusterCertificate(t);
    const a = await startTestRelay(t, { certFile: cert.certFile, keyFile: cert.keyFile });
    const b = await startTestRelay(t, { certFile: cert.certFile, keyFile: cert.keyFile });
    const proxy = await startProxy(t);
    // As expose.ts builds it: HTTPS_PROXY for the first relay, and NO_PROXY naming the
    // second one's port (the agent is loaded on first use, cli/tunnel/proxy.ts).
    const proxyFor = (url: URL): URL | undefined =>
      url.port === String(b.httpsPort) ? undefined : proxy.url;
    const connector = remoteRelay({
      relay: a.url,
      more: [b.url],
      ca: cert.cert,
      connections: 1,
      agent: await proxyAgentFor(proxyFor(a.url), a.url),
      agentFor: (url) => proxyAgentFor(proxyFor(url), url),
    });
    const request = { clientVersion: 'test' };
    for (const [relay, via] of [
      [undefined, 'the proxy'],
      [b.url.toString(), 'no proxy'],
      [a.url.toString(), 'the proxy'],
    ] as const) {
      const before = proxy.asked.length;
      const conn = await connector.connect(request, relay);
      t.ok(conn.assignment.hostname, `${relay ?? 'the first relay'}: a tunnel`);
      t.equal(
        proxy.asked.length - before,
        via === 'the proxy' ? 1 : 0,
        `${relay ?? 'the first relay'}: ${via}`,
      );
      conn.session.close();
      await conn.closed;
    }
    t.same(proxy.asked, [`${TEST_DOMAIN}:${a.httpsPort}`, `${TEST_DOMAIN}:${a.httpsPort}`]);
  },
);
