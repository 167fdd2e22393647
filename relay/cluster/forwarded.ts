/**
 * Cluster mode: a request another relay of the cluster forwarded to this one (over the
 * peer link, one stream per request) goes to a local connection of its tunnel, as one
 * more stream piped both ways. A tunnel that is not (or no longer) held here refuses the
 * stream with REFUSED_STREAM, which the sending relay may retry elsewhere; a reset on
 * either side passes to the other with its code and reason.
 */
import type { Logger } from 'pino';
import { StreamResetError } from '../../shared/errors.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
import { isRequestHead } from '../../shared/protocol/tunnel.js';
import type { Tunnel } from '../tunnels/registry.js';

export interface ForwardedContext {
  /** This relay's node id (named in the refusal). */
  nodeId: string;
  log: Logger;
  /** The tunnel `label` when this relay serves it locally (its lease is valid here). */
  localTunnel: (label: string) => Tunnel | undefined;
  /** Drops the cached route of `label` (it pointed here, wrongly). */
  forgetRoute: (label: string) => void;
}

/** A request another relay forwarded: hand it to a local connection of its tunnel. */
export function serveForwarded(stream: MuxStream, from: string, ctx: ForwardedContext): void {
  const meta = stream.meta as Record<string, unknown>;
  const fwd = meta['qtForward'] as { label?: unknown } | undefined;
  const label = typeof fwd?.label === 'string' ? fwd.label : undefined;
  if (label === undefined || !isRequestHead(meta)) {
    stream.reset(ErrorCode.PROTOCOL_ERROR, 'not a forwarded request');
    return;
  }
  const tunnel = ctx.localTunnel(label);
  const target = tunnel?.pickSession();
  if (tunnel === undefined || target === undefined) {
    ctx.forgetRoute(label);
    stream.reset(ErrorCode.REFUSED_STREAM, `the tunnel is not connected to relay ${ctx.nodeId}`);
    return;
  }
  const head: Record<string, unknown> = { ...meta };
  delete head['qtForward'];
  let out: MuxStream;
  try {
    out = target.openStream(head);
  } catch (err) {
    stream.reset(
      ErrorCode.REFUSED_STREAM,
      err instanceof Error ? err.message : 'the tunnel cannot take another request',
    );
    return;
  }
  tunnel.requests++;
  if (ctx.log.isLevelEnabled('debug')) {
    ctx.log.debug({ event: 'forwarded-in', from, label }, 'serving a forwarded request');
  }
  out.once('reply', (m: Record<string, unknown>) => {
    if (!stream.destroyed) stream.reply(m);
  });
  out.on('error', (err: Error) => {
    if (err instanceof StreamResetError) stream.reset(err.resetCode, err.reason);
    else stream.reset(ErrorCode.INTERNAL_ERROR, err.message);
  });
  stream.on('error', () => out.destroy());
  stream.pipe(out);
  out.pipe(stream);
}
