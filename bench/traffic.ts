/**
 * Traffic generator and sink for the mux benchmark. The sender writes one reused
 * buffer over and over (no allocation per chunk) and respects backpressure; the
 * receiver only counts bytes, so the figures measure the mux and the socket, not
 * hashing or allocation in the benchmark itself.
 */
import type { Readable, Writable } from 'node:stream';

/** A buffer of `size` bytes with a non-trivial pattern (all-zero data could flatter TLS). */
export function patternBuffer(size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buf[i] = (i * 131 + (i >>> 8)) & 0xff;
  return buf;
}

/** Writes `total` bytes of `chunk` (repeated) into `dst`; does not end it. */
export function sendBytes(dst: Writable, total: number, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    let left = total;
    const onError = (err: Error): void => reject(err);
    dst.once('error', onError);
    const write = (): void => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!dst.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          dst.once('drain', write);
          return;
        }
      }
      dst.off('error', onError);
      resolve();
    };
    write();
  });
}

/** Counts the bytes read from `src` until it ends. */
export function countBytes(src: Readable): Promise<number> {
  return new Promise((resolve, reject) => {
    let count = 0;
    src.on('data', (chunk: Buffer) => {
      count += chunk.length;
    });
    src.once('end', () => resolve(count));
    src.once('error', reject);
  });
}
