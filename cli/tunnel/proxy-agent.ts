/**
 * Reaching the relay through a corporate HTTP proxy, as other CLIs do. Which proxy (if
 * any) is cli/config.ts's relayProxy (HTTPS_PROXY / HTTP_PROXY / NO_PROXY, read by
 * proxy-from-env). The agent is https-proxy-agent, the one `ws` documents for this: it
 * opens a CONNECT tunnel through the proxy and, for an https relay, runs TLS to the
 * relay inside it with the request's own TLS options (ca, servername,
 * rejectUnauthorized), so the proxy sees only ciphertext.
 *
 * What this module adds to it: a time limit on the proxy's answer, and errors a person
 * can act on (QT_ERR_PROXY). Left alone, https-proxy-agent replays a refused CONNECT
 * (403, 407) as if the relay had answered it, which would read "is it a quick-tunnel
 * relay?".
 */
import { EventEmitter } from 'node:events';
import type http from 'node:http';
import type net from 'node:net';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { realClock, type Clock } from '../../shared/clock.js';
import { ConnectionError, errnoCode } from '../../shared/errors.js';

/** How long the proxy has to answer the CONNECT (connect + response head). */
export const PROXY_CONNECT_TIMEOUT_MS = 10_000;

type ConnectOptions = Parameters<HttpsProxyAgent<string>['connect']>[1];

/** The CONNECT's answer, as https-proxy-agent reports it on the request. */
interface ProxyConnectResponse {
  statusCode: number;
  statusText: string;
}

class RelayProxyAgent extends HttpsProxyAgent<string> {
  constructor(
    proxy: URL,
    private readonly secure: boolean,
    private readonly timeoutMs: number,
    private readonly clock: Clock,
  ) {
    super(proxy, { keepAlive: false });
  }

  /** Fixed per agent: agent-base would guess it from the call stack. */
  override isSecureEndpoint(): boolean {
    return this.secure;
  }

  override async connect(req: http.ClientRequest, opts: ConnectOptions): Promise<net.Socket> {
    const where = `the proxy ${this.proxy.host}`;
    const host = opts.host ?? 'localhost';
    const authority = `${host.includes(':') ? `[${host}]` : host}:${opts.port}`;
    let answer: ProxyConnectResponse | undefined;
    const onAnswer = (res: ProxyConnectResponse): void => {
      answer = res;
    };
    req.once('proxyConnect', onAnswer);
    const abort = new AbortController();
    const timer = this.clock.setTimeout(() => abort.abort(), this.timeoutMs);
    // super.connect opens its socket to the proxy synchronously from connectOpts: the
    // signal is there for exactly this connection.
    this.connectOpts.signal = abort.signal;
    const pending = super.connect(req, opts);
    delete this.connectOpts.signal;
    let socket: net.Socket;
    try {
      socket = await pending;
    } catch (err) {
      if (abort.signal.aborted) {
        throw new ConnectionError(`${where} did not answer within ${this.timeoutMs} ms`, {
          cause: err,
          code: 'QT_ERR_PROXY',
        });
      }
      const reason = errnoCode(err) ?? (err instanceof Error ? err.message : String(err));
      throw new ConnectionError(`cannot reach ${where}: ${reason}`, {
        cause: err,
        code: 'QT_ERR_PROXY',
      });
    } finally {
      this.clock.clearTimeout(timer);
      req.off('proxyConnect', onAnswer);
    }
    const status = answer?.statusCode ?? 0;
    if (status === 200) return socket;
    // Refused: https-proxy-agent hands back a stand-in socket that would replay the
    // proxy's answer to the request; the request never gets it.
    socket.destroy();
    throw new ConnectionError(
      status === 407
        ? `${where} wants credentials (407): put them in the proxy URL, http://user:pass@proxy:port`
        : `${where} refused to connect to ${authority}: ${status} ${answer?.statusText ?? ''}`.trimEnd(),
      { code: 'QT_ERR_PROXY', retryable: status >= 500 },
    );
  }
}

/**
 * An agent whose connections go through `proxy` via CONNECT; `secure`: the relay is
 * https (TLS inside the tunnel). Errors are QuickTunnelErrors with code QT_ERR_PROXY.
 * `clock` times the proxy's answer (tests); default the real clock.
 */
export function proxyAgent(
  proxy: URL,
  secure: boolean,
  timeoutMs = PROXY_CONNECT_TIMEOUT_MS,
  clock: Clock = realClock,
): http.Agent {
  return new RelayProxyAgent(proxy, secure, timeoutMs, clock);
}

/**
 * Opens a CONNECT tunnel to host:port through `proxy`; resolves with the raw socket (for
 * cli/tunnel/pin.ts, which runs its own TLS handshake in it).
 */
export async function connectThroughProxy(
  proxy: URL,
  host: string,
  port: number,
  timeoutMs = PROXY_CONNECT_TIMEOUT_MS,
  clock: Clock = realClock,
): Promise<net.Socket> {
  const agent = new RelayProxyAgent(proxy, false, timeoutMs, clock);
  // connect() only emits on the request and listens for its 'socket': no request here.
  const req = new EventEmitter() as unknown as http.ClientRequest;
  return agent.connect(req, { host, port, secureEndpoint: false });
}
