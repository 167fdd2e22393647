/**
 * Relay cluster benchmark (issue 18): a real redis-server and three relays on 127.0.0.2,
 * .3 and .4 (the test helpers' cluster: test/helpers/cluster.ts, test/helpers/redis.ts),
 * all loopback.
 *
 * 1. Small GETs through a forwarded path (visitor on relay A, the tunnel's CLI connected
 *    to relay B) against the local path (visitor on B), same run: req/s, p50/p99, ratio.
 * 2. MB/s of a large download (256 MiB) forwarded A → B against local on B.
 * 3. kill -9 of relay B holding 200 tunnels (clients `--relay B,A,C`, one connection
 *    each, run by bench/cluster-driver.ts): per tunnel, the time from the kill until a
 *    request through relay A answers 200 again; all-back time, p50, p99.
 *
 * Visitors speak HTTPS to a relay (the cluster relays run with the plain-HTTP port off). Relays and
 * CLI run from the sources (tsx), as the tests start them. Every loop is bounded in count
 * and time; every process is killed and every temp dir removed at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import https from 'node:https';
import type { Test } from 'tap';
import {
  CLUSTER_ADDRESSES,
  clusterCertificate,
  spawnClusterRelay,
  waitForMesh,
  type ClusterRelay,
} from '../test/helpers/cluster.js';
import { spawnCli } from '../test/helpers/processes.js';
import { startRedis } from '../test/helpers/redis.js';
import { readyHostname } from '../test/helpers/visitor.js';
import { ORIGIN_SOURCE, firstLine, spawnLogged } from './e2e.js';
import type { ParamSpec } from './params.js';
import type { BenchCase } from './run.js';
import { ROOT, median, procSample, round, sleep } from './scale-support.js';

const PARAMS = {
  'cluster-duration-s': { default: '8', help: 'seconds of small-GET load per path' },
  'cluster-connections': { default: '20', help: 'concurrent keep-alive visitor connections' },
  'cluster-transfer-bytes': { default: '256MiB', help: 'size of the download' },
  'cluster-transfer-runs': { default: '3', help: 'downloads per path; the median is reported' },
  'cluster-tunnels': { default: '200', help: 'tunnels on the relay that is killed' },
  'cluster-recovery-limit-s': {
    default: '60',
    help: 'give up waiting for the tunnels to come back after this many seconds',
  },
} satisfies Record<string, ParamSpec>;

/** Limits that would stop one client IP from holding 200 tunnels on a relay. */
const RELAY_ARGS = [
  '--max-connections-per-ip',
  '0',
  '--max-new-tunnels-per-minute',
  '0',
  '--max-visitor-connections-per-ip',
  '0',
];

interface Load {
  rps: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

function quantile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

/** One GET through `host:port` for `hostname`: its status (0 on error or timeout). */
function get(
  relay: { host: string; port: number },
  ca: string,
  hostname: string,
  path: string,
  agent: https.Agent | false,
  timeoutMs: number,
): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve) => {
    const options = { host: relay.host, port: relay.port, path, headers: { host: hostname } };
    const req = https.get({ ...options, servername: hostname, ca, agent }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', () => resolve({ status: 0, bytes }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, bytes: 0 }));
  });
}

/** `connections` keep-alive loops of small GETs for `durationS` (and at most 1M requests). */
async function load(
  relay: ClusterRelay,
  ca: string,
  hostname: string,
  connections: number,
  durationS: number,
): Promise<Load> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: connections });
  const latencies: number[] = [];
  let errors = 0;
  const deadline = performance.now() + durationS * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < deadline && latencies.length < 1_000_000) {
      const t0 = performance.now();
      const { status } = await get(relay, ca, hostname, '/small', agent, 10_000);
      if (status !== 200) errors++;
      latencies.push(performance.now() - t0);
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: connections }, loop));
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return {
    rps: latencies.length / elapsed,
    requests: latencies.length,
    p50Ms: round(quantile(latencies, 0.5), 2),
    p99Ms: round(quantile(latencies, 0.99), 2),
    errors,
  };
}

async function download(relay: ClusterRelay, ca: string, hostname: string, bytes: number) {
  const started = performance.now();
  const got = await get(relay, ca, hostname, `/download?bytes=${bytes}`, false, 120_000);
  if (got.status !== 200 || got.bytes !== bytes) {
    throw new Error(`download: status ${got.status}, ${got.bytes} of ${bytes} bytes`);
  }
  return bytes / 1e6 / ((performance.now() - started) / 1000);
}

/** Sends one IPC message to the driver and waits for the answer carrying `key`. */
function ask(
  driver: ChildProcess,
  msg: Record<string, unknown>,
  key: string,
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => finish(new Error(`driver: no ${key} in ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onMessage = (m: Record<string, unknown>): void => {
      if (typeof m['error'] === 'string') finish(new Error(`driver: ${m['error']}`));
      else if (key in m) finish(undefined, m);
    };
    const onExit = (code: number | null): void => finish(new Error(`driver exited (${code})`));
    const finish = (err: Error | undefined, m?: Record<string, unknown>): void => {
      clearTimeout(timer);
      driver.off('message', onMessage);
      driver.off('exit', onExit);
      if (err) reject(err);
      else resolve(m!);
    };
    driver.on('message', onMessage);
    driver.once('exit', onExit);
    driver.send(msg);
  });
}

export const clusterBench: BenchCase = {
  name: 'cluster',
  description:
    'relay cluster (Redis, 3 relays): forwarded vs local small GET and download, kill -9 recovery',
  params: PARAMS,
  async run(params, log) {
    const durationS = params.number('cluster-duration-s', PARAMS['cluster-duration-s']);
    const connections = params.number('cluster-connections', PARAMS['cluster-connections']);
    const bytes = params.bytes('cluster-transfer-bytes', PARAMS['cluster-transfer-bytes']);
    const runs = Math.max(
      1,
      params.number('cluster-transfer-runs', PARAMS['cluster-transfer-runs']),
    );
    const tunnels = Math.max(1, params.number('cluster-tunnels', PARAMS['cluster-tunnels']));
    const limitMs =
      params.number('cluster-recovery-limit-s', PARAMS['cluster-recovery-limit-s']) * 1000;

    // The test helpers register their cleanup on a tap Test: collect it here instead.
    const teardowns: (() => unknown)[] = [];
    const t = { teardown: (fn: () => unknown) => teardowns.push(fn) } as unknown as Test;
    const children: ChildProcess[] = [];
    try {
      const redis = await startRedis(t);
      const cert = await clusterCertificate(t);
      const origin = spawnLogged(['-e', ORIGIN_SOURCE], 'origin', log);
      children.push(origin);
      const originPort = Number(await firstLine(origin, /^\d+$/));
      origin.stdout!.resume();

      const relays: ClusterRelay[] = [];
      for (const host of CLUSTER_ADDRESSES) {
        relays.push(await spawnClusterRelay(t, host, redis.url, cert, RELAY_ARGS));
      }
      const [a, b, c] = relays as [ClusterRelay, ClusterRelay, ClusterRelay];
      await waitForMesh(relays, cert.cert, 2);
      const ca = cert.cert;
      log(`redis ${redis.url}; relays A ${a.url}, B ${b.url}, C ${c.url}`);

      // 1 + 2: one CLI on B only; visitors on A (forwarded) and on B (local).
      const cli = spawnCli(t, [
        String(originPort),
        '--relay',
        b.url,
        '--ca',
        cert.certFile,
        '--log',
        'json',
        // One connection: with more, the CLI spreads them over the relays the cluster
        // lists, and A would serve the tunnel locally.
        '--connections',
        '1',
      ]);
      const hostname = await readyHostname(cli);
      log(`tunnel ${hostname} on B`);
      // Warm up both paths (JIT, route cache, peer link), then measure each.
      await load(a, ca, hostname, connections, Math.min(2, durationS));
      await load(b, ca, hostname, connections, Math.min(2, durationS));
      // CPU time per request of each process (relay A, relay B, CLI): steadier than req/s
      // on a shared machine, where a path spread over more processes gets more CPU share.
      const pids = [a.child.pid!, b.child.pid!, cli.child.pid!];
      const measure = async (via: ClusterRelay): Promise<Load & { cpuUs: number[] }> => {
        const before = await Promise.all(pids.map((pid) => procSample(pid)));
        const r = await load(via, ca, hostname, connections, durationS);
        const after = await Promise.all(pids.map((pid) => procSample(pid)));
        const cpuUs = pids.map((_, i) =>
          Math.round(((after[i]!.cpuMs - before[i]!.cpuMs) * 1000) / Math.max(1, r.requests)),
        );
        return { ...r, cpuUs };
      };
      const local = await measure(b);
      log(
        `small GET local (B):     ${local.rps.toFixed(0)} req/s  p50 ${local.p50Ms} ms  p99 ${local.p99Ms} ms  errors ${local.errors}  CPU µs/request A ${local.cpuUs[0]} B ${local.cpuUs[1]} CLI ${local.cpuUs[2]}`,
      );
      const fwd = await measure(a);
      log(
        `small GET forwarded (A): ${fwd.rps.toFixed(0)} req/s  p50 ${fwd.p50Ms} ms  p99 ${fwd.p99Ms} ms  errors ${fwd.errors}  CPU µs/request A ${fwd.cpuUs[0]} B ${fwd.cpuUs[1]} CLI ${fwd.cpuUs[2]}`,
      );
      const cpu = (r: { cpuUs: number[] }) => ({ a: r.cpuUs[0], b: r.cpuUs[1], cli: r.cpuUs[2] });

      const localDown: number[] = [];
      const fwdDown: number[] = [];
      for (let i = 0; i < runs; i++) {
        localDown.push(await download(b, ca, hostname, bytes));
        fwdDown.push(await download(a, ca, hostname, bytes));
      }
      const localMBps = median(localDown);
      const fwdMBps = median(fwdDown);
      log(
        `download ${bytes / 2 ** 20} MiB: local ${localMBps.toFixed(0)} MB/s, forwarded ${fwdMBps.toFixed(0)} MB/s (median of ${runs})`,
      );
      cli.child.kill('SIGKILL');
      await cli.exited;

      // 3: `tunnels` clients on B (`--relay B,A,C`), then kill -9 of B.
      const driver = spawn(process.execPath, ['--import', 'tsx', 'bench/cluster-driver.ts'], {
        cwd: ROOT,
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      children.push(driver);
      const openedAt = performance.now();
      const opened = await ask(
        driver,
        { open: { count: tunnels, relays: [b.url, a.url, c.url], ca: cert.cert, originPort } },
        'opened',
        180_000,
      );
      const hosts = opened['opened'] as string[];
      log(
        `${hosts.length} tunnels on B in ${((performance.now() - openedAt) / 1000).toFixed(1)} s`,
      );
      // Every tunnel answers through A before the kill (and A has its route cached).
      for (const h of hosts) {
        const r = await get(a, ca, h, '/small', false, 10_000);
        if (r.status !== 200) throw new Error(`${h} answers ${r.status} through A before the kill`);
      }
      const killedAt = performance.now();
      const killedAtEpoch = Date.now();
      b.child.kill('SIGKILL');
      const backMs = await Promise.all(
        hosts.map(async (h) => {
          while (performance.now() - killedAt < limitMs) {
            const r = await get(a, ca, h, '/small', false, 5_000);
            if (r.status === 200) return performance.now() - killedAt;
            await sleep(50);
          }
          return Infinity;
        }),
      );
      const recovered = backMs.filter(Number.isFinite).sort((x, y) => x - y);
      const allBackMs = recovered.length === hosts.length ? recovered[recovered.length - 1]! : null;
      const p50 = quantile(recovered, 0.5);
      const p99 = quantile(recovered, 0.99);
      log(
        `kill -9 of B with ${hosts.length} tunnels: ${recovered.length} back through A; all back ${allBackMs === null ? 'NOT within the limit' : `${Math.round(allBackMs)} ms`}, p50 ${Math.round(p50)} ms, p99 ${Math.round(p99)} ms`,
      );
      // When the clients themselves noticed and were connected again (their events).
      const ev = (await ask(driver, { events: true }, 'events', 30_000))['events'] as {
        lost: (number | null)[];
        reconnected: (number | null)[];
      };
      const since = (list: (number | null)[]): number[] =>
        list
          .filter((x): x is number => x !== null)
          .map((x) => x - killedAtEpoch)
          .sort((x, y) => x - y);
      const lost = since(ev.lost);
      const reconnected = since(ev.reconnected);
      log(
        `clients: ${lost.length} saw the connection lost (p50 ${quantile(lost, 0.5)} ms), ${reconnected.length} reconnected (p50 ${quantile(reconnected, 0.5)} ms, last ${reconnected[reconnected.length - 1]} ms after the kill)`,
      );
      await ask(driver, { stop: true }, 'stopped', 30_000).catch(() => undefined);

      return {
        relays: 3,
        loadGenerator: 'node',
        connections,
        localRps: Math.round(local.rps),
        forwardedRps: Math.round(fwd.rps),
        rpsRatio: round(fwd.rps / local.rps, 3),
        localP50Ms: local.p50Ms,
        localP99Ms: local.p99Ms,
        forwardedP50Ms: fwd.p50Ms,
        forwardedP99Ms: fwd.p99Ms,
        localErrors: local.errors,
        forwardedErrors: fwd.errors,
        localCpuUsPerRequest: cpu(local),
        forwardedCpuUsPerRequest: cpu(fwd),
        transferMiB: bytes / 2 ** 20,
        transferRuns: runs,
        localDownloadMBps: Math.round(localMBps),
        forwardedDownloadMBps: Math.round(fwdMBps),
        downloadRatio: round(fwdMBps / localMBps, 3),
        recoveryTunnels: hosts.length,
        recoveryRecovered: recovered.length,
        recoveryAllBackMs: allBackMs === null ? null : Math.round(allBackMs),
        recoveryP50Ms: Math.round(p50),
        recoveryP99Ms: Math.round(p99),
        clientsLostP50Ms: quantile(lost, 0.5),
        clientsReconnectedP50Ms: quantile(reconnected, 0.5),
        clientsReconnectedLastMs: reconnected[reconnected.length - 1] ?? null,
        clientsReconnected: reconnected.length,
      };
    } finally {
      for (const ch of children) ch.kill('SIGKILL');
      await Promise.all(
        children.map((ch) =>
          ch.exitCode === null && ch.signalCode === null ? once(ch, 'exit') : undefined,
        ),
      );
      for (const fn of teardowns.reverse()) await Promise.resolve(fn()).catch(() => {});
    }
  },
};
