/** The scale driver's side of its IPC channel to bench/scale-support.ts's Driver. */

export function send(message: object): void {
  process.send?.(message);
}

export function emit(event: string, data: unknown): void {
  send({ event, data });
}

export function log(line: string): void {
  send({ log: line });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
