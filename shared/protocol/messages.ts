/**
 * Control messages carried as JSON in HELLO frames, and the capability set each side
 * advertises. The application payload (`app`) is opaque to the mux: the tunnel layer
 * puts its credential and requests there (see cli/tunnel and relay/control).
 */
export interface HelloMessage<App = unknown> {
  /** Mux protocol version the sender speaks (same as the frame header's version byte). */
  protocol: number;
  /** The sender's receive window per stream, in bytes: the peer's initial send credit. */
  windowBytes: number;
  /** How many concurrent streams the sender accepts from its peer. */
  maxStreams: number;
  /** Largest DATA payload the sender accepts. */
  maxFrameBytes: number;
  /** Application payload (tunnel request / tunnel assignment). */
  app: App;
}

export function isHelloMessage(value: unknown): value is HelloMessage {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    Number.isInteger(v['protocol']) &&
    Number.isInteger(v['windowBytes']) &&
    (v['windowBytes'] as number) > 0 &&
    (v['windowBytes'] as number) <= 0x7fffffff &&
    Number.isInteger(v['maxStreams']) &&
    (v['maxStreams'] as number) >= 0 &&
    Number.isInteger(v['maxFrameBytes']) &&
    (v['maxFrameBytes'] as number) > 0
  );
}

/** Parses a JSON payload, returning undefined rather than throwing. */
export function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}
