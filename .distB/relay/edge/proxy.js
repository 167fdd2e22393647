/**
 * Forwards one visitor request (or WebSocket upgrade) over one mux stream of the
 * tunnel's session, streaming bodies both ways with backpressure.
 */
import { validateHeaderName, validateHeaderValue, } from 'node:http';
import { StreamResetError, errnoCode } from '../../shared/errors.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import { endToEndHeaders, flattenHeaders, isResponseHead, } from '../../shared/protocol/tunnel.js';
import { originForm } from './guard.js';
import { pages, sendError, sendRawError } from './pages.js';
/** Builds the request head sent to the CLI: end-to-end headers plus X-Forwarded-*. */
export function buildRequestHead(req, scheme, upgrade, stripAuthorization = false) {
    const headers = [];
    // The relay is the edge: visitor-supplied X-Forwarded-* can't be trusted, so replace them.
    for (const pair of endToEndHeaders(req.rawHeaders, upgrade)) {
        const lower = pair[0].toLowerCase();
        if (lower === 'x-forwarded-for' ||
            lower === 'x-forwarded-proto' ||
            lower === 'x-forwarded-host')
            continue;
        // The tunnel's own password (--basic-auth) never reaches the app, its logs or the TUI.
        if (stripAuthorization && lower === 'authorization')
            continue;
        headers.push(pair);
    }
    const remoteAddress = req.socket.remoteAddress ?? '';
    headers.push([
        'X-Forwarded-For',
        remoteAddress.startsWith('::ffff:') ? remoteAddress.slice(7) : remoteAddress,
    ]);
    headers.push(['X-Forwarded-Proto', scheme]);
    if (req.headers.host !== undefined)
        headers.push(['X-Forwarded-Host', req.headers.host]);
    return {
        method: req.method ?? 'GET',
        // Absolute-form targets (checked against Host by the guard) go on as origin-form.
        url: originForm(req.url ?? '/'),
        httpVersion: req.httpVersion,
        headers,
        upgrade,
        remoteAddress,
        scheme,
    };
}
/** Maps a stream failure that happened before the response head to a visitor page. */
export function pageForStreamError(hostname, err) {
    if (err instanceof StreamResetError) {
        const message = err.message.replace(/^stream reset by peer \([A-Z_]+\):? ?/, '');
        switch (err.resetCode) {
            case ErrorCode.CONNECT_ERROR:
                return pages.originUnreachable(hostname, message);
            case ErrorCode.TIMEOUT:
                return pages.originTimeout(hostname, message);
            case ErrorCode.REFUSED_STREAM:
                return pages.tunnelBusy(hostname, message || 'too many concurrent requests');
            default:
                return pages.originFailed(hostname, message || 'the tunnel client reset the request');
        }
    }
    const code = errnoCode(err);
    if (code === 'QT_ERR_SESSION_CLOSED' ||
        code === 'QT_ERR_CONNECTION' ||
        code === 'QT_ERR_HEARTBEAT') {
        return pages.originFailed(hostname, 'the tunnel connection was lost during the request');
    }
    return pages.originFailed(hostname, err instanceof Error ? err.message : String(err));
}
/** Opens a stream for the request; answers 503 itself when the tunnel can't take one. */
export function openStreamFor(session, head, hostname) {
    try {
        return { stream: session.openStream(head) };
    }
    catch (err) {
        if (err instanceof StreamResetError)
            return { page: pages.tunnelBusy(hostname, err.message) };
        return { page: pages.tunnelOffline(hostname) };
    }
}
/**
 * What is wrong with a tunnel client's response head, if anything. The client is not
 * trusted: a status message or header that Node would refuse to write (CR, LF, NUL...)
 * must become a 502 here, before anything is written (a throw from writeHead in an
 * event handler would take the whole relay down), and on the raw upgrade path it would
 * let the client inject headers. Content-Length must be one plain number, because the
 * relay holds the body to it.
 */
export function responseHeadProblem(meta, upgrade) {
    if (!isResponseHead(meta))
        return 'not a response head';
    if (meta.status < 200 && !(upgrade && meta.status === 101))
        return `status ${meta.status}`;
    if (meta.statusMessage !== undefined && /[^\t\x20-\x7e\x80-\xff]/.test(meta.statusMessage)) {
        return 'invalid character in the status message';
    }
    let lengths = 0;
    for (const [name, value] of meta.headers) {
        try {
            validateHeaderName(name);
            validateHeaderValue(name, value);
        }
        catch {
            return `invalid header ${JSON.stringify(name.slice(0, 64))}`;
        }
        if (name.toLowerCase() === 'content-length') {
            if (++lengths > 1)
                return 'more than one Content-Length';
            if (!/^\d{1,15}$/.test(value))
                return `invalid Content-Length ${JSON.stringify(value)}`;
        }
    }
    return undefined;
}
/** The body length a response announces, where the visitor will hold us to it. */
function announcedLength(meta, method) {
    if (method === 'HEAD' || meta.status === 204 || meta.status === 304)
        return undefined;
    const header = meta.headers.find(([name]) => name.toLowerCase() === 'content-length');
    return header === undefined ? undefined : Number(header[1]);
}
/** True for a stream the client refused before reading it (safe to send elsewhere). */
function refused(err) {
    return err instanceof StreamResetError && err.resetCode === ErrorCode.REFUSED_STREAM;
}
/** Sessions tried for one request before answering 503 (refusals only). */
const MAX_ATTEMPTS = 4;
/** Forwards a plain HTTP request/response pair over `session`. */
export function forwardRequest(req, res, session, ctx) {
    const head = buildRequestHead(req, ctx.scheme, false, ctx.stripAuthorization === true);
    let stream;
    let attempts = 0;
    let replied = false;
    let finished = false;
    let bytesIn = 0;
    let bytesOut = 0;
    const timer = setTimeout(() => {
        if (replied)
            return;
        stream?.reset(ErrorCode.TIMEOUT, 'relay response timeout');
        fail(pages.originTimeout(ctx.hostname, `no response within ${Math.round(ctx.responseTimeoutMs / 1000)} s`));
    }, ctx.responseTimeoutMs);
    timer.unref();
    const done = (status, error) => {
        if (finished)
            return;
        finished = true;
        clearTimeout(timer);
        ctx.onDone?.(error === undefined ? { status, bytesIn, bytesOut } : { status, bytesIn, bytesOut, error });
    };
    const fail = (page) => {
        if (res.headersSent) {
            // A response already started: abort the connection so a truncated body never
            // looks complete to the visitor.
            res.destroy();
            done(res.statusCode, page.detail);
            return;
        }
        sendError(res, req.headers, page);
        done(page.status, page.detail);
    };
    req.on('data', (chunk) => {
        bytesIn += chunk.length;
    });
    const start = (target) => {
        attempts++;
        const opened = openStreamFor(target, head, ctx.hostname);
        if ('page' in opened) {
            fail(opened.page);
            return;
        }
        const s = opened.stream;
        stream = s;
        // Visitor → CLI: the request body, with backpressure (pipe pauses req when the
        // stream's window is exhausted).
        if (req.readableEnded)
            s.end();
        else
            req.pipe(s);
        // The tunnel client's side: a response head (REPLY), then the body. The stream is
        // read from the start, so a client that sends body bytes before a head, or ends
        // the stream without one, gets its visitor a 502 at once instead of a wait for
        // the response timeout. The body is held to the announced Content-Length: one that
        // is longer or shorter ends in an abort, so the visitor's connection (perhaps a
        // front proxy's, reused for other visitors) never reads one response's bytes as
        // the start of the next.
        let length;
        let status = 0;
        const lied = () => {
            s.destroy();
            res.destroy();
            done(status, 'the response body did not match its Content-Length');
        };
        s.once('reply', (meta) => {
            if (s !== stream || finished)
                return;
            const problem = responseHeadProblem(meta, false);
            if (problem !== undefined || !isResponseHead(meta)) {
                s.reset(ErrorCode.PROTOCOL_ERROR, 'invalid response head');
                fail(pages.originFailed(ctx.hostname, `the tunnel client sent an invalid response head (${problem ?? ''})`));
                return;
            }
            replied = true;
            clearTimeout(timer);
            writeResponseHead(res, meta);
            length = announcedLength(meta, req.method);
            status = meta.status;
            res.once('finish', () => done(meta.status));
        });
        s.on('data', (chunk) => {
            if (s !== stream || finished)
                return;
            if (!replied) {
                s.reset(ErrorCode.PROTOCOL_ERROR, 'response body before its head');
                fail(pages.originFailed(ctx.hostname, 'the tunnel client sent a body before a head'));
                return;
            }
            bytesOut += chunk.length;
            if (length !== undefined && bytesOut > length)
                return lied();
            if (!res.write(chunk))
                s.pause();
        });
        res.on('drain', () => s.resume());
        s.once('end', () => {
            if (s !== stream || finished)
                return;
            if (!replied) {
                fail(pages.originFailed(ctx.hostname, 'the tunnel client ended it without a response'));
                return;
            }
            if (length !== undefined && bytesOut !== length)
                lied();
            else
                res.end();
        });
        s.on('error', (err) => {
            if (s !== stream || finished)
                return;
            // Refused unread (that connection is going away: a replica stopping, a client
            // reconnecting): nothing reached the local app, so another connection of the
            // same tunnel can take it, as long as none of the body was consumed.
            if (!replied && refused(err) && bytesIn === 0 && attempts < MAX_ATTEMPTS) {
                const next = ctx.retrySession?.();
                if (next !== undefined && next !== target) {
                    req.unpipe(s);
                    start(next);
                    return;
                }
            }
            fail(replied
                ? pages.originFailed(ctx.hostname, err.message)
                : pageForStreamError(ctx.hostname, err));
        });
    };
    // Visitor went away before the response completed: cancel the stream so the CLI
    // stops the origin request.
    res.once('close', () => {
        if (!res.writableFinished) {
            stream?.destroy();
            done(res.headersSent ? res.statusCode : 499, 'visitor closed the connection');
        }
    });
    req.once('error', () => stream?.destroy());
    start(session);
}
function writeResponseHead(res, head) {
    // Hop-by-hop headers were removed by the CLI; Node re-frames the body itself
    // (Content-Length as given, else chunked), so no raw framing bytes pass through.
    const flat = flattenHeaders(endToEndHeaders(flattenHeaders(head.headers)));
    if (head.statusMessage !== undefined)
        res.writeHead(head.status, head.statusMessage, flat);
    else
        res.writeHead(head.status, flat);
    // The head leaves within this turn of the event loop even if no body follows (SSE
    // and long polls rely on seeing it at once); a body and end that arrive in the same
    // turn (the usual small response) go out with it in one write.
    res.cork();
    res.flushHeaders();
    setImmediate(() => res.uncork());
}
/** Forwards an Upgrade request: after the origin's 101 the stream carries raw bytes. */
export function forwardUpgrade(req, socket, headBytes, session, ctx) {
    const head = buildRequestHead(req, ctx.scheme, true, ctx.stripAuthorization === true);
    const opened = openStreamFor(session, head, ctx.hostname);
    if ('page' in opened) {
        sendRawError(socket, req.headers, opened.page);
        ctx.onDone?.({ status: opened.page.status, bytesIn: 0, bytesOut: 0, error: opened.page.title });
        return;
    }
    const stream = opened.stream;
    let replied = false;
    let finished = false;
    let bytesIn = headBytes.length;
    let bytesOut = 0;
    let status = 0;
    const done = (error) => {
        if (finished)
            return;
        finished = true;
        clearTimeout(timer);
        ctx.onDone?.(error === undefined ? { status, bytesIn, bytesOut } : { status, bytesIn, bytesOut, error });
    };
    const timer = setTimeout(() => {
        if (replied)
            return;
        stream.reset(ErrorCode.TIMEOUT, 'relay response timeout');
        const page = pages.originTimeout(ctx.hostname, '');
        status = page.status;
        sendRawError(socket, req.headers, page);
        done(page.detail);
    }, ctx.responseTimeoutMs);
    timer.unref();
    if (headBytes.length > 0)
        stream.write(headBytes);
    socket.on('data', (chunk) => {
        bytesIn += chunk.length;
    });
    socket.on('error', () => stream.destroy());
    socket.once('close', () => {
        if (!stream.destroyed)
            stream.destroy();
        done();
    });
    stream.once('reply', (meta) => {
        if (responseHeadProblem(meta, true) !== undefined || !isResponseHead(meta)) {
            stream.reset(ErrorCode.PROTOCOL_ERROR, 'invalid response head');
            const page = pages.originFailed(ctx.hostname, 'the tunnel client sent an invalid response head');
            status = page.status;
            sendRawError(socket, req.headers, page);
            return;
        }
        replied = true;
        clearTimeout(timer);
        status = meta.status;
        const upgraded = meta.status === 101;
        const headers = upgraded ? meta.headers : endToEndHeaders(flattenHeaders(meta.headers));
        let text = `HTTP/1.1 ${meta.status} ${meta.statusMessage ?? (upgraded ? 'Switching Protocols' : '')}\r\n`;
        for (const [k, v] of headers)
            text += `${k}: ${v}\r\n`;
        if (!upgraded)
            text += 'Connection: close\r\n';
        socket.write(`${text}\r\n`, 'latin1');
        stream.on('data', (chunk) => {
            bytesOut += chunk.length;
        });
        // Raw two-way bytes from here on; each direction ends on its own (half-close).
        stream.pipe(socket);
        if (upgraded)
            socket.pipe(stream);
        else
            socket.resume();
    });
    stream.on('error', (err) => {
        if (!replied) {
            const page = pageForStreamError(ctx.hostname, err);
            status = page.status;
            sendRawError(socket, req.headers, page);
            done(page.detail);
            return;
        }
        socket.destroy();
        done(err.message);
    });
    stream.once('end', () => {
        if (!replied)
            socket.destroy();
    });
}
//# sourceMappingURL=proxy.js.map