/**
 * An HTTP/2 visitor for the relay's HTTPS listener: the same options and result as
 * `visit()` (relay-env.ts), sent as one h2 stream. h1-only headers (Connection, the
 * ones it names, Keep-Alive, Transfer-Encoding) are left out, as a browser speaking h2
 * would; a body goes without a length unless one is given.
 */
import http2, { type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import type { OutgoingHttpHeaders } from 'node:http';
import type { TestRelay, VisitOptions, VisitResponse } from './relay-env.js';

const H1_ONLY = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'host',
]);

/** Opens an h2 connection to the relay for `hostname` (SNI and :authority). */
export function connectH2(env: TestRelay, hostname: string): ClientHttp2Session {
  const session = http2.connect(`https://${hostname}:${env.httpsPort}`, {
    host: '127.0.0.1',
    servername: hostname,
    ca: env.ca,
    lookup: (_h, _o, cb) => cb(null, '127.0.0.1', 4),
  } as http2.SecureClientSessionOptions);
  session.on('error', () => {});
  return session;
}

function h2Headers(headers: OutgoingHttpHeaders | string[]): OutgoingHttpHeaders {
  const pairs: [string, string][] = [];
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) pairs.push([headers[i]!, headers[i + 1]!]);
  } else {
    for (const [k, v] of Object.entries(headers)) {
      if (v === undefined) continue;
      for (const one of Array.isArray(v) ? v : [v]) pairs.push([k, String(one)]);
    }
  }
  const named = new Set<string>();
  for (const [k, v] of pairs) {
    if (k.toLowerCase() === 'connection') {
      for (const token of v.split(',')) named.add(token.trim().toLowerCase());
    }
  }
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of pairs) {
    const lower = k.toLowerCase();
    if (H1_ONLY.has(lower) || named.has(lower)) continue;
    const prev = out[lower];
    out[lower] = prev === undefined ? v : [...(Array.isArray(prev) ? prev : [String(prev)]), v];
  }
  return out;
}

/** Sends one request over h2 (a session of its own unless `session` is given). */
export async function visitH2(
  env: TestRelay,
  hostname: string,
  options: VisitOptions = {},
  session?: ClientHttp2Session,
): Promise<VisitResponse> {
  const own = session === undefined;
  const s = session ?? connectH2(env, hostname);
  try {
    return await new Promise<VisitResponse>((resolve, reject) => {
      const req = s.request(
        {
          ':method': options.method ?? 'GET',
          ':path': options.path ?? '/',
          ':authority': hostname,
          ...h2Headers(options.headers ?? {}),
        },
        // Node ends a GET or HEAD stream with its headers unless told there is a body.
        { endStream: options.body === undefined },
      );
      req.on('error', reject);
      let head: IncomingHttpHeaders = {};
      req.on('response', (h) => {
        head = h;
      });
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const headers: Record<string, string | string[] | undefined> = {};
        const rawHeaders: string[] = [];
        for (const [k, v] of Object.entries(head)) {
          if (k.startsWith(':') || v === undefined) continue;
          headers[k] = v;
          for (const one of Array.isArray(v) ? v : [v]) rawHeaders.push(k, String(one));
        }
        resolve({
          status: Number(head[':status'] ?? 0),
          headers: headers as VisitResponse['headers'],
          rawHeaders,
          body: Buffer.concat(chunks),
        });
      });
      req.end(typeof options.body === 'string' ? Buffer.from(options.body) : options.body);
    });
  } finally {
    if (own) s.close();
  }
}
