/**
 * Who may call what on the control API. Every caller presents one secret in
 * `Authorization: Bearer …`:
 *
 * - an admin token (`--admin-token`): everything, including the relay-wide list and
 *   `/metrics`; with no admin token configured those endpoints answer 403;
 * - a relay access token (`--token`): creating a named tunnel (an open relay, one
 *   without tokens, lets anyone create);
 * - a tunnel's credential: reading and deleting that tunnel.
 */
import http from 'node:http';
import { bearerToken, tokenAccepted, tokenListed } from '../tunnels/auth.js';
/** Answers `status` with the API's one error shape. */
export function sendApiError(reply, status, code, message) {
    if (status === 401)
        reply.header('www-authenticate', 'Bearer realm="quick-tunnel"');
    const body = {
        statusCode: status,
        code,
        error: http.STATUS_CODES[status] ?? 'Error',
        message,
    };
    return reply.code(status).type('application/json; charset=utf-8').send(body);
}
export function presentedToken(req) {
    return bearerToken(req.headers.authorization);
}
export function isAdmin(req, adminTokens) {
    return tokenListed(presentedToken(req), adminTokens);
}
/**
 * Admin endpoints: true if the caller may go on; otherwise the reply (403 when the
 * relay has no admin token, 401 for a missing or wrong one) has been sent.
 */
export function requireAdmin(req, reply, adminTokens) {
    if (adminTokens.length === 0) {
        sendApiError(reply, 403, 'QT_ERR_ADMIN_DISABLED', 'admin endpoints are off on this relay: start it with --admin-token TOKEN');
        return false;
    }
    if (isAdmin(req, adminTokens))
        return true;
    const token = presentedToken(req);
    sendApiError(reply, 401, 'QT_ERR_AUTH', token === undefined
        ? 'this endpoint needs the admin token: send Authorization: Bearer ADMIN_TOKEN'
        : 'the admin token was rejected');
    return false;
}
/** Endpoints open to relay users: a relay token (or none on an open relay) or the admin token. */
export function requireRelayToken(req, reply, tokens, adminTokens) {
    const token = presentedToken(req);
    if (tokenAccepted(token, tokens) || tokenListed(token, adminTokens))
        return true;
    sendApiError(reply, 401, 'QT_ERR_AUTH', token === undefined
        ? 'this relay requires an access token: pass --token TOKEN (or save it with `quick-tunnel login --token TOKEN`)'
        : 'the relay rejected the access token: check --token / QUICK_TUNNEL_TOKEN');
    return false;
}
//# sourceMappingURL=auth.js.map