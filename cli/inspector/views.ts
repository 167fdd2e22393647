/**
 * The inspector's JSON shapes: a request row as a list summary and as full details
 * (heads, body previews, curl command), the tunnel as `/api/tunnels` shows it, and the
 * parsing of a replay's edits. Field names follow ngrok's agent API where one exists
 * (`public_url`, `tunnel_name`, snake_case), so scripts written for it read ours.
 */
import { ConfigError } from '../../shared/errors.js';
import type { HeaderPairs } from '../../shared/protocol/tunnel.js';
import type { BodyPreview, ExchangeCapture } from '../origin/capture.js';
import { replayRefusal, type ReplayEdits } from '../origin/replay.js';
import { decodeContentEncoding, headerValue } from '../ui/tui/body.js';
import { toCurl } from '../ui/tui/curl.js';
import type { RequestRow, TuiStore } from '../ui/tui/store.js';

/** Headers the relay's store-and-forward queue adds to a delivery (issue 22, part 2). */
export const DELIVERY_ID_HEADER = 'x-quick-tunnel-delivery-id';
export const QUEUED_AT_HEADER = 'x-quick-tunnel-queued-at';

/** Largest replay body the API takes (the page sends bodies it showed: 64 KiB previews). */
export const MAX_EDIT_BODY_BYTES = 1024 * 1024;
const MAX_EDIT_HEADERS = 200;
const MAX_PATH_LENGTH = 8 * 1024;

export interface RequestSummary {
  id: number;
  uri: string;
  tunnel_name: string;
  /** `#12` as the TUI shows it. */
  label: string;
  method: string;
  path: string;
  status: number | null;
  duration_ms: number | null;
  bytes_in: number;
  bytes_out: number;
  started_at: string;
  open: boolean;
  upgrade: boolean;
  error: string | null;
  /** For a replay: the `id` of the entry it replays. */
  replay_of: number | null;
  edited: boolean;
  /** Set when the relay's queue delivered this request (store-and-forward). */
  queued: { delivery_id: string; queued_at: string | null } | null;
}

export interface BodyJson {
  /** Bytes of the whole body. */
  size: number;
  /** Bytes kept (the preview); `base64` holds them (decoded when `decoded`). */
  captured: number;
  truncated: boolean;
  /** The preview was dropped to keep memory bounded. */
  released: boolean;
  content_type: string | null;
  content_encoding: string | null;
  /** True when `base64` is the gzip/deflate/br-decoded preview. */
  decoded: boolean;
  base64: string;
}

/** The queue marker of a captured request, if the relay's queue delivered it. */
export function deliveryMarker(
  headers: HeaderPairs,
): { delivery_id: string; queued_at: string | null } | null {
  const id = headerValue(headers, DELIVERY_ID_HEADER);
  if (id === undefined) return null;
  const raw = headerValue(headers, QUEUED_AT_HEADER);
  let queuedAt: string | null = null;
  if (raw !== undefined) {
    // Epoch milliseconds (or seconds) or a date string; shown as ISO when it parses.
    const n = /^\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw) : Number.NaN;
    const ms = Number.isFinite(n) ? (n < 1e12 ? n * 1000 : n) : Date.parse(raw);
    queuedAt = Number.isFinite(ms) ? new Date(ms).toISOString() : raw;
  }
  return { delivery_id: id, queued_at: queuedAt };
}

/** The relay's mark on the request head, else the delivery headers it added. */
function queueMarker(row: RequestRow): RequestSummary['queued'] {
  if (row.queued !== undefined) {
    const ms = Date.parse(row.queued.queuedAt);
    return {
      delivery_id: row.queued.deliveryId,
      queued_at: Number.isFinite(ms) ? new Date(ms).toISOString() : row.queued.queuedAt,
    };
  }
  return row.capture !== undefined ? deliveryMarker(row.capture.request.headers) : null;
}

export function rowLabel(row: RequestRow): string {
  return row.replayOf !== undefined ? `replay of #${row.replayOf}` : `#${row.id ?? row.key}`;
}

export function summarize(row: RequestRow, tunnelName: string): RequestSummary {
  return {
    id: row.key,
    uri: `/api/requests/${row.key}`,
    tunnel_name: tunnelName,
    label: rowLabel(row),
    method: row.method,
    path: row.path,
    status: row.status ?? null,
    duration_ms: row.durationMs ?? null,
    bytes_in: row.bytesIn,
    bytes_out: row.bytesOut,
    started_at: new Date(row.startedAt).toISOString(),
    open: row.open,
    upgrade: row.upgrade,
    error: row.error ?? null,
    replay_of: row.replayOfKey ?? null,
    edited: row.edited,
    queued: queueMarker(row),
  };
}

function bodyJson(preview: BodyPreview, headers: HeaderPairs): BodyJson {
  const encoding = headerValue(headers, 'content-encoding')?.trim().toLowerCase();
  let bytes = preview.released ? Buffer.alloc(0) : preview.bytes();
  let decoded = false;
  if (encoding !== undefined && encoding !== 'identity' && bytes.length > 0) {
    const out = decodeContentEncoding(bytes, encoding);
    if (out !== undefined) {
      bytes = out;
      decoded = true;
    }
  }
  return {
    size: preview.totalBytes,
    captured: preview.capturedBytes,
    truncated: preview.truncated,
    released: preview.released,
    content_type: headerValue(headers, 'content-type') ?? null,
    content_encoding: encoding ?? null,
    decoded,
    base64: bytes.toString('base64'),
  };
}

function captureJson(capture: ExchangeCapture) {
  const { request, response, upgraded } = capture;
  return {
    request: {
      method: request.method,
      uri: request.url,
      proto: `HTTP/${request.httpVersion}`,
      scheme: request.scheme,
      remote_addr: request.remoteAddress,
      headers: request.headers,
      body: bodyJson(capture.requestBody, request.headers),
    },
    response:
      response === undefined
        ? null
        : {
            status: response.status,
            status_message: response.statusMessage ?? null,
            headers: response.headers,
            body: bodyJson(capture.responseBody, response.headers),
          },
    websocket:
      upgraded === undefined
        ? null
        : {
            messages_to_origin: upgraded.toOrigin.messages,
            messages_to_visitor: upgraded.toVisitor.messages,
            bytes_to_origin: upgraded.toOrigin.bytes,
            bytes_to_visitor: upgraded.toVisitor.bytes,
            counted: upgraded.toOrigin.valid && upgraded.toVisitor.valid,
          },
    finished_at:
      capture.finishedAt === undefined ? null : new Date(capture.finishedAt).toISOString(),
  };
}

/** Everything the details pane shows for `row`. */
export function details(
  row: RequestRow,
  store: TuiStore,
  tunnelName: string,
  caFile: string | undefined,
) {
  const capture = row.capture;
  const url = store.tunnel.url;
  const curl =
    capture !== undefined && url !== undefined ? toCurl(capture, url, { caFile }) : undefined;
  return {
    ...summarize(row, tunnelName),
    capture: capture === undefined ? null : captureJson(capture),
    curl: curl?.command ?? null,
    curl_notes: curl?.notes ?? [],
    replay_refusal:
      capture === undefined
        ? 'nothing was captured for this request'
        : (replayRefusal(capture) ?? null),
  };
}

/** `/api/tunnels`: the tunnel(s) this CLI serves (one today; several with a config file). */
export function tunnelJson(store: TuiStore, name: string) {
  const t = store.tunnel;
  return {
    name,
    public_url: t.url ?? null,
    public_urls: t.urls,
    proto: t.url === undefined ? null : new URL(t.url).protocol.replace(':', ''),
    config: { addr: t.target ?? null, inspect: true },
    target: t.target ?? null,
    status: store.status(),
    kind: t.kind ?? null,
    local: t.local,
    relay: t.relay ?? null,
    connections: {
      live: t.url === undefined ? 0 : store.liveConnections(),
      wanted: t.connectionsWanted,
    },
  };
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// eslint-disable-next-line no-control-regex
const BAD_VALUE = /[\u0000-\u0008\u000a-\u001f\u007f]/;

/**
 * Parses the JSON body of `POST /api/requests/:id/replay`: `{}` (replay as captured) or
 * any of `method`, `path`, `headers` (`[[name, value]…]` or `{name: value}`), and `body`
 * (text) or `body_base64`. Throws a ConfigError that says what is wrong.
 */
export function parseEdits(input: unknown): ReplayEdits | undefined {
  if (input === undefined || input === null) return undefined;
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw new ConfigError('the replay body must be a JSON object');
  }
  const v = input as Record<string, unknown>;
  const known = new Set(['method', 'path', 'headers', 'body', 'body_base64']);
  for (const key of Object.keys(v)) {
    if (!known.has(key))
      throw new ConfigError(
        `unknown field '${key}' (use method, path, headers, body or body_base64)`,
      );
  }
  const edits: ReplayEdits = {};
  if (v['method'] !== undefined) {
    const method = v['method'];
    if (typeof method !== 'string' || !TOKEN.test(method) || method.length > 32) {
      throw new ConfigError('method must be an HTTP method such as GET or POST');
    }
    edits.method = method;
  }
  if (v['path'] !== undefined) {
    const path = v['path'];
    if (
      typeof path !== 'string' ||
      !path.startsWith('/') ||
      path.length > MAX_PATH_LENGTH ||
      // eslint-disable-next-line no-control-regex
      /[\u0000-\u0020\u007f]/.test(path)
    ) {
      throw new ConfigError('path must start with / and hold no spaces or control characters');
    }
    edits.path = path;
  }
  if (v['headers'] !== undefined) {
    const raw = v['headers'];
    const pairs: unknown[] = Array.isArray(raw)
      ? raw
      : typeof raw === 'object' && raw !== null
        ? Object.entries(raw)
        : [];
    if (!Array.isArray(raw) && (typeof raw !== 'object' || raw === null)) {
      throw new ConfigError('headers must be [[name, value], …] or {name: value}');
    }
    if (pairs.length > MAX_EDIT_HEADERS) {
      throw new ConfigError(`at most ${MAX_EDIT_HEADERS} headers`);
    }
    const headers: HeaderPairs = [];
    for (const pair of pairs) {
      if (
        !Array.isArray(pair) ||
        pair.length !== 2 ||
        typeof pair[0] !== 'string' ||
        typeof pair[1] !== 'string'
      ) {
        throw new ConfigError('headers must be [[name, value], …] or {name: value} with strings');
      }
      const [name, value] = pair as [string, string];
      if (!TOKEN.test(name)) throw new ConfigError(`'${name}' is not a valid header name`);
      if (BAD_VALUE.test(value)) {
        throw new ConfigError(
          `the value of header '${name}' holds a line break or control character`,
        );
      }
      headers.push([name, value]);
    }
    edits.headers = headers;
  }
  if (v['body'] !== undefined && v['body_base64'] !== undefined) {
    throw new ConfigError('give body or body_base64, not both');
  }
  if (v['body'] !== undefined) {
    if (typeof v['body'] !== 'string') throw new ConfigError('body must be a string');
    edits.body = Buffer.from(v['body'], 'utf8');
  } else if (v['body_base64'] !== undefined) {
    if (typeof v['body_base64'] !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v['body_base64'])) {
      throw new ConfigError('body_base64 must be base64');
    }
    edits.body = Buffer.from(v['body_base64'], 'base64');
  }
  if (edits.body !== undefined && edits.body.length > MAX_EDIT_BODY_BYTES) {
    throw new ConfigError(`the body may be at most ${MAX_EDIT_BODY_BYTES} bytes`);
  }
  return Object.keys(edits).length === 0 ? undefined : edits;
}
