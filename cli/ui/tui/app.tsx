/**
 * The TUI's root component: header, request list and key footer, plus the details
 * view and the curl and QR panels. Fills the terminal (one line short, so Ink redraws
 * in place) and follows resizes. Redraws are throttled to `frameMs` however fast the
 * store changes.
 *
 * Keys: ↑/↓ (k/j) select, PgUp/PgDn, Home/End; Enter details; Esc back (in the list:
 * follow the newest row again); r replay to the local origin; p curl command; o QR
 * code of the public URL; c clear; q or Ctrl-C quit.
 */
import { useMemo, useReducer, useRef } from 'react';
import { Box, useInput, type Key } from 'ink';
import type { ExchangeCapture } from '../../origin/capture.js';
import { replayRefusal, type ReplayResult } from '../../origin/replay.js';
import { toCurl } from './curl.js';
import { detailLines, detailLineText, type DetailLine } from './details.js';
import { hardWrap, printable } from './format.js';
import { headerHeight, headerLines, statusLine } from './header.js';
import { useStoreVersion, useTerminalSize, useTick } from './hooks.js';
import { compose, Lines, makePaint, PaintContext, usePaint, type Paint } from './paint.js';
import { qrLines } from './qr.js';
import { listLines } from './request-list.js';
import type { RequestRow, TuiStore } from './store.js';

export interface AppProps {
  store: TuiStore;
  /** Called once on q / Ctrl-C; the caller closes the tunnel, then the TUI. */
  onQuit: () => void;
  /** Sends a captured request to the local origin again. */
  replay?: (capture: ExchangeCapture) => Promise<ReplayResult>;
  /** Puts text on the clipboard (OSC 52), when the terminal allows. */
  copy?: (text: string) => void;
  /** --ca file, added to curl commands as --cacert. */
  caFile?: string | undefined;
  color?: boolean;
  /** Minimum time between redraws. Default 100 ms (10 fps); 0 = every change (tests). */
  frameMs?: number;
  /** Clock redraws for uptime and countdowns. Default 1000 ms; 0 = none (tests). */
  tickMs?: number;
  /** Fixed size instead of the terminal's (tests). */
  width?: number;
  height?: number;
}

type Mode =
  | { kind: 'list' }
  | { kind: 'details'; key: number }
  | { kind: 'curl'; key: number; back: Mode }
  | { kind: 'qr'; back: Mode };

const LIST_MODE: Mode = { kind: 'list' };

function footerKeys(mode: Mode): [string, string][] {
  switch (mode.kind) {
    case 'list':
      return [
        ['↑↓', 'select'],
        ['⏎', 'details'],
        ['r', 'replay'],
        ['p', 'curl'],
        ['o', 'QR'],
        ['c', 'clear'],
        ['q', 'quit'],
      ];
    case 'details':
      return [
        ['↑↓', 'scroll'],
        ['←→', 'prev/next'],
        ['esc', 'back'],
        ['r', 'replay'],
        ['p', 'curl'],
        ['q', 'quit'],
      ];
    case 'curl':
      return [
        ['↑↓', 'scroll'],
        ['esc', 'back'],
        ['q', 'quit'],
      ];
    case 'qr':
      return [
        ['esc', 'back'],
        ['q', 'quit'],
      ];
  }
}

function footerLine(mode: Mode, width: number, paint: Paint): string {
  const segs = footerKeys(mode).flatMap(([key, label], i) => [
    i > 0 ? '  ' : '',
    { text: key, bold: true, fg: 'cyan' as const },
    { text: ` ${label}`, dim: true },
  ]);
  return compose(paint, segs, width);
}

function curlLines(
  row: RequestRow,
  baseUrl: string | undefined,
  width: number,
  caFile: string | undefined,
  copied: boolean,
) {
  const lines: DetailLine[] = [];
  const title = `curl for ${row.replayOf !== undefined ? `replay of #${row.replayOf}` : `#${row.id ?? row.key}`}`;
  if (row.capture === undefined || baseUrl === undefined) {
    lines.push({ text: title, style: 'title' });
    lines.push({ text: 'Nothing was captured for this request.', style: 'dim' });
    return { lines, command: undefined };
  }
  const { command, notes } = toCurl(row.capture, baseUrl, { caFile });
  lines.push({ text: `${title} (through the tunnel's public URL)`, style: 'title' });
  for (const note of notes) lines.push({ text: `note: ${note}`, style: 'dim' });
  if (copied) {
    lines.push({
      text: 'Also copied to the clipboard, if the terminal allows it (OSC 52).',
      style: 'dim',
    });
  }
  lines.push({ text: '' });
  for (const line of command.split('\n')) {
    // Shown made printable; the copy keeps the exact command.
    for (const piece of hardWrap(printable(line), width)) lines.push({ text: piece });
  }
  return { lines, command };
}

function qrPanelLines(
  url: string | undefined,
  local: boolean | 'lan',
  width: number,
  height: number,
  paint: Paint,
): string[] {
  if (url === undefined) {
    return [
      compose(paint, [{ text: 'No public URL yet: waiting for the tunnel.', dim: true }], width),
    ];
  }
  const code = qrLines(url);
  const qrWidth = code[0]?.length ?? 0;
  const lines = [
    compose(paint, [{ text: printable(url), bold: true }], width),
    local === 'lan'
      ? compose(
          paint,
          [
            {
              text: 'Anyone on this network can open it: scan with a phone on the same Wi-Fi.',
              fg: 'yellow',
            },
          ],
          width,
        )
      : local
        ? compose(
            paint,
            [
              {
                text: 'This URL is local-only: a phone cannot open it. Use a relay on a server.',
                fg: 'yellow',
              },
            ],
            width,
          )
        : compose(
            paint,
            [{ text: 'Scan with a phone camera to open the tunnel.', dim: true }],
            width,
          ),
  ];
  if (qrWidth <= width && code.length + 2 <= height) {
    // Light modules are blocks: white on black when colours are on, else the
    // terminal's own (usually light-on-dark) colours.
    for (const row of code) lines.push(paint.seg({ text: row, fg: 'white', bg: 'bgBlack' }));
  } else {
    lines.push(
      compose(
        paint,
        [
          {
            text: `Make the terminal at least ${qrWidth}×${code.length + 4} to show the QR code.`,
            fg: 'yellow',
          },
        ],
        width,
      ),
    );
  }
  return lines;
}

export function App(props: AppProps) {
  return (
    <PaintContext.Provider value={useMemo(() => makePaint(props.color ?? true), [props.color])}>
      <Screen {...props} />
    </PaintContext.Provider>
  );
}

interface UiState {
  mode: Mode;
  scroll: number;
  /** Selected row; undefined = follow the newest rows. */
  selectedKey: number | undefined;
  /** Line of the selection inside the list window (keeps the window still). */
  anchor: number;
  quitting: boolean;
  /**
   * The last replay's progress, shown in the footer of the details and curl views (the
   * list shows the new row itself): "replay of #3 sent…", then its status.
   */
  replayNote: { text: string; at: number } | undefined;
}

function Screen(props: AppProps) {
  const { store } = props;
  const paint = usePaint();
  const version = useStoreVersion(store, props.frameMs ?? 100);
  useTick(props.tickMs ?? 1000);
  const size = useTerminalSize({ width: props.width, height: props.height });
  const width = Math.max(20, size.width);
  // One line short of the screen: Ink then rewrites its lines in place.
  const height = Math.max(4, size.height - (props.height === undefined ? 1 : 0));
  // Key presses can arrive several per tick: they read and write this state at once,
  // then one redraw follows.
  const ui = useRef<UiState>({
    mode: LIST_MODE,
    scroll: 0,
    selectedKey: undefined,
    anchor: 0,
    quitting: false,
    replayNote: undefined,
  }).current;
  const [, redraw] = useReducer((n: number) => n + 1, 0);
  const overlayCache = useRef<{ key: string; lines: DetailLine[] }>({ key: '', lines: [] });

  const fullHeader = headerHeight(store) + 6 <= height;
  const topHeight = fullHeader ? headerHeight(store) : 1;
  const listHeight = Math.max(1, height - topHeight - 1);
  const visible = Math.max(1, listHeight - 1);
  const viewHeight = Math.max(1, height - 2);

  /** Where the list window starts and which index is selected (-1 = following). */
  const listWindow = (): { selIndex: number; first: number; count: number } => {
    const count = store.rowCount;
    const selIndex = ui.selectedKey === undefined ? -1 : store.indexOfKey(ui.selectedKey);
    const maxFirst = Math.max(0, count - visible);
    const first =
      selIndex < 0
        ? maxFirst
        : Math.min(maxFirst, Math.max(0, selIndex - Math.min(ui.anchor, visible - 1)));
    return { selIndex, first, count };
  };

  const modeRow = (): RequestRow | undefined =>
    ui.mode.kind === 'details' || ui.mode.kind === 'curl' ? store.rowByKey(ui.mode.key) : undefined;

  /** The lines of the details or curl page (cached while the row does not change). */
  const pageLines = (): DetailLine[] => {
    const row = modeRow();
    if (row === undefined) {
      return [
        { text: 'This request is no longer in the list (cleared or too old).', style: 'dim' },
      ];
    }
    const key = `${ui.mode.kind}:${row.key}:${width}:${row.open ? version : 'done'}:${row.capture?.responseBody.released ?? ''}:${store.tunnel.url ?? ''}`;
    if (overlayCache.current.key !== key) {
      const lines =
        ui.mode.kind === 'curl'
          ? curlLines(row, store.tunnel.url, width, props.caFile, props.copy !== undefined).lines
          : detailLines(row, width, store.now());
      overlayCache.current = { key, lines };
    }
    return overlayCache.current.lines;
  };

  const maxScroll = (): number => Math.max(0, pageLines().length - viewHeight);

  const select = (index: number): void => {
    const { count, first } = listWindow();
    if (count === 0) return;
    const i = Math.max(0, Math.min(count - 1, index));
    ui.selectedKey = store.rowAt(i)!.key;
    // Keep the window where it is while the selection stays inside it.
    ui.anchor = Math.max(0, Math.min(visible - 1, i - first));
  };

  const current = (): RequestRow | undefined => {
    const { selIndex, count } = listWindow();
    return selIndex >= 0 ? store.rowAt(selIndex) : store.rowAt(count - 1);
  };

  const replay = (row: RequestRow | undefined): void => {
    if (row === undefined) return;
    const label =
      row.replayOf !== undefined ? `the replay of #${row.replayOf}` : `#${row.id ?? row.key}`;
    if (props.replay === undefined || row.capture === undefined) {
      store.addNotice('info', `cannot replay ${label}: nothing was captured`);
      return;
    }
    const refusal = replayRefusal(row.capture);
    if (refusal !== undefined) {
      store.addNotice('info', `cannot replay ${label}: ${refusal}`);
      return;
    }
    const key = store.startReplay(row);
    const capture = row.capture;
    ui.replayNote = { text: `↻ replay of ${label} sent to the local app…`, at: store.now() };
    props.replay(capture).then(
      (result) => {
        ui.replayNote = {
          text: `↻ replay of ${label}: ${result.status}${result.error !== undefined ? ` (${result.error})` : ''} in ${Math.round(result.durationMs)} ms: a new ↻ row in the list (Esc)`,
          at: store.now(),
        };
        store.finishReplay(key, result);
      },
      (err: unknown) =>
        store.finishReplay(key, {
          capture,
          status: 502,
          durationMs: 0,
          bytesIn: 0,
          bytesOut: 0,
          error: err instanceof Error ? err.message : String(err),
        }),
    );
  };

  const openCurl = (row: RequestRow | undefined): void => {
    if (row === undefined) return;
    ui.mode = { kind: 'curl', key: row.key, back: ui.mode };
    ui.scroll = 0;
    if (props.copy !== undefined && row.capture !== undefined && store.tunnel.url !== undefined) {
      props.copy(toCurl(row.capture, store.tunnel.url, { caFile: props.caFile }).command);
    }
  };

  const onKey = (input: string, key: Key): void => {
    if (input === 'q' || (key.ctrl && input === 'c')) {
      if (!ui.quitting) {
        ui.quitting = true;
        store.markClosing();
        props.onQuit();
      }
      return;
    }
    const mode = ui.mode;
    if (mode.kind === 'list') {
      const { selIndex, count } = listWindow();
      const at = selIndex >= 0 ? selIndex : count - 1;
      if (key.upArrow || input === 'k') select(selIndex >= 0 ? selIndex - 1 : count - 1);
      else if (key.downArrow || input === 'j') select(selIndex >= 0 ? selIndex + 1 : count - 1);
      else if (key.pageUp) select(at - visible);
      else if (key.pageDown) select(at + visible);
      else if (key.home || input === 'g') select(0);
      else if (key.end || input === 'G' || key.escape) ui.selectedKey = undefined;
      else if (key.return) {
        const row = current();
        if (row !== undefined) {
          if (selIndex < 0) select(count - 1);
          ui.mode = { kind: 'details', key: row.key };
          ui.scroll = 0;
        }
      } else if (input === 'r') replay(current());
      else if (input === 'p') openCurl(current());
      else if (input === 'o') ui.mode = { kind: 'qr', back: mode };
      else if (input === 'c') {
        store.clear();
        ui.selectedKey = undefined;
      }
      return;
    }
    if (mode.kind === 'qr') {
      if (key.escape || key.return || key.backspace || input === 'o') ui.mode = mode.back;
      return;
    }
    // details and curl: a scrollable page.
    if (key.upArrow || input === 'k') ui.scroll = Math.max(0, ui.scroll - 1);
    else if (key.downArrow || input === 'j') ui.scroll = Math.min(maxScroll(), ui.scroll + 1);
    else if (key.pageUp) ui.scroll = Math.max(0, ui.scroll - viewHeight);
    else if (key.pageDown || input === ' ') {
      ui.scroll = Math.min(maxScroll(), ui.scroll + viewHeight);
    } else if (key.home || input === 'g') ui.scroll = 0;
    else if (key.end || input === 'G') ui.scroll = maxScroll();
    else if (key.escape || key.backspace || (mode.kind === 'details' && key.return)) {
      ui.mode = mode.kind === 'curl' ? mode.back : LIST_MODE;
      ui.scroll = 0;
    } else if (mode.kind === 'details') {
      const index = store.indexOfKey(mode.key);
      if ((key.leftArrow || key.rightArrow) && index >= 0) {
        const next = store.rowAt(index + (key.leftArrow ? -1 : 1));
        if (next !== undefined) {
          ui.mode = { kind: 'details', key: next.key };
          select(index + (key.leftArrow ? -1 : 1));
          ui.scroll = 0;
        }
      } else if (input === 'r') replay(modeRow());
      else if (input === 'p') openCurl(modeRow());
      else if (input === 'o') ui.mode = { kind: 'qr', back: mode };
    }
  };

  useInput((input, key) => {
    onKey(input, key);
    redraw();
  });

  const mode = ui.mode;
  let top: string[];
  let middle: string[];
  let middleHeight: number;
  if (mode.kind === 'list') {
    const { selIndex, first } = listWindow();
    top = fullHeader ? headerLines(store, width, paint) : [statusLine(store, width, paint)];
    middleHeight = listHeight;
    middle = listLines(
      store,
      width,
      listHeight,
      first,
      selIndex >= 0 ? ui.selectedKey : undefined,
      store.now(),
      paint,
    );
  } else {
    top = [statusLine(store, width, paint)];
    middleHeight = viewHeight;
    if (mode.kind === 'qr') {
      const lanUrl = store.tunnel.lanUrl;
      middle = qrPanelLines(
        lanUrl ?? store.tunnel.url,
        lanUrl === undefined ? store.tunnel.local : 'lan',
        width,
        viewHeight,
        paint,
      );
    } else {
      const scroll = Math.min(ui.scroll, maxScroll());
      middle = pageLines()
        .slice(scroll, scroll + viewHeight)
        .map((line) => detailLineText(line, width, paint));
    }
  }
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden">
      <Lines lines={top} width={width} />
      <Lines lines={middle} width={width} height={middleHeight} />
      <Lines
        lines={[
          mode.kind !== 'list' &&
          ui.replayNote !== undefined &&
          store.now() - ui.replayNote.at < 15_000
            ? compose(paint, [{ text: ui.replayNote.text, fg: 'cyan' }], width)
            : footerLine(mode, width, paint),
        ]}
        width={width}
      />
    </Box>
  );
}
