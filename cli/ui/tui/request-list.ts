/**
 * The live request list, newest at the bottom: time, method, path (shortened to fit),
 * status coloured by class, duration, size. Open requests show their running time;
 * a WebSocket is one row that stays open with its message counts. Columns drop out
 * as the terminal narrows. The selected row has a `›` marker and inverse video.
 */
import type { RequestRow, TuiStore } from './store.js';
import {
  fit,
  formatBytes,
  formatClock,
  formatDuration,
  printable,
  shortenMiddle,
  statusColor,
} from './format.js';
import { compose, type Color, type Paint } from './paint.js';

interface Columns {
  time: boolean;
  duration: boolean;
  size: boolean;
  path: number;
}

/** `› ` before the selected row: visible without colours or inverse video too. */
const MARKER_WIDTH = 2;
const METHOD_WIDTH = 7;
const STATUS_WIDTH = 4;
const DURATION_WIDTH = 9;
const SIZE_WIDTH = 10;

export function columnsFor(width: number): Columns {
  const time = width >= 64;
  const duration = width >= 44;
  const size = width >= 72;
  const fixed =
    MARKER_WIDTH +
    (time ? 9 : 0) +
    METHOD_WIDTH +
    1 +
    1 +
    STATUS_WIDTH +
    (duration ? DURATION_WIDTH + 1 : 0) +
    (size ? SIZE_WIDTH + 1 : 0);
  return { time, duration, size, path: Math.max(8, width - fixed) };
}

/** `12 in · 30 out msgs` for a WebSocket (bytes when the frames could not be read). */
export function webSocketSummary(row: RequestRow): string {
  const up = row.capture?.upgraded;
  if (up === undefined) return row.open ? 'websocket' : '';
  if (up.toOrigin.valid && up.toVisitor.valid) {
    return `${up.toOrigin.messages} in · ${up.toVisitor.messages} out msgs`;
  }
  return `${formatBytes(up.toOrigin.bytes)} in · ${formatBytes(up.toVisitor.bytes)} out`;
}

function pathCell(row: RequestRow, width: number): string {
  const prefix = row.replayOf !== undefined ? `↻#${row.replayOf} ` : '';
  const suffix = row.upgrade
    ? ` ⇄ ${webSocketSummary(row)}${row.open ? ' · open' : ''}`
    : row.queued !== undefined
      ? ` · queued ${formatClock(Date.parse(row.queued.queuedAt))}`
      : '';
  const room = Math.max(4, width - prefix.length - suffix.length);
  return fit(`${prefix}${shortenMiddle(printable(row.path), room)}${suffix}`, width);
}

function sizeOf(row: RequestRow): number {
  if (!row.open) return row.bytesOut;
  return row.capture?.upgraded?.toVisitor.bytes ?? row.capture?.responseBody.totalBytes ?? 0;
}

/** One row of the list as a styled line of exactly `width` columns. */
export function rowLine(
  row: RequestRow,
  width: number,
  selected: boolean,
  now: number,
  paint: Paint,
): string {
  const cols = columnsFor(width);
  const status = row.status ?? (row.upgrade ? row.capture?.response?.status : undefined);
  const statusText = status !== undefined ? String(status) : '…';
  const failed = row.error !== undefined && status === undefined;
  const statusFg: Color | undefined = failed ? 'red' : statusColor(status);
  const duration = row.durationMs ?? now - row.startedAt;
  return compose(
    paint,
    [
      { text: selected ? '› ' : '  ', bold: true },
      cols.time ? { text: `${formatClock(row.startedAt)} `, dim: !selected } : '',
      { text: fit(printable(row.method), METHOD_WIDTH), bold: true },
      ' ',
      {
        text: pathCell(row, cols.path),
        fg: row.replayOf !== undefined ? 'magenta' : undefined,
      },
      ' ',
      { text: fit(statusText, STATUS_WIDTH, 'right'), fg: statusFg },
      cols.duration
        ? {
            text: ` ${fit(formatDuration(duration), DURATION_WIDTH, 'right')}`,
            dim: row.open && !selected,
          }
        : '',
      cols.size ? ` ${fit(formatBytes(sizeOf(row)), SIZE_WIDTH, 'right')}` : '',
    ],
    width,
    { pad: selected, inverse: selected },
  );
}

export function headingLine(width: number, paint: Paint): string {
  const cols = columnsFor(width);
  const text =
    ' '.repeat(MARKER_WIDTH) +
    (cols.time ? 'TIME     ' : '') +
    'METHOD'.padEnd(METHOD_WIDTH) +
    ' ' +
    'PATH'.padEnd(cols.path) +
    ' ' +
    'STAT'.padStart(STATUS_WIDTH) +
    (cols.duration ? ` ${'DURATION'.padStart(DURATION_WIDTH)}` : '') +
    (cols.size ? ` ${'SIZE'.padStart(SIZE_WIDTH)}` : '');
  return compose(paint, [{ text, dim: true, underline: true }], width);
}

/**
 * The list area: heading, then the rows from `first` that fit in `height` lines, the
 * selected one highlighted; a hint while there are none.
 */
export function listLines(
  store: TuiStore,
  width: number,
  height: number,
  first: number,
  selectedKey: number | undefined,
  now: number,
  paint: Paint,
): string[] {
  if (height <= 0) return [];
  const lines = [headingLine(width, paint)];
  for (let i = first; i < store.rowCount && lines.length < height; i++) {
    const row = store.rowAt(i)!;
    lines.push(rowLine(row, width, row.key === selectedKey, now, paint));
  }
  if (lines.length === 1 && height > 1) {
    const url = store.tunnel.url;
    lines.push(
      compose(
        paint,
        [
          {
            text:
              url !== undefined
                ? `Waiting for requests: open ${url}`
                : 'Waiting for the tunnel to come online…',
            dim: true,
          },
        ],
        width,
      ),
    );
  }
  return lines;
}
