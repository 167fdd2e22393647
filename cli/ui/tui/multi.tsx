/**
 * The TUI for several tunnels (`quick-tunnel start`): a tab line lists every tunnel with
 * its status (● online, ↻ reconnecting, ◌ connecting, ○ offline) and request count; below
 * it the usual view (header, requests, details, replay, curl, QR) of the selected one.
 * Tab / Shift-Tab or 1–9 switch tunnels. One TuiStore per tunnel, fed by its events
 * (which carry the tunnel's name).
 */
import chalk from 'chalk';
import { Box, render, useInput } from 'ink';
import { createElement, useState } from 'react';
import type { TunnelEvent } from '../../events.js';
import { replayRequest } from '../../origin/replay.js';
import type { TunnelRunner } from '../../tunnel/runner.js';
import { App } from './app.js';
import { printable } from './format.js';
import { useStoreVersion, useTerminalSize } from './hooks.js';
import { compose, Lines, makePaint, PaintContext, type Paint, type Seg } from './paint.js';
import { TuiStore } from './store.js';

export interface MultiTuiTunnel {
  name: string;
  relay: string;
  target: string;
  runner: TunnelRunner;
  /** The tunnel's capture store (shared with the web inspector); default a new one. */
  store?: TuiStore | undefined;
}

export interface MultiTuiOptions {
  color: boolean;
  tunnels: MultiTuiTunnel[];
  /** q / Ctrl-C: close the tunnels (then call `close()`). */
  onQuit: () => void;
  stdout?: NodeJS.WriteStream;
  stdin?: NodeJS.ReadStream;
}

export interface MultiTuiHandle {
  readonly stores: ReadonlyMap<string, TuiStore>;
  /** Feeds one event to the store of its tunnel (`e.tunnel`). */
  event(e: TunnelEvent): void;
  close(): Promise<void>;
}

const STATUS: Record<string, Seg> = {
  connecting: { text: '◌', fg: 'yellow' },
  online: { text: '●', fg: 'green' },
  reconnecting: { text: '↻', fg: 'yellow' },
  offline: { text: '○', fg: 'red' },
  closing: { text: '◌', fg: 'yellow' },
};

/** The tab line: `1 web ● 12   2 hooks ↻ 0`, the selected tunnel in inverse. */
export function tabLine(
  entries: { name: string; store: TuiStore }[],
  selected: number,
  width: number,
  paint: Paint,
): string {
  const segs: (Seg | string)[] = [{ text: 'tunnels ', bold: true }];
  entries.forEach(({ name, store }, i) => {
    const label = ` ${i < 9 ? `${i + 1} ` : ''}${printable(name)} `;
    segs.push(
      i === selected
        ? { text: label, bg: 'bgWhite', fg: 'black', bold: true, underline: true }
        : { text: label },
    );
    segs.push(STATUS[store.status()] ?? { text: '?' });
    segs.push({ text: ` ${store.totals().total}  `, dim: true });
  });
  return compose(paint, segs, width);
}

function MultiApp(props: {
  entries: { name: string; store: TuiStore; tunnel: MultiTuiTunnel }[];
  color: boolean;
  onQuit: () => void;
}) {
  const [selected, setSelected] = useState(0);
  const { width, height } = useTerminalSize({});
  const current = props.entries[selected] ?? props.entries[0]!;
  // Redraw the tab line when any tunnel changes (status, counts).
  for (const e of props.entries) useStoreVersion(e.store, 250);
  useInput((input, key) => {
    const n = props.entries.length;
    if (key.tab) setSelected((s) => (key.shift ? (s - 1 + n) % n : (s + 1) % n));
    else if (/^[1-9]$/.test(input) && Number(input) <= n) setSelected(Number(input) - 1);
  });
  const paint = makePaint(props.color);
  return (
    <PaintContext.Provider value={paint}>
      <Box flexDirection="column">
        <Lines lines={[tabLine(props.entries, selected, width, paint)]} width={width} />
        <App
          key={current.name}
          store={current.store}
          onQuit={props.onQuit}
          replay={(capture) =>
            replayRequest(current.tunnel.runner.origin.proxyFor(capture.request.url), capture)
          }
          color={props.color}
          width={width}
          height={Math.max(5, height - 1)}
        />
      </Box>
    </PaintContext.Provider>
  );
}

const ENTER_ALT_SCREEN = '\u001b[?1049h\u001b[H';
const LEAVE_ALT_SCREEN = '\u001b[?1049l';
const SHOW_CURSOR = '\u001b[?25h';

export function startMultiTui(options: MultiTuiOptions): MultiTuiHandle {
  const stdout = options.stdout ?? process.stdout;
  const stdin = options.stdin ?? process.stdin;
  const color = options.color && chalk.level > 0;
  const entries = options.tunnels.map((tunnel) => {
    const supervisor = tunnel.runner.supervisor;
    const store =
      tunnel.store ??
      new TuiStore({
        source: {
          liveConnections: () => supervisor.liveConnections,
          rttMs: () => supervisor.rttMs,
        },
      });
    store.tunnel.relay = tunnel.relay;
    store.tunnel.target = tunnel.target;
    return { name: tunnel.name, store, tunnel };
  });
  const stores = new Map(entries.map((e) => [e.name, e.store]));

  stdout.write(ENTER_ALT_SCREEN);
  let restored = false;
  const restore = (): void => {
    if (restored) return;
    restored = true;
    stdout.write(SHOW_CURSOR + LEAVE_ALT_SCREEN);
  };
  process.once('exit', restore);
  const instance = render(createElement(MultiApp, { entries, color, onQuit: options.onQuit }), {
    stdout,
    stdin,
    exitOnCtrlC: false,
    patchConsole: true,
    maxFps: 10,
    incrementalRendering: false,
  });
  const exited = instance.waitUntilExit().then(
    () => undefined,
    (err: unknown) => err,
  );
  let closing: Promise<void> | undefined;
  return {
    stores,
    event: (e) => stores.get(e.tunnel ?? '')?.onEvent(e),
    close() {
      closing ??= (async () => {
        instance.unmount();
        await exited;
        restore();
        process.off('exit', restore);
      })();
      return closing;
    },
  };
}
