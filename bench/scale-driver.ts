/**
 * Child process of the scale benchmarks (bench/scale.ts), driven over IPC. One process
 * plays one part at a time:
 *
 * - simulated tunnel clients: real WebSockets to the relay's tunnel endpoint, the real
 *   HELLO handshake (`handshake` from cli/tunnel/client.ts, the same MuxSession and
 *   keepalive as the CLI), and a tiny in-process responder instead of a local origin;
 * - visitors: raw keep-alive HTTP/1.1 connections, visitor WebSockets, and the soak's
 *   mixed traffic;
 * - a small origin (HTTP + WebSocket echo) for the cases that run the real CLI.
 *
 * Every loop here is bounded in count and in time. Only loopback addresses are used.
 */
import { churn } from './scale/driver/churn.js';
import { httpLoad } from './scale/driver/http-load.js';
import { send } from './scale/driver/ipc.js';
import { originServer, startOrigin } from './scale/driver/origin.js';
import { soak } from './scale/driver/soak.js';
import { openTunnels, closeTunnels, tunnelStatus } from './scale/driver/tunnels.js';
import { wsFanout } from './scale/driver/ws-fanout.js';

// ---- dispatch ------------------------------------------------------------------------

const commands: Record<string, (args: never) => Promise<unknown>> = {
  ping: async () => ({ pid: process.pid }),
  'open-tunnels': openTunnels,
  'close-tunnels': closeTunnels,
  'tunnel-status': async () => tunnelStatus(),
  'http-load': httpLoad,
  churn,
  origin: startOrigin,
  'ws-fanout': wsFanout,
  soak,
};

process.on('message', (raw) => {
  const { id, cmd, args } = raw as { id: number; cmd: string; args: never };
  const fn = commands[cmd];
  if (fn === undefined) {
    send({ id, err: `unknown command ${cmd}` });
    return;
  }
  fn(args).then(
    (ok) => send({ id, ok }),
    (err: unknown) =>
      send({ id, err: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});

// The parent going away ends us too (no orphaned sockets).
process.on('disconnect', () => {
  originServer?.close();
  process.exit(0);
});
