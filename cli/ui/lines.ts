/**
 * Line views of the event stream, for when stdout is not a terminal or `--log` is
 * given: `text` (one readable line per event) and `json` (one JSON object per line,
 * each with an `event` field). Diagnostics go to stderr; stdout is the view's.
 */
import { writeSync } from 'node:fs';
import { QuickTunnelError, type QtErrorCode } from '../../shared/errors.js';
import type { TunnelEvent } from '../events.js';
import { qrLines } from './tui/qr.js';

export type LineFormat = 'text' | 'json';

export interface LineWriter {
  out: (line: string) => void;
  err: (line: string) => void;
}

/**
 * stdout lines written in one turn of the event loop go out in one write (one line per
 * request at thousands of requests per second would be as many syscalls); whatever is
 * pending when the process exits is written synchronously.
 */
function batchedStdout(): (line: string) => void {
  let pending = '';
  const flush = (): void => {
    if (pending === '') return;
    const text = pending;
    pending = '';
    process.stdout.write(text);
  };
  process.once('exit', () => {
    if (pending !== '') writeSync(1, pending);
    pending = '';
  });
  return (line) => {
    if (pending === '') setImmediate(flush);
    pending += `${line}\n`;
  };
}

let stdoutWriter: ((line: string) => void) | undefined;

export const processWriter: LineWriter = {
  out: (line) => (stdoutWriter ??= batchedStdout())(line),
  err: (line) => process.stderr.write(`${line}\n`),
};

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * What the embedded relay's URLs are good for: `*.localhost` resolves in browsers and
 * curl only; http://127.0.0.1:PORT works in any HTTP client. Both are this machine's.
 */
export function localUrlsNote(url: string, directUrl: string | undefined): string {
  if (directUrl === undefined) return LOCAL_ONLY_NOTE;
  return (
    `These URLs are local-only: they work on this machine, not for others. ${url} works in ` +
    `browsers and curl; ${directUrl} works in any HTTP client (Node's fetch, Python, wget, ` +
    "webhook senders' test tools), which cannot resolve *.localhost. To share it, run a relay " +
    'on a server (`quick-tunnel relay --domain tunnel.example.com`) and pass ' +
    '`--relay https://tunnel.example.com`.'
  );
}

/** `--lan`: who can reach the LAN URL. */
export function lanNote(lanUrl: string): string {
  return (
    `${lanUrl} works for other devices on this network (a phone on the same Wi-Fi): ANYONE ` +
    'on the network can open it. Protect it with --basic-auth USER:PASS or --allow-ip.'
  );
}

export const LOCAL_ONLY_NOTE =
  'This URL is local-only: it works on this machine, not for others. To share it, run a relay ' +
  'on a server (`quick-tunnel relay --domain tunnel.example.com`) and pass ' +
  '`--relay https://tunnel.example.com`.';

/**
 * Control characters (C0, DEL, C1) in `text` made visible: a hostile relay or origin
 * must not reach the terminal with escape sequences (title change, screen clear,
 * clipboard write) through a URL, a GOAWAY reason or an error message.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(
    /[\x00-\x1f\x7f-\x9f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
}

/**
 * `--log json`: the `error` event, `{"event":"error","code","message","hint"}`, for an
 * error that ends the process (at startup, cli/main.ts, or after the tunnel was up).
 */
export function jsonErrorLine(
  code: QtErrorCode,
  message: string,
  hint: string | undefined,
): string {
  return JSON.stringify({
    time: new Date().toISOString(),
    event: 'error',
    code,
    message,
    ...(hint === undefined ? {} : { hint }),
  });
}

/** Code, message and hint of any thrown value (`QT_ERR_INTERNAL` for a non-QuickTunnelError). */
export function errorFields(err: unknown): {
  code: QtErrorCode;
  message: string;
  hint?: string;
} {
  if (err instanceof QuickTunnelError) {
    return {
      code: err.code,
      message: err.message,
      ...(err.hint === undefined ? {} : { hint: err.hint }),
    };
  }
  return {
    code: 'QT_ERR_INTERNAL',
    message: err instanceof Error ? err.message : String(err),
    hint: 'this is a bug: please report it with the output on stderr',
  };
}

/**
 * What `--log json` prints of an event (besides `time`): the CLI contract's fields. The
 * origin proxy's extras for in-process views stay out: the live `capture`, a warning's
 * `code`, a hint's `hostname`.
 */
export function jsonLineFields(e: TunnelEvent): object {
  switch (e.event) {
    case 'request':
    case 'request-start': {
      if (e.capture === undefined) return e;
      const { capture: _capture, ...fields } = e;
      return fields;
    }
    case 'warning': {
      const { code: _code, ...fields } = e;
      return fields;
    }
    case 'hint': {
      const { hostname: _hostname, ...fields } = e;
      return fields;
    }
    default:
      return e;
  }
}

/** Returns the sink that prints events as lines in `format`. */
export function lineView(
  format: LineFormat,
  sink: LineWriter = processWriter,
): (e: TunnelEvent) => void {
  // `tunnel closed` only for a tunnel that opened: not after a startup error.
  let opened = false;
  // Every line, whatever its source, is printable (JSON escapes C0 but not C1).
  const writer: LineWriter = {
    out: (l) => sink.out(printable(l)),
    err: (l) => sink.err(printable(l)),
  };
  if (format === 'json') {
    return (e) => {
      if (e.event === 'ready') opened = true;
      if (e.event === 'closed' && !opened) return;
      // `ready` is the first line a tunnel prints; per-request starts and RTT samples
      // are too chatty for logs.
      if (e.event === 'connecting' || e.event === 'request-start' || e.event === 'rtt') return;
      writer.out(JSON.stringify({ time: new Date().toISOString(), ...jsonLineFields(e) }));
      if (e.event === 'ready' && e.local) writer.err(localUrlsNote(e.url, e.directUrl));
      if (e.event === 'ready' && e.lanUrl !== undefined) writer.err(lanNote(e.lanUrl));
    };
  }
  return (e) => {
    switch (e.event) {
      case 'connecting':
        if (e.attempt > 1) writer.err(`connecting to ${e.relay} (attempt ${e.attempt})…`);
        return;
      case 'ready': {
        opened = true;
        writer.out(`Forwarding ${e.url} -> ${e.target}`);
        for (const url of e.urls.slice(1)) writer.out(`Also at   ${url} -> ${e.target}`);
        if (e.lanUrl !== undefined) writer.out(`On the LAN ${e.lanUrl} -> ${e.target}`);
        if (e.inspector !== undefined) writer.out(`Inspector ${e.inspector}`);
        if (e.local) writer.err(localUrlsNote(e.url, e.directUrl));
        if (e.lanUrl !== undefined) {
          writer.err(lanNote(e.lanUrl));
          for (const line of qrLines(e.lanUrl)) writer.err(line);
        }
        return;
      }
      case 'request': {
        const t = new Date().toISOString().slice(11, 19);
        const kind = e.upgrade ? ' (websocket)' : '';
        const err = e.error !== undefined ? `  ${e.error}` : '';
        const queued =
          e.queued !== undefined
            ? `  (queued ${e.queued.queuedAt}, delivery ${e.queued.deliveryId})`
            : '';
        writer.out(
          `${t} ${e.method} ${e.path} ${e.status} ${Math.round(e.durationMs)}ms ${formatBytes(e.bytesOut)}${kind}${err}${queued}`,
        );
        return;
      }
      case 'connection-lost':
        writer.err(`connection to the relay lost: ${e.error}`);
        return;
      case 'reconnecting':
        writer.err(
          `reconnecting in ${(e.delayMs / 1000).toFixed(1)}s (attempt ${e.attempt}): ${e.error}`,
        );
        return;
      case 'reconnected':
        writer.err(
          e.sameHostname
            ? `reconnected: ${e.url}`
            : `reconnected with a NEW address: ${e.url} (the old one expired)`,
        );
        return;
      case 'warning':
        writer.err(`warning: ${e.message}`);
        return;
      case 'hint':
        writer.err(`hint: ${e.message}`);
        return;
      case 'closed':
        if (opened) writer.err('tunnel closed');
        return;
      case 'request-start':
      case 'rtt':
        return;
    }
  };
}
