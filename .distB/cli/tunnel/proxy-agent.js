/**
 * Reaching the relay through a corporate HTTP proxy, as other CLIs do: HTTPS_PROXY
 * (or HTTP_PROXY for a plain-http relay) names the proxy, NO_PROXY lists hosts to
 * reach directly. The agent opens a CONNECT tunnel through the proxy and, for an
 * https relay, runs TLS to the relay inside it (the proxy sees only ciphertext).
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { ConfigError, ConnectionError } from '../../shared/errors.js';
/** True when NO_PROXY says `host[:port]` is reached directly. */
export function bypassesProxy(host, port, noProxy) {
    if (noProxy === undefined || noProxy.trim() === '')
        return false;
    const h = host.toLowerCase().replace(/^\[|\]$/g, '');
    for (const raw of noProxy.split(/[,\s]+/)) {
        const entry = raw.trim().toLowerCase();
        if (entry === '')
            continue;
        if (entry === '*')
            return true;
        const m = /^(.*?)(?::(\d+))?$/.exec(entry.replace(/^\[|\](?=:|$)/g, ''));
        const name = (m?.[1] ?? entry).replace(/^\*?\./, '.');
        const entryPort = m?.[2];
        if (entryPort !== undefined && Number(entryPort) !== port)
            continue;
        if (name.startsWith('.') ? h.endsWith(name) || h === name.slice(1) : h === name)
            return true;
    }
    return false;
}
/** The proxy URL to use for `target`, or undefined for a direct connection. */
export function proxyFor(target, env) {
    const port = Number(target.port || (target.protocol === 'https:' ? 443 : 80));
    if (bypassesProxy(target.hostname, port, env.noProxy))
        return undefined;
    const raw = target.protocol === 'https:' ? (env.httpsProxy ?? env.httpProxy) : env.httpProxy;
    if (raw === undefined || raw === '')
        return undefined;
    try {
        const url = new URL(/^[a-z]+:\/\//i.test(raw) ? raw : `http://${raw}`);
        if (url.protocol !== 'http:' && url.protocol !== 'https:')
            throw new Error('scheme');
        return url;
    }
    catch {
        throw new ConfigError(`the proxy setting '${raw}' is not an http:// or https:// URL`);
    }
}
/** Opens a CONNECT tunnel to host:port through `proxy`; resolves with the raw socket. */
export function connectThroughProxy(proxy, host, port, timeoutMs = 10_000) {
    return new Promise((resolve, reject) => {
        const proxyPort = Number(proxy.port || (proxy.protocol === 'https:' ? 443 : 80));
        const socket = proxy.protocol === 'https:'
            ? tls.connect({ host: proxy.hostname, port: proxyPort, servername: proxy.hostname })
            : net.connect({ host: proxy.hostname, port: proxyPort });
        const where = `the proxy ${proxy.host}`;
        const fail = (err) => {
            socket.destroy();
            reject(err);
        };
        socket.setTimeout(timeoutMs, () => fail(new ConnectionError(`${where} did not answer within ${timeoutMs} ms`)));
        socket.once('error', (err) => fail(new ConnectionError(`cannot reach ${where}: ${err.message}`, {
            cause: err,
            code: 'QT_ERR_PROXY',
        })));
        const authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
        let head = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n`;
        if (proxy.username !== '') {
            const cred = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
            head += `Proxy-Authorization: Basic ${Buffer.from(cred).toString('base64')}\r\n`;
        }
        socket.write(`${head}\r\n`);
        let buffered = Buffer.alloc(0);
        const onData = (chunk) => {
            buffered = Buffer.concat([buffered, chunk]);
            const end = buffered.indexOf('\r\n\r\n');
            if (end === -1) {
                if (buffered.length > 16 * 1024)
                    fail(new ConnectionError(`${where} sent an oversized response to CONNECT`));
                return;
            }
            socket.off('data', onData);
            const statusLine = buffered.subarray(0, buffered.indexOf('\r\n')).toString('latin1');
            const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
            if (status !== 200) {
                fail(new ConnectionError(status === 407
                    ? `${where} wants credentials (407): put them in the proxy URL, http://user:pass@proxy:port`
                    : `${where} refused to connect to ${authority}: ${statusLine}`, { code: 'QT_ERR_PROXY', retryable: status >= 500 }));
                return;
            }
            socket.setTimeout(0);
            socket.removeAllListeners('error');
            const rest = buffered.subarray(end + 4);
            if (rest.length > 0)
                socket.unshift(rest);
            resolve(socket);
        };
        socket.on('data', onData);
    });
}
/**
 * An agent whose connections go through `proxy` via CONNECT. For https targets TLS
 * runs end to end inside the tunnel, with the request's own TLS options (ca,
 * servername, rejectUnauthorized).
 */
export function proxyAgent(proxy, secure) {
    const agent = secure
        ? new https.Agent({ keepAlive: false })
        : new http.Agent({ keepAlive: false });
    const createConnection = (options, cb) => {
        const host = String(options.host ?? 'localhost');
        const port = Number(options.port ?? (secure ? 443 : 80));
        connectThroughProxy(proxy, host, port).then((raw) => {
            if (!secure) {
                cb(null, raw);
                return;
            }
            const { lookup: _lookup, ...tlsOptions } = options;
            cb(null, tls.connect({
                ...tlsOptions,
                socket: raw,
                servername: options.servername ?? host,
            }));
        }, (err) => cb(err));
        return undefined; // Node's agent waits for the callback
    };
    agent.createConnection =
        createConnection;
    return agent;
}
//# sourceMappingURL=proxy-agent.js.map