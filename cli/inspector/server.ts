/**
 * The web inspector: a small HTTP server on 127.0.0.1 (port 4040, or the next free one)
 * that serves a self-contained page and a JSON API over the same capture store the TUI
 * shows (one store, two views): a live list (Server-Sent Events), details, replay (with
 * edits), copy as curl, clear.
 *
 * It shows request bodies, so it guards itself against other web pages in the same
 * browser: it binds loopback only; a Host header other than localhost / 127.0.0.1 /
 * [::1] with its port gets 403 (DNS rebinding); there are no CORS headers; and calls
 * that change state (replay, clear) need the per-session token embedded in the page
 * (a page on another origin cannot read it), sent as `X-Quick-Tunnel-Token`.
 *
 * API: GET /api/tunnels, GET /api/requests, GET /api/requests/:id,
 * POST /api/requests/:id/replay (token; optional JSON edits), DELETE /api/requests
 * (token), GET /api/events (SSE: `snapshot`, `requests`, `tunnels`).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError, QuickTunnelError, errnoCode } from '../../shared/errors.js';
import type { ExchangeCapture } from '../origin/capture.js';
import { replayRefusal, type ReplayEdits, type ReplayResult } from '../origin/replay.js';
import type { RequestRow, TuiStore } from '../ui/tui/store.js';
import { HttpError, SECURITY_HEADERS } from './http-error.js';
import { startLiveList } from './live.js';
import { details, parseEdits, summarize, tunnelJson, MAX_EDIT_BODY_BYTES } from './views.js';

/** The default port, as ngrok's inspector. */
export const DEFAULT_INSPECT_PORT = 4040;
/** Ports tried after a taken one before falling back to any free port. */
const PORT_ATTEMPTS = 10;
export const TOKEN_HEADER = 'x-quick-tunnel-token';

/** One tunnel the inspector shows: its capture store (the TUI's) and how to replay. */
export interface InspectorTunnel {
  store: TuiStore;
  /** Sends a captured request (with edits) to the local origin, as the TUI's replay. */
  replay: (capture: ExchangeCapture, edits: ReplayEdits | undefined) => Promise<ReplayResult>;
  /** Name shown for the tunnel (`tunnel_name`); default the first label of its hostname. */
  name?: string | undefined;
}

export interface InspectorOptions {
  /**
   * The tunnels shown, in order. With several, give their stores one `nextKey` counter:
   * request ids are row keys and must be unique across them.
   */
  tunnels: InspectorTunnel[];
  /** The first port to try (default 4040); the next free one is used if taken. 0 = any. */
  port?: number;
  /** --ca file, for curl commands. */
  caFile?: string | undefined;
  /** Where the page's files are (default: ./assets next to this module). */
  assetsDir?: URL;
}

export interface InspectorHandle {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  /** The page's token (tests; scripts can read it from the page's meta tag). */
  readonly token: string;
  close(): Promise<void>;
}

interface Asset {
  type: string;
  body: Buffer;
}

function loadAssets(dir: URL): { page: string; files: Map<string, Asset> } {
  const read = (name: string): Buffer => {
    try {
      return readFileSync(new URL(name, dir));
    } catch (err) {
      throw new QuickTunnelError(
        'QT_ERR_INSPECTOR',
        `the inspector's files are missing (${new URL(name, dir).pathname}): reinstall quick-tunnel or use --no-inspect`,
        { cause: err },
      );
    }
  };
  return {
    page: read('index.html').toString('utf8'),
    files: new Map([
      ['/inspector.js', { type: 'text/javascript; charset=utf-8', body: read('inspector.js') }],
      ['/inspector.css', { type: 'text/css; charset=utf-8', body: read('inspector.css') }],
      ['/favicon.svg', { type: 'image/svg+xml', body: read('favicon.svg') }],
    ]),
  };
}

/** Listens on 127.0.0.1:`port`, or the next free port (then any free one). */
async function listen(server: http.Server, port: number): Promise<number> {
  const tryPort = (p: number): Promise<number | undefined> =>
    new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        server.off('listening', onListening);
        if (errnoCode(err) === 'EADDRINUSE' || errnoCode(err) === 'EACCES') resolve(undefined);
        else reject(err);
      };
      const onListening = (): void => {
        server.off('error', onError);
        resolve((server.address() as AddressInfo).port);
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen(p, '127.0.0.1');
    });
  for (let i = 0; port !== 0 && i < PORT_ATTEMPTS && port + i <= 65535; i++) {
    const got = await tryPort(port + i);
    if (got !== undefined) return got;
  }
  const any = await tryPort(0);
  if (any === undefined) {
    throw new QuickTunnelError(
      'QT_ERR_INSPECTOR',
      'no free port for the inspector: use --no-inspect',
    );
  }
  return any;
}

function sameToken(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Starts the inspector; resolves once it listens. */
export async function startInspector(options: InspectorOptions): Promise<InspectorHandle> {
  const assets = loadAssets(options.assetsDir ?? new URL('./assets/', import.meta.url));
  const token = randomBytes(24).toString('base64url');
  const page = Buffer.from(assets.page.replace('{{TOKEN}}', token));
  const nameOf = (t: InspectorTunnel): string =>
    t.name ?? t.store.tunnel.hostname?.split('.')[0] ?? 'tunnel';
  let port = 0;
  const allowedHosts = (): Set<string> =>
    new Set([`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`]);

  const tunnels = () => ({
    tunnels: options.tunnels.map((t) => tunnelJson(t.store, nameOf(t))),
    uri: '/api/tunnels',
  });
  /** Every row of every tunnel, oldest first. */
  const allRows = (): { row: RequestRow; tunnel: InspectorTunnel }[] => {
    const rows: { row: RequestRow; tunnel: InspectorTunnel }[] = [];
    for (const tunnel of options.tunnels) {
      const { store } = tunnel;
      for (let i = 0; i < store.rowCount; i++) rows.push({ row: store.rowAt(i)!, tunnel });
    }
    if (options.tunnels.length > 1) rows.sort((a, b) => a.row.key - b.row.key);
    return rows;
  };
  const live = startLiveList(options.tunnels, nameOf, tunnels, allRows);

  // ---- API ----------------------------------------------------------------------------
  const rowFor = (id: string): { row: RequestRow; tunnel: InspectorTunnel } => {
    const key = /^\d{1,15}$/.test(id) ? Number(id) : Number.NaN;
    if (Number.isFinite(key)) {
      for (const tunnel of options.tunnels) {
        const row = tunnel.store.rowByKey(key);
        if (row !== undefined) return { row, tunnel };
      }
    }
    throw new HttpError(404, `no request ${id} (cleared, or dropped as the list is bounded)`);
  };

  const replay = async (
    { row, tunnel }: { row: RequestRow; tunnel: InspectorTunnel },
    edits: ReplayEdits | undefined,
  ): Promise<RequestRow> => {
    const { store } = tunnel;
    const capture = row.capture;
    if (capture === undefined) throw new HttpError(409, 'nothing was captured for this request');
    const refusal = replayRefusal(capture, edits);
    if (refusal !== undefined) throw new HttpError(409, `cannot replay: ${refusal}`);
    const key = store.startReplay(
      row,
      edits === undefined
        ? undefined
        : { method: edits.method ?? row.method, path: edits.path ?? row.path },
    );
    let result: ReplayResult;
    try {
      result = await tunnel.replay(capture, edits);
    } catch (err) {
      result = {
        capture,
        status: 502,
        durationMs: 0,
        bytesIn: 0,
        bytesOut: 0,
        error: err instanceof Error ? err.message : String(err),
      };
    }
    store.finishReplay(key, result);
    const done = store.rowByKey(key);
    if (done === undefined) throw new HttpError(410, 'the replay was cleared from the list');
    return done;
  };

  const readJson = async (req: http.IncomingMessage): Promise<unknown> => {
    const chunks: Buffer[] = [];
    let size = 0;
    // Base64 of the largest body, plus room for the rest.
    const limit = Math.ceil((MAX_EDIT_BODY_BYTES * 4) / 3) + 256 * 1024;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) throw new HttpError(413, `the request body may be at most ${limit} bytes`);
      chunks.push(chunk);
    }
    if (size === 0) return undefined;
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      throw new HttpError(400, 'the request body is not valid JSON');
    }
  };

  const json = (res: http.ServerResponse, status: number, data: unknown): void => {
    const body = JSON.stringify(data);
    res.writeHead(status, {
      ...SECURITY_HEADERS,
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    // DNS rebinding: a page on evil.example that resolves to 127.0.0.1 still sends its
    // own name as Host.
    const host = req.headers.host?.toLowerCase();
    if (host === undefined || !allowedHosts().has(host)) {
      throw new HttpError(
        403,
        'the inspector answers only to localhost, 127.0.0.1 or [::1] with its port',
      );
    }
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', `http://${host}`);
    const path = url.pathname;
    const readOnly = method === 'GET' || method === 'HEAD';
    if (!readOnly) {
      // Another page cannot know the token; a browser sends Origin on these calls.
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== `http://${host}`) {
        throw new HttpError(403, 'cross-origin calls are refused');
      }
      const given = req.headers[TOKEN_HEADER];
      if (!sameToken(typeof given === 'string' ? given : undefined, token)) {
        throw new HttpError(
          403,
          `this call changes state: it needs the page's token in the ${TOKEN_HEADER} header`,
        );
      }
    }
    if (readOnly && (path === '/' || path === '/index.html')) {
      res.writeHead(200, {
        ...SECURITY_HEADERS,
        'content-type': 'text/html; charset=utf-8',
        'content-length': page.length,
      });
      res.end(method === 'HEAD' ? undefined : page);
      return;
    }
    const asset = assets.files.get(path);
    if (readOnly && asset !== undefined) {
      res.writeHead(200, {
        ...SECURITY_HEADERS,
        'content-type': asset.type,
        'content-length': asset.body.length,
      });
      res.end(method === 'HEAD' ? undefined : asset.body);
      return;
    }
    if (path === '/api/tunnels') {
      if (!readOnly) throw new HttpError(405, 'GET only');
      json(res, 200, tunnels());
      return;
    }
    if (path === '/api/events') {
      if (method !== 'GET') throw new HttpError(405, 'GET only');
      live.open(req, res);
      return;
    }
    if (path === '/api/requests' || path === '/api/requests/http') {
      // ?tunnel=NAME: one tunnel's requests only.
      const only = url.searchParams.get('tunnel');
      if (method === 'DELETE') {
        for (const t of options.tunnels) if (only === null || nameOf(t) === only) t.store.clear();
        res.writeHead(204, SECURITY_HEADERS).end();
        return;
      }
      if (!readOnly) throw new HttpError(405, 'GET or DELETE');
      const limit = Number(url.searchParams.get('limit') ?? Number.MAX_SAFE_INTEGER);
      const rows = allRows()
        .filter(({ tunnel }) => only === null || nameOf(tunnel) === only)
        .reverse()
        .slice(0, Number.isFinite(limit) ? Math.max(0, limit) : 0);
      json(res, 200, {
        requests: rows.map(({ row, tunnel }) => summarize(row, nameOf(tunnel))),
        uri: '/api/requests',
      });
      return;
    }
    const match = /^\/api\/requests\/([^/]+)(\/replay)?$/.exec(path);
    if (match !== null) {
      const found = rowFor(decodeURIComponent(match[1]!));
      const { store } = found.tunnel;
      if (match[2] === undefined) {
        if (!readOnly) throw new HttpError(405, 'GET only');
        json(res, 200, details(found.row, store, nameOf(found.tunnel), options.caFile));
        return;
      }
      if (method !== 'POST') throw new HttpError(405, 'POST only');
      let edits: ReplayEdits | undefined;
      try {
        edits = parseEdits(await readJson(req));
      } catch (err) {
        if (err instanceof ConfigError) throw new HttpError(400, err.message);
        throw err;
      }
      const done = await replay(found, edits);
      json(res, 200, details(done, store, nameOf(found.tunnel), options.caFile));
      return;
    }
    throw new HttpError(404, `nothing at ${path}`);
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      const message = err instanceof Error ? err.message : String(err);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      json(res, status, { error: message });
    });
  });
  server.maxConnections = 64;
  server.headersTimeout = 10_000;
  server.requestTimeout = 60_000;
  port = await listen(server, options.port ?? DEFAULT_INSPECT_PORT);

  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    token,
    close() {
      closing ??= new Promise<void>((resolve) => {
        live.close();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
