/**
 * Hostile HTTP/1.1 on the visitor edge (test plan H3, H4, H8), written byte for byte
 * over raw TCP and TLS sockets: request smuggling shapes (CL+TE, TE+CL, duplicate or
 * malformed Content-Length, obs-fold, bad chunks, LF-only lines, space before colon,
 * obfuscated Transfer-Encoding), header and URL limits, CONNECT. Each case asserts the
 * status, that the relay closed the connection, that nothing of a refused request
 * (above all the smuggled second request) reaches the origin, and that a control
 * tunnel on the same relay kept answering every 100 ms.
 */
import t from 'tap';
import { connectTunnel, startOrigin, startTestRelay } from '../helpers/relay-env.js';
import { bodyOf, rawRequest, startControl, startRecordingOrigin } from '../helpers/hostile.js';

const SMUGGLED = '/smuggled';

/** A request that the relay must refuse; `{H}` is replaced with the tunnel's hostname. */
interface RefusedCase {
  name: string;
  bytes: string;
  status: number;
  /** The refusal happens inside the body, after the request was forwarded: the origin
   * may see the start of it, but only ever aborted, never completed. */
  inBody?: boolean;
}

const h = (lines: string[], body = ''): string => `${lines.join('\r\n')}\r\n\r\n${body}`;
const smuggled = `GET ${SMUGGLED} HTTP/1.1\r\nHost: {H}\r\n\r\n`;

const refused: RefusedCase[] = [
  {
    name: 'CL.TE: Content-Length then Transfer-Encoding',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Content-Length: 6', 'Transfer-Encoding: chunked'],
      `0\r\n\r\n${smuggled}`,
    ),
    status: 400,
  },
  {
    name: 'TE.CL: Transfer-Encoding then Content-Length',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: chunked', 'Content-Length: 4'],
      `2c\r\n${smuggled}\r\n0\r\n\r\n`,
    ),
    status: 400,
  },
  {
    name: 'duplicate Content-Length, differing',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Content-Length: 5', 'Content-Length: 45'],
      `hello${smuggled}`,
    ),
    status: 400,
  },
  {
    name: 'duplicate Content-Length, same value',
    bytes: h(['POST / HTTP/1.1', 'Host: {H}', 'Content-Length: 5', 'Content-Length: 5'], 'hello'),
    status: 400,
  },
  {
    name: 'Content-Length list "5, 5"',
    bytes: h(['POST / HTTP/1.1', 'Host: {H}', 'Content-Length: 5, 5'], 'hello'),
    status: 400,
  },
  {
    name: 'Content-Length with an inner space',
    bytes: h(['POST / HTTP/1.1', 'Host: {H}', 'Content-Length: 1 0'], `hello${smuggled}`),
    status: 400,
  },
  {
    name: 'Content-Length with a plus sign',
    bytes: h(['POST / HTTP/1.1', 'Host: {H}', 'Content-Length: +5'], `hello${smuggled}`),
    status: 400,
  },
  {
    name: 'Content-Length negative',
    bytes: h(['POST / HTTP/1.1', 'Host: {H}', 'Content-Length: -5'], `hello${smuggled}`),
    status: 400,
  },
  {
    name: 'Content-Length with non-digits',
    bytes: h(['POST / HTTP/1.1', 'Host: {H}', 'Content-Length: 5a'], `hello${smuggled}`),
    status: 400,
  },
  {
    name: 'Content-Length in hex',
    bytes: h(['POST / HTTP/1.1', 'Host: {H}', 'Content-Length: 0x5'], `hello${smuggled}`),
    status: 400,
  },
  {
    name: 'space before the colon (Content-Length : 5)',
    bytes: h(['POST / HTTP/1.1', 'Host: {H}', 'Content-Length : 5'], `hello${smuggled}`),
    status: 400,
  },
  {
    name: 'space before the colon (Transfer-Encoding : chunked)',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding : chunked', 'Content-Length: 5'],
      `0\r\n\r\n${smuggled}`,
    ),
    status: 400,
  },
  {
    name: 'obs-fold header line',
    bytes: h(['GET / HTTP/1.1', 'Host: {H}', 'X-A: a', ' b'], smuggled),
    status: 400,
  },
  {
    name: 'obs-fold Transfer-Encoding value',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding:', ' chunked', 'Content-Length: 5'],
      `0\r\n\r\n${smuggled}`,
    ),
    status: 400,
  },
  {
    name: 'leading whitespace before the first header',
    bytes: h(['POST / HTTP/1.1', ' Content-Length: 5', 'Host: {H}'], 'hello'),
    status: 400,
  },
  {
    name: 'Transfer-Encoding: xchunked',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: xchunked'],
      `0\r\n\r\n${smuggled}`,
    ),
    status: 501,
  },
  {
    name: 'Transfer-Encoding: chunked, x',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: chunked, x'],
      `0\r\n\r\n${smuggled}`,
    ),
    status: 400,
  },
  {
    name: 'Transfer-Encoding twice',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'],
      `0\r\n\r\n${smuggled}`,
    ),
    status: 400,
  },
  {
    name: 'Transfer-Encoding: chunked + vertical tab',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: chunked\x0b'],
      `0\r\n\r\n${smuggled}`,
    ),
    status: 400,
  },
  {
    name: 'Transfer-Encoding: identity',
    bytes: h(['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: identity'], `0\r\n\r\n`),
    status: 501,
  },
  {
    name: 'Transfer-Encoding: gzip, chunked (a coding the relay does not decode)',
    bytes: h(['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: gzip, chunked'], `0\r\n\r\n`),
    status: 501,
  },
  {
    name: 'Transfer-Encoding in an HTTP/1.0 request',
    bytes: h(
      ['POST / HTTP/1.0', 'Host: {H}', 'Connection: keep-alive', 'Transfer-Encoding: chunked'],
      `0\r\n\r\n${smuggled}`,
    ),
    status: 400,
  },
  {
    name: 'chunk size not hex',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: chunked'],
      `zz\r\nhello\r\n0\r\n\r\n${smuggled}`,
    ),
    status: 400,
    inBody: true,
  },
  {
    name: 'chunk size negative',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: chunked'],
      `-5\r\nhello\r\n0\r\n\r\n${smuggled}`,
    ),
    status: 400,
    inBody: true,
  },
  {
    name: 'chunk size 0x-prefixed',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: chunked'],
      `0x5\r\nhello\r\n0\r\n\r\n${smuggled}`,
    ),
    status: 400,
    inBody: true,
  },
  {
    name: 'chunk size overflowing 64 bits',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: chunked'],
      `5\r\nhello\r\nfffffffffffffffffffff\r\n${smuggled}`,
    ),
    status: 400,
    inBody: true,
  },
  {
    name: 'chunk size with trailing space',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: chunked'],
      `5 \r\nhello\r\n0\r\n\r\n${smuggled}`,
    ),
    status: 400,
    inBody: true,
  },
  {
    name: 'chunk shorter than its size',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: chunked'],
      `3\r\nhello\r\n0\r\n\r\n${smuggled}`,
    ),
    status: 400,
    inBody: true,
  },
  {
    name: 'chunk extension of 20 KiB',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: chunked'],
      `5;${'a'.repeat(20 * 1024)}\r\nhello\r\n0\r\n\r\n${smuggled}`,
    ),
    status: 400,
    inBody: true,
  },
  {
    name: 'chunk extension with a bare LF',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: chunked'],
      `5;a\nb\r\nhello\r\n0\r\n\r\n${smuggled}`,
    ),
    status: 400,
    inBody: true,
  },
  {
    name: 'LF-only chunk lines',
    bytes: h(
      ['POST / HTTP/1.1', 'Host: {H}', 'Transfer-Encoding: chunked'],
      `5\nhello\n0\n\n${smuggled}`,
    ),
    status: 400,
    inBody: true,
  },
  {
    name: 'LF-only line endings',
    bytes: `GET / HTTP/1.1\nHost: {H}\n\n${smuggled}`,
    status: 400,
  },
  {
    name: 'one LF-only header line',
    bytes: `GET / HTTP/1.1\r\nHost: {H}\nContent-Length: 45\r\n\r\n${smuggled}`,
    status: 400,
  },
  {
    name: 'bare CR inside a header value',
    bytes: h(['GET / HTTP/1.1', 'Host: {H}', 'X-A: a\rContent-Length: 45'], smuggled),
    status: 400,
  },
  {
    name: 'NUL inside a header value',
    bytes: h(['GET / HTTP/1.1', 'Host: {H}', 'X-A: a\x00b']),
    status: 400,
  },
  {
    name: 'space inside a header name',
    bytes: h(['GET / HTTP/1.1', 'Host: {H}', 'X A: b']),
    status: 400,
  },
  {
    name: 'invalid method token',
    bytes: h(['G@T / HTTP/1.1', 'Host: {H}']),
    status: 400,
  },
  {
    name: 'HTTP/1.2',
    bytes: h(['GET / HTTP/1.2', 'Host: {H}']),
    status: 400,
  },
  {
    name: 'a valid request pipelined behind one refused for 101 header lines',
    bytes:
      h(['GET / HTTP/1.1', 'Host: {H}', ...Array.from({ length: 100 }, (_, i) => `X-${i}: ${i}`)]) +
      smuggled,
    status: 431,
  },
  {
    name: 'a valid request pipelined behind one with two Host headers',
    bytes: h(['GET / HTTP/1.1', 'Host: {H}', 'Host: {H}']) + smuggled,
    status: 400,
  },
  {
    name: 'a WebSocket upgrade pipelined behind a refused request',
    bytes:
      h(['GET / HTTP/1.1', 'Host: {H}', 'Host: {H}']) +
      h([
        `GET ${SMUGGLED} HTTP/1.1`,
        'Host: {H}',
        'Upgrade: websocket',
        'Connection: Upgrade',
        'Sec-WebSocket-Version: 13',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      ]),
    status: 400,
  },
  {
    name: 'CONNECT (not a forward proxy)',
    bytes: h(['CONNECT {H}:443 HTTP/1.1', 'Host: {H}:443']),
    status: 405,
  },
];

t.test('request smuggling and framing ambiguities are refused', async (t) => {
  const env = await startTestRelay(t);
  const control = await startControl(t, env);
  const origin = await startRecordingOrigin(t);
  const tunnel = await connectTunnel(t, env, String(origin.port));
  const host = tunnel.hostname;
  const listeners = [
    { scheme: 'http', port: env.httpPort, tls: undefined },
    { scheme: 'https', port: env.httpsPort, tls: { servername: host } },
  ] as const;

  for (const c of refused) {
    for (const l of listeners) {
      await t.test(`${c.name} (${l.scheme})`, async (t) => {
        const before = origin.requests.length;
        const r = await rawRequest({
          port: l.port,
          ...(l.tls !== undefined ? { tls: l.tls } : {}),
          send: c.bytes.replaceAll('{H}', host),
        });
        t.equal(r.status, c.status, `answered ${c.status}`);
        t.same(r.statuses, [c.status], 'exactly one response: nothing after it was read');
        t.ok(r.closedByPeer, 'the relay closed the connection');
        // Anything that was forwarded reaches the origin before the barrier does.
        await origin.barrier(env, host);
        const reached = origin.requests.slice(before);
        t.same(
          reached.filter((r) => r.url === SMUGGLED),
          [],
          'the smuggled second request never reaches the origin',
        );
        if (c.inBody === true) {
          t.same(
            reached.filter((r) => !r.aborted).map((r) => `${r.method} ${r.url}`),
            [],
            'the origin never sees the refused request complete',
          );
        } else {
          t.same(reached.length, 0, 'nothing reaches the origin');
        }
        await control.check(t, c.name);
      });
    }
  }
  t.same(origin.parseErrors, [], "the origin's strict parser never saw a malformed request");
});

t.test('an error in a request body after the response began never splices into it', async (t) => {
  // A chunked upload whose response starts before the body is complete, then a bad
  // chunk: the relay must cut the connection, not write "HTTP/1.1 400" into the body.
  const env = await startTestRelay(t);
  const control = await startControl(t, env);
  const { port } = await startOrigin(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('early-part;');
    req.on('error', () => {});
    req.resume();
    req.on('end', () => res.end('rest'));
  });
  const tunnel = await connectTunnel(t, env, String(port));
  for (const l of [
    { scheme: 'http', port: env.httpPort, tls: undefined },
    { scheme: 'https', port: env.httpsPort, tls: { servername: tunnel.hostname } },
  ] as const) {
    const r = await rawRequest({
      port: l.port,
      ...(l.tls !== undefined ? { tls: l.tls } : {}),
      send: [
        h(['POST / HTTP/1.1', `Host: ${tunnel.hostname}`, 'Transfer-Encoding: chunked'], ''),
        '5\r\nhello\r\n',
        500,
        'zz\r\n',
      ],
    });
    t.equal(r.status, 200, `${l.scheme}: the response had started`);
    t.same(r.statuses, [200], `${l.scheme}: no second status line inside the body`);
    t.match(bodyOf(r.text), /early-part;/);
    t.notMatch(r.text, /\r\n0\r\n\r\n$/, `${l.scheme}: the body is visibly truncated`);
    t.ok(r.closedByPeer, `${l.scheme}: connection dropped`);
  }
  await control.check(t, 'bad chunk after response head');
});

t.test('what the relay forwards is re-framed by itself', async (t) => {
  const env = await startTestRelay(t);
  const control = await startControl(t, env);
  const origin = await startRecordingOrigin(t);
  const tunnel = await connectTunnel(t, env, String(origin.port));
  const host = tunnel.hostname;

  await t.test('chunked body with extensions and trailers', async (t) => {
    const before = origin.requests.length;
    const r = await rawRequest({
      port: env.httpPort,
      send: h(
        ['POST /ext HTTP/1.1', `Host: ${host}`, 'Transfer-Encoding: chunked', 'Connection: close'],
        '5;foo=bar;q="x y"\r\nhello\r\n6;' +
          'e'.repeat(4000) +
          '\r\n world\r\n0;last\r\nX-Trailer: evil\r\n\r\n',
      ),
    });
    t.equal(r.status, 200);
    await origin.barrier(env, host);
    const seen = origin.requests.slice(before);
    t.equal(seen.length, 1, 'the origin sees exactly one request');
    t.equal(seen[0]?.body, 'hello world', 'the body, decoded');
    t.equal(seen[0]?.headers['x-trailer'], undefined, 'trailers are not turned into headers');
    const raw = origin.raw.join('');
    t.notMatch(raw, /foo=bar|eeee|X-Trailer|last/, 'no raw chunk extension or trailer bytes');
  });

  await t.test('Content-Length body followed by a pipelined request', async (t) => {
    const before = origin.requests.length;
    const r = await rawRequest({
      port: env.httpsPort,
      tls: { servername: host },
      send:
        h(['POST /first HTTP/1.1', `Host: ${host}`, 'Content-Length: 5'], 'hello') +
        h(['GET /second HTTP/1.1', `Host: ${host}`, 'Connection: close']),
    });
    t.same(r.statuses, [200, 200], 'two requests, two responses');
    await origin.barrier(env, host);
    const seen = origin.requests.slice(before).map((s) => `${s.method} ${s.url} ${s.body}`);
    t.same(seen.sort(), ['GET /second ', 'POST /first hello'], 'each arrives on its own');
  });

  await t.test('hop-by-hop and forged forwarding headers are not passed on', async (t) => {
    const before = origin.requests.length;
    const r = await rawRequest({
      port: env.httpPort,
      send: h([
        'GET /hop HTTP/1.1',
        `Host: ${host}`,
        'Connection: close, X-Secret',
        'X-Secret: 1',
        'Keep-Alive: timeout=1',
        'TE: trailers',
        'Proxy-Connection: keep-alive',
        'Proxy-Authorization: Basic Zm9vOmJhcg==',
        'X-Forwarded-For: 10.9.9.9',
        'X-Forwarded-Host: evil.example',
        'X-Forwarded-Proto: gopher',
      ]),
    });
    t.equal(r.status, 200);
    await origin.barrier(env, host);
    const seen = origin.requests.slice(before)[0];
    const hdr = seen?.headers ?? {};
    for (const name of [
      'x-secret',
      'keep-alive',
      'te',
      'proxy-connection',
      'proxy-authorization',
    ]) {
      t.equal(hdr[name], undefined, `${name} stripped`);
    }
    t.equal(hdr['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For is the real peer');
    t.equal(hdr['x-forwarded-host'], host, 'X-Forwarded-Host overwritten');
    t.equal(hdr['x-forwarded-proto'], 'http', 'X-Forwarded-Proto overwritten');
  });

  await t.test('absolute-form target for the same host goes on as origin-form', async (t) => {
    const before = origin.requests.length;
    const r = await rawRequest({
      port: env.httpPort,
      send: h([`GET http://${host}/abs?q=1 HTTP/1.1`, `Host: ${host}`, 'Connection: close']),
    });
    t.equal(r.status, 200);
    await origin.barrier(env, host);
    t.equal(origin.requests.slice(before)[0]?.url, '/abs?q=1');
  });

  t.same(
    origin.requests.filter(
      (r) =>
        r.headers['transfer-encoding'] !== undefined && r.headers['content-length'] !== undefined,
    ),
    [],
    'no forwarded request carries both Transfer-Encoding and Content-Length',
  );
  t.same(origin.parseErrors, [], "the origin's strict parser accepted everything forwarded");
  await control.check(t, 're-framing');
});

t.test('header and URL limits: 431 / 414', async (t) => {
  const env = await startTestRelay(t);
  const control = await startControl(t, env);
  const origin = await startRecordingOrigin(t);
  const tunnel = await connectTunnel(t, env, String(origin.port));
  const host = tunnel.hostname;
  const lines = (n: number): string[] => Array.from({ length: n }, (_, i) => `X-Filler-${i}: ${i}`);

  const cases = [
    {
      name: '17 KiB in one header',
      bytes: h(['GET / HTTP/1.1', `Host: ${host}`, `X-Big: ${'a'.repeat(17 * 1024)}`]),
      status: 431,
    },
    {
      name: '17 KiB over 40 headers',
      bytes: h([
        'GET / HTTP/1.1',
        `Host: ${host}`,
        ...lines(40).map((l) => `${l}${'b'.repeat(450)}`),
      ]),
      status: 431,
    },
    {
      name: '150 header lines',
      bytes: h(['GET / HTTP/1.1', `Host: ${host}`, ...lines(149)]),
      status: 431,
    },
    {
      name: '101 header lines',
      bytes: h(['GET / HTTP/1.1', `Host: ${host}`, ...lines(100)]),
      status: 431,
    },
    {
      name: '100 header lines (at the limit)',
      bytes: h(['GET / HTTP/1.1', `Host: ${host}`, 'Connection: close', ...lines(98)]),
      status: 200,
    },
    {
      name: '9 KiB URL',
      bytes: h([`GET /${'u'.repeat(9 * 1024)} HTTP/1.1`, `Host: ${host}`]),
      status: 414,
    },
    {
      name: '8 KiB URL (at the limit)',
      bytes: h([`GET /${'u'.repeat(8 * 1024 - 1)} HTTP/1.1`, `Host: ${host}`, 'Connection: close']),
      status: 200,
    },
    {
      name: 'upgrade with 2,000 headers (ws CVE-2024-37890)',
      bytes: h([
        'GET / HTTP/1.1',
        `Host: ${host}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        'Sec-WebSocket-Version: 13',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        ...Array.from({ length: 2000 }, (_, i) => `a${i}: b`),
      ]),
      status: 431,
    },
    {
      name: 'upgrade to the tunnel endpoint with 2,000 headers',
      bytes: h([
        'GET /_qt/tunnel HTTP/1.1',
        'Host: qt.localhost',
        'Upgrade: websocket',
        'Connection: Upgrade',
        'Sec-WebSocket-Version: 13',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        ...Array.from({ length: 2000 }, (_, i) => `a${i}: b`),
      ]),
      status: 431,
    },
  ];
  for (const c of cases) {
    for (const l of [
      { scheme: 'http', port: env.httpPort, tls: undefined },
      { scheme: 'https', port: env.httpsPort, tls: { servername: host } },
    ] as const) {
      await t.test(`${c.name} (${l.scheme})`, async (t) => {
        const before = origin.requests.length;
        const r = await rawRequest({
          port: l.port,
          ...(l.tls !== undefined ? { tls: l.tls } : {}),
          send: c.bytes,
        });
        t.equal(r.status, c.status, `answered ${c.status}`);
        t.ok(r.closedByPeer, 'connection closed');
        await origin.barrier(env, host);
        t.equal(origin.requests.length - before, c.status === 200 ? 1 : 0, 'origin count');
        await control.check(t, c.name);
      });
    }
  }
});
