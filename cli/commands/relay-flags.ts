/**
 * The flags of `quick-tunnel relay` (yargs definitions, with the `--acme*` ones of
 * relay-acme-flags.ts) and their mapping to RelayCommandOptions. Kept apart from
 * relay.ts so the CLI's startup (cli/main.ts) loads nothing more.
 */
import type { Argv } from 'yargs';
import { collect } from './expose-flags.js';
import { acmeFlags, acmeOptions } from './relay-acme-flags.js';
import type { RelayCommandOptions } from './relay.js';

export function relayOptions<T>(y: Argv<T>) {
  return acmeOptions(y)
    .option('domain', {
      type: 'string',
      default: 'localhost',
      describe: 'public domain; tunnels are <label>.DOMAIN',
    })
    .option('port', {
      type: 'number',
      default: 8443,
      describe: 'HTTPS port (0 = any free port)',
    })
    .option('http-port', {
      type: 'number',
      default: 8080,
      describe: 'plain HTTP port (0 = off)',
    })
    .option('host', { type: 'string', default: '0.0.0.0', describe: 'bind address' })
    .option('cert', {
      type: 'string',
      describe: 'TLS certificate (PEM; else self-signed, kept in --data-dir)',
    })
    .option('key', { type: 'string', describe: 'TLS private key (PEM)' })
    .option('data-dir', { type: 'string', describe: 'where the relay keeps its state' })
    .option('token', {
      type: 'string',
      array: true,
      describe: 'a token clients must present (repeatable)',
    })
    .option('admin-token', {
      type: 'string',
      array: true,
      describe: 'token for the admin endpoints: GET /api/tunnels, /metrics (repeatable)',
    })
    .option('tokens-file', {
      type: 'string',
      describe: 'file with client tokens, one per line (# comments); adds to --token',
    })
    .option('rate-limit', {
      type: 'number',
      default: 0,
      describe: 'requests per second per tunnel (429 beyond; 0 = no limit)',
    })
    .option('max-connections-per-ip', {
      type: 'number',
      default: 100,
      describe: 'tunnel connections one client IP may hold (0 = no limit)',
    })
    .option('max-new-tunnels-per-minute', {
      type: 'number',
      default: 30,
      describe: 'new tunnel hostnames per client (token, else IP) per minute (0 = no limit)',
    })
    .option('max-visitor-connections', {
      type: 'number',
      default: 10_000,
      describe:
        'visitor connections the relay holds at once (0 = no limit; keep ulimit -n above it)',
    })
    .option('max-visitor-connections-per-ip', {
      type: 'number',
      default: 500,
      describe: 'visitor connections one IP may hold at once (0 = no limit)',
    })
    .option('max-named-tunnels-per-client', {
      type: 'number',
      default: 100,
      describe: 'named tunnels one client (token, else IP) may hold (0 = no limit)',
    })
    .option('max-named-tunnels-per-hour', {
      type: 'number',
      default: 120,
      describe: 'named tunnels one client may create per hour (0 = no limit)',
    })
    .option('public-port', {
      type: 'number',
      describe: 'HTTPS port shown in tunnel URLs (when behind NAT/Docker)',
    })
    .option('response-timeout', {
      type: 'number',
      default: 120,
      describe: 'seconds to wait for a response head (504 after)',
    })
    .option('redis', {
      type: 'string',
      describe:
        'cluster mode: share tunnels with other relays through Redis (redis[s]://[:PASSWORD@]HOST:PORT[/DB]; also QUICK_TUNNEL_REDIS)',
    })
    .option('node-url', {
      type: 'string',
      describe:
        'cluster mode: how the other relays (and clients) reach this one (default https://HOST:PORT)',
    })
    .option('cluster-secret', {
      type: 'string',
      describe:
        'cluster mode: secret shared by the relays of the cluster (also QUICK_TUNNEL_CLUSTER_SECRET)',
    })
    .option('cluster-secret-file', {
      type: 'string',
      describe: 'cluster mode: read the cluster secret from this file',
    })
    .option('drain-timeout', {
      type: 'number',
      default: 30,
      describe: 'seconds in-flight requests get on shutdown',
    })
    .option('reconnect-hold', {
      type: 'number',
      default: 10,
      describe: "seconds a tunnel's visitors wait for its client to reconnect (503 after)",
    })
    .option('queue-max-body', {
      type: 'string',
      default: '1MiB',
      describe: 'store-and-forward: largest request body kept for an offline tunnel',
    })
    .option('queue-max-items', {
      type: 'number',
      default: 1000,
      describe: 'store-and-forward: requests kept per tunnel (waiting + failed)',
    })
    .option('queue-max-age', {
      type: 'string',
      default: '72h',
      describe: 'store-and-forward: older requests are not delivered (kept as failed)',
    })
    .option('queue-disk-cap', {
      type: 'string',
      default: '1GiB',
      describe: 'store-and-forward: disk all queues may take, relay-wide',
    })
    .option('queue-max-attempts', {
      type: 'number',
      default: 8,
      describe: 'store-and-forward: delivery attempts before a request is kept as failed',
    })
    .option('queue-accept-status', {
      type: 'number',
      default: 202,
      describe: 'store-and-forward: status a sender gets for a kept request',
    })
    .option('log-format', {
      choices: ['text', 'json'] as const,
      describe: 'log lines: text (default on a terminal) or json (default otherwise)',
    })
    .option('print-token', {
      type: 'boolean',
      default: false,
      describe: 'print the client command with the first --token in it (never printed otherwise)',
    })
    .option('log-level', {
      choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const,
      default: 'info' as const,
    });
}

type RelayArgs = Awaited<ReturnType<typeof relayOptions<object>>['argv']>;

/** The flags as runRelayCommand() takes them. */
export function relayCommandOptions(args: RelayArgs): RelayCommandOptions {
  return {
    domain: args.domain,
    host: args.host,
    port: args.port,
    httpPort: args['http-port'],
    cert: args.cert,
    key: args.key,
    dataDir: args['data-dir'],
    tokens: collect(args.token),
    adminTokens: collect(args['admin-token']),
    tokensFile: args['tokens-file'],
    rateLimit: args['rate-limit'],
    maxConnectionsPerIp: args['max-connections-per-ip'],
    maxNewTunnelsPerMinute: args['max-new-tunnels-per-minute'],
    maxVisitorConnections: args['max-visitor-connections'],
    maxVisitorConnectionsPerIp: args['max-visitor-connections-per-ip'],
    maxNamedTunnelsPerClient: args['max-named-tunnels-per-client'],
    maxNamedTunnelsPerHour: args['max-named-tunnels-per-hour'],
    publicPort: args['public-port'],
    responseTimeout: args['response-timeout'],
    drainTimeout: args['drain-timeout'],
    redis: args.redis,
    nodeUrl: args['node-url'],
    clusterSecret: args['cluster-secret'],
    clusterSecretFile: args['cluster-secret-file'],
    logLevel: args['log-level'],
    reconnectHold: args['reconnect-hold'],
    queue: {
      maxBody: args['queue-max-body'],
      maxItems: args['queue-max-items'],
      maxAge: args['queue-max-age'],
      diskCap: args['queue-disk-cap'],
      maxAttempts: args['queue-max-attempts'],
      acceptStatus: args['queue-accept-status'],
    },
    acme: acmeFlags(args),
    printToken: args['print-token'],
    logFormat: args['log-format'],
  };
}
