/**
 * Pure text helpers for the TUI: sizes, durations, clock times, shortening to a width,
 * and making untrusted text (paths, headers, bodies from visitors) safe to print.
 */
/** `512 B`, `1.2 KiB`, `3.4 MiB`. */
export function formatBytes(n) {
    if (n < 1024)
        return `${n} B`;
    if (n < 1024 * 1024)
        return `${(n / 1024).toFixed(1)} KiB`;
    if (n < 1024 * 1024 * 1024)
        return `${(n / 1024 / 1024).toFixed(1)} MiB`;
    return `${(n / 1024 / 1024 / 1024).toFixed(1)} GiB`;
}
/** `12 ms`, `1.25 s`, `42 s`, `3m 05s`. */
export function formatDuration(ms) {
    if (ms < 1000)
        return `${Math.round(ms)} ms`;
    if (ms < 10_000)
        return `${(ms / 1000).toFixed(2)} s`;
    if (ms < 60_000)
        return `${Math.round(ms / 1000)} s`;
    const s = Math.floor(ms / 1000);
    if (s < 3600)
        return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
    return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}
/** Uptime as `42s`, `5m 03s`, `2h 07m`, `3d 04h`. */
export function formatUptime(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60)
        return `${s}s`;
    if (s < 3600)
        return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
    if (s < 86_400)
        return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
    return `${Math.floor(s / 86_400)}d ${String(Math.floor(s / 3600) % 24).padStart(2, '0')}h`;
}
/** Local wall-clock time `HH:MM:SS`. */
export function formatClock(epochMs) {
    const d = new Date(epochMs);
    const two = (n) => String(n).padStart(2, '0');
    return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}
/** Requests per second with one decimal. */
export function formatRate(perSecond) {
    return `${perSecond.toFixed(perSecond >= 100 ? 0 : 1)}/s`;
}
/**
 * Replaces what a terminal would interpret (C0/C1 controls, ESC, DEL) with a visible
 * placeholder, and tabs with spaces: text from visitors never drives the terminal.
 */
export function printable(text) {
    // eslint-disable-next-line no-control-regex
    return text.replace(/\t/g, '  ').replace(/[\u0000-\u001f\u007f-\u009f]/g, '·');
}
/** Cuts `text` to `width` characters, ending with `…` when cut. */
export function truncateEnd(text, width) {
    if (width <= 0)
        return '';
    if (text.length <= width)
        return text;
    if (width === 1)
        return '…';
    return `${text.slice(0, width - 1)}…`;
}
/**
 * Shortens a request path to `width` characters keeping both ends (the start names the
 * route, the end often the interesting id or query): `/api/users/…/orders?id=7`.
 */
export function shortenMiddle(text, width) {
    if (width <= 0)
        return '';
    if (text.length <= width)
        return text;
    if (width <= 3)
        return truncateEnd(text, width);
    const head = Math.ceil((width - 1) * 0.6);
    const tail = width - 1 - head;
    return `${text.slice(0, head)}…${tail > 0 ? text.slice(text.length - tail) : ''}`;
}
/** Pads or cuts `text` to exactly `width` characters. */
export function fit(text, width, align = 'left') {
    const cut = truncateEnd(text, width);
    return align === 'left' ? cut.padEnd(width) : cut.padStart(width);
}
/** Hard-wraps one line into pieces of at most `width` characters. */
export function hardWrap(line, width) {
    if (width <= 0)
        return [line];
    if (line.length <= width)
        return [line];
    const out = [];
    for (let i = 0; i < line.length; i += width)
        out.push(line.slice(i, i + width));
    return out;
}
/** Ink colour name for an HTTP status. */
export function statusColor(status) {
    if (status === undefined)
        return undefined;
    if (status === 101)
        return 'cyan';
    if (status < 300)
        return 'green';
    if (status < 400)
        return 'cyan';
    if (status < 500)
        return 'yellow';
    return 'red';
}
//# sourceMappingURL=format.js.map