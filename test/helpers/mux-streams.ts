/**
 * Small helpers for driving mux streams in tests: echo servers, hashing readers and
 * writers that respect backpressure.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import type { MuxSession } from '../../shared/mux/session.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import type { Prng } from './prng.js';

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Echoes every stream the session accepts; errors land in `errors`. */
export function echoStreams(session: MuxSession, errors: Error[] = []): Error[] {
  session.on('stream', (stream) => {
    stream.on('error', (err) => errors.push(err));
    stream.reply({ echo: true });
    stream.pipe(stream);
  });
  return errors;
}

/** Reads a stream to its end, hashing as it goes (nothing is kept in memory). */
export function hashReader(stream: MuxStream): () => { sha256: string; bytes: number } {
  const hash = createHash('sha256');
  let bytes = 0;
  stream.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  return () => ({ sha256: hash.digest('hex'), bytes });
}

/** Reads a whole stream into one buffer. */
export async function readAll(stream: MuxStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(stream, 'end');
  return Buffer.concat(chunks);
}

/**
 * Writes `payload` then ends: in one `end(payload)`, or (with `rng`) in random chunks,
 * empty ones included, waiting for 'drain' whenever `write` says so.
 */
export async function writeAll(stream: MuxStream, payload: Buffer, rng?: Prng): Promise<void> {
  if (rng === undefined || rng.chance(0.5)) {
    stream.end(payload);
    return;
  }
  let offset = 0;
  while (offset < payload.length) {
    const n = Math.min(payload.length - offset, rng.chance(0.1) ? 0 : rng.int(1, 200_000));
    const more = stream.write(payload.subarray(offset, offset + n));
    offset += n;
    if (!more) await once(stream, 'drain');
  }
  stream.end();
}

/** Opens a stream, sends `payload`, and returns what came back (hashed). */
export async function roundTrip(
  session: MuxSession,
  payload: Buffer,
  rng?: Prng,
): Promise<{ sha256: string; bytes: number; stream: MuxStream }> {
  const stream = session.openStream({ bytes: payload.length });
  const result = hashReader(stream);
  await Promise.all([writeAll(stream, payload, rng), finished(stream)]);
  return { ...result(), stream };
}

/** Resolves when the stream closes, with the error it was destroyed with (if any). */
export function closeError(stream: MuxStream): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let error: Error | undefined;
    stream.on('error', (err) => {
      error = err;
    });
    stream.on('close', () => resolve(error));
  });
}
