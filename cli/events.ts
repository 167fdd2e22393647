/**
 * The tunnel client's event stream: what views (TUI, text and JSON lines) consume.
 * Event names follow the CLI contract (`ready`, `request`, `reconnecting`).
 */
export type TunnelEvent = TunnelEventBody & {
  /**
   * The tunnel's name in the config file (`quick-tunnel start`), on every event of that
   * tunnel; absent for a single tunnel from the command line.
   */
  tunnel?: string;
};

type TunnelEventBody =
  | { event: 'connecting'; relay: string; attempt: number }
  | {
      event: 'ready';
      /** The first public URL (https when the relay has it). */
      url: string;
      urls: string[];
      hostname: string;
      kind: 'ephemeral' | 'named';
      relay: string;
      target: string;
      /** True for the embedded local relay: the URL works on this machine only. */
      local: boolean;
      /**
       * Embedded relay: the same tunnel at `http://127.0.0.1:PORT` (also in `urls`), for
       * HTTP clients that cannot resolve `*.localhost`.
       */
      directUrl?: string;
      /** `--lan`: the URL for other devices on this network (phones on the same Wi-Fi). */
      lanUrl?: string;
      connections: number;
      /** The web inspector's URL (http://127.0.0.1:4040), unless --no-inspect. */
      inspector?: string;
    }
  | {
      event: 'request';
      id: number;
      method: string;
      path: string;
      status: number;
      durationMs: number;
      bytesIn: number;
      bytesOut: number;
      upgrade: boolean;
      error?: string;
      /** Delivered from the relay's queue (kept while the tunnel was offline). */
      queued?: { deliveryId: string; queuedAt: string };
    }
  | { event: 'request-start'; id: number; method: string; path: string }
  | { event: 'connection-lost'; error: string; connectionsLeft: number }
  | { event: 'reconnecting'; attempt: number; delayMs: number; error: string }
  | { event: 'reconnected'; url: string; sameHostname: boolean }
  | { event: 'warning'; message: string }
  | { event: 'hint'; code: string; message: string }
  | { event: 'rtt'; ms: number }
  | { event: 'closed' };

export type EventSink = (event: TunnelEvent) => void;
