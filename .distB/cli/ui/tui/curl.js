const SKIP_HEADERS = new Set([
    'host',
    'content-length',
    'transfer-encoding',
    'connection',
    'keep-alive',
    'accept-encoding',
    'x-forwarded-for',
    'x-forwarded-proto',
    'x-forwarded-host',
    'x-forwarded-port',
    'forwarded',
]);
/** Quotes `s` for a POSIX shell (plain words stay bare). */
export function shellQuote(s) {
    if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s))
        return s;
    return `'${s.replace(/'/g, `'\\''`)}'`;
}
function isPlainText(bytes) {
    let text;
    try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    }
    catch {
        return undefined;
    }
    // eslint-disable-next-line no-control-regex
    return /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(text) ? undefined : text;
}
/** Octal escapes for `printf` (POSIX printf knows `\NNN`, not `\xNN`). */
function printfEscape(bytes) {
    let out = '';
    for (const b of bytes) {
        if (b >= 0x20 && b < 0x7f && b !== 0x27 && b !== 0x5c && b !== 0x25)
            out += String.fromCharCode(b);
        else
            out += `\\${b.toString(8).padStart(3, '0')}`;
    }
    return `'${out}'`;
}
/**
 * Builds the command for `capture` sent to `baseUrl` (the tunnel's public URL).
 * `caFile`: the relay certificate passed with --ca, for a self-signed relay.
 */
export function toCurl(capture, baseUrl, options = {}) {
    const { request } = capture;
    const notes = [];
    // The request target exactly as the visitor sent it (URL parsing would re-encode it).
    const url = request.url.startsWith('/') ? `${new URL(baseUrl).origin}${request.url}` : baseUrl;
    const first = [];
    const parts = [];
    const method = request.method.toUpperCase();
    const body = capture.requestBody.released ? Buffer.alloc(0) : capture.requestBody.bytes();
    const hasBody = body.length > 0;
    let compressed = false;
    if (method === 'HEAD')
        first.push('--head');
    else if (method !== 'GET' || hasBody) {
        if (!(method === 'POST' && hasBody))
            first.push(`-X ${shellQuote(method)}`);
    }
    first.push(shellQuote(url));
    for (const [name, value] of request.headers) {
        const lower = name.toLowerCase();
        if (lower === 'accept-encoding')
            compressed = true;
        if (SKIP_HEADERS.has(lower))
            continue;
        parts.push(`-H ${shellQuote(`${name}: ${value}`)}`);
    }
    if (compressed)
        parts.push('--compressed');
    if (options.caFile !== undefined)
        parts.push(`--cacert ${shellQuote(options.caFile)}`);
    let prefix = '';
    if (hasBody) {
        const text = isPlainText(body);
        if (text !== undefined) {
            // --data-binary keeps newlines; `@` at the start would read a file with --data.
            parts.push(`--data-binary ${shellQuote(text)}`);
        }
        else {
            prefix = `printf ${printfEscape(body)} | `;
            parts.push('--data-binary @-');
        }
    }
    if (capture.requestBody.released) {
        notes.push('the request body preview was dropped to keep memory bounded; the command sends no body');
    }
    else if (capture.requestBody.truncated) {
        notes.push(`only the first ${capture.requestBody.capturedBytes} of ${capture.requestBody.totalBytes} body bytes were kept; the command sends those`);
    }
    if (request.headers.some(([k]) => k.toLowerCase() === 'upgrade')) {
        notes.push('this was a WebSocket upgrade: curl only shows the handshake');
    }
    const command = `${prefix}curl ${first.join(' ')}${parts.map((p) => ` \\\n  ${p}`).join('')}`;
    return { command, notes };
}
//# sourceMappingURL=curl.js.map