/**
 * Messages between the mux benchmark's orchestrator (`bench/mux.ts`) and its two end
 * processes (`bench/mux-peer.ts`, one playing the relay, one the tunnel client), over
 * the Node IPC channel.
 */
import type { PhaseStats } from './process-stats.js';

export type BenchTransport = 'tls' | 'plain';

/** The MuxOptions both ends use (plain data: it crosses the IPC channel). */
export interface PeerMuxOptions {
  windowBytes?: number;
  maxFrameBytes?: number;
  sendHighWaterBytes?: number;
}

/** What the client puts in each stream's OPEN metadata. */
export interface StreamPlan {
  /** Bytes the client sends; the relay checks it received exactly this many. */
  up: number;
  /** Bytes the relay sends back. */
  down: number;
}

export type ParentMessage =
  /** Relay role: listen for the WebSocket (mux) and for the raw reference socket. */
  | {
      type: 'listen';
      transport: BenchTransport;
      cert: string;
      key: string;
      mux: PeerMuxOptions;
      chunkBytes: number;
    }
  /** Client role: connect the mux session (and the raw socket) to the relay. */
  | {
      type: 'connect';
      transport: BenchTransport;
      port: number;
      rawPort: number;
      /** CA certificate for TLS. */
      ca: string;
      servername: string;
      mux: PeerMuxOptions;
      mask: 'auto' | 'zero' | 'random';
      chunkBytes: number;
    }
  /** Client role: move data, reply with the wall time. */
  | { type: 'run'; work: 'raw'; bytes: number }
  | { type: 'run'; work: 'streams'; plans: StreamPlan[] }
  | { type: 'make-cert'; domain: string }
  | { type: 'phase-start' }
  | { type: 'phase-end' };

export type PeerMessage =
  | { type: 'cert'; cert: string; key: string }
  | {
      type: 'listening';
      /** The WebSocket (mux) listener. */
      port: number;
      /** A bare TLS/TCP listener for the `raw` reference phase (no WebSocket, no mux). */
      rawPort: number;
      bufferutil: boolean;
    }
  | {
      type: 'connected';
      url: string;
      cipher: string | undefined;
      mask: 'zero' | 'random';
      bufferutil: boolean;
    }
  | { type: 'ran'; wallMs: number }
  | { type: 'phase-started' }
  | { type: 'phase-stats'; stats: PhaseStats }
  | { type: 'error'; message: string };
