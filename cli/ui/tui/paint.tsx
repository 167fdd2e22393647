/**
 * How the TUI draws: every screen line is one string, styled with chalk and cut to the
 * width here, and shown by `Lines`. One Ink node per line keeps a frame cheap (Ink
 * lays out and re-tokenizes every node on every frame), and the line goes through a
 * `Transform` over a blank placeholder of the same width: Ink measures (and caches,
 * for the life of the process) the placeholder, not the content, so a long session
 * of ever-new request lines does not grow Ink's text-measurement cache.
 */
import defaultChalk, { Chalk, type BackgroundColorName, type ForegroundColorName } from 'chalk';
import { createContext, memo, useContext } from 'react';
import { Box, Transform } from 'ink';

export type Color = ForegroundColorName;

/** A run of text with one style. */
export interface Seg {
  text: string;
  fg?: Color | undefined;
  bg?: BackgroundColorName | undefined;
  bold?: boolean;
  dim?: boolean;
  underline?: boolean;
}

/**
 * Styles strings. Without `color` (NO_COLOR, --no-color) nothing is styled at all, not
 * even bold or dim: the same output whichever way colour was turned off.
 */
export interface Paint {
  readonly color: boolean;
  seg(s: Seg): string;
  inverse(text: string): string;
}

export function makePaint(color: boolean): Paint {
  const chalk = color ? defaultChalk : new Chalk({ level: 0 });
  return {
    color,
    seg(s) {
      let out = s.text;
      if (out === '') return out;
      if (color && s.fg !== undefined) out = chalk[s.fg](out);
      if (color && s.bg !== undefined) out = chalk[s.bg](out);
      if (s.bold === true) out = chalk.bold(out);
      if (s.dim === true) out = chalk.dim(out);
      if (s.underline === true) out = chalk.underline(out);
      return out;
    },
    inverse: (text) => chalk.inverse(text),
  };
}

export const PaintContext = createContext<Paint>(makePaint(true));

export function usePaint(): Paint {
  return useContext(PaintContext);
}

/**
 * Joins `segs` into one styled line of at most `width` characters (cut with `…`);
 * `pad` fills it to the width (so an inverse highlight spans the whole line).
 */
export function compose(
  paint: Paint,
  segs: readonly (Seg | string)[],
  width: number,
  options: { pad?: boolean; inverse?: boolean } = {},
): string {
  let room = width;
  let out = '';
  for (const part of segs) {
    const seg: Seg = typeof part === 'string' ? { text: part } : part;
    if (room <= 0) break;
    let text = seg.text;
    if (text.length > room) text = room === 1 ? '…' : `${text.slice(0, room - 1)}…`;
    room -= text.length;
    out += paint.seg({ ...seg, text });
  }
  if (options.pad === true && room > 0) out += ' '.repeat(room);
  return options.inverse === true ? paint.inverse(out) : out;
}

const blanks = new Map<number, string>();
function blank(width: number): string {
  let b = blanks.get(width);
  if (b === undefined) {
    b = ' '.repeat(Math.max(1, width));
    blanks.set(width, b);
  }
  return b;
}

/** One pre-styled line (see the module comment for why a Transform). */
export const Line = memo(function Line({ text, width }: { text: string; width: number }) {
  return <Transform transform={() => text}>{blank(width)}</Transform>;
});

/** Lines, top to bottom, in a box of `width` × `height` (missing lines stay blank). */
export function Lines({
  lines,
  width,
  height,
}: {
  lines: readonly string[];
  width: number;
  height?: number;
}) {
  return (
    <Box flexDirection="column" width={width} height={height ?? lines.length} overflow="hidden">
      {lines.map((text, i) => (
        <Line key={i} text={text} width={width} />
      ))}
    </Box>
  );
}
