import { jsx as _jsx } from "react/jsx-runtime";
/**
 * How the TUI draws: every screen line is one string, styled with chalk and cut to the
 * width here, and shown by `Lines`. One Ink node per line keeps a frame cheap (Ink
 * lays out and re-tokenizes every node on every frame), and the line goes through a
 * `Transform` over a blank placeholder of the same width: Ink measures (and caches,
 * for the life of the process) the placeholder, not the content, so a long session
 * of ever-new request lines does not grow Ink's text-measurement cache.
 */
import chalk, {} from 'chalk';
import { createContext, memo, useContext } from 'react';
import { Box, Transform } from 'ink';
export function makePaint(color) {
    return {
        color,
        seg(s) {
            let out = s.text;
            if (out === '')
                return out;
            if (color && s.fg !== undefined)
                out = chalk[s.fg](out);
            if (color && s.bg !== undefined)
                out = chalk[s.bg](out);
            if (s.bold === true)
                out = chalk.bold(out);
            if (s.dim === true)
                out = chalk.dim(out);
            if (s.underline === true)
                out = chalk.underline(out);
            return out;
        },
        inverse: (text) => chalk.inverse(text),
    };
}
export const PaintContext = createContext(makePaint(true));
export function usePaint() {
    return useContext(PaintContext);
}
/**
 * Joins `segs` into one styled line of at most `width` characters (cut with `…`);
 * `pad` fills it to the width (so an inverse highlight spans the whole line).
 */
export function compose(paint, segs, width, options = {}) {
    let room = width;
    let out = '';
    for (const part of segs) {
        const seg = typeof part === 'string' ? { text: part } : part;
        if (room <= 0)
            break;
        let text = seg.text;
        if (text.length > room)
            text = room === 1 ? '…' : `${text.slice(0, room - 1)}…`;
        room -= text.length;
        out += paint.seg({ ...seg, text });
    }
    if (options.pad === true && room > 0)
        out += ' '.repeat(room);
    return options.inverse === true ? paint.inverse(out) : out;
}
const blanks = new Map();
function blank(width) {
    let b = blanks.get(width);
    if (b === undefined) {
        b = ' '.repeat(Math.max(1, width));
        blanks.set(width, b);
    }
    return b;
}
/** One pre-styled line (see the module comment for why a Transform). */
export const Line = memo(function Line({ text, width }) {
    return _jsx(Transform, { transform: () => text, children: blank(width) });
});
/** Lines, top to bottom, in a box of `width` × `height` (missing lines stay blank). */
export function Lines({ lines, width, height, }) {
    return (_jsx(Box, { flexDirection: "column", width: width, height: height ?? lines.length, overflow: "hidden", children: lines.map((text, i) => (_jsx(Line, { text: text, width: width }, i))) }));
}
//# sourceMappingURL=paint.js.map