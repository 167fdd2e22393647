/**
 * Shared by the store-and-forward end-to-end tests: a relay process on a data dir, a user
 * config pointing at it, requests through its HTTPS port, short CLI runs, kill -9.
 */
import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import type http from 'node:http';
import https from 'node:https';
import type { Test } from 'tap';
import { writeConfigFile } from '../../cli/config.js';
import { spawnCli, spawnRelay, type RelayProcess } from './processes.js';
import { tempDir } from './relay-env.js';

export const SECRET = 'whsec_test_secret';

export function sign(body: Buffer): string {
  return `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request to `host` through the relay's HTTPS port (Host and SNI set). */
export async function send(
  relay: RelayProcess,
  ca: string,
  host: string,
  method: string,
  path: string,
  body?: Buffer,
  headers: http.OutgoingHttpHeaders = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1',
      port: relay.httpsPort,
      method,
      path,
      servername: host,
      ca,
      agent: false,
      headers: {
        host,
        ...(body !== undefined ? { 'content-length': body.length } : {}),
        ...headers,
      },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    req.end(body);
  });
}

export async function run(
  t: Test,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const cli = spawnCli(t, args, { env });
  const [code, signal] = (await once(cli.child, 'close')) as [number | null, string | null];
  return {
    code: code ?? String(signal),
    stdout: cli.stdout.join('\n'),
    stderr: cli.stderr.join('\n'),
  };
}

/** Kills the relay with SIGKILL (no drain, no flush) and waits for it to be gone. */
export async function kill9(relay: RelayProcess): Promise<void> {
  relay.child.kill('SIGKILL');
  await relay.exited;
}

export async function setup(t: Test, relayArgs: string[]) {
  const dataDir = await tempDir(t, 'qt-queue-relay-');
  const relay = await spawnRelay(t, dataDir, ['--reconnect-hold', '0', ...relayArgs]);
  const ca = await readFile(relay.certPath, 'utf8');
  const dir = await tempDir(t, 'qt-queue-user-');
  await writeConfigFile(dir, {
    relay: `https://qt.localhost:${relay.httpsPort}`,
    ca: relay.certPath,
  });
  const env = { QUICK_TUNNEL_CONFIG_DIR: dir };
  return { dataDir, relay, ca, env };
}
