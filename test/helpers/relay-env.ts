/**
 * End-to-end fixtures: a real relay (HTTPS with its self-signed certificate for
 * qt.localhost, plain HTTP too) on 127.0.0.1, a real tunnel client connected to it
 * over a TLS WebSocket, local origin servers, and a visitor that sends requests with
 * the right Host and SNI. Everything closes in t.teardown.
 */
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { startRelay, type Relay, type RelayConfig } from '../../relay/index.js';
import { OriginProxy, type OriginProxyOptions } from '../../cli/origin/proxy.js';
import { parseTarget } from '../../cli/origin/target.js';
import type { TunnelEvent } from '../../cli/events.js';
import { dialRelay } from '../../cli/tunnel/client.js';
import { TunnelSupervisor } from '../../cli/tunnel/supervisor.js';
import type { AccessPolicy, TunnelAssignment } from '../../shared/protocol/tunnel.js';
import { TEST_DOMAIN } from './certs.js';

export { TEST_DOMAIN };

export async function tempDir(t: Test, prefix = 'qt-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface TestRelay {
  relay: Relay;
  dataDir: string;
  /** The relay's self-signed certificate (PEM), for --ca. */
  ca: string;
  httpsPort: number;
  httpPort: number;
  /** https://qt.localhost:PORT — what a client passes as --relay. */
  url: URL;
}

export async function startTestRelay(
  t: Test,
  overrides: Partial<RelayConfig> = {},
): Promise<TestRelay> {
  const dataDir = overrides.dataDir ?? (await tempDir(t, 'qt-relay-'));
  const relay = await startRelay({
    domain: TEST_DOMAIN,
    host: '127.0.0.1',
    httpsPort: 0,
    httpPort: 0,
    dataDir,
    tokens: [],
    ...overrides,
  });
  t.teardown(() => relay.close(100));
  const httpsPort = relay.httpsPort ?? 0;
  return {
    relay,
    dataDir,
    ca: relay.certificate?.cert ?? '',
    httpsPort,
    httpPort: relay.httpPort ?? 0,
    url: new URL(`https://${TEST_DOMAIN}:${httpsPort}`),
  };
}

export interface ConnectedTunnel {
  supervisor: TunnelSupervisor;
  assignment: TunnelAssignment;
  events: TunnelEvent[];
  hostname: string;
  origin: OriginProxy;
}

/** Connects a tunnel client (supervisor + origin proxy) to `relay` for `target`. */
export async function connectTunnel(
  t: Test,
  env: TestRelay,
  target: string,
  options: {
    token?: string;
    connections?: number;
    origin?: Partial<Omit<OriginProxyOptions, 'target' | 'onEvent'>>;
    /** Visitor access rules the relay enforces (--basic-auth / --allow-ip). */
    access?: AccessPolicy;
    /** Serve this named tunnel (its name and credential) instead of an ephemeral one. */
    named?: { name: string; credential: string };
  } = {},
): Promise<ConnectedTunnel> {
  const events: TunnelEvent[] = [];
  const parsed = parseTarget(target);
  const origin = new OriginProxy({
    target: parsed,
    hostHeader: 'preserve',
    insecure: false,
    ...options.origin,
    onEvent: (e) => {
      if (e.event !== 'request-start') events.push(e);
    },
  });
  const request = {
    clientVersion: 'test',
    ...(options.token !== undefined ? { token: options.token } : {}),
    ...(options.access !== undefined ? { access: options.access } : {}),
    ...(options.named !== undefined ? options.named : {}),
  };
  const supervisor = new TunnelSupervisor({
    connect: (req) => dialRelay({ relay: env.url, request: req, ca: env.ca }),
    request,
    connections: options.connections ?? 1,
    onStream: (s) => origin.handle(s),
    emit: (e) => events.push(e),
    relay: env.url.host,
    target: parsed.label,
    local: false,
  });
  const assignment = await supervisor.start();
  t.teardown(async () => {
    await supervisor.stop(100);
    origin.close();
  });
  return { supervisor, assignment, events, hostname: assignment.hostname, origin };
}

export interface VisitResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

export interface VisitOptions {
  method?: string;
  path?: string;
  headers?: http.OutgoingHttpHeaders | string[];
  body?: Buffer | string;
  scheme?: 'https' | 'http';
  agent?: http.Agent | false;
}

/** Sends one request to `hostname` through the relay (Host and SNI set, TLS verified). */
export function visit(
  env: TestRelay,
  hostname: string,
  options: VisitOptions = {},
): Promise<VisitResponse> {
  const scheme = options.scheme ?? 'https';
  const lib = scheme === 'https' ? https : http;
  const port = scheme === 'https' ? env.httpsPort : env.httpPort;
  return new Promise((resolve, reject) => {
    let headers = options.headers ?? {};
    // Node's client sends a DELETE/OPTIONS body unframed unless told its length.
    if (options.body !== undefined && !Array.isArray(headers)) {
      headers = { 'content-length': Buffer.byteLength(options.body), ...headers };
    }
    const req = lib.request({
      host: '127.0.0.1',
      port,
      method: options.method ?? 'GET',
      path: options.path ?? '/',
      headers: Array.isArray(headers)
        ? [...headers, 'Host', hostname]
        : { host: hostname, ...headers },
      servername: hostname,
      ca: env.ca,
      agent: options.agent ?? false,
    } as https.RequestOptions);
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(chunks),
        }),
      );
    });
    // A string body would make Node write the head in UTF-8 along with it; a Buffer
    // keeps header bytes latin1 (byte-faithful), as a real client sends them.
    req.end(typeof options.body === 'string' ? Buffer.from(options.body) : options.body);
  });
}

/** Starts an HTTP origin on 127.0.0.1:0 and returns its port. */
export async function startOrigin(
  t: Test,
  handler: http.RequestListener,
): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { server, port: (server.address() as AddressInfo).port };
}
