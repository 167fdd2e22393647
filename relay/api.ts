/**
 * The relay as a library, `import { startRelay } from 'quick-tunnel/relay'`: embed a
 * relay in tests or in a custom server. Public, semver-covered surface (listed in the
 * README); the relay's internals stay behind the returned RelayServer.
 *
 *     const relay = await startRelay();                     // http://localhost:<port>
 *     const tunnel = await openTunnel({ target: 3000, relay: relay.url });
 */
import { ConfigError } from '../shared/errors.js';
import { startRelay as startRelayInternal } from './index.js';
import type { RelayConfig } from './index.js';

export interface RelayOptions {
  /** Public domain: tunnels are `<label>.<domain>`. Default `localhost`. */
  domain?: string | undefined;
  /** Bind address. Default `127.0.0.1`. */
  host?: string | undefined;
  /**
   * HTTPS port (0 = any free port). Default: no HTTPS listener. HTTPS needs `certFile` and
   * `keyFile`, or a `dataDir` to keep a self-signed certificate in.
   */
  httpsPort?: number | null | undefined;
  /** Plain HTTP port (0 = any free port, null = off). Default 0. */
  httpPort?: number | null | undefined;
  /** TLS certificate and key (PEM files). */
  certFile?: string | undefined;
  keyFile?: string | undefined;
  /** Where the relay keeps its certificate, keys and named tunnels. Default: nothing on disk. */
  dataDir?: string | null | undefined;
  /** Tokens clients must present. Default: none (an open relay). */
  tokens?: readonly string[] | undefined;
  /** Tokens for `GET /api/tunnels` and `/metrics`. Default: none (those are off). */
  adminTokens?: readonly string[] | undefined;
  /** Ports shown in public URLs when they differ from the listening ones (NAT, Docker). */
  publicHttpsPort?: number | undefined;
  publicHttpPort?: number | undefined;
  /** Wait this long for an app's response head before answering 504. Default 120 s. */
  responseTimeoutMs?: number | undefined;
  /** Requests per second per tunnel (429 beyond). Default: no limit. */
  rateLimitPerTunnel?: number | undefined;
  /** Tunnel connections per client IP. Default 100; 0 = no limit. */
  maxConnectionsPerIp?: number | undefined;
  /** New tunnel hostnames per client per minute. Default 30; 0 = no limit. */
  creationsPerMinute?: number | undefined;
}

export interface RelayServer {
  readonly domain: string;
  /** Listening ports (undefined when that listener is off). */
  readonly httpsPort: number | undefined;
  readonly httpPort: number | undefined;
  /** What clients pass as `relay`: `https://<domain>:<port>`, else `http://…`. */
  readonly url: string;
  /** SHA-256 fingerprint of the HTTPS certificate (`AB:CD:…`), to pin with `caFingerprint`. */
  readonly fingerprint256: string | undefined;
  /** The HTTPS certificate (PEM), to pass as `ca` when it is self-signed. */
  readonly certificatePem: string | undefined;
  /** Tunnel connections open right now. */
  readonly connections: number;
  /** The public URLs of `hostname` on this relay. */
  urlsFor(hostname: string): string[];
  /** Graceful stop: clients are told to go, in-flight requests get up to `graceMs` (default 10 s). */
  close(graceMs?: number): Promise<void>;
}

/** Starts a relay and resolves once it listens. */
export async function startRelay(options: RelayOptions = {}): Promise<RelayServer> {
  const config: RelayConfig = {
    domain: options.domain ?? 'localhost',
    host: options.host ?? '127.0.0.1',
    httpsPort: options.httpsPort ?? null,
    httpPort: options.httpPort === undefined ? 0 : options.httpPort,
    certFile: options.certFile,
    keyFile: options.keyFile,
    dataDir: options.dataDir ?? null,
    tokens: options.tokens ?? [],
    publicHttpsPort: options.publicHttpsPort,
    publicHttpPort: options.publicHttpPort,
  };
  if (options.adminTokens !== undefined) config.adminTokens = options.adminTokens;
  if (options.responseTimeoutMs !== undefined) config.responseTimeoutMs = options.responseTimeoutMs;
  if (options.rateLimitPerTunnel !== undefined)
    config.rateLimitPerTunnel = options.rateLimitPerTunnel;
  if (options.maxConnectionsPerIp !== undefined)
    config.maxConnectionsPerIp = options.maxConnectionsPerIp;
  if (options.creationsPerMinute !== undefined)
    config.creationsPerMinute = options.creationsPerMinute;
  if (
    config.httpsPort !== null &&
    config.dataDir === null &&
    (config.certFile === undefined || config.keyFile === undefined)
  ) {
    throw new ConfigError('startRelay: HTTPS needs certFile and keyFile, or a dataDir', {
      hint: 'pass certFile/keyFile (PEM), or dataDir for a self-signed certificate kept there',
    });
  }
  const relay = await startRelayInternal(config);
  const url =
    relay.httpsPort !== undefined
      ? `https://${relay.domain}:${relay.httpsPort}`
      : `http://${relay.domain}:${relay.httpPort ?? 0}`;
  return {
    domain: relay.domain,
    httpsPort: relay.httpsPort,
    httpPort: relay.httpPort,
    url,
    fingerprint256: relay.certificate?.fingerprint256,
    certificatePem: relay.certificate?.cert,
    get connections() {
      return relay.connections;
    },
    urlsFor: (hostname) => relay.urlsFor(hostname),
    close: (graceMs) => relay.close(graceMs),
  };
}
