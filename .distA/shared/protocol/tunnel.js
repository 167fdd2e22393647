/**
 * The tunnel layer on top of the mux: what the CLI asks for in its HELLO, what the
 * relay answers, and the metadata carried by OPEN (relay → CLI, one stream per visitor
 * request) and REPLY (CLI → relay, the origin's response head).
 *
 * Headers travel as [name, value] pairs in their original order and case, so repeated
 * headers (several Set-Cookie) and header value bytes survive: Node gives header values
 * as latin1 strings, JSON keeps every char, and Node writes them back as latin1.
 */
/** Path on the relay's apex host where clients open the tunnel WebSocket. */
export const TUNNEL_ENDPOINT_PATH = '/_qt/tunnel';
/**
 * Hop-by-hop headers that a proxy never forwards (RFC 9110 §7.6.1), plus the ones
 * named in Connection. `upgrade` and `connection` are kept for upgrades by the caller.
 */
export const HOP_BY_HOP = new Set([
    'connection',
    'keep-alive',
    'proxy-connection',
    'proxy-authenticate',
    'proxy-authorization',
    'te',
    'trailer',
    'transfer-encoding',
    'upgrade',
]);
/**
 * Turns Node's `rawHeaders` ([k, v, k, v...]) into pairs without hop-by-hop headers.
 * With `keepUpgrade`, `Connection: upgrade` and `Upgrade` pass (WebSocket handshakes).
 */
export function endToEndHeaders(rawHeaders, keepUpgrade = false) {
    const named = new Set();
    for (let i = 0; i < rawHeaders.length; i += 2) {
        if (rawHeaders[i].toLowerCase() === 'connection') {
            for (const token of rawHeaders[i + 1].split(',')) {
                const t = token.trim().toLowerCase();
                if (t)
                    named.add(t);
            }
        }
    }
    const out = [];
    for (let i = 0; i < rawHeaders.length; i += 2) {
        const name = rawHeaders[i];
        const lower = name.toLowerCase();
        if (keepUpgrade && lower === 'upgrade') {
            out.push([name, rawHeaders[i + 1]]);
            continue;
        }
        if (HOP_BY_HOP.has(lower) || named.has(lower) || lower.startsWith('proxy-'))
            continue;
        out.push([name, rawHeaders[i + 1]]);
    }
    if (keepUpgrade)
        out.push(['Connection', 'Upgrade']);
    return out;
}
/** Validates an OPEN payload as a RequestHead (the CLI must not trust the wire). */
export function isRequestHead(value) {
    if (typeof value !== 'object' || value === null)
        return false;
    const v = value;
    return (typeof v['method'] === 'string' &&
        typeof v['url'] === 'string' &&
        typeof v['httpVersion'] === 'string' &&
        typeof v['upgrade'] === 'boolean' &&
        isHeaderPairs(v['headers']));
}
export function isResponseHead(value) {
    if (typeof value !== 'object' || value === null)
        return false;
    const v = value;
    return (Number.isInteger(v['status']) &&
        v['status'] >= 100 &&
        v['status'] <= 999 &&
        (v['statusMessage'] === undefined || typeof v['statusMessage'] === 'string') &&
        isHeaderPairs(v['headers']));
}
function isHeaderPairs(value) {
    return (Array.isArray(value) &&
        value.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && typeof p[1] === 'string'));
}
/** Flattens pairs for `res.writeHead(status, flat)` / `http.request({ headers: flat })`. */
export function flattenHeaders(pairs) {
    const flat = [];
    for (const [k, v] of pairs)
        flat.push(k, v);
    return flat;
}
//# sourceMappingURL=tunnel.js.map