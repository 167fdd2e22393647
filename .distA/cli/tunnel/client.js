/**
 * Dials the relay's tunnel endpoint over a TLS WebSocket, runs the HELLO handshake
 * and returns the session with the relay's assignment. Every failure becomes a
 * QuickTunnelError whose message says what to do, and whose `retryable` says whether
 * trying again can help.
 */
import dns from 'node:dns';
import WebSocket from 'ws';
import { AuthError, ConnectionError, QuickTunnelError, errnoCode } from '../../shared/errors.js';
import { MuxSession } from '../../shared/mux/session.js';
import { tunnelClientWsOptions, wsTransport, } from '../../shared/mux/transport.js';
import { TUNNEL_ENDPOINT_PATH, } from '../../shared/protocol/tunnel.js';
const TLS_TRUST_CODES = new Set([
    'DEPTH_ZERO_SELF_SIGNED_CERT',
    'SELF_SIGNED_CERT_IN_CHAIN',
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
    'CERT_UNTRUSTED',
    'ERR_TLS_CERT_ALTNAME_INVALID',
    'CERT_HAS_EXPIRED',
    'CERT_NOT_YET_VALID',
]);
/**
 * dns.lookup, except that `localhost` and `*.localhost` always mean loopback (RFC 6761),
 * as browsers and curl treat them, even where the system resolver doesn't.
 */
export const localhostAwareLookup = ((hostname, options, cb) => {
    const h = hostname.toLowerCase().replace(/\.$/, '');
    if (h === 'localhost' || h.endsWith('.localhost')) {
        if (options.all === true)
            cb(null, [{ address: '127.0.0.1', family: 4 }]);
        else
            cb(null, '127.0.0.1', 4);
        return;
    }
    dns.lookup(hostname, options, cb);
});
/** ws options for the tunnel client. */
function clientOptions(opts) {
    const o = {
        // No deflate, maxPayload from the mux limits, and over wss:// a zero masking key
        // (see tunnelClientWsOptions for why that is safe and what it saves).
        ...tunnelClientWsOptions(endpointUrl(opts.relay), opts.mux),
        handshakeTimeout: opts.connectTimeoutMs ?? 10_000,
        lookup: localhostAwareLookup,
        // Small frames (request heads, acks) must not wait for Nagle.
        noDelay: true,
    };
    if (opts.ca !== undefined)
        o.ca = opts.ca;
    if (opts.insecure === true)
        o.rejectUnauthorized = false;
    if (opts.agent !== undefined)
        o.agent = opts.agent;
    return o;
}
export function endpointUrl(relay) {
    const scheme = relay.protocol === 'http:' ? 'ws:' : 'wss:';
    const base = relay.pathname.replace(/\/+$/, '');
    return `${scheme}//${relay.host}${base}${TUNNEL_ENDPOINT_PATH}`;
}
/** Opens the WebSocket; resolves once it is open. */
function openSocket(opts) {
    const url = endpointUrl(opts.relay);
    const where = opts.relay.host;
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(url, clientOptions(opts));
        const fail = (err) => {
            ws.removeAllListeners();
            ws.on('error', () => { });
            ws.terminate();
            reject(err);
        };
        ws.once('open', () => {
            ws.removeAllListeners('unexpected-response');
            resolve(ws);
        });
        ws.once('unexpected-response', (_req, res) => {
            res.resume();
            const status = res.statusCode ?? 0;
            fail(new ConnectionError(status === 503
                ? `the relay at ${where} is restarting or overloaded (HTTP 503)`
                : `${where} answered HTTP ${status} on ${TUNNEL_ENDPOINT_PATH}: is it a quick-tunnel relay, and is --relay right?`, { code: 'QT_ERR_NOT_A_RELAY', retryable: status >= 500 }));
        });
        ws.once('error', (err) => fail(describeDialError(err, where)));
    });
}
/** Turns a socket/TLS error into a message a person can act on. */
export function describeDialError(err, where) {
    const code = errnoCode(err) ?? '';
    if (TLS_TRUST_CODES.has(code)) {
        return new QuickTunnelError('QT_ERR_TLS', `the relay's TLS certificate is not trusted (${code}: ${err.message}). ` +
            `If ${where} is a self-hosted relay with a self-signed certificate, pass --ca <file> with the ` +
            `certificate it printed at start (check that the fingerprint matches).`, { cause: err, retryable: false });
    }
    const reasons = {
        ECONNREFUSED: 'connection refused: is the relay running on that port?',
        ENOTFOUND: 'the host name does not resolve: check --relay',
        EAI_AGAIN: 'DNS lookup failed: check your network',
        ETIMEDOUT: 'the connection timed out',
        ECONNRESET: 'the connection was reset',
        EHOSTUNREACH: 'the host is unreachable',
        ENETUNREACH: 'the network is unreachable',
    };
    const reason = reasons[code] ?? err.message;
    return new ConnectionError(`cannot reach the relay at ${where}: ${reason}`, {
        cause: err,
        code: 'QT_ERR_RELAY_UNREACHABLE',
        retryable: true,
    });
}
/** Dials, handshakes and returns a ready session. */
export async function dialRelay(opts) {
    const ws = await openSocket(opts);
    ws.on('error', () => { }); // reported through the transport's close
    const closed = new Promise((resolve) => ws.once('close', () => resolve()));
    const conn = await handshake(wsTransport(ws), opts.request, opts.mux);
    return { ...conn, closed };
}
/** Runs the HELLO exchange over any transport (the embedded relay uses memory). */
export async function handshake(transport, request, mux = {}) {
    const session = new MuxSession(transport, 'client', mux);
    try {
        const answer = await session.connect(request);
        return { session, assignment: parseAssignment(answer) };
    }
    catch (err) {
        session.close();
        if (err instanceof QuickTunnelError && err.code === 'QT_ERR_AUTH') {
            throw new AuthError(err.message, { cause: err });
        }
        throw err;
    }
}
function parseAssignment(answer) {
    const v = (typeof answer === 'object' && answer !== null ? answer : {});
    if (typeof v['tunnelId'] !== 'string' ||
        typeof v['label'] !== 'string' ||
        typeof v['hostname'] !== 'string' ||
        !Array.isArray(v['urls']) ||
        !v['urls'].every((u) => typeof u === 'string')) {
        throw new QuickTunnelError('QT_ERR_PROTOCOL', 'the relay sent an invalid tunnel assignment');
    }
    return v;
}
//# sourceMappingURL=client.js.map