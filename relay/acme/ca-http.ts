/**
 * How acme-client reaches the CA. acme-client sends everything through one shared axios
 * instance that retries network errors, 429 and 5xx by itself (sleeping up to a
 * Retry-After of hours inside one request, then failing with a TypeError). We register
 * an adapter for the CA's origin instead: requests go out through undici with our
 * timeouts and our trust store (`--acme-directory-ca`), and a network error, a 429 or a
 * 5xx comes back at once as an AcmeError that the renewal schedule retries with backoff
 * and Retry-After. (An error without axios's `config` passes acme-client's retry
 * interceptor untouched.)
 */
import { rootCertificates } from 'node:tls';
import { Agent, request } from 'undici';
import { ACME_PROBLEM, AcmeError } from './errors.js';

/** ACME answers are small JSON documents or a PEM chain. */
const MAX_BODY_BYTES = 1024 * 1024;

export interface CaHttpOptions {
  /** Extra CA certificate (PEM) to trust for the ACME server, added to the system roots. */
  ca?: string | undefined;
  requestTimeoutMs?: number;
}

/** The parts of acme-client's axios instance used here (its own types come in two module flavours). */
export interface AxiosLike {
  interceptors: {
    request: { use(onFulfilled: (config: RequestConfig) => RequestConfig): number };
  };
}

interface RequestConfig {
  url?: string | undefined;
  method?: string | undefined;
  headers?: unknown;
  data?: unknown;
  adapter?: unknown;
}

interface AdapterResponse {
  data: string;
  status: number;
  statusText: string;
  headers: Record<string, string>;
  config: RequestConfig;
  request: undefined;
}

interface Registration {
  adapter: (config: RequestConfig) => Promise<AdapterResponse>;
  close: () => Promise<void>;
  refs: number;
}

const registrations = new Map<string, Registration>();
const installed = new WeakSet<AxiosLike>();

/** Parses an HTTP Retry-After (seconds or a date) into milliseconds from now. */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

function headerObject(config: RequestConfig): Record<string, string> {
  const h = config.headers as { toJSON?: () => unknown } | undefined;
  const raw: unknown = typeof h?.toJSON === 'function' ? h.toJSON() : h;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries((raw ?? {}) as Record<string, unknown>)) {
    if (typeof v === 'string' || typeof v === 'number') out[k.toLowerCase()] = String(v);
  }
  return out;
}

function makeAdapter(origin: string, options: CaHttpOptions): Omit<Registration, 'refs'> {
  const timeoutMs = options.requestTimeoutMs ?? 30_000;
  const dispatcher = new Agent({
    connect: {
      timeout: Math.min(timeoutMs, 10_000),
      ...(options.ca === undefined ? {} : { ca: [...rootCertificates, options.ca] }),
    },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  const adapter: Registration['adapter'] = async (config) => {
    const url = config.url ?? '';
    const method = (config.method ?? 'get').toUpperCase();
    let status: number;
    let headers: Record<string, string> = {};
    let text = '';
    try {
      const res = await request(url, {
        method: method as 'GET',
        headers: headerObject(config),
        ...(typeof config.data === 'string' ? { body: config.data } : {}),
        dispatcher,
      });
      status = res.statusCode;
      for (const [k, v] of Object.entries(res.headers)) {
        if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > MAX_BODY_BYTES) {
          res.body.destroy();
          throw new Error(`answer larger than ${MAX_BODY_BYTES} bytes`);
        }
        chunks.push(chunk);
      }
      text = Buffer.concat(chunks).toString('utf8');
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const detail = cause?.code ?? cause?.message ?? code ?? (err as Error).message;
      // Node's TLS error codes (CERT_HAS_EXPIRED, SELF_SIGNED_CERT_IN_CHAIN,
      // UNABLE_TO_VERIFY_LEAF_SIGNATURE, ERR_TLS_CERT_ALTNAME_INVALID...), never the text.
      const tls = [code, cause?.code ?? ''].some((c) =>
        /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(c),
      );
      throw new AcmeError(
        'QT_ERR_ACME_CA_UNREACHABLE',
        `cannot reach the ACME server ${origin} (${detail || (err as Error).message})${tls ? '; its TLS certificate is not trusted: for a private CA pass --acme-directory-ca FILE' : '; check --acme-directory and this host’s network'}`,
        { cause: err },
      );
    }
    if (status >= 400 && status < 500 && status !== 429) {
      // A refusal acme-client would turn into a bare Error of the CA's words: the ones
      // the relay explains itself keep their RFC 8555 problem type.
      const problem = problemOf(text);
      if (problem?.type === ACME_PROBLEM.externalAccountRequired) {
        throw new AcmeError('QT_ERR_ACME_ORDER', problem.detail || `HTTP ${status}`, {
          problemType: problem.type,
        });
      }
    }
    if (status === 429 || status >= 500) {
      let detail = '';
      try {
        detail = String((JSON.parse(text) as { detail?: unknown }).detail ?? '');
      } catch {
        detail = text.slice(0, 200);
      }
      const after = retryAfterMs(headers['retry-after']);
      throw new AcmeError(
        status === 429 ? 'QT_ERR_ACME_RATE_LIMITED' : 'QT_ERR_ACME_CA_ERROR',
        status === 429
          ? `the CA ${origin} is rate-limiting this account (HTTP 429${detail === '' ? '' : `: ${detail}`})${after === undefined ? '' : `; retrying after ${Math.ceil(after / 1000)} s as it asked`}`
          : `the CA ${origin} failed (HTTP ${status}${detail === '' ? '' : `: ${detail}`}); retrying later`,
        after === undefined ? {} : { retryAfterMs: after },
      );
    }
    return {
      data: text,
      status,
      statusText: '',
      headers,
      config,
      request: undefined,
    };
  };
  return { adapter, close: () => dispatcher.close() };
}

/**
 * Routes acme-client's requests to `directoryUrl`'s origin through our adapter. Returns
 * a function that undoes it (reference-counted: several relays in one process).
 */
export function useCaHttp(
  axios: AxiosLike,
  directoryUrl: string,
  options: CaHttpOptions,
): () => void {
  const origin = new URL(directoryUrl).origin;
  if (!installed.has(axios)) {
    installed.add(axios);
    axios.interceptors.request.use((config) => {
      const reg = config.url === undefined ? undefined : registrations.get(originOf(config.url));
      if (reg !== undefined) config.adapter = reg.adapter;
      return config;
    });
  }
  const existing = registrations.get(origin);
  if (existing !== undefined) existing.refs++;
  else registrations.set(origin, { ...makeAdapter(origin, options), refs: 1 });
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const reg = registrations.get(origin);
    if (reg !== undefined && --reg.refs === 0) {
      registrations.delete(origin);
      reg.close().catch(() => {}); // nothing left to send
    }
  };
}

/** The problem document (RFC 7807) of a CA's answer, if it is one. */
function problemOf(text: string): { type: string; detail: string } | undefined {
  try {
    const doc = JSON.parse(text) as { type?: unknown; detail?: unknown };
    if (typeof doc.type !== 'string') return undefined;
    return { type: doc.type, detail: typeof doc.detail === 'string' ? doc.detail : '' };
  } catch {
    return undefined;
  }
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '';
  }
}
