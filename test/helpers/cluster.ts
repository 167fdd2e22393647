/**
 * A relay cluster of real processes for tests: one redis-server (per test file), relays
 * on 127.0.0.2, .3, .4 (each its own address, like separate machines) sharing one
 * certificate for qt.localhost, *.qt.localhost and those addresses, and visitors that
 * reach a tunnel through a chosen relay.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import type http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import type { Test } from 'tap';
import { generateCertificate } from '../../relay/edge/certificate.js';
import { spawnCli, type CliProcess } from './processes.js';
import { TEST_DOMAIN, tempDir } from './relay-env.js';

export const CLUSTER_ADDRESSES = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
export const CLUSTER_SECRET = 'test-cluster-secret-0123456789';

export interface ClusterCert {
  cert: string;
  certFile: string;
  keyFile: string;
}

export async function clusterCertificate(t: Test): Promise<ClusterCert> {
  const dir = await tempDir(t, 'qt-cluster-cert-');
  const pair = await generateCertificate(TEST_DOMAIN, CLUSTER_ADDRESSES);
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  await writeFile(certFile, pair.cert);
  await writeFile(keyFile, pair.key, { mode: 0o600 });
  return { cert: pair.cert, certFile, keyFile };
}

export interface ClusterRelay extends CliProcess {
  host: string;
  port: number;
  /** https://HOST:PORT, what clients pass as --relay. */
  url: string;
  node: string;
}

/** Starts `quick-tunnel relay --redis …` on `host`; resolves once it listens. */
export async function spawnClusterRelay(
  t: Test,
  host: string,
  redisUrl: string,
  cert: ClusterCert,
  extraArgs: string[] = [],
  options: { port?: number; secret?: string } = {},
): Promise<ClusterRelay> {
  const dataDir = await tempDir(t, 'qt-cluster-relay-');
  const proc = spawnCli(t, [
    'relay',
    '--domain',
    TEST_DOMAIN,
    '--host',
    host,
    '--port',
    String(options.port ?? 0),
    '--http-port',
    '0',
    '--data-dir',
    dataDir,
    '--cert',
    cert.certFile,
    '--key',
    cert.keyFile,
    '--redis',
    redisUrl,
    '--cluster-secret',
    options.secret ?? CLUSTER_SECRET,
    '--admin-token',
    'admin-secret',
    ...extraArgs,
  ]);
  const line = await proc.waitFor(/"relay listening"/, 'stdout');
  const info = JSON.parse(line) as { httpsPort: number; node: string };
  return {
    ...proc,
    host,
    port: info.httpsPort,
    url: `https://${host}:${info.httpsPort}`,
    node: info.node,
  };
}

/** Waits until every relay sees `n` reachable peers (GET /healthz). */
export async function waitForMesh(
  relays: ClusterRelay[],
  ca: string,
  peers: number,
  limitMs = 20_000,
): Promise<void> {
  const until = Date.now() + limitMs;
  for (const r of relays) {
    for (;;) {
      const res = await visit(r, TEST_DOMAIN, ca, '/healthz').catch(() => undefined);
      const h =
        res?.status === 200
          ? (JSON.parse(res.body.toString()) as { cluster?: { peersReachable: number } })
          : undefined;
      if ((h?.cluster?.peersReachable ?? -1) >= peers) break;
      if (Date.now() > until) throw new Error(`relay ${r.url} does not see ${peers} peers`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }
}

export interface VisitResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One HTTPS request to `hostname` through `relay` (with a hard deadline). */
export function visit(
  relay: { host: string; port: number },
  hostname: string,
  ca: string,
  pathname = '/',
  options: {
    method?: string;
    body?: Buffer;
    timeoutMs?: number;
    headers?: http.OutgoingHttpHeaders;
  } = {},
): Promise<VisitResult> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: relay.host,
        port: relay.port,
        path: pathname,
        method: options.method ?? 'GET',
        headers: { host: hostname, ...options.headers },
        servername: hostname,
        ca,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    req.setTimeout(options.timeoutMs ?? 20_000, () => req.destroy(new Error('HUNG')));
    req.on('error', reject);
    req.end(options.body);
  });
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
