/**
 * The e2e benchmark's Node floor: the least a Node process can do to forward the same
 * traffic, measured in the same run as the tunnel and ssh -R, to tell what Node itself
 * costs from what quick-tunnel adds. Two forwarders on loopback, each one process in
 * front of the origin, with no TLS and no tunnel:
 * - `pipe`: a TCP byte pipe (`net` server, each connection piped to its own origin
 *   connection), which is what ssh -R does per connection, without the encryption;
 * - `proxy`: the textbook HTTP reverse proxy (`http.createServer` + `http.request` on a
 *   keep-alive Agent, bodies piped both ways), which parses every request and response as
 *   a relay that routes by Host must.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';

export type FloorKind = 'pipe' | 'proxy';

export const FLOOR_KINDS: readonly FloorKind[] = ['pipe', 'proxy'];

/** `node -e FLOOR_SOURCE <kind> <originPort>`: prints its port, then forwards. */
export const FLOOR_SOURCE = `
const net = require('node:net');
const http = require('node:http');
const [kind, originPort] = process.argv.slice(1);
const target = { host: '127.0.0.1', port: Number(originPort) };
let server;
if (kind === 'pipe') {
  server = net.createServer({ noDelay: true }, (visitor) => {
    const origin = net.connect({ ...target, noDelay: true });
    visitor.pipe(origin).on('error', () => visitor.destroy());
    origin.pipe(visitor).on('error', () => origin.destroy());
    visitor.on('error', () => origin.destroy());
    origin.on('error', () => visitor.destroy());
  });
} else {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  server = http.createServer((req, res) => {
    const up = http.request({ ...target, method: req.method, path: req.url, headers: req.headers, agent }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    up.on('error', () => { res.statusCode = 502; res.end(); });
    req.pipe(up);
  });
  server.keepAliveTimeout = 65000;
}
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

export interface NodeFloor {
  kind: FloorKind;
  port: number;
  pid: number;
  close(): Promise<void>;
}

/**
 * Starts one forwarder in front of `originPort`. `spawn` and `firstLine` are the e2e
 * benchmark's own (one child-process convention for the whole run).
 */
export async function startNodeFloor(
  kind: FloorKind,
  originPort: number,
  spawn: (args: string[], label: string) => ChildProcess,
  firstLine: (child: ChildProcess, re: RegExp) => Promise<string>,
): Promise<NodeFloor> {
  const child = spawn(['-e', FLOOR_SOURCE, kind, String(originPort)], `node ${kind}`);
  try {
    const port = Number(await firstLine(child, /^\d+$/));
    return {
      kind,
      port,
      pid: child.pid!,
      async close() {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGKILL');
        await once(child, 'exit');
      },
    };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}
