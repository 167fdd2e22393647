/**
 * A malicious tunnel client (test plan M): hand-made frames over a real TLS WebSocket to
 * the relay's tunnel endpoint. Garbage before HELLO, text messages, frames over the
 * size limit (at the WebSocket and at the mux layer, including a WebSocket header that
 * declares 1 GiB), floods of OPEN and HELLO, window overflow and overrun, frames for
 * streams never opened, hostile response heads, and a PING flood from a client that
 * never reads. Each drops only that client: a control tunnel keeps answering every
 * 100 ms, the relay's connection count returns to its baseline, and its heap stays
 * bounded.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import type { Test } from 'tap';
import {
  ErrorCode,
  FRAME_HEADER_SIZE,
  FrameType,
  PROTOCOL_VERSION,
  encodeCodeMessage,
  encodeFrame,
  encodeU32,
} from '../../shared/protocol/frame.js';
import { TUNNEL_ENDPOINT_PATH } from '../../shared/protocol/tunnel.js';
import { TEST_DOMAIN, startTestRelay, type TestRelay } from '../helpers/relay-env.js';
import {
  MiB,
  get,
  helloPayload,
  parseResponses,
  rawRequest,
  rawTunnelClient,
  settledHeap,
  startControl,
  type RawTunnelClient,
} from '../helpers/hostile.js';
import { eventually, within } from '../helpers/wait.js';

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const REPLY_OK = json({ status: 200, headers: [['content-type', 'text/plain']] });

/** A raw client that completed its HELLO; returns it with its public hostname. */
async function registered(
  t: Test,
  env: TestRelay,
): Promise<{ raw: RawTunnelClient; hostname: string }> {
  const raw = await rawTunnelClient(t, env);
  const answer = await raw.hello();
  if (answer.type !== FrameType.HELLO) throw new Error('the relay refused the HELLO');
  const hello = JSON.parse(answer.payload.toString()) as { app: { hostname: string } };
  return { raw, hostname: hello.app.hostname };
}

/**
 * Upgrades a raw TLS socket to a WebSocket on the tunnel endpoint by hand, so the test
 * can write WebSocket frame headers the `ws` client would never produce.
 */
async function rawWebSocket(env: TestRelay): Promise<tls.TLSSocket> {
  const socket = tls.connect({
    host: '127.0.0.1',
    port: env.httpsPort,
    servername: TEST_DOMAIN,
    ca: env.ca,
  });
  await once(socket, 'secureConnect');
  const key = randomBytes(16).toString('base64');
  socket.write(
    `GET ${TUNNEL_ENDPOINT_PATH} HTTP/1.1\r\nHost: ${TEST_DOMAIN}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`,
  );
  const [head] = (await once(socket, 'data')) as [Buffer];
  const accept = createHash('sha1')
    .update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
    .digest('base64');
  if (!head.toString().startsWith('HTTP/1.1 101') || !head.toString().includes(accept)) {
    throw new Error(`upgrade refused: ${head.toString().split('\r\n')[0]}`);
  }
  return socket;
}

/** A masked binary WebSocket frame header declaring `length` payload bytes. */
function wsHeader(length: number): Buffer {
  const buf = Buffer.alloc(14);
  buf[0] = 0x82; // FIN + binary
  buf[1] = 0x80 | 127; // masked, 64-bit length
  buf.writeBigUInt64BE(BigInt(length), 2);
  // mask key: 4 zero bytes
  return buf;
}

t.test('a malicious tunnel client is dropped alone', async (t) => {
  const env = await startTestRelay(t, {
    // Low enough that a non-reading client trips it quickly; the default is 32 MiB.
    mux: { maxQueuedBytes: 256 * 1024 },
    creationsPerMinute: 0,
  });
  const control = await startControl(t, env);
  const baseline = env.relay.connections;
  const tunnelsBefore = env.relay.registry.size;
  const heapBefore = await settledHeap();

  /** End of a case: that client is gone, nothing stayed behind, others unaffected. */
  const after = async (t: Test, what: string) => {
    t.ok(
      await eventually(() => env.relay.connections === baseline),
      `${what}: relay connections back to ${baseline} (now ${env.relay.connections})`,
    );
    t.ok(
      await eventually(() => env.relay.registry.size === tunnelsBefore),
      `${what}: no tunnel left registered`,
    );
    await control.check(t, what);
  };

  const protocolCases: {
    name: string;
    /** Complete the HELLO first. */
    hello?: boolean;
    send: (raw: RawTunnelClient) => void;
    goAway?: number;
    closeCode?: number;
  }[] = [
    {
      name: 'garbage bytes before HELLO',
      send: (raw) => raw.send(Buffer.from('GET / HTTP/1.1\r\nHost: qt.localhost\r\n\r\n')),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'three bytes before HELLO',
      send: (raw) => raw.send(Buffer.from([1, 0, 0])),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'a text message',
      send: (raw) => raw.ws.send('{"protocol":1}'),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'PING before HELLO',
      send: (raw) => raw.sendFrame(FrameType.PING, 0, Buffer.alloc(8)),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'OPEN before HELLO',
      send: (raw) => raw.sendFrame(FrameType.OPEN, 1, json({})),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'HELLO that is not JSON',
      send: (raw) => raw.sendFrame(FrameType.HELLO, 0, Buffer.from('{"protocol":')),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'HELLO on stream 7',
      send: (raw) => raw.sendFrame(FrameType.HELLO, 7, helloPayload()),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'HELLO of another protocol version',
      send: (raw) => raw.sendFrame(FrameType.HELLO, 0, helloPayload(), PROTOCOL_VERSION + 1),
      goAway: ErrorCode.VERSION_MISMATCH,
    },
    {
      name: 'HELLO with a hostile app payload',
      send: (raw) =>
        raw.sendFrame(
          FrameType.HELLO,
          0,
          helloPayload({
            clientVersion: 'x'.repeat(10_000),
            token: { toString: 1 },
            name: '../../etc/passwd',
            credential: 'c',
            access: { allowIps: ['999.1.1.1/99'] },
            connection: -1,
            __proto__: { polluted: true },
          }),
        ),
      goAway: ErrorCode.REJECTED, // its access rules are invalid
    },
    {
      name: 'HELLO with an invalid access policy',
      send: (raw) =>
        raw.sendFrame(FrameType.HELLO, 0, helloPayload({ access: { allowIps: ['nope/7'] } })),
      goAway: ErrorCode.REJECTED,
    },
    {
      name: 'mux frame whose length field says 1 GiB',
      send: (raw) => {
        const f = encodeFrame(FrameType.HELLO, 0, helloPayload());
        f.writeUInt32BE(1024 * 1024 * 1024, 8);
        raw.send(f);
      },
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'frame over the WebSocket maxPayload (64 KiB + header)',
      send: (raw) => raw.send(Buffer.alloc(FRAME_HEADER_SIZE + 64 * 1024 + 1)),
      closeCode: 1009,
    },
    {
      name: 'a flood of HELLOs',
      send: (raw) => {
        for (let i = 0; i < 1000; i++) raw.sendFrame(FrameType.HELLO, 0, helloPayload());
      },
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'a second HELLO after the handshake',
      hello: true,
      send: (raw) => raw.sendFrame(FrameType.HELLO, 0, helloPayload()),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'DATA for a stream never opened',
      hello: true,
      send: (raw) => raw.sendFrame(FrameType.DATA, 99, Buffer.from('x')),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'DATA for a relay-side stream id never opened',
      hello: true,
      send: (raw) => raw.sendFrame(FrameType.DATA, 1000, Buffer.from('x')),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'WINDOW_UPDATE for a stream never opened',
      hello: true,
      send: (raw) => raw.sendFrame(FrameType.WINDOW_UPDATE, 2, encodeU32(1)),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'REPLY for a stream never opened',
      hello: true,
      send: (raw) => raw.sendFrame(FrameType.REPLY, 2, REPLY_OK),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'OPEN with the relay parity',
      hello: true,
      send: (raw) => raw.sendFrame(FrameType.OPEN, 2, json({})),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'OPEN ids going backwards',
      hello: true,
      send: (raw) => {
        raw.sendFrame(FrameType.OPEN, 9, json({}));
        raw.sendFrame(FrameType.OPEN, 7, json({}));
      },
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'FIN on stream 0',
      hello: true,
      send: (raw) => raw.sendFrame(FrameType.FIN, 0),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'malformed PING (4 bytes)',
      hello: true,
      send: (raw) => raw.sendFrame(FrameType.PING, 0, Buffer.alloc(4)),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
    {
      name: 'unknown frame type 0x7f',
      hello: true,
      send: (raw) => raw.send(Buffer.from([PROTOCOL_VERSION, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
      goAway: ErrorCode.PROTOCOL_ERROR,
    },
  ];

  for (const c of protocolCases) {
    await t.test(c.name, async (t) => {
      const raw = await rawTunnelClient(t, env);
      if (c.hello === true) {
        const answer = await raw.hello();
        t.equal(answer.type, FrameType.HELLO, 'handshake done');
      }
      c.send(raw);
      const closed = await within(raw.closed, 3_000);
      t.ok(closed, 'the relay closed the connection within 3 s');
      if (c.goAway !== undefined) t.equal(raw.goAway()?.code, c.goAway, 'GOAWAY code');
      if (c.closeCode !== undefined) t.equal(closed?.code, c.closeCode, 'WebSocket close code');
      await after(t, c.name);
    });
  }

  await t.test('a WebSocket frame header that declares 1 GiB', async (t) => {
    const socket = await rawWebSocket(env);
    let received = '';
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    socket.on('error', () => {});
    socket.write(wsHeader(1024 * 1024 * 1024));
    socket.write(Buffer.alloc(1024)); // a little of the promised payload
    const closed = (await within(once(socket, 'close'), 3_000)) !== undefined;
    socket.destroy();
    t.ok(closed, 'closed before the payload arrived');
    t.ok(received.includes('\x03\xf1'), 'close frame 1009 (message too big)');
    await after(t, '1 GiB WebSocket frame');
  });

  await t.test('never sends HELLO: closed by the handshake timeout', async (t) => {
    const short = await startTestRelay(t, { mux: { handshakeTimeoutMs: 500 } });
    const raw = await rawTunnelClient(t, short);
    const started = performance.now();
    await raw.closed;
    const ms = performance.now() - started;
    t.ok(ms >= 400 && ms < 2_000, `closed after ${Math.round(ms)} ms (timeout 500 ms)`);
    t.ok(await eventually(() => short.relay.connections === 0), 'nothing left');
  });

  await t.test('a flood of OPENs from the client is refused without state', async (t) => {
    const { raw, hostname } = await registered(t, env);
    // In bursts of 1,000, reading the answers between them: this client keeps up. (One
    // that sends faster than it reads is the next case.)
    let last = await raw.waitFor(() => true);
    for (let first = 1; first < 20_000; first += 2_000) {
      for (let id = first; id < first + 2_000; id += 2) {
        raw.sendFrame(FrameType.OPEN, id, json({ x: id }));
      }
      const lastId = first + 1_998;
      last = await raw.waitFor((f) => f.type === FrameType.RESET && f.streamId === lastId);
    }
    t.equal(last.payload.readUInt32BE(0), ErrorCode.REFUSED_STREAM, 'each OPEN: REFUSED_STREAM');
    t.equal(
      raw.frames.filter((f) => f.type === FrameType.RESET).length,
      10_000,
      'all 10,000 refused',
    );
    const label = hostname.split('.')[0]!;
    const sessions = env.relay.registry.lookup(label)?.sessions ?? [];
    t.equal(sessions.length, 1, 'its session is still up (it reads its answers)');
    t.equal(sessions[0]?.streamCount, 0, 'the relay holds no stream for any of them');
    raw.close();
    await after(t, 'OPEN flood (reading)');
  });

  await t.test('a flood of OPENs from a client that never reads', async (t) => {
    const { raw } = await registered(t, env);
    raw.ws.pause(); // stop reading: the relay's RESET answers pile up
    let sent = 0;
    for (let id = 1; sent < 3_000_000 && !raw.isClosed(); id += 2) {
      raw.sendFrame(FrameType.OPEN, id, json({}));
      sent++;
      if (sent % 5_000 === 0) await new Promise((r) => setImmediate(r));
    }
    await within(raw.closed, 10_000);
    t.ok(raw.isClosed(), `dropped after ${sent} OPENs`);
    await after(t, 'OPEN flood (not reading)');
  });

  await t.test('a PING flood from a client that never reads', async (t) => {
    const { raw } = await registered(t, env);
    raw.ws.pause();
    let sent = 0;
    const ping = encodeFrame(FrameType.PING, 0, Buffer.alloc(8));
    while (sent < 3_000_000 && !raw.isClosed()) {
      raw.send(ping);
      sent++;
      if (sent % 5_000 === 0) await new Promise((r) => setImmediate(r));
    }
    await within(raw.closed, 10_000);
    t.ok(raw.isClosed(), `dropped after ${sent} PINGs`);
    await after(t, 'PING flood');
  });

  await t.test('window abuse on a relay-opened stream', async (t) => {
    for (const abuse of ['overflow', 'zero'] as const) {
      const { raw, hostname } = await registered(t, env);
      const visitor = get(env, hostname, { timeoutMs: 5_000 });
      const open = await raw.waitFor((f) => f.type === FrameType.OPEN);
      if (abuse === 'overflow') {
        raw.sendFrame(FrameType.WINDOW_UPDATE, open.streamId, encodeU32(0x7fffffff));
      } else {
        raw.sendFrame(FrameType.WINDOW_UPDATE, open.streamId, encodeU32(0));
      }
      await within(raw.closed, 3_000);
      t.ok(raw.isClosed(), `${abuse}: the client is dropped`);
      t.equal(raw.goAway()?.code, ErrorCode.PROTOCOL_ERROR, `${abuse}: PROTOCOL_ERROR`);
      const r = await visitor;
      t.equal('status' in r && r.status, 502, `${abuse}: its visitor gets 502, not a hang`);
      await after(t, `window ${abuse}`);
    }
  });

  await t.test('DATA past the window the relay granted', async (t) => {
    // The visitor never reads, so the relay stops taking bytes off the stream and stops
    // granting credit; the client keeps sending regardless.
    const { raw, hostname } = await registered(t, env);
    const visitor = net.connect(env.httpPort, '127.0.0.1');
    visitor.on('error', () => {});
    t.teardown(() => visitor.destroy());
    visitor.write(`GET /big HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
    visitor.pause();
    const open = await raw.waitFor((f) => f.type === FrameType.OPEN);
    raw.sendFrame(FrameType.REPLY, open.streamId, REPLY_OK);
    const chunk = Buffer.alloc(64 * 1024);
    let sent = 0;
    while (sent < 64 * MiB && !raw.isClosed()) {
      raw.sendFrame(FrameType.DATA, open.streamId, chunk);
      sent += chunk.length;
      if (sent % MiB === 0) await new Promise((r) => setImmediate(r));
    }
    await within(raw.closed, 3_000);
    t.ok(raw.isClosed(), `dropped after ${(sent / MiB).toFixed(1)} MiB`);
    t.equal(raw.goAway()?.code, ErrorCode.PROTOCOL_ERROR, 'PROTOCOL_ERROR (flow control)');
    visitor.destroy();
    await after(t, 'window overrun');
  });

  await t.test('a body before the head, or an end without one: 502 at once', async (t) => {
    for (const misstep of ['DATA before REPLY', 'FIN without REPLY'] as const) {
      const { raw, hostname } = await registered(t, env);
      const started = performance.now();
      const visitor = get(env, hostname, { timeoutMs: 5_000 });
      const open = await raw.waitFor((f) => f.type === FrameType.OPEN);
      if (misstep === 'DATA before REPLY') {
        raw.sendFrame(FrameType.DATA, open.streamId, Buffer.from('body'));
      } else {
        raw.sendFrame(FrameType.FIN, open.streamId);
      }
      const r = await visitor;
      const ms = performance.now() - started;
      t.equal('status' in r && r.status, 502, `${misstep}: 502`);
      t.ok(ms < 2_000, `${misstep}: answered in ${Math.round(ms)} ms, not at the response timeout`);
      raw.close();
      await after(t, misstep);
    }
  });

  await t.test('hostile response heads', async (t) => {
    const heads: { name: string; reply: Buffer; upgrade?: boolean }[] = [
      { name: 'status 99', reply: json({ status: 99, headers: [] }) },
      { name: 'status 1000', reply: json({ status: 1000, headers: [] }) },
      { name: 'not an object', reply: json([1, 2]) },
      { name: 'headers not pairs', reply: json({ status: 200, headers: [['a']] }) },
      { name: 'not JSON', reply: Buffer.from('{') },
      {
        name: 'CRLF in a header value',
        reply: json({ status: 200, headers: [['x-a', 'b\r\nSet-Cookie: evil=1']] }),
      },
      {
        name: 'CRLF in a header name',
        reply: json({ status: 200, headers: [['x-a\r\nSet-Cookie', 'evil=1']] }),
      },
      {
        name: 'CRLF in the status message',
        reply: json({ status: 200, statusMessage: 'OK\r\nSet-Cookie: evil=1', headers: [] }),
      },
      {
        name: '10,000 headers',
        reply: json({
          status: 200,
          headers: Array.from({ length: 10_000 }, (_, i) => [`x-${i}`, 'v']),
        }),
      },
      {
        name: 'upgrade answered with CRLF in a header value',
        upgrade: true,
        reply: json({
          status: 101,
          headers: [
            ['Upgrade', 'websocket'],
            ['x-a', 'b\r\nSet-Cookie: evil=1'],
          ],
        }),
      },
      {
        name: 'upgrade answered with CRLF in the status message',
        upgrade: true,
        reply: json({ status: 404, statusMessage: 'No\r\nSet-Cookie: evil=1', headers: [] }),
      },
    ];
    for (const h of heads) {
      const { raw, hostname } = await registered(t, env);
      const visitor = rawRequest({
        port: env.httpPort,
        send: h.upgrade
          ? `GET / HTTP/1.1\r\nHost: ${hostname}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`
          : `GET / HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n\r\n`,
        timeoutMs: 5_000,
      });
      const open = await raw.waitFor((f) => f.type === FrameType.OPEN);
      raw.sendFrame(FrameType.REPLY, open.streamId, h.reply);
      raw.sendFrame(FrameType.DATA, open.streamId, Buffer.from('body'));
      raw.sendFrame(FrameType.FIN, open.streamId);
      const r = await visitor;
      t.notMatch(r.text, /\r\nSet-Cookie: evil/i, `${h.name}: nothing injected into the response`);
      t.ok(r.status === undefined || r.status === 502, `${h.name}: 502 or dropped (${r.status})`);
      raw.close();
      await after(t, h.name);
    }
  });

  await t.test('a response body that disagrees with its Content-Length', async (t) => {
    // The visitor's connection is kept alive for the next request (here a pipelined
    // one to the control tunnel, as a shared front proxy would reuse it): a body
    // shorter or longer than announced must end in an abort, never in bytes that the
    // next response is read from.
    const lies = [
      { name: 'shorter than Content-Length', length: '100', body: 'body' },
      { name: 'longer than Content-Length', length: '2', body: 'HTTP/1.1 200 OK\r\n\r\n' },
      { name: 'invalid Content-Length', length: '4, 5', body: 'body' },
      { name: 'negative Content-Length', length: '-1', body: 'body' },
    ];
    for (const lie of lies) {
      const { raw, hostname } = await registered(t, env);
      const visitor = rawRequest({
        port: env.httpPort,
        send:
          `GET /lie HTTP/1.1\r\nHost: ${hostname}\r\n\r\n` +
          `GET /control HTTP/1.1\r\nHost: ${control.hostname}\r\nConnection: close\r\n\r\n`,
        timeoutMs: 5_000,
      });
      const open = await raw.waitFor((f) => f.type === FrameType.OPEN);
      raw.sendFrame(
        FrameType.REPLY,
        open.streamId,
        json({ status: 200, headers: [['content-length', lie.length]] }),
      );
      raw.sendFrame(FrameType.DATA, open.streamId, Buffer.from(lie.body));
      raw.sendFrame(FrameType.FIN, open.streamId);
      const r = await visitor;
      const { responses, leftover } = parseResponses(r.text);
      t.ok(r.closedByPeer, `${lie.name}: the exchange ended`);
      t.ok(
        responses.every((x) => x.body === 'control ok' || x.status === 502),
        `${lie.name}: no complete response carries the lie (${responses.map((x) => x.status)})`,
      );
      t.ok(
        (leftover.match(/HTTP\/1\.[01] \d{3}/g) ?? []).length <= 1,
        `${lie.name}: at most one truncated response, nothing read past it`,
      );
      raw.close();
      await after(t, lie.name);
    }
  });

  await t.test('RESET and GOAWAY with a huge or odd reason are harmless', async (t) => {
    const { raw, hostname } = await registered(t, env);
    const visitor = get(env, hostname, { headers: { accept: 'text/html' } });
    const open = await raw.waitFor((f) => f.type === FrameType.OPEN);
    raw.sendFrame(
      FrameType.RESET,
      open.streamId,
      encodeCodeMessage(0xffffffff, '\u0000<script>'.repeat(1000)),
    );
    const r = await visitor;
    t.equal('status' in r && r.status, 502, 'visitor gets 502');
    t.notMatch('body' in r ? r.body : '', /<script>/, 'the reason is escaped in the HTML page');
    raw.sendFrame(FrameType.GOAWAY, 0, encodeCodeMessage(ErrorCode.PROTOCOL_ERROR, 'x'));
    await within(raw.closed, 3_000);
    t.ok(raw.isClosed(), 'a GOAWAY with an error and no streams ends the session');
    await after(t, 'RESET/GOAWAY reasons');
  });

  const heapAfter = await settledHeap();
  const growth = heapAfter.heapUsed - heapBefore.heapUsed;
  t.ok(growth < 32 * MiB, `relay heap bounded: grew ${(growth / MiB).toFixed(1)} MiB (< 32)`);
  t.same(control.failures, [], `control tunnel: 0 failures in ${control.requests} requests`);
});
