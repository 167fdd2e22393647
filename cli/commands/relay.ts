/**
 * `quick-tunnel relay`: runs a relay in the foreground. Structured logs (JSON lines)
 * go to stdout; a human summary of how to connect goes to stderr.
 */
import { readFile } from 'node:fs/promises';
import pino from 'pino';
import { ConfigError } from '../../shared/errors.js';
import type { ClusterConfig } from '../../relay/cluster/cluster.js';
import { startRelay, type Relay } from '../../relay/index.js';
import { parseDuration, parseSize } from '../units.js';
import { readEnvironment, type Environment } from '../config.js';
import { acmeSettingsFromFlags, type AcmeFlags } from './relay-acme.js';
import { formatFingerprint } from '../../shared/fingerprint.js';
import { connectLines } from '../relay-banner.js';
import { checkCertificateFiles } from '../relay-certs.js';
import { readableLog } from '../relay-log.js';

export interface RelayCommandOptions {
  domain: string;
  host: string;
  port: number;
  httpPort: number;
  cert: string | undefined;
  key: string | undefined;
  dataDir: string | undefined;
  tokens: string[];
  /** Tokens for the admin endpoints (GET /api/tunnels, /metrics); none = those are off. */
  adminTokens?: string[];
  /** File with more client tokens, one per line. */
  tokensFile?: string | undefined;
  /** Requests per second per tunnel; 0 = no limit. */
  rateLimit?: number;
  maxConnectionsPerIp?: number;
  maxNewTunnelsPerMinute?: number;
  maxVisitorConnections?: number;
  maxVisitorConnectionsPerIp?: number;
  maxNamedTunnelsPerClient?: number;
  maxNamedTunnelsPerHour?: number;
  publicPort: number | undefined;
  responseTimeout: number;
  logLevel: string;
  drainTimeout: number;
  /** Seconds a tunnel's requests wait for its client to reconnect before a 503. */
  reconnectHold?: number;
  /** Store-and-forward limits, as typed (sizes and durations). */
  queue?: {
    maxBody?: string | undefined;
    maxItems?: number | undefined;
    maxAge?: string | undefined;
    diskCap?: string | undefined;
    maxAttempts?: number | undefined;
    acceptStatus?: number | undefined;
  };
  /** `--acme …`: automatic certificate by DNS-01. */
  acme?: AcmeFlags;
  /** Log lines: `text` (readable; default on a terminal) or `json` (default otherwise). */
  logFormat?: 'text' | 'json' | undefined;
  /** Print the client command with the first token in it (tokens are never printed otherwise). */
  printToken?: boolean;
  /** Cluster mode: Redis URL (else QUICK_TUNNEL_REDIS). */
  redis?: string | undefined;
  nodeUrl?: string | undefined;
  clusterSecret?: string | undefined;
  clusterSecretFile?: string | undefined;
}

/** Validates the --queue-* flags into the relay's queue limits. */
export function queueLimitsFrom(q: NonNullable<RelayCommandOptions['queue']>) {
  const limits: {
    maxBodyBytes?: number;
    maxItems?: number;
    maxAgeMs?: number;
    diskCapBytes?: number;
    maxAttempts?: number;
    acceptStatus?: number;
  } = {};
  if (q.maxBody !== undefined) limits.maxBodyBytes = parseSize(q.maxBody, '--queue-max-body');
  if (q.maxAge !== undefined) limits.maxAgeMs = parseDuration(q.maxAge, '--queue-max-age');
  if (q.diskCap !== undefined) limits.diskCapBytes = parseSize(q.diskCap, '--queue-disk-cap');
  for (const [flag, n, key] of [
    ['--queue-max-items', q.maxItems, 'maxItems'],
    ['--queue-max-attempts', q.maxAttempts, 'maxAttempts'],
  ] as const) {
    if (n === undefined) continue;
    if (!Number.isInteger(n) || n < 1) throw new ConfigError(`${flag} must be 1 or more, got ${n}`);
    limits[key] = n;
  }
  if (q.acceptStatus !== undefined) {
    if (!Number.isInteger(q.acceptStatus) || q.acceptStatus < 200 || q.acceptStatus > 299) {
      throw new ConfigError(
        `--queue-accept-status must be a 2xx status (202 by default), got ${q.acceptStatus}`,
      );
    }
    limits.acceptStatus = q.acceptStatus;
  }
  return limits;
}

/**
 * The cluster settings from the flags and the environment, or undefined without --redis.
 * The secret comes from --cluster-secret, --cluster-secret-file or
 * QUICK_TUNNEL_CLUSTER_SECRET.
 */
export async function clusterConfig(
  opts: RelayCommandOptions,
  env: Environment,
): Promise<ClusterConfig | undefined> {
  const redisUrl = opts.redis ?? env.redis;
  if (redisUrl === undefined || redisUrl === '') {
    if (opts.nodeUrl !== undefined || opts.clusterSecret !== undefined) {
      throw new ConfigError(
        '--node-url and --cluster-secret only apply with --redis (cluster mode)',
      );
    }
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(redisUrl);
  } catch {
    throw new ConfigError('--redis must be a URL like redis://HOST:6379 (or rediss:// for TLS)');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new ConfigError(`--redis must be a redis:// or rediss:// URL, not ${url.protocol}//`);
  }
  let secret = opts.clusterSecret ?? env.clusterSecret;
  if (opts.clusterSecretFile !== undefined) {
    try {
      secret = (await readFile(opts.clusterSecretFile, 'utf8')).trim();
    } catch (err) {
      throw new ConfigError(
        `cannot read --cluster-secret-file ${opts.clusterSecretFile}: ${(err as Error).message}`,
      );
    }
  }
  if (secret === undefined || secret === '') {
    throw new ConfigError(
      'cluster mode needs a secret shared by all relays: pass --cluster-secret (or --cluster-secret-file, or QUICK_TUNNEL_CLUSTER_SECRET); make one with `openssl rand -hex 32`',
    );
  }
  if (opts.nodeUrl !== undefined) {
    let node: URL | undefined;
    try {
      node = new URL(opts.nodeUrl);
    } catch {
      node = undefined;
    }
    if (node === undefined || (node.protocol !== 'https:' && node.protocol !== 'http:')) {
      throw new ConfigError(
        `--node-url must be an https:// URL (ADDR:PORT), got '${opts.nodeUrl}'`,
      );
    }
  }
  return { redisUrl, secret, nodeUrl: opts.nodeUrl };
}

/** Reads client tokens from a file: one per line, blank lines and # comments ignored. */
export async function readTokensFile(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read --tokens-file ${file}: ${(err as Error).message}`);
  }
  const tokens = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (tokens.length === 0) throw new ConfigError(`--tokens-file ${file} holds no token`);
  return tokens;
}

function validPort(n: number, flag: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new ConfigError(`${flag} must be a port number between 0 and 65535, got ${n}`);
  }
  return n;
}

export async function runRelayCommand(opts: RelayCommandOptions): Promise<number> {
  if ((opts.cert === undefined) !== (opts.key === undefined)) {
    throw new ConfigError(
      '--cert and --key go together: give both, or neither for a self-signed certificate',
    );
  }
  const domain = opts.domain.toLowerCase().replace(/\.$/, '');
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(domain)) {
    throw new ConfigError(`--domain '${opts.domain}' is not a valid domain name`);
  }
  const readable =
    opts.logFormat === 'text' || (opts.logFormat === undefined && process.stdout.isTTY === true);
  const log = pino(
    {
      level: opts.logLevel,
      base: { service: 'quick-tunnel-relay' },
      redact: ['token', 'credential', 'req.headers.authorization', '*.token', '*.credential'],
    },
    readable ? readableLog() : process.stdout,
  );
  const env = readEnvironment();
  const dataDir = opts.dataDir ?? env.relayDataDir;
  const tokens = [...opts.tokens];
  if (opts.tokensFile !== undefined) tokens.push(...(await readTokensFile(opts.tokensFile)));
  for (const [flag, n] of [
    ['--rate-limit', opts.rateLimit ?? 0],
    ['--max-connections-per-ip', opts.maxConnectionsPerIp ?? 0],
    ['--max-new-tunnels-per-minute', opts.maxNewTunnelsPerMinute ?? 0],
    ['--max-visitor-connections', opts.maxVisitorConnections ?? 0],
    ['--max-visitor-connections-per-ip', opts.maxVisitorConnectionsPerIp ?? 0],
    ['--max-named-tunnels-per-client', opts.maxNamedTunnelsPerClient ?? 0],
    ['--max-named-tunnels-per-hour', opts.maxNamedTunnelsPerHour ?? 0],
  ] as const) {
    if (!Number.isFinite(n) || n < 0) throw new ConfigError(`${flag} must be 0 or more, got ${n}`);
  }
  const queue = queueLimitsFrom(opts.queue ?? {});
  const hold = opts.reconnectHold ?? 10;
  if (!Number.isFinite(hold) || hold < 0) {
    throw new ConfigError(`--reconnect-hold must be 0 or more seconds, got ${hold}`);
  }
  const acme = await acmeSettingsFromFlags(opts.acme ?? { acme: false }, {
    domain,
    hasCertFiles: opts.cert !== undefined,
    tsigSecretEnv: env.acmeTsigSecret,
  });
  if (opts.cert !== undefined && opts.key !== undefined) {
    for (const warning of await checkCertificateFiles(opts.cert, opts.key, domain)) {
      process.stderr.write(`warning: ${warning}\n`);
    }
  }
  const cluster = await clusterConfig(opts, env);
  let relay: Relay;
  try {
    relay = await startRelay({
      domain,
      host: opts.host,
      httpsPort: validPort(opts.port, '--port'),
      httpPort: validPort(opts.httpPort, '--http-port') === 0 ? null : opts.httpPort,
      certFile: opts.cert,
      keyFile: opts.key,
      dataDir,
      tokens,
      adminTokens: opts.adminTokens ?? [],
      rateLimitPerTunnel: opts.rateLimit ?? 0,
      maxConnectionsPerIp: opts.maxConnectionsPerIp ?? 100,
      creationsPerMinute: opts.maxNewTunnelsPerMinute ?? 30,
      ...(opts.maxVisitorConnections !== undefined
        ? { maxVisitorConnections: opts.maxVisitorConnections }
        : {}),
      ...(opts.maxVisitorConnectionsPerIp !== undefined
        ? { maxVisitorConnectionsPerIp: opts.maxVisitorConnectionsPerIp }
        : {}),
      ...(opts.maxNamedTunnelsPerClient !== undefined
        ? { maxNamedTunnelsPerClient: opts.maxNamedTunnelsPerClient }
        : {}),
      ...(opts.maxNamedTunnelsPerHour !== undefined
        ? { namedTunnelCreationsPerHour: opts.maxNamedTunnelsPerHour }
        : {}),
      responseTimeoutMs: opts.responseTimeout * 1000,
      publicHttpsPort: opts.publicPort,
      holdMs: hold * 1000,
      queue,
      logger: log,
      acme,
      cluster,
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') {
      throw new ConfigError(
        `a port is already in use (${(err as Error).message}); pick another with --port / --http-port`,
      );
    }
    if (code === 'EACCES') {
      throw new ConfigError(
        `not allowed to listen (${(err as Error).message}); ports below 1024 need root or CAP_NET_BIND_SERVICE`,
      );
    }
    if (code === 'ENOENT' && (opts.cert !== undefined || opts.key !== undefined)) {
      throw new ConfigError(`cannot read the certificate or key: ${(err as Error).message}`);
    }
    throw err;
  }

  const say = (line: string): void => void process.stderr.write(`${line}\n`);
  say(`quick-tunnel relay for *.${domain}`);
  if (relay.httpsPort !== undefined)
    say(
      `  https://${domain}:${relay.httpsPort}  (tunnels: https://<name>.${domain}:${relay.httpsPort})`,
    );
  if (relay.httpPort !== undefined) say(`  http://${domain}:${relay.httpPort}`);
  if (relay.certificate?.selfSigned === true) {
    say(`  self-signed certificate: ${relay.certificate.certPath}`);
    say(`  SHA-256 fingerprint:     ${formatFingerprint(relay.certificate.fingerprint256)}`);
    say(
      `  clients trust it with:   --ca-fingerprint ${formatFingerprint(relay.certificate.fingerprint256)} (or --ca with a copy of the file)`,
    );
  }
  if (relay.acme !== undefined) {
    const s = relay.acme.status();
    say(
      s.notAfter === undefined
        ? `  certificate: obtaining one for ${domain} and *.${domain} by ACME DNS-01; HTTPS answers once it arrives (progress in the log)`
        : `  certificate: ${relay.acme.certificatePath} (ACME, valid until ${s.notAfter}, renewed automatically)`,
    );
  }
  if (relay.cluster !== undefined) {
    say(`  cluster node ${relay.cluster.nodeId}: shares tunnels with the other relays via Redis`);
  }
  if (tokens.length === 0) {
    say(
      '  WARNING: this relay is OPEN: anyone who can reach it can create tunnels. Use --token to require one.',
    );
  }
  if (relay.httpsPort !== undefined) {
    for (const line of connectLines({
      domain,
      httpsPort: opts.publicPort ?? relay.httpsPort,
      selfSignedFingerprint:
        relay.certificate?.selfSigned === true ? relay.certificate.fingerprint256 : undefined,
      tokens,
      printToken: opts.printToken === true,
    })) {
      say(line);
    }
  }
  say(
    (opts.adminTokens ?? []).length > 0
      ? '  admin endpoints: GET /api/tunnels and /metrics with Authorization: Bearer <admin token>'
      : '  admin endpoints (/metrics, the list of all tunnels) are off: enable them with --admin-token',
  );

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        say(`${signal} again: exiting now`);
        resolve(130);
        return;
      }
      stopping = true;
      say(`${signal}: draining (up to ${opts.drainTimeout} s; press again to exit at once)…`);
      relay.close(opts.drainTimeout * 1000).then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
}
