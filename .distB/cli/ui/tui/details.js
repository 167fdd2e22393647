import { viewBody } from './body.js';
import { formatBytes, formatClock, formatDuration, hardWrap, printable, statusColor, } from './format.js';
import { compose } from './paint.js';
import { webSocketSummary } from './request-list.js';
function section(title, width) {
    const head = `── ${title} `;
    return { text: head + '─'.repeat(Math.max(0, width - head.length)), style: 'section' };
}
function headerLines(headers, width) {
    const out = [];
    for (const [name, value] of headers) {
        const pieces = hardWrap(printable(value), Math.max(8, width - name.length - 2));
        out.push({ name: printable(name), text: pieces[0] ?? '' });
        for (const piece of pieces.slice(1))
            out.push({ text: `${' '.repeat(name.length + 2)}${piece}` });
    }
    return out;
}
function bodyLines(title, body, headers, width) {
    const view = viewBody(body, headers, width);
    if (view.kind === 'none')
        return [section(`${title} · no body`, width)];
    return [section(`${title} · ${view.summary}`, width), ...view.lines.map((text) => ({ text }))];
}
/** Everything the details view shows for `row`, as lines at most `width` wide. */
export function detailLines(row, width, now) {
    const lines = [];
    const id = row.replayOf !== undefined ? `replay of #${row.replayOf}` : `#${row.id ?? row.key}`;
    lines.push({ text: `${id}  ${printable(row.method)} ${printable(row.path)}`, style: 'title' });
    const status = row.status ?? (row.upgrade ? row.capture?.response?.status : undefined) ?? undefined;
    const facts = [
        status !== undefined
            ? `${status}${row.capture?.response?.statusMessage ? ` ${printable(row.capture.response.statusMessage)}` : ''}`
            : 'waiting for the response',
        row.open
            ? `open for ${formatDuration(now - row.startedAt)}`
            : formatDuration(row.durationMs ?? 0),
        `in ${formatBytes(row.bytesIn)}`,
        `out ${formatBytes(row.bytesOut)}`,
        `at ${formatClock(row.startedAt)}`,
    ];
    lines.push({ text: facts.join(' · '), style: 'status', color: statusColor(status) });
    if (row.error !== undefined) {
        for (const piece of hardWrap(`error: ${printable(row.error)}`, width)) {
            lines.push({ text: piece, style: 'error' });
        }
    }
    const cap = row.capture;
    if (cap === undefined) {
        lines.push({ text: 'No capture for this request.', style: 'dim' });
        return lines;
    }
    lines.push(section('Request', width));
    lines.push({
        text: `${printable(cap.request.method)} ${printable(cap.request.url)} HTTP/${printable(cap.request.httpVersion)} · from ${printable(cap.request.remoteAddress)} over ${cap.request.scheme}`,
        style: 'dim',
    });
    lines.push(...headerLines(cap.request.headers, width));
    if (!row.upgrade)
        lines.push(...bodyLines('Request body', cap.requestBody, cap.request.headers, width));
    const res = cap.response;
    if (res === undefined) {
        lines.push(section('Response', width));
        lines.push({
            text: row.open ? 'Waiting for the origin…' : 'No response from the origin.',
            style: 'dim',
        });
        return lines;
    }
    lines.push(section('Response', width));
    lines.push({
        text: `${res.status}${res.statusMessage ? ` ${printable(res.statusMessage)}` : ''}`,
        style: 'status',
        color: statusColor(res.status),
    });
    lines.push(...headerLines(res.headers, width));
    if (cap.upgraded !== undefined) {
        lines.push(section('WebSocket', width));
        const { toOrigin, toVisitor } = cap.upgraded;
        lines.push({
            text: `${row.open ? 'open' : 'closed'} · ${webSocketSummary(row)}`,
        });
        lines.push({
            text: `visitor → app ${formatBytes(toOrigin.bytes)} · app → visitor ${formatBytes(toVisitor.bytes)}`,
            style: 'dim',
        });
        return lines;
    }
    lines.push(...bodyLines('Response body', cap.responseBody, res.headers, width));
    return lines;
}
/** One details line, styled and cut to `width`. */
export function detailLineText(line, width, paint) {
    if (line.name !== undefined) {
        return compose(paint, [{ text: line.name, fg: 'cyan' }, `: ${line.text}`], width);
    }
    switch (line.style) {
        case 'title':
            return compose(paint, [{ text: line.text, bold: true }], width);
        case 'section':
            return compose(paint, [{ text: line.text, fg: 'blue', bold: true }], width);
        case 'dim':
            return compose(paint, [{ text: line.text, dim: true }], width);
        case 'error':
            return compose(paint, [{ text: line.text, fg: 'red' }], width);
        case 'status':
            return compose(paint, [{ text: line.text, fg: line.color, bold: true }], width);
        default:
            return compose(paint, [line.text], width);
    }
}
//# sourceMappingURL=details.js.map