/**
 * Client of the relay's control API (the fastify app on its apex host): create, read
 * and delete named tunnels. Uses the same trust settings as the tunnel connection
 * (--ca, --relay-insecure) and resolves *.localhost to loopback like it.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { QuickTunnelError, isQtErrorCode } from '../../shared/errors.js';
import { describeDialError, localhostAwareLookup } from './client.js';
import type { NamedTunnelStatus } from '../../shared/protocol/tunnel.js';

export interface RelayApiOptions {
  /** Relay base URL (https://relay.example.com[:port]). */
  relay: URL;
  /** Extra CA / the relay's self-signed certificate (PEM). */
  ca?: string | undefined;
  insecure?: boolean;
  /** An agent that goes through an HTTP proxy (HTTPS_PROXY), if any. */
  agent?: http.Agent | undefined;
  timeoutMs?: number;
}

/** Largest control-API answer the CLI reads (a list of many tunnels fits easily). */
export const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

/** A refusal from the API: HTTP status, the relay's error code and its message. */
export class RelayApiError extends QuickTunnelError {
  readonly status: number;
  readonly apiCode: string;
  constructor(status: number, apiCode: string, message: string) {
    super(isQtErrorCode(apiCode) ? apiCode : 'QT_ERR_API', message, {
      retryable: status >= 500,
    });
    this.status = status;
    this.apiCode = apiCode;
  }
}

/** What the relay answers to `POST /api/tunnels`. */
export interface CreatedTunnel {
  id: string;
  name: string;
  hostname: string;
  urls: string[];
  createdAt: string;
  /** Store-and-forward on (older relays leave it out). */
  queue?: boolean;
  credential: string;
}

/** One request in a tunnel's queue (`GET /api/tunnels/:name/queue`). */
export interface QueueItemView {
  deliveryId: string;
  seq: number;
  method: string;
  path: string;
  queuedAt: string;
  bodyBytes: number;
  state: 'waiting' | 'delivering' | 'failed';
  attempts: number;
  lastError?: string;
  failed?: { reason: string; message: string; failedAt: string; lastStatus?: number };
}

export interface QueueView {
  name: string;
  enabled: boolean;
  connected: boolean;
  waiting: number;
  failed: number;
  limits: { maxBodyBytes: number; maxItems: number; maxAgeSeconds: number };
  items: QueueItemView[];
}

/** What the relay answers to `GET /api/tunnels/:name`. */
export type TunnelStatus = NamedTunnelStatus;

export interface DeletedTunnel {
  deleted: true;
  id: string;
  name: string;
  connectionsClosed: number;
}

/**
 * One API call: resolves with the parsed JSON of a 2xx answer; rejects with a
 * RelayApiError for an error answer, or a connection error a person can act on.
 */
export function callRelayApi<T>(
  opts: RelayApiOptions,
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
  apiPath: string,
  options: { bearer?: string | undefined; body?: unknown } = {},
): Promise<T> {
  const { relay } = opts;
  const base = relay.pathname.replace(/\/+$/, '');
  const lib = relay.protocol === 'http:' ? http : https;
  const body = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
  const headers: http.OutgoingHttpHeaders = { accept: 'application/json' };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = body.length;
  }
  if (options.bearer !== undefined) headers['authorization'] = `Bearer ${options.bearer}`;
  const hostname = relay.hostname.replace(/^\[|\]$/g, '');
  const requestOptions: https.RequestOptions = {
    method,
    host: hostname,
    port: relay.port === '' ? undefined : Number(relay.port),
    path: `${base}${apiPath}`,
    headers,
    lookup: localhostAwareLookup,
    agent: opts.agent ?? false,
    timeout: opts.timeoutMs ?? 15_000,
  };
  if (relay.protocol === 'https:') {
    if (!net.isIP(hostname)) requestOptions.servername = hostname;
    if (opts.ca !== undefined) requestOptions.ca = opts.ca;
    if (opts.insecure === true) requestOptions.rejectUnauthorized = false;
  }
  return new Promise<T>((resolve, reject) => {
    const req = lib.request(requestOptions, (res) => {
      const chunks: Buffer[] = [];
      // The relay is not trusted with our memory: its answers are small JSON objects.
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_ANSWER_BYTES) {
          req.destroy();
          reject(
            new QuickTunnelError(
              'QT_ERR_NOT_A_RELAY',
              `${relay.host} sent an answer larger than ${MAX_ANSWER_BYTES / 1024 / 1024} MiB on ${apiPath}: is it a quick-tunnel relay, and is --relay right?`,
              { retryable: false },
            ),
          );
          return;
        }
        chunks.push(c);
      });
      res.on('error', (err) => reject(describeDialError(err, relay.host)));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        let parsed: unknown;
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          reject(
            new QuickTunnelError(
              'QT_ERR_NOT_A_RELAY',
              `${relay.host} answered HTTP ${status} with something that is not JSON on ${apiPath}: is it a quick-tunnel relay, and is --relay right?`,
              { retryable: status >= 500 },
            ),
          );
          return;
        }
        if (status >= 200 && status < 300) {
          resolve(parsed as T);
          return;
        }
        const v = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<
          string,
          unknown
        >;
        const message =
          typeof v['message'] === 'string' ? v['message'] : `the relay answered HTTP ${status}`;
        const code = typeof v['code'] === 'string' ? v['code'] : `HTTP_${status}`;
        reject(new RelayApiError(status, code, message));
      });
    });
    req.on('timeout', () =>
      req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })),
    );
    req.on('error', (err) => reject(describeDialError(err, relay.host)));
    req.end(body);
  });
}

export const relayApi = {
  create: (opts: RelayApiOptions, name: string, token: string | undefined, queue = false) =>
    callRelayApi<CreatedTunnel>(opts, 'POST', '/api/tunnels', {
      bearer: token,
      body: queue ? { name, queue } : { name },
    }),
  setQueue: (opts: RelayApiOptions, name: string, credential: string, queue: boolean) =>
    callRelayApi<TunnelStatus>(opts, 'PATCH', `/api/tunnels/${encodeURIComponent(name)}`, {
      bearer: credential,
      body: { queue },
    }),
  queue: (opts: RelayApiOptions, name: string, credential: string) =>
    callRelayApi<QueueView>(opts, 'GET', `/api/tunnels/${encodeURIComponent(name)}/queue`, {
      bearer: credential,
    }),
  purgeQueue: (
    opts: RelayApiOptions,
    name: string,
    credential: string,
    which: 'all' | 'failed' | 'waiting',
  ) =>
    callRelayApi<{ purged: number }>(
      opts,
      'DELETE',
      `/api/tunnels/${encodeURIComponent(name)}/queue?which=${which}`,
      { bearer: credential },
    ),
  status: (opts: RelayApiOptions, name: string, credential: string) =>
    callRelayApi<TunnelStatus>(opts, 'GET', `/api/tunnels/${encodeURIComponent(name)}`, {
      bearer: credential,
    }),
  delete: (opts: RelayApiOptions, name: string, credential: string, force: boolean) =>
    callRelayApi<DeletedTunnel>(
      opts,
      'DELETE',
      `/api/tunnels/${encodeURIComponent(name)}${force ? '?force=true' : ''}`,
      { bearer: credential },
    ),
  health: (opts: RelayApiOptions) =>
    callRelayApi<{ ok: boolean; version: string }>(opts, 'GET', '/healthz'),
};
