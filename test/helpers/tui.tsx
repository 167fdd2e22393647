/**
 * Fixtures for the TUI component tests: a store on a fake clock, captures built by
 * hand, the App rendered with ink-testing-library (unmounted in t.teardown), keys, and
 * a wait for a frame that matches (Ink applies input and effects over a few ticks).
 */
import { render } from 'ink-testing-library';
import type { Test } from 'tap';
import { ExchangeCapture } from '../../cli/origin/capture.js';
import type { OriginEvent } from '../../cli/events.js';
import { App, type AppProps } from '../../cli/ui/tui/app.js';
import { TuiStore, type TunnelSource } from '../../cli/ui/tui/store.js';
import type { HeaderPairs } from '../../shared/protocol/tunnel.js';

/** A clock tests move by hand; starts at 2026-01-02 03:04:05 local time. */
export class FakeClock {
  ms = new Date(2026, 0, 2, 3, 4, 5).getTime();
  now = (): number => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
}

export class FakeSource implements TunnelSource {
  live = 2;
  rtt: number | undefined = 12;
  liveConnections(): number {
    return this.live;
  }
  rttMs(): number | undefined {
    return this.rtt;
  }
}

export function makeStore(options: { maxRows?: number; maxBodyBytes?: number } = {}) {
  const clock = new FakeClock();
  const source = new FakeSource();
  const store = new TuiStore({ ...options, now: clock.now, source });
  return { store, clock, source };
}

export function ready(store: TuiStore, overrides: { local?: boolean; url?: string } = {}): void {
  const url = overrides.url ?? 'https://k3mzq7x2ab.qt.localhost:8443';
  store.onEvent({
    event: 'ready',
    url,
    urls: [url],
    hostname: new URL(url).hostname,
    kind: 'ephemeral',
    relay: 'qt.localhost:8443',
    target: 'localhost:3000',
    local: overrides.local ?? false,
    connections: 2,
  });
}

export interface CaptureSpec {
  method?: string;
  url?: string;
  headers?: HeaderPairs;
  body?: Buffer | string;
  status?: number;
  responseHeaders?: HeaderPairs;
  responseBody?: Buffer | string;
  limit?: number;
}

export function makeCapture(spec: CaptureSpec = {}): ExchangeCapture {
  const capture = new ExchangeCapture(
    {
      method: spec.method ?? 'GET',
      url: spec.url ?? '/',
      httpVersion: '1.1',
      headers: spec.headers ?? [['Host', 'k3mzq7x2ab.qt.localhost']],
      remoteAddress: '127.0.0.1',
      scheme: 'https',
    },
    spec.limit,
  );
  if (spec.body !== undefined) capture.requestBody.add(Buffer.from(spec.body));
  if (spec.status !== undefined) {
    capture.response = { status: spec.status, headers: spec.responseHeaders ?? [] };
  }
  if (spec.responseBody !== undefined) capture.responseBody.add(Buffer.from(spec.responseBody));
  capture.finishedAt = Date.now();
  return capture;
}

/** Feeds one finished exchange (start + end) to the store. */
export function exchange(
  store: TuiStore,
  id: number,
  spec: CaptureSpec & { durationMs?: number; error?: string } = {},
): ExchangeCapture {
  const capture = makeCapture(spec);
  const base = {
    id,
    method: spec.method ?? 'GET',
    path: spec.url ?? '/',
    upgrade: false,
  };
  store.onEvent({ event: 'request-start', ...base, capture });
  const end: OriginEvent = {
    event: 'request',
    ...base,
    status: spec.status ?? 200,
    durationMs: spec.durationMs ?? 5,
    bytesIn: capture.requestBody.totalBytes,
    bytesOut: capture.responseBody.totalBytes,
    capture,
  };
  if (spec.error !== undefined) end.error = spec.error;
  store.onEvent(end);
  return capture;
}

export const KEYS = {
  up: '\u001B[A',
  down: '\u001B[B',
  right: '\u001B[C',
  left: '\u001B[D',
  enter: '\r',
  escape: '\u001B',
  ctrlC: '\u0003',
};

export type Rendered = ReturnType<typeof render> & {
  /** Waits (a bounded number of event-loop turns) for a frame matching `re`. */
  frame(re: RegExp, why?: string): Promise<string>;
  press(...keys: string[]): Promise<void>;
};

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

export function renderApp(t: Test, props: Partial<AppProps> & { store: TuiStore }): Rendered {
  const app = render(
    <App
      onQuit={() => {}}
      color={false}
      frameMs={0}
      tickMs={0}
      width={100}
      height={30}
      {...props}
    />,
  );
  t.teardown(() => {
    app.unmount();
    app.cleanup();
  });
  return Object.assign(app, {
    async frame(re: RegExp, why?: string): Promise<string> {
      for (let i = 0; i < 200; i++) {
        const frame = app.lastFrame() ?? '';
        if (re.test(frame)) return frame;
        await turn();
      }
      throw new Error(
        `no frame matched ${re}${why ? ` (${why})` : ''}; last frame:\n${app.lastFrame()}`,
      );
    },
    async press(...keys: string[]): Promise<void> {
      for (const key of keys) {
        app.stdin.write(key);
        // A lone ESC is told apart from a sequence one turn later.
        await turn();
        await turn();
      }
    },
  });
}
