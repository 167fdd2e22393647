/**
 * A delaying TCP forwarder on loopback: emulates a network round trip between a browser
 * and a server on the same machine. Every chunk waits `rttMs / 2` in each direction, so
 * a request and its answer take one extra round trip; a connection's first bytes also
 * wait one round trip more, as the TCP handshake would make them. Order within a
 * direction is kept (equal delays fire in order). No bandwidth limit.
 */
import net from 'node:net';

export interface DelayProxy {
  port: number;
  close(): Promise<void>;
}

export async function startDelayProxy(targetPort: number, rttMs: number): Promise<DelayProxy> {
  const oneWayMs = rttMs / 2;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const acceptedAt = performance.now();
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort, noDelay: true });
    client.setNoDelay(true);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    // Each direction: a chunk goes out oneWayMs after it arrived (and, client → server,
    // not before the emulated handshake completed).
    // One FIFO queue per direction, drained by one timer: separate timers per chunk
    // could fire out of order.
    const pipe = (from: net.Socket, to: net.Socket, handshake: boolean): void => {
      const queue: { at: number; chunk: Buffer | null }[] = [];
      let timer: NodeJS.Timeout | undefined;
      const drain = (): void => {
        timer = undefined;
        const now = performance.now();
        while (queue.length > 0 && queue[0]!.at <= now + 0.5) {
          const { chunk } = queue.shift()!;
          if (chunk === null) to.end();
          else to.write(chunk);
        }
        if (queue.length > 0) timer = setTimeout(drain, queue[0]!.at - now);
      };
      const push = (chunk: Buffer | null): void => {
        const floor = handshake ? acceptedAt + rttMs + oneWayMs : 0;
        queue.push({ at: Math.max(performance.now() + oneWayMs, floor), chunk });
        timer ??= setTimeout(drain, queue[0]!.at - performance.now());
      };
      from.on('data', (chunk: Buffer) => push(chunk));
      from.on('end', () => push(null));
    };
    pipe(client, upstream, true);
    pipe(upstream, client, false);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
