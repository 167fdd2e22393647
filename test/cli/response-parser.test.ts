/**
 * The CLI's HTTP/1.x response parser for its own origin connections: framing (length,
 * chunked, close-delimited, no body), interim responses, keep-alive, header values as
 * Node gives them, the errors it refuses with; robustness to any split of the input;
 * and a differential run against Node's own client parser on the same raw bytes.
 */
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import {
  ResponseParseError,
  ResponseParser,
  type ParsedResponseHead,
} from '../../cli/origin/response-parser.js';
import { RESPONSE_CORPUS } from '../helpers/response-corpus.js';

const MAX_HEADER_BYTES = 16 * 1024;

/** Raw bytes from a string whose chars are all below 0x100. */
function raw(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

interface Rig {
  parser: ResponseParser;
  heads: ParsedResponseHead[];
  /** Copies of the body chunks, in order. */
  chunks: Buffer[];
  /** The chunks as the parser handed them (slices of the input). */
  slices: Buffer[];
  completes: number;
  body(): string;
}

function rig(
  options: {
    method?: string;
    maxHeaderBytes?: number | undefined;
    onHead?: (parser: ResponseParser) => void;
    onBody?: (parser: ResponseParser) => void;
  } = {},
): Rig {
  const r: Rig = {
    parser: undefined as unknown as ResponseParser,
    heads: [],
    chunks: [],
    slices: [],
    completes: 0,
    body: () => Buffer.concat(r.chunks).toString('latin1'),
  };
  r.parser = new ResponseParser(
    {
      onHead: (head) => {
        r.heads.push(head);
        options.onHead?.(r.parser);
      },
      onBody: (chunk) => {
        r.slices.push(chunk);
        r.chunks.push(Buffer.from(chunk));
        options.onBody?.(r.parser);
      },
      onComplete: () => {
        r.completes++;
      },
    },
    { maxHeaderBytes: options.maxHeaderBytes ?? MAX_HEADER_BYTES },
  );
  r.parser.expect(options.method ?? 'GET');
  return r;
}

/** The code of the error `fn` throws (asserting it is a ResponseParseError), or undefined. */
function errorCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof ResponseParseError)) throw err;
    return err.code;
  }
  return undefined;
}

/** Parses `input` whole; the error code if it throws (from execute or finish). */
function parseWhole(
  input: string | Buffer,
  options: { method?: string; maxHeaderBytes?: number | undefined; finish?: boolean } = {},
): Rig & { used: number; code: string | undefined } {
  const r = rig(options);
  const buf = typeof input === 'string' ? raw(input) : input;
  let used = -1;
  const code = errorCode(() => {
    used = r.parser.execute(buf);
    if (options.finish === true) r.parser.finish();
  });
  return Object.assign(r, { used, code });
}

function head(overrides: Partial<ParsedResponseHead>): ParsedResponseHead {
  return {
    versionMinor: 1,
    status: 200,
    statusMessage: 'OK',
    rawHeaders: [],
    keepAlive: true,
    keepAliveTimeoutMs: undefined,
    contentEncoding: undefined,
    ...overrides,
  };
}

// ---- framing ------------------------------------------------------------------------

t.test('Content-Length body', async (t) => {
  const input = raw(
    'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello',
  );
  const r = rig();
  t.equal(r.parser.active, true);
  t.equal(r.parser.execute(input), input.length);
  t.same(r.heads, [head({ rawHeaders: ['Content-Type', 'text/plain', 'Content-Length', '5'] })]);
  t.equal(r.body(), 'hello');
  t.equal(r.completes, 1);
  t.equal(r.parser.active, false);
  t.equal(r.parser.delimitedByClose, false);
  r.parser.finish();
  t.equal(r.completes, 1, 'finish after completion completes nothing more');

  // Body chunks are slices of the input, not copies.
  t.equal(r.slices.length, 1);
  t.equal(r.slices[0]!.buffer, input.buffer);
  t.equal(r.slices[0]!.byteOffset, input.byteOffset + input.length - 5);

  // The body arriving in pieces after the head.
  const s = rig();
  const s10 = 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n';
  t.equal(s.parser.execute(raw(s10)), s10.length);
  t.equal(s.completes, 0);
  t.equal(s.parser.execute(raw('01234')), 5);
  t.equal(s.completes, 0);
  t.equal(s.parser.execute(raw('56789')), 5);
  t.equal(s.body(), '0123456789');
  t.equal(s.completes, 1);

  // Content-Length: 0 completes with the head, with no body call.
  const z = parseWhole('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
  t.equal(z.code, undefined);
  t.equal(z.completes, 1);
  t.equal(z.chunks.length, 0);
  t.equal(z.parser.active, false);
});

t.test('chunked body with chunk extensions and trailers', async (t) => {
  const input = raw(
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Before: 1\r\n\r\n' +
      '5;name=value;q="a b"\r\nhello\r\n' +
      'A\r\n world!!!!\r\n' +
      'b;ext\r\n0123456789a\r\n' +
      '0;last=1\r\nX-Trailer: one\r\nX-Other:two\r\n\r\n',
  );
  const r = rig();
  t.equal(r.parser.execute(input), input.length);
  t.same(r.heads, [head({ rawHeaders: ['Transfer-Encoding', 'chunked', 'X-Before', '1'] })]);
  t.equal(r.body(), 'hello world!!!!0123456789a');
  t.equal(r.completes, 1);
  t.equal(r.parser.active, false);
  for (const slice of r.slices) t.equal(slice.buffer, input.buffer, 'a slice of the input');

  // No trailers, upper- and lower-case hex, leading zeros.
  const s = parseWhole(
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n00f\r\n0123456789abcde\r\nF\r\nfghijklmnopqrst\r\n0\r\n\r\n',
  );
  t.equal(s.code, undefined);
  t.equal(s.body(), '0123456789abcdefghijklmnopqrst');
  t.equal(s.completes, 1);

  // A chunked body is not complete without its last chunk and the empty line.
  for (const cut of ['5\r\nhello\r\n', '5\r\nhello\r\n0\r\n', '5\r\nhello\r\n0\r\nX: y\r\n']) {
    const u = parseWhole(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${cut}`);
    t.equal(u.completes, 0, JSON.stringify(cut));
    t.equal(u.parser.active, true);
    t.equal(
      errorCode(() => u.parser.finish()),
      'HPE_INVALID_EOF_STATE',
    );
  }
});

t.test('close-delimited body completed by finish()', async (t) => {
  for (const [statusLine, extra] of [
    ['HTTP/1.0 200 OK', ''],
    ['HTTP/1.1 200 OK', ''],
    ['HTTP/1.1 200 OK', 'Connection: keep-alive\r\n'],
  ] as const) {
    const r = rig();
    const first = raw(`${statusLine}\r\nContent-Type: text/plain\r\n${extra}\r\nabc`);
    t.equal(r.parser.execute(first), first.length);
    t.equal(r.heads.length, 1);
    t.equal(r.heads[0]!.keepAlive, false, `${statusLine} ${extra}: no keep-alive`);
    t.equal(r.parser.delimitedByClose, true);
    t.equal(r.parser.execute(raw('def')), 3);
    t.equal(r.parser.execute(raw('HTTP/1.1 200 OK\r\n\r\n')), 19, 'anything is body');
    t.equal(r.completes, 0);
    r.parser.finish();
    t.equal(r.completes, 1);
    t.equal(r.body(), 'abcdefHTTP/1.1 200 OK\r\n\r\n');
    t.equal(r.parser.active, false);
    t.equal(r.parser.delimitedByClose, false);
  }

  // No body byte at all before the close: an empty body.
  const e = parseWhole('HTTP/1.0 200 OK\r\n\r\n', { finish: true });
  t.equal(e.code, undefined);
  t.equal(e.completes, 1);
  t.equal(e.body(), '');
});

t.test('HEAD response with Content-Length has no body', async (t) => {
  const headPart = 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n';
  const r = parseWhole(`${headPart}NEXT`, { method: 'HEAD' });
  t.equal(r.code, undefined);
  t.equal(r.used, headPart.length, 'the bytes after the head are not the body');
  t.equal(r.heads.length, 1);
  t.equal(r.heads[0]!.keepAlive, true);
  t.equal(r.chunks.length, 0);
  t.equal(r.completes, 1);
  t.equal(r.parser.active, false);

  // Nor with chunked.
  const c = parseWhole('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', { method: 'HEAD' });
  t.equal(c.completes, 1);
  t.equal(c.parser.delimitedByClose, false);
});

t.test('204 and 304 have no body', async (t) => {
  for (const [status, message] of [
    [204, 'No Content'],
    [304, 'Not Modified'],
  ] as const) {
    for (const framing of ['', 'Content-Length: 42\r\n', 'Transfer-Encoding: chunked\r\n']) {
      const headPart = `HTTP/1.1 ${status} ${message}\r\nETag: "x"\r\n${framing}\r\n`;
      const r = parseWhole(`${headPart}garbage`);
      t.equal(r.code, undefined);
      t.equal(r.used, headPart.length, `${status} ${JSON.stringify(framing)}`);
      t.equal(r.heads[0]!.status, status);
      t.equal(r.heads[0]!.statusMessage, message);
      t.equal(r.heads[0]!.keepAlive, true);
      t.equal(r.chunks.length, 0);
      t.equal(r.completes, 1);
    }
  }
  // HTTP/1.0 with no framing: still nothing to wait for.
  const r = parseWhole('HTTP/1.0 204 No Content\r\n\r\n');
  t.equal(r.completes, 1);
  t.equal(r.heads[0]!.keepAlive, false);
});

t.test('100 Continue, 102 and 103 Early Hints before the final response are skipped', async (t) => {
  const interim =
    'HTTP/1.1 100 Continue\r\n\r\n' +
    'HTTP/1.1 102 Processing\r\n\r\n' +
    'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\nLink: </app.js>; rel=preload\r\n\r\n';
  const final = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi';
  const whole = parseWhole(interim + final);
  t.equal(whole.code, undefined);
  t.same(whole.heads, [head({ rawHeaders: ['Content-Length', '2'] })]);
  t.equal(whole.body(), 'hi');
  t.equal(whole.completes, 1);

  // Each head in its own buffer; the parser stays waiting after an interim one.
  const r = rig();
  r.parser.execute(raw('HTTP/1.1 100 Continue\r\n\r\n'));
  t.equal(r.heads.length, 0);
  t.equal(r.parser.active, true);
  t.equal(r.parser.untouched, false);
  r.parser.execute(raw('HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n'));
  t.equal(r.heads.length, 0);
  r.parser.execute(raw(final));
  t.equal(r.heads.length, 1);
  t.equal(r.heads[0]!.status, 200);
  t.equal(r.completes, 1);

  // Only an interim response, then the close: the response never started.
  const only = parseWhole('HTTP/1.1 100 Continue\r\n\r\n', { finish: true });
  t.equal(only.code, 'ECONNRESET');
});

t.test('101 Switching Protocols unasked is an error', async (t) => {
  for (const input of [
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
    'HTTP/1.1 101 Switching Protocols\r\n\r\n',
  ]) {
    const r = parseWhole(input);
    t.equal(r.code, 'HPE_UNEXPECTED_UPGRADE');
    t.equal(r.heads.length, 0);
    t.equal(r.completes, 0);
  }
});

t.test('an upgrade: a 101 is the last thing parsed; a refusal is read, never kept', async (t) => {
  const input = raw(
    'HTTP/1.1 103 Early\r\n\r\nHTTP/1.1 101 Switching\r\nUpgrade: ws\r\n\r\nframes',
  );
  const r = rig();
  r.parser.expect('GET', true);
  const used = r.parser.execute(input);
  t.equal(input.subarray(used).toString(), 'frames', 'the new protocol’s bytes, unparsed');
  t.same(r.heads, [
    head({
      status: 101,
      statusMessage: 'Switching',
      rawHeaders: ['Upgrade', 'ws'],
      keepAlive: false,
    }),
  ]);
  t.same([r.completes, r.parser.active, r.body()], [0, false, '']);
  t.equal(r.parser.execute(raw('more')), 0, 'nothing after the switch is parsed');

  const refused = rig();
  refused.parser.expect('GET', true);
  refused.parser.execute(raw('HTTP/1.1 403 No\r\nContent-Length: 2\r\n\r\nno'));
  t.same([refused.heads[0]?.status, refused.heads[0]?.keepAlive], [403, false]);
  t.same([refused.body(), refused.completes], ['no', 1]);
});

t.test('keepAlive', async (t) => {
  const cases: [string, string, boolean][] = [
    ['HTTP/1.1 200 OK', 'Content-Length: 1\r\n', true],
    ['HTTP/1.1 200 OK', 'Content-Length: 1\r\nConnection: close\r\n', false],
    ['HTTP/1.1 200 OK', 'Content-Length: 1\r\nConnection: Close\r\n', false],
    ['HTTP/1.1 200 OK', 'Content-Length: 1\r\nConnection: x-foo, close\r\n', false],
    ['HTTP/1.1 200 OK', 'Content-Length: 1\r\nConnection: x-foo\r\nConnection: close\r\n', false],
    ['HTTP/1.1 200 OK', 'Content-Length: 1\r\nConnection: keep-alive\r\n', true],
    ['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked\r\n', true],
    ['HTTP/1.0 200 OK', 'Content-Length: 1\r\n', false],
    ['HTTP/1.0 200 OK', 'Content-Length: 1\r\nConnection: keep-alive\r\n', true],
    ['HTTP/1.0 200 OK', 'Content-Length: 1\r\nConnection: Keep-Alive\r\n', true],
    ['HTTP/1.0 200 OK', 'Content-Length: 1\r\nConnection: close\r\n', false],
    // Close-delimited: never reusable, whatever Connection says.
    ['HTTP/1.1 200 OK', '', false],
    ['HTTP/1.0 200 OK', 'Connection: keep-alive\r\n', false],
    ['HTTP/1.1 200 OK', 'Transfer-Encoding: gzip\r\n', false],
  ];
  for (const [statusLine, headers, keepAlive] of cases) {
    const r = parseWhole(`${statusLine}\r\n${headers}\r\n`);
    t.equal(r.code, undefined);
    t.equal(r.heads[0]!.keepAlive, keepAlive, `${statusLine} ${JSON.stringify(headers)}`);
    t.equal(r.heads[0]!.versionMinor, statusLine.startsWith('HTTP/1.1') ? 1 : 0);
  }
});

t.test('Keep-Alive timeout hint', async (t) => {
  const cases: [string, number | undefined][] = [
    ['Keep-Alive: timeout=5\r\n', 5000],
    ['Keep-Alive: timeout=5, max=100\r\n', 5000],
    ['Keep-Alive: max=100, timeout=30\r\n', 30000],
    ['keep-alive: Timeout=2\r\n', 2000],
    ['Keep-Alive: max=100\r\n', undefined],
    ['Keep-Alive: xtimeout=5\r\n', undefined],
    ['', undefined],
  ];
  for (const [header, ms] of cases) {
    const r = parseWhole(`HTTP/1.1 200 OK\r\nContent-Length: 0\r\n${header}\r\n`);
    t.equal(r.code, undefined);
    t.equal(r.heads[0]!.keepAliveTimeoutMs, ms, JSON.stringify(header));
  }
});

t.test('contentEncoding', async (t) => {
  const cases: [string, string | undefined][] = [
    ['Content-Encoding: gzip\r\n', 'gzip'],
    ['content-encoding: br\r\n', 'br'],
    ['Content-Encoding: gzip\r\nContent-Encoding: br\r\n', 'gzip'],
    ['Content-Type: text/html\r\n', undefined],
  ];
  for (const [headers, encoding] of cases) {
    const r = parseWhole(`HTTP/1.1 200 OK\r\nContent-Length: 0\r\n${headers}\r\n`);
    t.equal(r.heads[0]!.contentEncoding, encoding, JSON.stringify(headers));
  }
});

t.test('repeated headers are kept in order with their case', async (t) => {
  const r = parseWhole(
    'HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nX-Mixed-CASE: v\r\nset-cookie: b=2\r\nContent-Length: 0\r\n\r\n',
  );
  t.same(r.heads[0]!.rawHeaders, [
    'Set-Cookie',
    'a=1; Path=/',
    'X-Mixed-CASE',
    'v',
    'set-cookie',
    'b=2',
    'Content-Length',
    '0',
  ]);
});

t.test('header values: latin1 kept, only SP and HTAB trimmed', async (t) => {
  const r = parseWhole(
    Buffer.concat([
      raw('HTTP/1.1 200 OK\r\nX-Latin: '),
      Buffer.from([0xa0, 0xe9, 0x80, 0x20, 0xff, 0xa0]),
      raw(' \t\r\nX-Pad:\t \tvalue  with  inner \t \r\nX-Empty:\r\nX-Blank:   \r\n'),
      raw('X-Tab: a\tb\r\nContent-Length: 0\r\n\r\n'),
    ]),
  );
  t.equal(r.code, undefined);
  t.same(r.heads[0]!.rawHeaders, [
    'X-Latin',
    '\u00a0\u00e9\u0080 \u00ff\u00a0',
    'X-Pad',
    'value  with  inner',
    'X-Empty',
    '',
    'X-Blank',
    '',
    'X-Tab',
    'a\tb',
    'Content-Length',
    '0',
  ]);
  // The same for the reason phrase.
  const s = parseWhole(
    Buffer.concat([raw('HTTP/1.1 200 '), Buffer.from([0xc9, 0x74, 0xe9]), raw('\r\n\r\n')]),
  );
  t.equal(s.heads[0]!.statusMessage, '\u00c9t\u00e9');
});

t.test('status line variants', async (t) => {
  const cases: [string, number, string][] = [
    ['HTTP/1.1 200', 200, ''],
    ['HTTP/1.1 200 ', 200, ''],
    ['HTTP/1.1 404 Not Found', 404, 'Not Found'],
    ['HTTP/1.1 599 Custom  reason\twith tab', 599, 'Custom  reason\twith tab'],
    ['HTTP/1.1 999 Odd', 999, 'Odd'],
  ];
  for (const [line, status, message] of cases) {
    const r = parseWhole(`${line}\r\nContent-Length: 0\r\n\r\n`);
    t.equal(r.code, undefined, line);
    t.equal(r.heads[0]!.status, status);
    t.equal(r.heads[0]!.statusMessage, message);
  }
});

t.test(
  'a status code below 100 is a final response (or refused), never skipped as interim',
  async (t) => {
    // Node's client takes "HTTP/1.1 099 Weird" as a final response with status 99. Our
    // parser takes any status below 200 (but 101) as an interim 1xx and skips it: the
    // real response is swallowed, its body bytes are read as the start of the next head,
    // and at the close the request fails with "socket hang up".
    for (const line of ['HTTP/1.1 099 Weird', 'HTTP/1.1 000 Zero']) {
      const r = parseWhole(`${line}\r\nContent-Length: 2\r\n\r\nhi`);
      const refused = r.code !== undefined;
      const delivered = r.heads.length === 1 && r.body() === 'hi' && r.completes === 1;
      t.ok(refused || delivered, `${line}: refused or delivered, not skipped`, {
        heads: r.heads.length,
        completes: r.completes,
        stillWaitingForAHead: r.parser.active && r.parser.untouched === false,
      });
    }
  },
);

t.test('Content-Length values', async (t) => {
  // As Node: one plain number, surrounding whitespace allowed.
  const ok = ['Content-Length:  5 \r\n', 'Content-Length: 005\r\n'];
  for (const headers of ok) {
    const r = parseWhole(`HTTP/1.1 200 OK\r\n${headers}\r\nhelloNEXT`);
    t.equal(r.code, undefined, JSON.stringify(headers));
    t.equal(r.body(), 'hello');
    t.equal(r.used, `HTTP/1.1 200 OK\r\n${headers}\r\nhello`.length);
    t.equal(r.completes, 1);
  }
  // A repeat, even of the same value, is refused (Node: HPE_UNEXPECTED_CONTENT_LENGTH).
  const repeated = [
    'Content-Length: 5\r\nContent-Length: 5\r\n',
    'Content-Length: 5\r\nContent-Length: 6\r\n',
  ];
  for (const headers of repeated) {
    const r = parseWhole(`HTTP/1.1 200 OK\r\n${headers}\r\nhello`);
    t.equal(r.code, 'HPE_UNEXPECTED_CONTENT_LENGTH', JSON.stringify(headers));
    t.equal(r.heads.length, 0);
  }
  // A list, even of equal values, is refused (Node: HPE_INVALID_CONTENT_LENGTH).
  const invalid = [
    'Content-Length: 5, 5\r\n',
    'Content-Length: 5,5\r\n',
    'Content-Length: 5, 6\r\n',
    'Content-Length: -1\r\n',
    'Content-Length: +5\r\n',
    'Content-Length: 0x5\r\n',
    'Content-Length: 5a\r\n',
    'Content-Length: 5 5\r\n',
    'Content-Length: 5,\r\n',
    'Content-Length:\r\n',
    'Content-Length: 99999999999999999999999\r\n',
  ];
  for (const headers of invalid) {
    const r = parseWhole(`HTTP/1.1 200 OK\r\n${headers}\r\nhello`);
    t.equal(r.code, 'HPE_INVALID_CONTENT_LENGTH', JSON.stringify(headers));
  }
});

t.test('Transfer-Encoding', async (t) => {
  for (const headers of [
    'Content-Length: 5\r\nTransfer-Encoding: chunked\r\n',
    'Transfer-Encoding: chunked\r\nContent-Length: 5\r\n',
    'Transfer-Encoding: gzip\r\nContent-Length: 5\r\n',
  ]) {
    const r = parseWhole(`HTTP/1.1 200 OK\r\n${headers}\r\n5\r\nhello\r\n0\r\n\r\n`);
    t.equal(r.code, 'HPE_INVALID_TRANSFER_ENCODING', JSON.stringify(headers));
    t.equal(r.heads.length, 0);
  }

  for (const headers of [
    'Transfer-Encoding: gzip, chunked\r\n',
    'Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n',
    'Transfer-Encoding: CHUNKED\r\n',
  ]) {
    const r = parseWhole(`HTTP/1.1 200 OK\r\n${headers}\r\n5\r\nhello\r\n0\r\n\r\nNEXT`);
    t.equal(r.code, undefined, JSON.stringify(headers));
    t.equal(r.body(), 'hello', 'chunked');
    t.equal(r.completes, 1);
    t.equal(r.heads[0]!.keepAlive, true);
    t.equal(r.used, `HTTP/1.1 200 OK\r\n${headers}\r\n5\r\nhello\r\n0\r\n\r\n`.length);
  }

  for (const headers of ['Transfer-Encoding: gzip\r\n', 'Transfer-Encoding: chunked, gzip\r\n']) {
    const r = parseWhole(`HTTP/1.1 200 OK\r\n${headers}\r\n5\r\nhello\r\n0\r\n\r\n`);
    t.equal(r.code, undefined, JSON.stringify(headers));
    t.equal(r.parser.delimitedByClose, true, 'runs to the close');
    t.equal(r.heads[0]!.keepAlive, false);
    t.equal(r.completes, 0);
    r.parser.finish();
    t.equal(r.completes, 1);
    t.equal(r.body(), '5\r\nhello\r\n0\r\n\r\n');
  }
});

t.test('malformed responses are refused with a code', async (t) => {
  const cases: [string, string, string | Buffer, number?][] = [
    ['status line: 2-digit status', 'HPE_INVALID_STATUS', 'HTTP/1.1 20 OK\r\n\r\n'],
    ['status line: 4-digit status', 'HPE_INVALID_STATUS', 'HTTP/1.1 2000 OK\r\n\r\n'],
    ['status line: not HTTP', 'HPE_INVALID_CONSTANT', 'ICY 200 OK\r\n\r\n'],
    ['status line: lower case', 'HPE_INVALID_CONSTANT', 'http/1.1 200 OK\r\n\r\n'],
    ['status line: letters', 'HPE_INVALID_STATUS', 'HTTP/1.1 abc OK\r\n\r\n'],
    ['status line: tab', 'HPE_INVALID_CONSTANT', 'HTTP/1.1\t200 OK\r\n\r\n'],
    ['status line: HTTP/1.2', 'HPE_INVALID_CONSTANT', 'HTTP/1.2 200 OK\r\n\r\n'],
    ['status line: control char', 'HPE_INVALID_STATUS', 'HTTP/1.1 200 O\x01K\r\n\r\n'],
    [
      'obs-fold',
      'HPE_INVALID_HEADER_TOKEN',
      'HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n',
    ],
    ['obs-fold (tab)', 'HPE_INVALID_HEADER_TOKEN', 'HTTP/1.1 200 OK\r\nX: a\r\n\tb: c\r\n\r\n'],
    ['space in header name', 'HPE_INVALID_HEADER_TOKEN', 'HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n'],
    ['space before colon', 'HPE_INVALID_HEADER_TOKEN', 'HTTP/1.1 200 OK\r\nFoo : x\r\n\r\n'],
    ['non-token name', 'HPE_INVALID_HEADER_TOKEN', 'HTTP/1.1 200 OK\r\nX@Y: x\r\n\r\n'],
    ['empty name', 'HPE_INVALID_HEADER_TOKEN', 'HTTP/1.1 200 OK\r\n: x\r\n\r\n'],
    ['no colon', 'HPE_INVALID_HEADER_TOKEN', 'HTTP/1.1 200 OK\r\nNoColon\r\n\r\n'],
    ['control char in value', 'HPE_INVALID_HEADER_TOKEN', 'HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n'],
    ['NUL in value', 'HPE_INVALID_HEADER_TOKEN', 'HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n'],
    ['DEL in value', 'HPE_INVALID_HEADER_TOKEN', 'HTTP/1.1 200 OK\r\nX: a\x7fb\r\n\r\n'],
    ['bare CR in value', 'HPE_LF_EXPECTED', 'HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n'],
    ['bare LF between headers', 'HPE_CR_EXPECTED', 'HTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n'],
    [
      'control char in a chunk extension',
      'HPE_STRICT',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\x01\r\nhello\r\n0\r\n\r\n',
    ],
    ...(['zz', '0x5', '-1', '', ' ', '+5', ' 5', '5 ', '5 ;a=b', '12345678901234'] as const).map(
      (size): [string, string, string] => [
        `chunk size ${JSON.stringify(size)}`,
        'HPE_INVALID_CHUNK_SIZE',
        `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${size}\r\nhello\r\n0\r\n\r\n`,
      ],
    ),
    [
      'chunk data longer than its size',
      'HPE_STRICT',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n',
    ],
    [
      'chunk size line too long',
      'HPE_INVALID_CHUNK_SIZE',
      `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;${'x'.repeat(5000)}\r\nhello\r\n0\r\n\r\n`,
    ],
    [
      'invalid trailer',
      'HPE_INVALID_HEADER_TOKEN',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer\r\n\r\n',
    ],
    [
      'head over maxHeaderBytes',
      'HPE_HEADER_OVERFLOW',
      `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(200)}\r\nContent-Length: 0\r\n\r\n`,
      100,
    ],
    [
      'unterminated head over maxHeaderBytes',
      'HPE_HEADER_OVERFLOW',
      `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(200)}`,
      100,
    ],
    [
      'trailers over maxHeaderBytes',
      'HPE_HEADER_OVERFLOW',
      `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n${'X-T: 0123456789\r\n'.repeat(10)}\r\n`,
      100,
    ],
  ];
  for (const [name, code, input, maxHeaderBytes] of cases) {
    const r = parseWhole(input, { maxHeaderBytes });
    t.equal(r.code, code, name);
    t.equal(r.completes, 0, `${name}: no completion`);
  }

  // The errors are ResponseParseErrors carrying the code.
  const r = rig();
  t.throws(() => r.parser.execute(raw('HTTP/1.1 20 OK\r\n\r\n')), {
    name: 'ResponseParseError',
    code: 'HPE_INVALID_STATUS',
  });
});

t.test('maxHeaderBytes boundary', async (t) => {
  const input = 'HTTP/1.1 200 OK\r\nX-Pad: aaaa\r\nContent-Length: 0\r\n\r\n';
  t.equal(parseWhole(input, { maxHeaderBytes: input.length }).code, undefined, 'exactly the limit');
  t.equal(parseWhole(input, { maxHeaderBytes: input.length - 1 }).code, 'HPE_HEADER_OVERFLOW');
  // Byte by byte, the same.
  for (const [limit, code] of [
    [input.length, undefined],
    [input.length - 1, 'HPE_HEADER_OVERFLOW'],
  ] as const) {
    const r = rig({ maxHeaderBytes: limit });
    const buf = raw(input);
    const got = errorCode(() => {
      for (let i = 0; i < buf.length; i++) r.parser.execute(buf.subarray(i, i + 1));
    });
    t.equal(got, code, `byte by byte, limit ${limit}`);
  }
  // Each interim head has its own allowance.
  const interim = 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n';
  t.equal(parseWhole(interim + interim + input, { maxHeaderBytes: input.length }).code, undefined);
});

t.test('a trailer line longer than maxHeaderBytes is a header overflow', async (t) => {
  // Node gives HPE_HEADER_OVERFLOW here, and so does our parser for trailers over the
  // limit spread over several lines; one long trailer line gets HPE_INVALID_CHUNK_SIZE
  // ("a trailer line is too long": readLine's error code is the chunk-size one).
  const r = parseWhole(
    `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: ${'a'.repeat(300)}\r\n\r\n`,
    { maxHeaderBytes: 200 },
  );
  t.equal(r.code, 'HPE_HEADER_OVERFLOW');
});

t.test('finish() before or inside a response', async (t) => {
  const idle = new ResponseParser(
    { onHead() {}, onBody() {}, onComplete() {} },
    { maxHeaderBytes: MAX_HEADER_BYTES },
  );
  t.equal(idle.active, false);
  t.equal(idle.execute(raw('HTTP/1.1 200 OK\r\n\r\n')), 0, 'not expecting: nothing consumed');
  t.doesNotThrow(() => idle.finish(), 'idle: nothing to cut short');

  const cases: [string, string][] = [
    ['', 'ECONNRESET'],
    ['HTTP/1.1 200 OK\r\nContent-Le', 'ECONNRESET'],
    ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel', 'HPE_INVALID_EOF_STATE'],
    ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', 'HPE_INVALID_EOF_STATE'],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel', 'HPE_INVALID_EOF_STATE'],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r', 'HPE_INVALID_EOF_STATE'],
  ];
  for (const [input, code] of cases) {
    const r = parseWhole(input, { finish: true });
    t.equal(r.code, code, JSON.stringify(input));
    t.equal(r.completes, 0);
  }
  const hangUp = rig();
  t.throws(() => hangUp.parser.finish(), { code: 'ECONNRESET', message: 'socket hang up' });
});

t.test('bytes after a complete response are not consumed', async (t) => {
  const cases: [string, string][] = [
    ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello', 'HTTP/1.1 200 OK\r\n\r\n'],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', '\r\n'],
    ['HTTP/1.1 204 No Content\r\n\r\n', 'x'],
    ['HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'xyz'],
  ];
  for (const [response, after] of cases) {
    const r = rig();
    const input = raw(response + after);
    t.equal(r.parser.execute(input), response.length, JSON.stringify(response));
    t.equal(r.completes, 1);
    t.equal(r.parser.execute(raw('more')), 0, 'done: nothing more is consumed');
    t.equal(r.completes, 1);
  }
});

t.test('reset() from inside a callback stops parsing', async (t) => {
  // From onBody, with a Content-Length body and bytes after it.
  const a = rig({ onBody: (p) => p.reset() });
  const input = raw('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA');
  t.equal(a.parser.execute(input), input.length, 'returns at once, all of it');
  t.equal(a.chunks.length, 1);
  t.equal(a.completes, 0, 'no completion after reset');
  t.equal(a.parser.active, false);
  t.equal(a.parser.execute(raw('more')), 0);
  t.doesNotThrow(() => a.parser.finish());

  // From onBody, mid chunked body: no later chunk is delivered.
  const b = rig({ onBody: (p) => p.reset() });
  const chunked = raw(
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n',
  );
  t.equal(b.parser.execute(chunked), chunked.length);
  t.equal(b.body(), 'ab');
  t.equal(b.completes, 0);

  // From onBody of a close-delimited body: finish() does not complete it.
  const c = rig({ onBody: (p) => p.reset() });
  c.parser.execute(raw('HTTP/1.1 200 OK\r\n\r\nabc'));
  c.parser.finish();
  t.equal(c.completes, 0);

  // From onHead: neither body nor completion (even for a response without a body).
  for (const response of [
    'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello',
    'HTTP/1.1 204 No Content\r\n\r\n',
  ]) {
    const d = rig({ onHead: (p) => p.reset() });
    const buf = raw(response);
    t.equal(d.parser.execute(buf), buf.length);
    t.equal(d.heads.length, 1);
    t.equal(d.chunks.length, 0);
    t.equal(d.completes, 0, JSON.stringify(response));
  }

  // The parser can be used again after a reset.
  const e = rig({ onBody: (p) => p.reset() });
  e.parser.execute(raw('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe'));
  e.parser.expect('GET');
  t.equal(e.parser.untouched, true);
  const again = raw('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
  t.equal(e.parser.execute(again), again.length);
  t.equal(e.heads.length, 2);
  t.equal(e.completes, 1);
});

t.test('two responses in sequence on one parser', async (t) => {
  const first = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n0\r\n\r\n';
  const second = 'HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\ntwo';

  // The second in the same buffer as the first.
  const r = rig();
  const both = raw(first + second);
  const used = r.parser.execute(both);
  t.equal(used, first.length);
  t.equal(r.completes, 1);
  t.equal(r.body(), 'one');
  r.parser.expect('GET');
  t.equal(r.parser.untouched, true);
  t.equal(r.parser.execute(both.subarray(used)), second.length);
  t.equal(r.completes, 2);
  t.same(
    r.heads.map((h) => [h.status, h.statusMessage]),
    [
      [200, 'OK'],
      [404, 'Not Found'],
    ],
  );
  t.equal(r.body(), 'onetwo');

  // In a later buffer, after a HEAD; split mid-head.
  const s = rig({ method: 'HEAD' });
  const h9 = 'HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n';
  t.equal(s.parser.execute(raw(h9)), h9.length);
  t.equal(s.completes, 1);
  s.parser.expect('GET');
  const part1 = 'HTTP/1.1 200 OK\r\nContent-';
  const part2 = 'Length: 9\r\n\r\n123456789';
  t.equal(s.parser.execute(raw(part1)), part1.length);
  t.equal(s.parser.execute(raw(part2)), part2.length);
  t.equal(s.completes, 2);
  t.equal(s.body(), '123456789');
  t.equal(s.heads[1]!.rawHeaders[1], '9');

  // A GET after a HEAD has a body again; a HEAD after a GET has none.
  const u = rig();
  u.parser.execute(raw('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
  u.parser.expect('HEAD');
  const h = raw('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n');
  t.equal(u.parser.execute(h), h.length);
  t.equal(u.completes, 2);
  t.equal(u.body(), 'ok');
});

t.test('untouched', async (t) => {
  const r = rig();
  t.equal(r.parser.untouched, true, 'before any byte');
  r.parser.execute(Buffer.alloc(0));
  t.equal(r.parser.untouched, true, 'an empty read is no byte');
  r.parser.execute(raw('H'));
  t.equal(r.parser.untouched, false, 'after the first byte');
  r.parser.execute(raw('TTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
  t.equal(r.parser.untouched, false);
  r.parser.expect('GET');
  t.equal(r.parser.untouched, true, 'a new response');
  t.equal(
    errorCode(() => r.parser.finish()),
    'ECONNRESET',
  );
});

// ---- split robustness -------------------------------------------------------------

interface Outcome {
  heads: ParsedResponseHead[];
  body: string;
  completes: number;
  used: number;
}

/** Feeds `pieces` in turn (then finish() if asked), summing what execute consumed. */
function feed(pieces: Buffer[], method: string, finish: boolean): Outcome {
  const r = rig({ method });
  let used = 0;
  for (const piece of pieces) used += r.parser.execute(piece);
  if (finish) r.parser.finish();
  return { heads: r.heads, body: r.body(), completes: r.completes, used };
}

const splitCases: {
  name: string;
  response: string;
  after: string;
  method?: string;
  finish?: boolean;
}[] = [
  {
    name: 'chunked with extensions and trailers',
    response:
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n' +
      '5;ext=1\r\nhello\r\n1;a\r\n \r\nC\r\nworld\r\n\r\n!!!\r\n0\r\nX-Trailer: yes\r\nX-More: 1\r\n\r\n',
    after: 'HTTP/1.1 200 OK\r\n\r\n',
  },
  {
    name: 'content-length',
    response:
      'HTTP/1.1 200 OK\r\nContent-Length: 14\r\nKeep-Alive: timeout=5\r\n\r\nhello\r\n\r\nworld',
    after: 'XYZ',
  },
  {
    name: '1xx then final',
    response:
      'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n' +
      'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    after: '\r\n',
  },
  {
    name: 'HEAD',
    response: 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n',
    after: 'HTTP/1.1',
    method: 'HEAD',
  },
  {
    name: 'close-delimited',
    response: 'HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody\r\n\r\nrest',
    after: '',
    finish: true,
  },
];

for (const c of splitCases) {
  t.test(`split at every offset: ${c.name}`, async (t) => {
    const input = raw(c.response + c.after);
    const method = c.method ?? 'GET';
    const finish = c.finish ?? false;
    const reference = feed([input], method, finish);
    t.equal(reference.heads.length, 1);
    t.equal(reference.completes, 1);
    t.equal(reference.used, c.response.length);

    let mismatches = 0;
    const check = (pieces: Buffer[], label: string): void => {
      const got = feed(pieces, method, finish);
      const same =
        got.completes === 1 &&
        got.used === reference.used &&
        got.body === reference.body &&
        JSON.stringify(got.heads) === JSON.stringify(reference.heads);
      if (!same) {
        mismatches++;
        if (mismatches <= 5) t.same(got, reference, label);
      }
    };
    for (let i = 0; i <= input.length; i++) {
      check([input.subarray(0, i), input.subarray(i)], `split at ${i}`);
    }
    for (let i = 0; i < input.length; i++) {
      for (let j = i + 1; j < input.length; j++) {
        check(
          [input.subarray(0, i), input.subarray(i, j), input.subarray(j)],
          `split at ${i}, ${j}`,
        );
      }
    }
    const bytes: Buffer[] = [];
    for (let i = 0; i < input.length; i++) bytes.push(input.subarray(i, i + 1));
    check(bytes, 'byte by byte');
    t.equal(mismatches, 0, 'every split gives the same result');
  });
}

t.test('split errors: the same error at every split', async (t) => {
  const bad = [
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
  ];
  for (const response of bad) {
    const input = raw(response);
    const whole = parseWhole(input).code;
    t.ok(whole?.startsWith('HPE_'), `${JSON.stringify(response)}: ${whole}`);
    let differing = 0;
    for (let i = 0; i <= input.length; i++) {
      const r = rig();
      const code = errorCode(() => {
        r.parser.execute(input.subarray(0, i));
        r.parser.execute(input.subarray(i));
      });
      if (code !== whole) differing++;
    }
    t.equal(differing, 0);
  }
});

// ---- differential: Node's client parser on the same bytes ---------------------------

type Result =
  | { ok: true; status: number; statusMessage: string; rawHeaders: string[]; body: string }
  | { ok: false; code: string; where: string };

/** Serves `bytes` once on 127.0.0.1 and reports what Node's http.request makes of them. */
async function viaNode(t: Test, bytes: Buffer): Promise<Result> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    socket.resume();
    socket.end(bytes);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  try {
    return await new Promise<Result>((resolve) => {
      let settled = false;
      const settle = (result: Result): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(result);
      };
      const req = http.request(
        { host: '127.0.0.1', port, method: 'GET', path: '/', agent: false },
        (res) => {
          const body: Buffer[] = [];
          res.on('data', (chunk: Buffer) => body.push(chunk));
          res.on('end', () =>
            settle({
              ok: true,
              status: res.statusCode!,
              statusMessage: res.statusMessage!,
              rawHeaders: res.rawHeaders,
              body: Buffer.concat(body).toString('latin1'),
            }),
          );
          res.on('error', (err: NodeJS.ErrnoException) =>
            settle({ ok: false, code: err.code ?? err.message, where: 'body' }),
          );
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) =>
        settle({ ok: false, code: err.code ?? err.message, where: 'request' }),
      );
      req.on('upgrade', (_res, socket) => {
        socket.destroy();
        settle({ ok: false, code: 'upgrade', where: 'request' });
      });
      const timer = setTimeout(() => {
        settle({ ok: false, code: 'timeout', where: 'request' });
        req.destroy();
      }, 3000);
      req.end();
    });
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

function viaOurs(bytes: Buffer): Result {
  const r = rig();
  let where = 'execute';
  const code = errorCode(() => {
    const used = r.parser.execute(bytes);
    if (used !== bytes.length) throw new ResponseParseError('bytes after the response', '');
    where = 'finish';
    r.parser.finish();
  });
  if (code !== undefined) return { ok: false, code, where };
  if (r.heads.length !== 1 || r.completes !== 1) return { ok: false, code: 'no response', where };
  const h = r.heads[0]!;
  return {
    ok: true,
    status: h.status,
    statusMessage: h.statusMessage,
    rawHeaders: h.rawHeaders,
    body: r.body(),
  };
}

t.test('differential against Node’s client parser', async (t) => {
  const show = (r: Result): string =>
    r.ok
      ? `${r.status} ${JSON.stringify(r.statusMessage)} body ${JSON.stringify(r.body)}`
      : `error ${r.code} (${r.where})`;
  const rows: string[] = [];
  for (const [name, judgement, text] of RESPONSE_CORPUS) {
    const bytes = raw(text);
    const node = await viaNode(t, bytes);
    const ours = viaOurs(bytes);
    const same =
      node.ok && ours.ok ? JSON.stringify(node) === JSON.stringify(ours) : node.ok === ours.ok;
    const codes = !node.ok && !ours.ok && node.code !== ours.code;
    if (!same || codes) rows.push(`| ${name} | ${show(node)} | ${show(ours)} |`);
    if (judgement === 'agree') {
      if (node.ok) t.same(ours, node, `${name}: the same response as Node`);
      else
        t.equal(
          ours.ok,
          false,
          `${name}: refused, as by Node (${node.code} / ${ours.ok ? '-' : ours.code})`,
        );
    } else if (judgement === 'not-swallowed') {
      const refusedAtHead = !ours.ok && ours.where === 'execute';
      t.ok(
        refusedAtHead || JSON.stringify(node) === JSON.stringify(ours),
        `${name}: Node gives ${show(node)}; ours must match or refuse at the head, gives ${show(ours)}`,
      );
    } else {
      // A known difference: ours may be stricter, never a different accepted response.
      t.ok(
        !ours.ok || same,
        `${name}: Node ${show(node)}; ours must match or refuse, gives ${show(ours)}`,
      );
    }
  }
  t.comment(['| case | Node | ours |', '|---|---|---|', ...rows].join('\n'));
});

t.test('empty lines before a status line do not count as a response started', async (t) => {
  // A stale keep-alive connection that sent a stray CRLF and closed: still retryable.
  const r = rig();
  r.parser.expect('GET');
  t.equal(r.parser.execute(raw('\r\n\r\n')), 4);
  t.equal(r.parser.untouched, true);
  t.throws(() => r.parser.finish(), { code: 'ECONNRESET' });
  r.parser.expect('GET');
  r.parser.execute(raw('\r\nH'));
  t.equal(r.parser.untouched, false);
});
