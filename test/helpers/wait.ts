/**
 * Waiting in tests, bounded: on a promise (`within`, `withinOrThrow`), on a condition
 * (`eventually`), or, where a real pause is the point (pacing a client, a slow sender),
 * `delay`. To prove that nothing else happened, wait on an event or a barrier instead
 * of a delay (see RecordingOrigin.barrier in hostile.ts).
 */

export const delay = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));

/**
 * `promise`'s value, or undefined once `ms` pass first. The timer is cleared either way,
 * so a race that is won early keeps nothing alive.
 */
export function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** `promise`'s value; rejects with "timed out after `ms` ms: `what`" once `ms` pass first. */
export async function withinOrThrow<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const result = await within(
    promise.then((value) => ({ value })),
    ms,
  );
  if (result === undefined) throw new Error(`timed out after ${ms} ms: ${what}`);
  return result.value;
}

/** Waits until `cond()` holds, polling every 20 ms; false if `limitMs` passes first. */
export async function eventually(cond: () => boolean, limitMs = 5_000): Promise<boolean> {
  const until = performance.now() + limitMs;
  while (performance.now() < until) {
    if (cond()) return true;
    await delay(20);
  }
  return cond();
}
