/**
 * A TCP proxy of the test's own, between the CLI and the relay, that can stall (stop
 * forwarding in both directions while keeping the sockets open, like a dead network
 * path) or cut individual connections. Loopback only.
 */
import { once } from 'node:events';
import net from 'node:net';
import type { Test } from 'tap';

export interface ProxiedConnection {
  client: net.Socket;
  upstream: net.Socket;
  stalled: boolean;
}

export class FaultProxy {
  readonly connections: ProxiedConnection[] = [];
  private readonly server: net.Server;
  private newConnectionWaiters: (() => void)[] = [];
  port = 0;

  private constructor(targetPort: number) {
    this.server = net.createServer((client) => {
      const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
      const conn: ProxiedConnection = { client, upstream, stalled: false };
      this.connections.push(conn);
      // Forward unless stalled; a stalled path drops bytes (blackhole) and never closes.
      client.on('data', (d: Buffer) => {
        if (!conn.stalled && !upstream.write(d)) {
          client.pause();
          upstream.once('drain', () => client.resume());
        }
      });
      upstream.on('data', (d: Buffer) => {
        if (!conn.stalled && !client.write(d)) {
          upstream.pause();
          client.once('drain', () => upstream.resume());
        }
      });
      const shut = (): void => {
        if (conn.stalled) return;
        client.destroy();
        upstream.destroy();
      };
      client.on('close', shut);
      upstream.on('close', shut);
      client.on('error', () => {});
      upstream.on('error', () => {});
      for (const w of this.newConnectionWaiters.splice(0)) w();
    });
  }

  static async start(t: Test, targetPort: number): Promise<FaultProxy> {
    const proxy = new FaultProxy(targetPort);
    proxy.server.listen(0, '127.0.0.1');
    await once(proxy.server, 'listening');
    proxy.port = (proxy.server.address() as net.AddressInfo).port;
    t.teardown(() => proxy.close());
    return proxy;
  }

  /** Live (not cut, not stalled) connections. */
  get live(): ProxiedConnection[] {
    return this.connections.filter((c) => !c.stalled && !c.client.destroyed);
  }

  /** Resolves once at least `n` connections have been made in total. */
  async waitForConnections(n: number): Promise<void> {
    while (this.connections.length < n)
      await new Promise<void>((r) => this.newConnectionWaiters.push(r));
  }

  /** Stops forwarding on every current connection; new ones still flow. */
  stallAll(): void {
    for (const c of this.connections) c.stalled = true;
  }

  /** Abruptly closes one connection (both sides), as a dropped NAT mapping would. */
  cut(conn: ProxiedConnection): void {
    conn.client.destroy();
    conn.upstream.destroy();
  }

  close(): Promise<void> {
    for (const c of this.connections) {
      c.client.destroy();
      c.upstream.destroy();
    }
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
