/**
 * The inspector's replay for a tunnel: straight to the local origin over the proxy that
 * the (edited) path routes to, as the TUI's replay.
 */
import type { ExchangeCapture } from '../origin/capture.js';
import { replayRequest, type ReplayEdits, type ReplayResult } from '../origin/replay.js';
import type { TunnelRunner } from '../tunnel/runner.js';

export function replayThrough(
  runner: TunnelRunner,
): (capture: ExchangeCapture, edits: ReplayEdits | undefined) => Promise<ReplayResult> {
  return (capture, edits) =>
    replayRequest(
      runner.origin.proxyFor(edits?.path ?? capture.request.url),
      capture,
      edits === undefined ? {} : { edits },
    );
}
