/**
 * Replays a captured request straight to the local origin (not through the relay), with
 * the same method, path, headers and body, over the origin proxy's connection pool (so
 * its TLS and localhost settings apply). The result is captured like a tunnelled
 * exchange, so it can be inspected the same way.
 */
import http from 'node:http';
import https from 'node:https';
import { errnoCode } from '../../shared/errors.js';
import { flattenHeaders } from '../../shared/protocol/tunnel.js';
import { ExchangeCapture } from './capture.js';
/** Why `capture` cannot be replayed faithfully, or undefined when it can. */
export function replayRefusal(capture) {
    if (capture.request.method.toUpperCase() === 'CONNECT')
        return 'CONNECT cannot be replayed';
    if (capture.request.headers.some(([k]) => k.toLowerCase() === 'upgrade')) {
        return 'a WebSocket (upgrade) cannot be replayed';
    }
    if (capture.requestBody.truncated) {
        return `the request body (${capture.requestBody.totalBytes} bytes) was larger than the ${capture.requestBody.limit} bytes kept`;
    }
    if (capture.finishedAt === undefined && capture.response === undefined) {
        return 'the request is still arriving';
    }
    return undefined;
}
/** Headers for the replay: the captured ones with a fresh length for the kept body. */
function replayHeaders(headers, bodyBytes, method) {
    const out = headers.filter(([k]) => {
        const lower = k.toLowerCase();
        return lower !== 'content-length' && lower !== 'transfer-encoding';
    });
    const hadBody = headers.some(([k]) => {
        const lower = k.toLowerCase();
        return lower === 'content-length' || lower === 'transfer-encoding';
    });
    if (bodyBytes > 0 || hadBody || !['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE'].includes(method)) {
        out.push(['Content-Length', String(bodyBytes)]);
    }
    return out;
}
/**
 * Sends the captured request to `proxy`'s origin again. Never rejects: failures come
 * back as a result with `error`. Call `replayRefusal` first.
 */
export function replayRequest(proxy, original, options = {}) {
    const { request } = original;
    const body = original.requestBody.bytes();
    const headers = replayHeaders(request.headers, body.length, request.method.toUpperCase());
    const capture = new ExchangeCapture({ ...request, headers }, options.bodyLimitBytes ?? original.responseBody.limit);
    capture.requestBody.add(body);
    const started = performance.now();
    const timeoutMs = options.timeoutMs ?? 30_000;
    return new Promise((resolve) => {
        let settled = false;
        let bytesOut = 0;
        const done = (status, error) => {
            if (settled)
                return;
            settled = true;
            clearTimeout(timer);
            capture.finishedAt = Date.now();
            const result = {
                capture,
                status,
                durationMs: Math.round(performance.now() - started),
                bytesIn: body.length,
                bytesOut,
            };
            if (error !== undefined)
                result.error = error;
            resolve(result);
        };
        const target = proxy.target;
        const reqOptions = {
            agent: proxy.pooledAgent,
            host: target.hostname,
            port: target.port,
            method: request.method,
            path: request.url,
            headers: flattenHeaders(headers),
            setHost: false,
        };
        let req;
        try {
            req = target.protocol === 'https' ? https.request(reqOptions) : http.request(reqOptions);
        }
        catch (err) {
            done(502, `cannot replay: ${err.message}`);
            return;
        }
        const timer = setTimeout(() => {
            req.destroy(new Error(`${target.label} did not answer within ${timeoutMs} ms`));
        }, timeoutMs);
        timer.unref();
        req.on('error', (err) => {
            const code = errnoCode(err);
            done(capture.response?.status ?? (err.message.includes('did not answer') ? 504 : 502), `replay to ${target.label} failed: ${err.message}${code !== undefined && !err.message.includes(code) ? ` (${code})` : ''}`);
        });
        req.on('response', (res) => {
            const response = { status: res.statusCode ?? 502, headers: [] };
            for (let i = 0; i < res.rawHeaders.length; i += 2) {
                response.headers.push([res.rawHeaders[i], res.rawHeaders[i + 1]]);
            }
            if (res.statusMessage)
                response.statusMessage = res.statusMessage;
            capture.response = response;
            res.on('data', (chunk) => {
                bytesOut += chunk.length;
                capture.responseBody.add(chunk);
            });
            res.once('end', () => done(response.status));
            res.once('error', (err) => done(response.status, `the response broke: ${err.message}`));
        });
        req.end(body.length > 0 ? body : undefined);
    });
}
//# sourceMappingURL=replay.js.map