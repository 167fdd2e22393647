/**
 * Client of the relay's control API (the fastify app on its apex host): create, read
 * and delete named tunnels. Uses the same trust settings as the tunnel connection
 * (--ca, --relay-insecure) and resolves *.localhost to loopback like it.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { QuickTunnelError } from '../../shared/errors.js';
import { describeDialError, localhostAwareLookup } from './client.js';
/** A refusal from the API: HTTP status, the relay's error code and its message. */
export class RelayApiError extends QuickTunnelError {
    status;
    apiCode;
    constructor(status, apiCode, message) {
        super(apiCode.startsWith('QT_ERR_') ? apiCode : 'QT_ERR_API', message, {
            retryable: status >= 500,
        });
        this.status = status;
        this.apiCode = apiCode;
    }
}
/**
 * One API call: resolves with the parsed JSON of a 2xx answer; rejects with a
 * RelayApiError for an error answer, or a connection error a person can act on.
 */
export function callRelayApi(opts, method, apiPath, options = {}) {
    const { relay } = opts;
    const base = relay.pathname.replace(/\/+$/, '');
    const lib = relay.protocol === 'http:' ? http : https;
    const body = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    const headers = { accept: 'application/json' };
    if (body !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = body.length;
    }
    if (options.bearer !== undefined)
        headers['authorization'] = `Bearer ${options.bearer}`;
    const hostname = relay.hostname.replace(/^\[|\]$/g, '');
    const requestOptions = {
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
        if (!net.isIP(hostname))
            requestOptions.servername = hostname;
        if (opts.ca !== undefined)
            requestOptions.ca = opts.ca;
        if (opts.insecure === true)
            requestOptions.rejectUnauthorized = false;
    }
    return new Promise((resolve, reject) => {
        const req = lib.request(requestOptions, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('error', (err) => reject(describeDialError(err, relay.host)));
            res.on('end', () => {
                const status = res.statusCode ?? 0;
                let parsed;
                try {
                    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
                }
                catch {
                    reject(new QuickTunnelError('QT_ERR_NOT_A_RELAY', `${relay.host} answered HTTP ${status} with something that is not JSON on ${apiPath}: is it a quick-tunnel relay, and is --relay right?`, { retryable: status >= 500 }));
                    return;
                }
                if (status >= 200 && status < 300) {
                    resolve(parsed);
                    return;
                }
                const v = (typeof parsed === 'object' && parsed !== null ? parsed : {});
                const message = typeof v['message'] === 'string' ? v['message'] : `the relay answered HTTP ${status}`;
                const code = typeof v['code'] === 'string' ? v['code'] : `HTTP_${status}`;
                reject(new RelayApiError(status, code, message));
            });
        });
        req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
        req.on('error', (err) => reject(describeDialError(err, relay.host)));
        req.end(body);
    });
}
export const relayApi = {
    create: (opts, name, token) => callRelayApi(opts, 'POST', '/api/tunnels', { bearer: token, body: { name } }),
    status: (opts, name, credential) => callRelayApi(opts, 'GET', `/api/tunnels/${encodeURIComponent(name)}`, {
        bearer: credential,
    }),
    delete: (opts, name, credential, force) => callRelayApi(opts, 'DELETE', `/api/tunnels/${encodeURIComponent(name)}${force ? '?force=true' : ''}`, { bearer: credential }),
    health: (opts) => callRelayApi(opts, 'GET', '/healthz'),
};
//# sourceMappingURL=api.js.map