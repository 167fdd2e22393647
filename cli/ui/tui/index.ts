/**
 * The live terminal UI (Ink): `startTui` takes over the terminal (alternate screen,
 * raw keys) and returns the sink for the tunnel's events (cli/events.ts), and
 * `close()`, which gives the terminal back as it was. Loaded with a dynamic import by
 * the expose command, only on a terminal: Ink takes a while to load, and `--help` or
 * `--log` runs never pay for it.
 */
import chalk from 'chalk';
import { render } from 'ink';
import { createElement } from 'react';
import type { TunnelEvent } from '../../events.js';
import type { OriginProxy } from '../../origin/proxy.js';
import { replayRequest } from '../../origin/replay.js';
import { App } from './app.js';
import { TuiStore, type TunnelSource } from './store.js';

export interface TuiOptions {
  /** False for NO_COLOR / --no-color: no colour codes at all (bold and inverse stay). */
  color: boolean;
  /** Shown before the tunnel is online. */
  relay: string;
  target: string;
  /** Live connection count and RTT (the supervisor). */
  source: TunnelSource;
  /** For replays: the proxy's connection settings reach the same origin. */
  origin: OriginProxy;
  /** --ca file, for the curl commands. */
  caFile?: string | undefined;
  /** q / Ctrl-C: close the tunnel (then call `close()`). */
  onQuit: () => void;
  stdout?: NodeJS.WriteStream;
  stdin?: NodeJS.ReadStream;
  /** Minimum time between redraws. Default 100 ms (10 fps). */
  frameMs?: number;
  /** The capture store to show (shared with the web inspector); default a new one. */
  store?: TuiStore;
}

export interface TuiHandle {
  readonly store: TuiStore;
  /** Feeds one event of the tunnel to the store the screen shows. */
  event(e: TunnelEvent): void;
  /** Frames Ink rendered so far. */
  readonly frames: number;
  /** Unmounts, restores the terminal (main screen, cursor, cooked mode). Idempotent. */
  close(): Promise<void>;
}

const ENTER_ALT_SCREEN = '\u001b[?1049h\u001b[H';
const LEAVE_ALT_SCREEN = '\u001b[?1049l';
const SHOW_CURSOR = '\u001b[?25h';

export function startTui(options: TuiOptions): TuiHandle {
  const stdout = options.stdout ?? process.stdout;
  const stdin = options.stdin ?? process.stdin;
  // chalk (which Ink colours through) knows whether this terminal shows colours at all.
  const color = options.color && chalk.level > 0;
  const store = options.store ?? new TuiStore({ source: options.source });
  store.tunnel.relay = options.relay;
  store.tunnel.target = options.target;

  stdout.write(ENTER_ALT_SCREEN);
  let restored = false;
  const restore = (): void => {
    if (restored) return;
    restored = true;
    // Writes to a TTY are synchronous: this works from an 'exit' handler too.
    stdout.write(SHOW_CURSOR + LEAVE_ALT_SCREEN);
  };
  // A crash or a second Ctrl-C can end the process without close(): Ink's own exit
  // hook restores raw mode and the cursor; this leaves the alternate screen.
  process.once('exit', restore);

  let frames = 0;
  const instance = render(
    createElement(App, {
      store,
      onQuit: options.onQuit,
      replay: (capture) => replayRequest(options.origin, capture),
      copy: (text) => {
        // OSC 52: the terminal (or tmux) puts the text on the clipboard, if it allows.
        stdout.write(`\u001b]52;c;${Buffer.from(text).toString('base64')}\u0007`);
      },
      caFile: options.caFile,
      color,
      frameMs: options.frameMs ?? 100,
    }),
    {
      stdout,
      stdin,
      exitOnCtrlC: false,
      patchConsole: true,
      maxFps: 10,
      incrementalRendering: false,
      onRender: () => {
        frames++;
      },
    },
  );
  const exited = instance.waitUntilExit().then(
    () => undefined,
    (err: unknown) => err,
  );
  let closing: Promise<void> | undefined;
  return {
    store,
    event: (e) => store.onEvent(e),
    get frames() {
      return frames;
    },
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
