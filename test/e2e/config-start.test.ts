/**
 * `quick-tunnel start` with a quick-tunnel.yml, as a user runs it: the real CLI process
 * against a real relay (HTTPS, self-signed) on loopback. Two tunnels and a path route in
 * one process, one relay session per tunnel (asserted at the relay), each hostname
 * answering, `/api/x` reaching the second origin, a WebSocket following the route,
 * basic auth from an environment variable, `start web` starting only that one, and
 * `config check` for a good and a bad file.
 */
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import WebSocket, { WebSocketServer } from 'ws';
import { spawnCli, type CliProcess } from '../helpers/processes.js';
import { startOrigin, startTestRelay, tempDir, visit } from '../helpers/relay-env.js';

interface Ready {
  event: 'ready';
  tunnel: string;
  hostname: string;
  url: string;
  inspector?: string;
}

/** The ready event of tunnel `name`. */
async function readyOf(cli: CliProcess, name: string): Promise<Ready> {
  const line = await cli.waitFor(new RegExp(`"event":"ready".*"tunnel":"${name}"`), 'stdout');
  return JSON.parse(line) as Ready;
}

t.test('two tunnels + a path route (HTTP and WebSocket) in one process', async (t) => {
  const env = await startTestRelay(t);
  const work = await tempDir(t, 'qt-start-');
  const caFile = path.join(work, 'relay.pem');
  await writeFile(caFile, env.ca);

  const web = await startOrigin(t, (req, res) => res.end(`web ${req.url}`));
  const api = await startOrigin(t, (req, res) => res.end(`api ${req.url}`));
  const hooks = await startOrigin(t, (req, res) => res.end(`hooks ${req.method} ${req.url}`));
  // The API origin also speaks WebSocket: echoes with its name and the path it got.
  const wss = new WebSocketServer({ server: api.server });
  wss.on('connection', (socket, req) => {
    socket.on('message', (data) => socket.send(`api-ws ${req.url} ${String(data)}`));
  });
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
  });

  const config = path.join(work, 'quick-tunnel.yml');
  await writeFile(
    config,
    [
      `relay: ${env.url.href}`,
      'ca: relay.pem # relative to this file',
      'tunnels:',
      '  web:',
      `    target: ${web.port}`,
      '    connections: 1',
      '    routes:',
      '      - path: /api',
      `        target: 127.0.0.1:${api.port}`,
      '  hooks:',
      `    target: localhost:${hooks.port}`,
      '    connections: 1',
      '    basic-auth: ${HOOKS_AUTH}',
      '',
    ].join('\n'),
  );
  const configDir = path.join(work, 'config');
  const cli = spawnCli(t, ['start', '--config', config, '--log', 'json', '--inspect-port', '0'], {
    env: { QUICK_TUNNEL_CONFIG_DIR: configDir, HOOKS_AUTH: 'hook:s3cret' },
  });
  const webReady = await readyOf(cli, 'web');
  const hooksReady = await readyOf(cli, 'hooks');
  const webHost = webReady.hostname;
  const hooksHost = hooksReady.hostname;
  t.equal(
    cli.stdout.filter((l) => l.includes('"event":"ready"')).length,
    2,
    'one ready event per tunnel, named',
  );
  t.not(webHost, hooksHost, 'each tunnel has its own hostname');
  t.equal(env.relay.connections, 2, 'one relay session per tunnel (connections: 1 each)');
  t.equal(env.relay.registry.size, 2, 'two tunnels registered at the relay');

  t.equal((await visit(env, webHost, { path: '/' })).body.toString(), 'web /');
  t.equal((await visit(env, webHost, { path: '/api/x?q=1' })).body.toString(), 'api /api/x?q=1');
  t.equal((await visit(env, webHost, { path: '/api' })).body.toString(), 'api /api');
  t.equal(
    (await visit(env, webHost, { path: '/apix' })).body.toString(),
    'web /apix',
    'a route matches whole path segments only',
  );
  t.equal(
    (await visit(env, hooksHost, { path: '/' })).status,
    401,
    'basic auth from ${HOOKS_AUTH}',
  );
  const hooked = await visit(env, hooksHost, {
    method: 'POST',
    path: '/stripe',
    body: '{}',
    headers: { authorization: `Basic ${Buffer.from('hook:s3cret').toString('base64')}` },
  });
  t.equal(hooked.body.toString(), 'hooks POST /stripe');

  // A WebSocket under /api goes to the API origin, like plain requests.
  const ws = new WebSocket(`ws://127.0.0.1:${env.httpPort}/api/socket`, {
    headers: { host: webHost },
  });
  t.teardown(() => ws.terminate());
  await once(ws, 'open');
  ws.send('ping');
  const [reply] = await once(ws, 'message');
  t.equal(String(reply), 'api-ws /api/socket ping', 'the WebSocket followed the /api route');
  ws.close();

  await cli.waitFor(/"event":"request".*"tunnel":"hooks"|"tunnel":"hooks".*"event":"request"/);
  const requests = cli.stdout
    .filter((l) => l.includes('"event":"request"'))
    .map((l) => JSON.parse(l) as { tunnel: string; path: string });
  t.ok(
    requests.some((r) => r.tunnel === 'web' && r.path === '/api/x?q=1'),
    'request events carry the tunnel name',
  );

  // One web inspector for the process, listing both tunnels.
  t.ok(webReady.inspector, 'ready carries the inspector URL');
  t.equal(webReady.inspector, hooksReady.inspector, 'one inspector for every tunnel');
  const listed = (await (await fetch(`${webReady.inspector}/api/tunnels`)).json()) as {
    tunnels: { name: string }[];
  };
  t.same(listed.tunnels.map((x) => x.name).sort(), ['hooks', 'web'], 'it shows both tunnels');

  cli.child.kill('SIGINT');
  t.equal(await cli.exited, 0, 'Ctrl-C stops every tunnel and exits 0');
  t.equal(
    cli.stdout.filter((l) => l.includes('"event":"closed"')).length,
    2,
    'a closed event per tunnel',
  );

  // `start web`: only that one.
  const only = spawnCli(t, ['start', 'web', '--config', config, '--log', 'json', '--no-inspect'], {
    env: { QUICK_TUNNEL_CONFIG_DIR: configDir, HOOKS_AUTH: 'hook:s3cret' },
  });
  const host = (await readyOf(only, 'web')).hostname;
  t.equal((await visit(env, host, { path: '/api/y' })).body.toString(), 'api /api/y');
  t.notOk(
    only.stdout.some((l) => l.includes('"tunnel":"hooks"')),
    'nothing from the hooks tunnel',
  );
  t.equal(env.relay.registry.size, 1, 'one tunnel at the relay');
  only.child.kill('SIGINT');
  t.equal(await only.exited, 0);
});

t.test('config check: a good file, a bad file (file:line: key), unknown tunnel', async (t) => {
  const work = await tempDir(t, 'qt-check-');
  const good = path.join(work, 'good.yml');
  await writeFile(
    good,
    'tunnels:\n  web:\n    target: 3000\n    routes:\n      - { path: /api, target: 8080 }\n',
  );
  const ok = spawnCli(t, ['config', 'check', '--config', good], {
    env: { QUICK_TUNNEL_CONFIG_DIR: work },
  });
  t.equal(await ok.exited, 0);
  t.match(
    ok.stdout.join('\n'),
    /OK, 1 tunnel[\s\S]*web: localhost:3000[\s\S]*\/api -> localhost:8080/,
  );

  const bad = path.join(work, 'bad.yml');
  await writeFile(bad, 'tunnels:\n  web:\n    target: 3000\n    host_header: rewrite\n');
  const failed = spawnCli(t, ['config', 'check', '--config', bad], {
    env: { QUICK_TUNNEL_CONFIG_DIR: work },
  });
  t.equal(await failed.exited, 1);
  t.match(
    failed.stderr.join('\n'),
    `error: ${bad}:4:5: tunnels.web.host_header: unknown key 'host_header'`,
  );

  const missing = spawnCli(t, ['start', 'api', '--config', good], {
    env: { QUICK_TUNNEL_CONFIG_DIR: work },
  });
  t.equal(await missing.exited, 1);
  t.match(missing.stderr.join('\n'), /no tunnel 'api' in .*good\.yml\nhint: its tunnels: web/);
});

t.test('a relay saved by login (with its certificate fingerprint) serves the config', async (t) => {
  const env = await startTestRelay(t);
  const work = await tempDir(t, 'qt-start-login-');
  const configDir = path.join(work, 'config');
  await mkdir(configDir);
  await writeFile(
    path.join(configDir, 'config.json'),
    JSON.stringify({
      relay: env.url.href,
      caFingerprint: `SHA256:${env.relay.certificate!.fingerprint256}`,
    }),
  );
  const origin = await startOrigin(t, (req, res) => res.end(`pinned ${req.url}`));
  const config = path.join(work, 'quick-tunnel.yml');
  await writeFile(config, `tunnels:\n  app: ${origin.port}\n`);
  const cli = spawnCli(t, ['start', '--config', config, '--log', 'json', '--no-inspect'], {
    env: { QUICK_TUNNEL_CONFIG_DIR: configDir },
  });
  const ready = await readyOf(cli, 'app');
  t.match(ready.url, /^https:\/\//, 'the saved relay, over TLS pinned by fingerprint');
  t.equal((await visit(env, ready.hostname, { path: '/z' })).body.toString(), 'pinned /z');
  cli.child.kill('SIGINT');
  t.equal(await cli.exited, 0);
});
