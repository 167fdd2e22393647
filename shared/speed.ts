/**
 * The speed tricks that lean on library internals or on process-wide state, in one
 * place, each with a feature check and one switch for all of them
 * (`QUICK_TUNNEL_SPEED_TRICKS`, read by shared/config.ts): a Node or `ws` upgrade that
 * changes what a trick relies on turns that trick off here, and the tunnel keeps working
 * on public APIs only. CI runs the mux, transport and e2e tunnel tests once with all of
 * them off (`npm test`).
 *
 * - `ws-socket` (shared/mux/transport.ts): reaches `ws`'s private socket (`_socket`,
 *   `_sender`, `_isServer`) to cork it for one event-loop turn (the relay, which sends
 *   through `ws.send`), and on the CLI over wss:// to write whole messages it framed
 *   itself (DirectWriter). Off: every message goes through `ws.send`, uncorked.
 * - `array-buffer-sweeping` (shared/runtime.ts): `--no-concurrent-array-buffer-sweeping`
 *   set at run time: frees the many ArrayBuffers of a transfer on the main thread
 *   instead of a background thread that competes for the cores.
 * - `young-generation-cap` (shared/runtime.ts): a 100 ms timer that turns V8's
 *   young-generation growth off once it reaches a cap (RSS).
 * - `sticky-session` (relay/tunnels/registry.ts): a count of event-loop turns so that
 *   the requests of one turn go over one of a tunnel's HA connections (their frames
 *   leave in one TLS write). Off: strict round-robin.
 *
 * The A/B figures that decided which tricks stay are in the perf notes of issue 20/17
 * (`npm run bench -- e2e`, alternating `QUICK_TUNNEL_SPEED_TRICKS` settings).
 */
import type { Writable } from 'node:stream';
import { getHeapSpaceStatistics } from 'node:v8';
import type WebSocket from 'ws';
import { readSpeedTricksSetting } from './config.js';
import { ConfigError } from './errors.js';

export const SPEED_TRICKS = [
  'ws-socket',
  'array-buffer-sweeping',
  'young-generation-cap',
  'sticky-session',
] as const;
export type SpeedTrick = (typeof SPEED_TRICKS)[number];

let enabled: ReadonlySet<SpeedTrick> | undefined;

/**
 * Parses a `QUICK_TUNNEL_SPEED_TRICKS` value: undefined or `on` = all, `off` = none,
 * else the comma-separated tricks to keep on. Throws a ConfigError naming the choices.
 */
export function parseSpeedTricks(value: string | undefined): ReadonlySet<SpeedTrick> {
  const v = value?.trim().toLowerCase();
  if (v === undefined || v === '' || v === 'on') return new Set(SPEED_TRICKS);
  if (v === 'off') return new Set();
  const out = new Set<SpeedTrick>();
  for (const word of v.split(',')) {
    const name = word.trim();
    if (name === '') continue;
    if (!(SPEED_TRICKS as readonly string[]).includes(name)) {
      throw new ConfigError(
        `QUICK_TUNNEL_SPEED_TRICKS=${value}: unknown trick '${name}'; use on, off, or a comma-separated list of: ${SPEED_TRICKS.join(', ')}`,
      );
    }
    out.add(name as SpeedTrick);
  }
  return out;
}

/**
 * Sets which tricks are on for this process (tests; the default comes from the
 * environment on first use). Takes effect for what starts afterwards.
 */
export function configureSpeedTricks(value: string | undefined): void {
  enabled = parseSpeedTricks(value);
}

/** Whether `trick` is switched on (the environment is read on first use). */
export function speedTrickOn(trick: SpeedTrick): boolean {
  enabled ??= parseSpeedTricks(readSpeedTricksSetting());
  return enabled.has(trick);
}

// ---- ws-socket ----------------------------------------------------------------------

/** What `wsSocketAccess` found: the socket under a `ws` WebSocket, and who masks. */
export interface WsSocketAccess {
  /** ws's socket (TLS or TCP), which its Sender writes to. */
  socket: Writable & { cork(): void; uncork(): void };
  /**
   * True when this side may write whole messages itself: a client whose mask generator
   * is `zeroMask` (every key all zero, so there is nothing to XOR).
   */
  writesItself: boolean;
}

/**
 * The socket under `ws`, if the `ws-socket` trick is on and `ws`'s internals are what
 * we measured against (ws 8: `_socket` shared with `_sender._socket`, `_isServer`,
 * `_sender._generateMask`); else undefined, and the caller uses `ws.send` only.
 */
export function wsSocketAccess(
  ws: WebSocket,
  zeroMask: (mask: Buffer) => void,
): WsSocketAccess | undefined {
  if (!speedTrickOn('ws-socket')) return undefined;
  const internals = ws as unknown as {
    _socket?: unknown;
    _isServer?: unknown;
    _sender?: { _socket?: unknown; _generateMask?: unknown } | null;
  };
  const socket = internals._socket as WsSocketAccess['socket'] | null | undefined;
  if (
    socket === null ||
    typeof socket !== 'object' ||
    typeof socket.write !== 'function' ||
    typeof socket.cork !== 'function' ||
    typeof socket.uncork !== 'function' ||
    typeof internals._isServer !== 'boolean' ||
    typeof internals._sender !== 'object' ||
    internals._sender === null ||
    internals._sender._socket !== socket
  ) {
    return undefined;
  }
  return {
    socket,
    writesItself: internals._isServer === false && internals._sender._generateMask === zeroMask,
  };
}

// ---- sticky-session -----------------------------------------------------------------

/** Counts turns of the event loop, for as long as someone asks (one setImmediate a turn). */
let turnCount = 0;
let turnScheduled = false;
function nextTurn(): void {
  turnCount++;
  turnScheduled = false;
}

/**
 * A number that stays the same within one turn of the event loop and changes between
 * turns; with `sticky-session` off, a new number on every call (nothing is sticky).
 */
export function currentTurn(): number {
  if (!speedTrickOn('sticky-session')) return ++turnCount;
  if (!turnScheduled) {
    turnScheduled = true;
    setImmediate(nextTurn);
  }
  return turnCount;
}

// ---- V8 flags (shared/runtime.ts) ---------------------------------------------------

/**
 * Whether the V8 of this process is one whose run-time flags shared/runtime.ts was
 * measured with (Node 20 and 22: V8 11 and 12), and it reports a young generation
 * (`new_space`). V8 only prints "unrecognized flag" for a flag it lost, so a newer V8
 * gets no flags at all.
 */
export function v8TuningSupported(): boolean {
  const major = Number(process.versions.v8.split('.')[0]);
  if (major < 11 || major > 12) return false;
  return getHeapSpaceStatistics().some((space) => space.space_name === 'new_space');
}
