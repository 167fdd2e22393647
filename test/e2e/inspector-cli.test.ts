/**
 * The web inspector as the real `quick-tunnel` process runs it (embedded relay): its URL
 * printed with the public one (text line, `inspector` field of the JSON `ready` event),
 * fed by line-mode runs too, a taken port, --no-inspect, and a bad --inspect-port.
 */
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { spawnCli } from '../helpers/processes.js';

function getJson(url: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>);
          } catch (err) {
            reject(err instanceof Error ? err : new Error(String(err)));
          }
        });
      })
      .on('error', reject);
  });
}

/** GET through the tunnel: to the embedded relay on loopback with the public Host. */
function visit(publicUrl: string, path: string): Promise<number> {
  const url = new URL(publicUrl);
  return new Promise((resolve, reject) => {
    http
      .get(
        { host: '127.0.0.1', port: Number(url.port), path, headers: { host: url.host } },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      )
      .on('error', reject);
  });
}

async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function startOrigin(t: Test): Promise<number> {
  const server = http.createServer((req, res) => res.end(`hello ${req.url}`));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

/** A port held by another listener for the whole test. */
async function takenPort(t: Test): Promise<number> {
  const blocker = http.createServer();
  blocker.listen(0, '127.0.0.1');
  await once(blocker, 'listening');
  t.teardown(() => blocker.close());
  return (blocker.address() as AddressInfo).port;
}

t.test('text mode prints the inspector URL after the public one; the API reads it', async (t) => {
  const originPort = await startOrigin(t);
  const taken = await takenPort(t);
  const cli = spawnCli(t, [
    `127.0.0.1:${originPort}`,
    '--log',
    'text',
    '--inspect-port',
    String(taken),
  ]);
  const forwarding = await cli.waitFor(/^Forwarding /, 'stdout', 60_000);
  const inspectorLine = await cli.waitFor(/^Inspector /, 'stdout');
  t.equal(cli.stdout.indexOf(forwarding), 0, 'the public URL comes first');
  const publicUrl = /^Forwarding (\S+)/.exec(forwarding)![1]!;
  const inspector = /^Inspector (http:\/\/127\.0\.0\.1:(\d+))$/.exec(inspectorLine);
  t.ok(inspector, inspectorLine);
  t.not(Number(inspector![2]), taken, 'a taken port moves it to another one');

  const tunnels = (await getJson(`${inspector![1]}/api/tunnels`)) as {
    tunnels: { public_url: string; status: string }[];
  };
  t.equal(tunnels.tunnels[0]?.public_url, publicUrl, 'scripts read the public URL here');
  t.equal(tunnels.tunnels[0]?.status, 'online');

  t.equal(await visit(publicUrl, '/from-text-mode'), 200);
  await cli.waitFor(/GET \/from-text-mode 200/, 'stdout');
  const requests = (await getJson(`${inspector![1]}/api/requests`)) as {
    requests: { path: string; status: number }[];
  };
  t.match(requests.requests, [{ path: '/from-text-mode', status: 200 }], 'line mode feeds it');
});

t.test('json mode: the ready event carries the inspector URL', async (t) => {
  const originPort = await startOrigin(t);
  const cli = spawnCli(t, [`127.0.0.1:${originPort}`, '--log', 'json', '--inspect-port', '70000']);
  const bad = await cli.exited;
  t.equal(bad, 1, '--inspect-port 70000 is refused');
  t.match(cli.stderr.join('\n'), /--inspect-port must be a port number/);

  const port = await takenPort(t);
  const ok = spawnCli(t, [
    `127.0.0.1:${originPort}`,
    '--log',
    'json',
    '--inspect-port',
    String(port),
  ]);
  const ready = JSON.parse(await ok.waitFor(/"event":"ready"/, 'stdout', 60_000)) as {
    url: string;
    inspector: string;
  };
  t.match(ready.inspector, /^http:\/\/127\.0\.0\.1:\d+$/);
  const tunnels = (await getJson(`${ready.inspector}/api/tunnels`)) as {
    tunnels: { public_url: string }[];
  };
  t.equal(tunnels.tunnels[0]?.public_url, ready.url);
});

t.test('--no-inspect: no inspector, no URL printed', async (t) => {
  const originPort = await startOrigin(t);
  // A port nothing listens on: --no-inspect must leave it that way.
  const probe = http.createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as AddressInfo).port;
  probe.close();
  await once(probe, 'close');
  const cli = spawnCli(t, [
    `127.0.0.1:${originPort}`,
    '--log',
    'json',
    '--no-inspect',
    '--inspect-port',
    String(port),
  ]);
  const ready = JSON.parse(await cli.waitFor(/"event":"ready"/, 'stdout', 60_000)) as Record<
    string,
    unknown
  >;
  t.notOk('inspector' in ready, 'no inspector field');
  t.equal(await listening(port), false, 'nothing listens on the inspector port');

  const text = spawnCli(t, [`127.0.0.1:${originPort}`, '--log', 'text', '--no-inspect']);
  await text.waitFor(/^Forwarding /, 'stdout', 60_000);
  t.equal(await visit(/^Forwarding (\S+)/.exec(text.stdout[0]!)![1]!, '/x'), 200);
  await text.waitFor(/GET \/x 200/, 'stdout');
  t.notOk(
    text.stdout.some((l) => l.startsWith('Inspector')),
    'no Inspector line',
  );
});

t.test('quick-tunnel start: one inspector for every tunnel of the config', async (t) => {
  const webPort = await startOrigin(t);
  const hooksPort = await startOrigin(t);
  const work = await mkdtemp(path.join(os.tmpdir(), 'qt-inspect-start-'));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  const config = path.join(work, 'quick-tunnel.yml');
  await writeFile(
    config,
    [
      'tunnels:',
      '  web:',
      `    target: ${webPort}`,
      '  hooks:',
      `    target: ${hooksPort}`,
      '',
    ].join('\n'),
  );
  const cli = spawnCli(t, ['start', '--config', config, '--log', 'json', '--inspect-port', '0'], {
    env: { QUICK_TUNNEL_CONFIG_DIR: path.join(work, 'config') },
  });
  const ready = async (name: string) =>
    JSON.parse(
      await cli.waitFor(new RegExp(`"event":"ready".*"tunnel":"${name}"`), 'stdout', 60_000),
    ) as { url: string; urls: string[]; inspector: string };
  const web = await ready('web');
  const hooks = await ready('hooks');
  t.equal(web.inspector, hooks.inspector, 'one inspector for both');

  const tunnels = (await getJson(`${web.inspector}/api/tunnels`)) as {
    tunnels: { name: string; public_url: string }[];
  };
  t.same(
    tunnels.tunnels.map((x) => [x.name, x.public_url]),
    [
      ['web', web.url],
      ['hooks', hooks.url],
    ],
  );
  t.equal(await visit(web.url, '/w'), 200);
  t.equal(await visit(hooks.url, '/h'), 200);
  await cli.waitFor(/"event":"request".*"path":"\/h"/, 'stdout');
  await cli.waitFor(/"event":"request".*"path":"\/w"/, 'stdout');
  const requests = (await getJson(`${web.inspector}/api/requests`)) as {
    requests: { tunnel_name: string; path: string; id: number }[];
  };
  t.same(requests.requests.map((r) => [r.tunnel_name, r.path]).sort(), [
    ['hooks', '/h'],
    ['web', '/w'],
  ]);
  t.not(requests.requests[0]!.id, requests.requests[1]!.id, 'ids unique across tunnels');
});
