/**
 * Issue 16 item 2: request smuggling through an upgrade's Content-Length. An upgrade
 * request that announces a body (which would only follow a 101) must not reach the
 * origin with a length and no bytes; an origin connection used for an upgrade is never
 * reused. The origin here behaves like nginx or Go: it answers an upgrade it does not
 * accept with an ordinary keep-alive response and discards the announced body from the
 * next bytes on that connection, so a length without its bytes lets the start of the
 * next request be eaten and the rest parsed as a request the relay never checked.
 */
import { once } from 'node:events';
import net from 'node:net';
import t from 'tap';
import type { Test } from 'tap';
import { connectTunnel, startTestRelay, type TestRelay } from '../helpers/relay-env.js';
import { rawRequest } from '../helpers/hostile.js';

interface DiscardingOrigin {
  port: number;
  /** Request lines parsed, in order. */
  requestLines: string[];
  /** Raw bytes received per connection. */
  raw: string[];
}

/** A raw HTTP/1.1 origin that answers 200 to everything and discards unread bodies. */
async function startDiscardingOrigin(t: Test): Promise<DiscardingOrigin> {
  const origin: DiscardingOrigin = { port: 0, requestLines: [], raw: [] };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const i = origin.raw.push('') - 1;
    let buffer = '';
    let skip = 0;
    socket.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      origin.raw[i] += text;
      buffer += text;
      for (;;) {
        if (skip > 0) {
          const n = Math.min(skip, buffer.length);
          buffer = buffer.slice(n);
          skip -= n;
          if (skip > 0) return;
        }
        const end = buffer.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buffer.slice(0, end);
        buffer = buffer.slice(end + 4);
        const [line = '', ...headers] = head.split('\r\n');
        origin.requestLines.push(line);
        for (const h of headers) {
          const m = /^content-length:\s*(\d+)\s*$/i.exec(h);
          if (m !== null) skip = Number(m[1]);
        }
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nno upgrade');
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  origin.port = (server.address() as net.AddressInfo).port;
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return origin;
}

/** An upgrade request through the relay's plain HTTP listener. */
function upgrade(env: TestRelay, hostname: string, extra: string) {
  return rawRequest({
    port: env.httpPort,
    send:
      `GET /ws HTTP/1.1\r\nHost: ${hostname}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      `X-Smuggle: GET /smuggled HTTP/1.1\r\n${extra}\r\n`,
    timeoutMs: 3_000,
  });
}

t.test('an upgrade with a Content-Length cannot smuggle a request', async (t) => {
  const env = await startTestRelay(t);
  const origin = await startDiscardingOrigin(t);
  const tunnel = await connectTunnel(t, env, String(origin.port));

  // Calibration: where "GET /smuggled" sits in the head the tunnel client writes.
  const first = await upgrade(env, tunnel.hostname, '');
  t.equal(first.status, 200, 'the origin refuses the upgrade with an ordinary answer');
  const layout = origin.raw.join('');
  const offset = layout.indexOf('GET /smuggled');
  t.ok(offset > 0, 'the calibration request reached the origin');

  // The attack: an upgrade announcing exactly that many body bytes, then the same
  // upgrade again from another connection.
  const attack = await upgrade(env, tunnel.hostname, `Content-Length: ${offset}\r\n`);
  t.equal(attack.status, 400, 'an upgrade that announces a body is refused');
  t.match(attack.text, /cannot carry a body/, 'with a reason');
  const again = await upgrade(env, tunnel.hostname, '');
  t.equal(again.status, 200, 'the next upgrade gets its answer');

  t.notOk(
    origin.requestLines.some((l) => l.startsWith('GET /smuggled')),
    `the smuggled request never reached the origin (saw ${JSON.stringify(origin.requestLines)})`,
  );
  t.notOk(
    origin.raw.some((r) => /content-length/i.test(r)),
    'no upgrade reached the origin with a Content-Length',
  );
  t.equal(
    origin.raw.length,
    origin.requestLines.length,
    'every upgrade used an origin connection of its own (none was pooled after a non-101)',
  );
});
