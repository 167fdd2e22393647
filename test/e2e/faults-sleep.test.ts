/**
 * Fault suite: the laptop sleeps (CLI SIGSTOPped for 40 s) and wakes.
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

t.test(
  'laptop sleep: CLI stopped (SIGSTOP) for 40 s, then continued, recovers on its own',
  async (t) => {
    const relay = await spawnRelay(t, await tempDir(t));
    const ca = await readFile(relay.certPath, 'utf8');
    const { port: originPort } = await startOrigin(t, (_req, res) => res.end('awake'));
    const cli = spawnTunnelCli(t, originPort, { port: relay.httpsPort, certPath: relay.certPath });
    const hostname = await readyHostname(cli);
    await until200(relay.httpsPort, hostname, ca, 5_000);
    cli.child.kill('SIGSTOP');
    await new Promise((r) => setTimeout(r, 40_000));
    const during = await hit(relay.httpsPort, hostname, ca, '/', 20_000);
    t.ok(
      !('error' in during && during.error === 'HUNG'),
      'a request during the sleep is answered (503/404), not hung',
    );
    cli.child.kill('SIGCONT');
    const recoverMs = await until200(relay.httpsPort, hostname, ca, 15_000);
    t.comment(`sleep: serving again ${Math.round(recoverMs)} ms after SIGCONT`);
    t.ok(recoverMs <= 10_000, `recovered within 10 s of waking (${Math.round(recoverMs)} ms)`);
    const back = events(cli, 'reconnected');
    t.ok(
      back.length >= 1 && back.every((e) => e['sameHostname'] === true),
      'same hostname after waking',
    );
  },
);
