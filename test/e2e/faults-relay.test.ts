/**
 * Fault suite, relay side: SIGKILL + restart during traffic, SIGTERM drain with requests in flight, an origin dying mid-download.
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
import { events, hit, readyHostname, until200, type Outcome } from '../helpers/visitor.js';

t.test(
  'relay SIGKILLed and restarted during steady traffic: same hostname back, nothing hangs',
  async (t) => {
    const dataDir = await tempDir(t);
    const relay1 = await spawnRelay(t, dataDir);
    const ca = await readFile(relay1.certPath, 'utf8');
    const port = relay1.httpsPort;
    const { port: originPort } = await startOrigin(t, (_req, res) => res.end('ok'));
    const cli = spawnTunnelCli(t, originPort, { port: port, certPath: relay1.certPath });
    const hostname = await readyHostname(cli);

    const outcomes: Outcome[] = [];
    let traffic = true;
    const loop = (async () => {
      while (traffic) {
        outcomes.push(await hit(port, hostname, ca, '/', 20_000));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();

    await until200(port, hostname, ca, 5_000);
    relay1.child.kill('SIGKILL');
    await relay1.exited;
    await cli.waitFor(/"event":"connection-lost"/, 'stdout');
    await new Promise((r) => setTimeout(r, 1_000)); // the relay stays down for a second
    const relay2 = await spawnRelay(t, dataDir, [], { port });
    // until200 starts as soon as the relay logged that it listens.
    const sinceListen = await until200(port, hostname, ca, 10_000);
    traffic = false;
    await loop;
    t.comment(
      `recovery after relay restart: ${Math.round(sinceListen)} ms from relay listening to first 200`,
    );
    t.ok(
      sinceListen <= 5_000,
      `tunnel back within 5 s of the relay's return (${Math.round(sinceListen)} ms)`,
    );
    const hung = outcomes.filter((o) => 'error' in o && o.error === 'HUNG');
    t.equal(hung.length, 0, 'no visitor request hung');
    const odd = outcomes.filter(
      (o) => 'status' in o && o.status !== 200 && o.status !== 503 && o.status !== 502,
    );
    t.same(
      odd,
      [],
      'requests in the gap got 200 (held), 502/503, or a refused connection; never a 404',
    );
    t.ok(events(cli, 'reconnected').length >= 1, 'the CLI printed that it reconnected');
    const reconnected = events(cli, 'reconnected')[0]!;
    t.equal(reconnected['sameHostname'], true, 'same hostname after the relay restart');
    relay2.child.kill('SIGTERM');
  },
);

t.test(
  'relay SIGTERM with 50 requests in flight: all complete within the grace period',
  async (t) => {
    const relay = await spawnRelay(t, await tempDir(t), ['--drain-timeout', '10']);
    const ca = await readFile(relay.certPath, 'utf8');
    let arrived = 0;
    let allArrived: () => void = () => {};
    const arrivedAll = new Promise<void>((r) => (allArrived = r));
    const { port: originPort } = await startOrigin(t, (_req, res) => {
      if (++arrived === 50) allArrived();
      setTimeout(() => res.end('slow ok'), 1_500);
    });
    const cli = spawnTunnelCli(t, originPort, { port: relay.httpsPort, certPath: relay.certPath });
    const hostname = await readyHostname(cli);
    const inflight = Array.from({ length: 50 }, () => hit(relay.httpsPort, hostname, ca));
    await arrivedAll;
    const termAt = performance.now();
    relay.child.kill('SIGTERM');
    const results = await Promise.all(inflight);
    const notOk = results.filter((r) => !('status' in r) || r.status !== 200);
    if (notOk.length > 0) t.comment(JSON.stringify(notOk.slice(0, 3)));
    const code = await relay.exited;
    const exitMs = performance.now() - termAt;
    t.comment(`drain: relay exited ${Math.round(exitMs)} ms after SIGTERM`);
    t.equal(
      results.filter((r) => 'status' in r && r.status === 200 && r.body === 'slow ok').length,
      50,
      '50/50 completed',
    );
    t.equal(code, 0, 'relay exits 0');
    t.ok(exitMs < 11_000, 'relay exits within the grace period');
  },
);

t.test(
  'origin dies mid-download: the visitor sees an aborted transfer, never a clean short body',
  async (t) => {
    const relay = await spawnRelay(t, await tempDir(t));
    const ca = await readFile(relay.certPath, 'utf8');
    const { port: originPort } = await startOrigin(t, (req, res) => {
      if (req.url === '/ok') {
        res.end('fine');
        return;
      }
      res.writeHead(
        200,
        req.url === '/length' ? { 'content-length': String(8 * 1024 * 1024) } : {},
      );
      res.write(Buffer.alloc(256 * 1024, 1));
      setTimeout(() => res.socket?.destroy(), 50);
    });
    const cli = spawnTunnelCli(t, originPort, { port: relay.httpsPort, certPath: relay.certPath });
    const hostname = await readyHostname(cli);
    for (const path of ['/chunked', '/length']) {
      const r = await hit(relay.httpsPort, hostname, ca, path);
      t.ok(
        'error' in r,
        `${path}: transfer aborted (${'error' in r ? r.error : `clean ${r.status}`})`,
      );
      if ('error' in r) t.not(r.error, 'HUNG');
    }
    const ok = await hit(relay.httpsPort, hostname, ca, '/ok');
    t.match(ok, { status: 200, body: 'fine' }, 'other requests unaffected');
  },
);
