/**
 * The e2e benchmark's Node floor: the least a Node process can do to forward the same
 * traffic, measured in the same run as the tunnel and ssh -R, to tell what Node itself
 * costs from what quick-tunnel adds. Three forwarders on loopback:
 * - `pipe`: one process, a TCP byte pipe (`net` server, each connection piped to its own
 *   origin connection), which is what ssh -R does per connection, without the encryption;
 * - `proxy`: one process, the textbook HTTP reverse proxy (`http.createServer` +
 *   `http.request` on a keep-alive Agent, bodies piped both ways), which parses every
 *   request and response as a relay that routes by Host must;
 * - `tls-pipe`: two processes with TLS between them, the shape of ssh -R and of the
 *   tunnel: a front (the relay's or sshd's place) pipes each visitor connection into its
 *   own TLS connection (Node's defaults: TLS 1.3, the tunnel's cipher) to a back (the
 *   CLI's or ssh's place), which pipes it to the origin. No framing, no HTTP parsing, no
 *   multiplexing: the least a Node tunnel pays per byte on each side.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';

export type FloorKind = 'pipe' | 'proxy' | 'tls-pipe';

export const FLOOR_KINDS: readonly FloorKind[] = ['pipe', 'proxy', 'tls-pipe'];

/**
 * `node -e FLOOR_SOURCE <kind> <targetPort> [keyFile certFile]`: prints its port, then
 * forwards to the target. Kinds: `pipe`, `proxy`, and the two halves of `tls-pipe`:
 * `tls-back` (a TLS server piping to the origin; key and certificate files) and
 * `tls-front` (a TCP server piping each connection over TLS to a tls-back).
 */
export const FLOOR_SOURCE = `
const net = require('node:net');
const http = require('node:http');
const tls = require('node:tls');
const fs = require('node:fs');
const [kind, targetPort, keyFile, certFile] = process.argv.slice(1);
const target = { host: '127.0.0.1', port: Number(targetPort) };
const pipeBoth = (a, b) => {
  a.pipe(b).on('error', () => a.destroy());
  b.pipe(a).on('error', () => b.destroy());
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
};
let server;
if (kind === 'pipe') {
  server = net.createServer({ noDelay: true }, (visitor) => {
    pipeBoth(visitor, net.connect({ ...target, noDelay: true }));
  });
} else if (kind === 'tls-front') {
  // The back's certificate is the relay's self-signed one (for another name): the floor
  // measures the bytes, not the trust.
  server = net.createServer({ noDelay: true }, (visitor) => {
    pipeBoth(visitor, tls.connect({ ...target, noDelay: true, rejectUnauthorized: false }));
  });
} else if (kind === 'tls-back') {
  const options = { key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile), noDelay: true };
  server = tls.createServer(options, (front) => {
    pipeBoth(front, net.connect({ ...target, noDelay: true }));
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
  /** The process visitors connect to (the relay's or sshd's place). */
  pid: number;
  /** tls-pipe's second process (the CLI's or ssh's place). */
  backPid?: number;
  close(): Promise<void>;
}

/** A TLS key and certificate (PEM files) for tls-pipe's back. */
export interface FloorTls {
  keyFile: string;
  certFile: string;
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
  tlsFiles?: FloorTls,
): Promise<NodeFloor> {
  const children: ChildProcess[] = [];
  const start = async (args: string[]): Promise<number> => {
    const child = spawn(['-e', FLOOR_SOURCE, ...args], `node ${args[0]}`);
    children.push(child);
    return Number(await firstLine(child, /^\d+$/));
  };
  const close = async (): Promise<void> => {
    for (const child of children) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  };
  try {
    if (kind !== 'tls-pipe') {
      const port = await start([kind, String(originPort)]);
      return { kind, port, pid: children[0]!.pid!, close };
    }
    if (tlsFiles === undefined) throw new Error('tls-pipe needs a key and certificate');
    const backPort = await start([
      'tls-back',
      String(originPort),
      tlsFiles.keyFile,
      tlsFiles.certFile,
    ]);
    const port = await start(['tls-front', String(backPort)]);
    return { kind, port, pid: children[1]!.pid!, backPid: children[0]!.pid!, close };
  } catch (err) {
    await close();
    throw err;
  }
}
