/**
 * The relay's configuration: what `startRelay` accepts (`RelayConfig`), every default in
 * one place (`RELAY_DEFAULTS`), and `resolveRelayConfig`, which validates it once and
 * returns one frozen `ResolvedRelayConfig` that the rest of the relay reads. A mistake
 * in it (a bad port, a bad domain, options that contradict each other) is a
 * `ConfigError` (a user error: the CLI prints it and exits 1), never a crash later on.
 *
 * This module imports no other relay module's values (only types), so every module may
 * read RELAY_DEFAULTS at load time. Defaults of settings `startRelay` does not expose
 * (ACME retry timings, cluster leases) stay next to their module.
 */
import type { Logger } from 'pino';
import pino from 'pino';
import { ConfigError } from '../shared/errors.js';
import { realClock, type Clock } from '../shared/clock.js';
import type { MuxOptions } from '../shared/mux/session.js';
import type { AcmeSettings } from './acme/manager.js';
import type { ClusterConfig } from './cluster/cluster.js';
import type { VisitorConnectionLimits } from './edge/connections.js';
import type { GuardLimits } from './edge/guard.js';
import type { H2Limits } from './edge/h2.js';
import type { QueueLimits } from './queue/webhook-queue.js';
import type { TunnelStore } from './tunnels/store.js';

export interface RelayConfig {
  /** Public domain: tunnels are `<label>.<domain>`. */
  domain: string;
  /** Bind address. */
  host: string;
  /** HTTPS port; 0 = any free port; null = no HTTPS listener. */
  httpsPort: number | null;
  /** Plain HTTP port; 0 = any free port; null = off. */
  httpPort: number | null;
  certFile?: string | undefined;
  keyFile?: string | undefined;
  /** Where the relay keeps its certificate and keys; null = nothing on disk. */
  dataDir: string | null;
  /** Accepted client tokens; empty = open relay. */
  tokens: readonly string[];
  /** Wait for a response head this long before answering 504. Default 120 s. */
  responseTimeoutMs?: number;
  /** Ports shown in public URLs when they differ from the listening ones (NAT, Docker). */
  publicHttpsPort?: number | undefined;
  publicHttpPort?: number | undefined;
  /** Idle keep-alive timeout for visitor connections. Default 65 s. */
  keepAliveTimeoutMs?: number;
  /** Max time to receive a visitor's request headers (slowloris guard). Default 15 s. */
  headersTimeoutMs?: number;
  /**
   * Hold visitor requests for a tunnel that is reconnecting this long before a 503.
   * Default 10 s; 0 = answer at once.
   */
  holdMs?: number;
  /** Longest request target (414 beyond). Default 8 KiB. */
  maxUrlBytes?: number;
  /** Most request header lines (431 beyond). Default 100. */
  maxHeaders?: number;
  /** Requests per second per tunnel (429 + Retry-After beyond); 0/undefined = no limit. */
  rateLimitPerTunnel?: number;
  /** Tunnel WebSocket connections per client IP. Default 100; 0 = no limit. */
  maxConnectionsPerIp?: number;
  /** New tunnel hostnames per client (token, else IP) per minute. Default 30; 0 = no limit. */
  creationsPerMinute?: number;
  /** Named tunnels one client (relay token, else IP) may hold. Default 100; 0 = no limit. */
  maxNamedTunnelsPerClient?: number;
  /** Named tunnels one client may create per hour (429 beyond). Default 120; 0 = no limit. */
  namedTunnelCreationsPerHour?: number;
  /**
   * Refused secrets (relay and admin tokens, tunnel credentials) one IP may present per
   * minute before it is refused for a while (429). Default 20; 0 = no limit.
   */
  maxFailedAuthPerMinute?: number;
  /** Visitor connections (TCP, both listeners) held at once. Default 10,000; 0 = no limit. */
  maxVisitorConnections?: number;
  /** Visitor connections one IP may hold at once. Default 500; 0 = no limit. */
  maxVisitorConnectionsPerIp?: number;
  mux?: MuxOptions;
  logger?: Logger;
  /**
   * Time for the reconnect hold, the visitor edge's timeouts and the tunnel sessions'
   * keepalive (tests pass a FakeClock). Default the real clock.
   */
  clock?: Clock;
  /** Tokens for the admin endpoints (`GET /api/tunnels`, `/metrics`); none = those are off. */
  adminTokens?: readonly string[];
  /** Named-tunnel store; default: `tunnels.json` in the data dir (memory without one). */
  store?: TunnelStore;
  /**
   * Embedded relay: a Host that is an IP address (`http://127.0.0.1:PORT/`) reaches the
   * one tunnel instead of the relay's own pages (see soleTunnelRoute). Default false.
   */
  soleTunnelOnIpHosts?: boolean;
  /** More addresses the plain-HTTP listener also binds, on the same port (`--lan`). */
  extraHttpHosts?: readonly string[];
  /** HTTP/2 limits on the HTTPS listener (see relay/edge/h2.ts); false = HTTP/1.1 only. */
  http2?: Partial<H2Limits> | false;
  /**
   * Store-and-forward limits (relay/queue/) for named tunnels that opted in. The queue
   * lives in `<dataDir>/queue`; a relay without a data dir has none.
   */
  queue?: Partial<QueueLimits>;
  /** Automatic wildcard certificate by ACME DNS-01 (instead of --cert/--key or self-signed). */
  acme?: AcmeSettings | undefined;
  /** Cluster mode (`--redis`): share tunnels with other relays through Redis. */
  cluster?: ClusterConfig | undefined;
}

/** Every default of the relay's own settings. Modules built standalone (tests) use these too. */
export const RELAY_DEFAULTS = Object.freeze({
  responseTimeoutMs: 120_000,
  keepAliveTimeoutMs: 65_000,
  headersTimeoutMs: 15_000,
  holdMs: 10_000,
  /** Requests held at once for reconnecting tunnels, relay-wide. */
  maxHeldRequests: 10_000,
  maxUrlBytes: 8 * 1024,
  maxHeaders: 100,
  /** 0 = no per-tunnel rate limit. */
  rateLimitPerTunnel: 0,
  maxConnectionsPerIp: 100,
  creationsPerMinute: 30,
  maxNamedTunnelsPerClient: 100,
  namedTunnelCreationsPerHour: 120,
  maxFailedAuthPerMinute: 20,
  /** Keep `ulimit -n` above it. */
  maxVisitorConnections: 10_000,
  maxVisitorConnectionsPerIp: 500,
  /** Visitor h2 limits; the idle and first-request timeouts follow the keep-alive and headers timeouts. */
  http2: Object.freeze({
    maxConcurrentStreams: 100,
    maxHeaderListBytes: 16 * 1024,
    maxHeaderPairs: 128,
    firstRequestTimeoutMs: 15_000,
    idleTimeoutMs: 65_000,
    stalledStreamTimeoutMs: 65_000,
    cancelBurst: 200,
    cancelPerSecond: 50,
    controlBurst: 100,
    controlPerSecond: 10,
  } satisfies H2Limits),
  /** Store-and-forward (relay/queue/) limits. */
  queue: Object.freeze({
    maxBodyBytes: 1024 * 1024,
    maxItems: 1000,
    maxAgeMs: 72 * 3600 * 1000,
    diskCapBytes: 1024 * 1024 * 1024,
    maxAttempts: 8,
    retryBaseMs: 1000,
    retryMaxMs: 5 * 60 * 1000,
    deliveryTimeoutMs: 60_000,
    acceptStatus: 202,
    maxBufferedBytes: 64 * 1024 * 1024,
  } satisfies QueueLimits),
  /** Graceful stop: how long in-flight requests get. */
  closeGraceMs: 10_000,
});

/** The relay's settings after validation: every field set, frozen. */
export interface ResolvedRelayConfig {
  /** Lowercase, no trailing dot. */
  readonly domain: string;
  readonly host: string;
  readonly httpsPort: number | null;
  readonly httpPort: number | null;
  readonly certFile: string | undefined;
  readonly keyFile: string | undefined;
  readonly dataDir: string | null;
  readonly tokens: readonly string[];
  readonly adminTokens: readonly string[];
  readonly responseTimeoutMs: number;
  readonly publicHttpsPort: number | undefined;
  readonly publicHttpPort: number | undefined;
  readonly keepAliveTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly holdMs: number;
  readonly guard: Readonly<GuardLimits>;
  /** 0 = no limit. */
  readonly rateLimitPerTunnel: number;
  readonly maxConnectionsPerIp: number;
  readonly creationsPerMinute: number;
  readonly maxNamedTunnelsPerClient: number;
  readonly namedTunnelCreationsPerHour: number;
  readonly maxFailedAuthPerMinute: number;
  readonly visitorConnections: Readonly<VisitorConnectionLimits>;
  readonly mux: MuxOptions;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly store: TunnelStore | undefined;
  readonly soleTunnelOnIpHosts: boolean;
  readonly extraHttpHosts: readonly string[];
  /** false = HTTP/1.1 only. */
  readonly http2: Readonly<H2Limits> | false;
  readonly queue: Readonly<QueueLimits>;
  readonly acme: AcmeSettings | undefined;
  readonly cluster: ClusterConfig | undefined;
}

const DOMAIN_RE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

function fail(message: string, hint?: string): never {
  throw new ConfigError(`relay config: ${message}`, { hint });
}

function port(value: unknown, name: string, min = 0): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > 65535) {
    fail(`${name} must be a port number between ${min} and 65535, got ${String(value)}`);
  }
  return value;
}

/** A count or duration: a finite number ≥ `min` (0 usually means "off" / "no limit"). */
function amount(value: unknown, name: string, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    fail(`${name} must be a number of at least ${min}, got ${String(value)}`);
  }
  return value;
}

function strings(value: unknown, name: string): readonly string[] {
  if (value === undefined) return Object.freeze([]);
  if (!Array.isArray(value) || value.some((s) => typeof s !== 'string' || s === '')) {
    fail(`${name} must be a list of non-empty strings`);
  }
  return Object.freeze([...(value as string[])]);
}

/**
 * Validates `config` and fills in every default. Throws a ConfigError naming the
 * setting at fault; nothing is opened or listened on before this returns.
 */
export function resolveRelayConfig(config: RelayConfig): ResolvedRelayConfig {
  if (typeof config !== 'object' || config === null) fail('expected an object');
  if (typeof config.domain !== 'string') fail('domain must be a string');
  const domain = config.domain.toLowerCase().replace(/\.$/, '');
  if (!DOMAIN_RE.test(domain)) {
    fail(
      `domain '${config.domain}' is not a valid domain name`,
      'give a name like relay.example.com',
    );
  }
  if (typeof config.host !== 'string') fail('host must be a string (a bind address)');
  const httpsPort = config.httpsPort === null ? null : port(config.httpsPort, 'httpsPort');
  const httpPort = config.httpPort === null ? null : port(config.httpPort, 'httpPort');
  if (httpsPort === null && httpPort === null) {
    fail('httpsPort and httpPort are both off: the relay would listen nowhere');
  }
  if (config.dataDir !== null && (typeof config.dataDir !== 'string' || config.dataDir === '')) {
    fail('dataDir must be a directory path, or null for nothing on disk');
  }
  if ((config.certFile === undefined) !== (config.keyFile === undefined)) {
    fail('certFile and keyFile go together: give both, or neither for a self-signed certificate');
  }
  if (config.acme !== undefined && config.certFile !== undefined) {
    fail('acme and certFile/keyFile both supply the certificate: give one of them');
  }
  if (config.acme !== undefined && httpsPort === null) {
    fail('acme needs the HTTPS listener (httpsPort) it gets the certificate for');
  }
  if (
    httpsPort !== null &&
    config.acme === undefined &&
    config.dataDir === null &&
    config.certFile === undefined
  ) {
    fail(
      'an HTTPS relay needs --cert/--key or a data dir for its self-signed certificate',
      'pass certFile/keyFile (PEM), or dataDir for a self-signed certificate kept there',
    );
  }
  const extraHttpHosts = strings(config.extraHttpHosts, 'extraHttpHosts');
  if (extraHttpHosts.length > 0 && httpPort === null) {
    fail('extraHttpHosts are more addresses of the HTTP listener, which is off (httpPort null)');
  }
  const publicHttpsPort =
    config.publicHttpsPort === undefined
      ? undefined
      : port(config.publicHttpsPort, 'publicHttpsPort', 1);
  const publicHttpPort =
    config.publicHttpPort === undefined
      ? undefined
      : port(config.publicHttpPort, 'publicHttpPort', 1);
  if (
    config.cluster !== undefined &&
    config.cluster.nodeUrl === undefined &&
    (config.host === '0.0.0.0' || config.host === '::' || config.host === '')
  ) {
    // Not prefixed: the CLI's own wording, which names the flag to add.
    throw new ConfigError(
      `in cluster mode other relays need this relay's address: pass --node-url https://ADDR:PORT (it listens on ${config.host || 'every address'})`,
    );
  }

  const d = RELAY_DEFAULTS;
  const keepAliveTimeoutMs = amount(
    config.keepAliveTimeoutMs,
    'keepAliveTimeoutMs',
    d.keepAliveTimeoutMs,
    1,
  );
  const headersTimeoutMs = amount(
    config.headersTimeoutMs,
    'headersTimeoutMs',
    d.headersTimeoutMs,
    1,
  );
  const guard = Object.freeze({
    maxUrlBytes: amount(config.maxUrlBytes, 'maxUrlBytes', d.maxUrlBytes, 1),
    maxHeaders: amount(config.maxHeaders, 'maxHeaders', d.maxHeaders, 1),
  });
  let http2: Readonly<H2Limits> | false = false;
  if (config.http2 !== false) {
    const limits: H2Limits = {
      ...d.http2,
      idleTimeoutMs: keepAliveTimeoutMs,
      firstRequestTimeoutMs: headersTimeoutMs,
      maxHeaderPairs: guard.maxHeaders + 8,
      ...config.http2,
    };
    for (const [name, value] of Object.entries(limits)) amount(value, `http2.${name}`, 0, 1);
    http2 = Object.freeze(limits);
  }
  const queue = Object.freeze({ ...d.queue, ...config.queue });
  for (const [name, value] of Object.entries(queue)) amount(value, `queue.${name}`, 0);

  return Object.freeze({
    domain,
    host: config.host,
    httpsPort,
    httpPort,
    certFile: config.certFile,
    keyFile: config.keyFile,
    dataDir: config.dataDir,
    tokens: strings(config.tokens, 'tokens'),
    adminTokens: strings(config.adminTokens, 'adminTokens'),
    responseTimeoutMs: amount(
      config.responseTimeoutMs,
      'responseTimeoutMs',
      d.responseTimeoutMs,
      1,
    ),
    publicHttpsPort,
    publicHttpPort,
    keepAliveTimeoutMs,
    headersTimeoutMs,
    holdMs: amount(config.holdMs, 'holdMs', d.holdMs),
    guard,
    rateLimitPerTunnel: amount(
      config.rateLimitPerTunnel,
      'rateLimitPerTunnel',
      d.rateLimitPerTunnel,
    ),
    maxConnectionsPerIp: amount(
      config.maxConnectionsPerIp,
      'maxConnectionsPerIp',
      d.maxConnectionsPerIp,
    ),
    creationsPerMinute: amount(
      config.creationsPerMinute,
      'creationsPerMinute',
      d.creationsPerMinute,
    ),
    maxNamedTunnelsPerClient: amount(
      config.maxNamedTunnelsPerClient,
      'maxNamedTunnelsPerClient',
      d.maxNamedTunnelsPerClient,
    ),
    namedTunnelCreationsPerHour: amount(
      config.namedTunnelCreationsPerHour,
      'namedTunnelCreationsPerHour',
      d.namedTunnelCreationsPerHour,
    ),
    maxFailedAuthPerMinute: amount(
      config.maxFailedAuthPerMinute,
      'maxFailedAuthPerMinute',
      d.maxFailedAuthPerMinute,
    ),
    visitorConnections: Object.freeze({
      maxConnections: amount(
        config.maxVisitorConnections,
        'maxVisitorConnections',
        d.maxVisitorConnections,
      ),
      maxConnectionsPerIp: amount(
        config.maxVisitorConnectionsPerIp,
        'maxVisitorConnectionsPerIp',
        d.maxVisitorConnectionsPerIp,
      ),
    }),
    mux: config.mux ?? {},
    logger: config.logger ?? pino({ level: 'silent' }),
    clock: config.clock ?? realClock,
    store: config.store,
    soleTunnelOnIpHosts: config.soleTunnelOnIpHosts === true,
    extraHttpHosts,
    http2,
    queue,
    acme: config.acme,
    cluster: config.cluster,
  });
}
