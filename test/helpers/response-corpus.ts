/**
 * The differential corpus of origin responses: each case is run through Node's own
 * client and through ours (test/cli/response-parser.test.ts: the parser alone;
 * test/cli/origin-client.test.ts: the OriginClient over a socket).
 *
 * `agree`: valid responses match exactly, invalid ones are refused by both.
 * `not-swallowed`: we may refuse where Node accepts, but must not skip the response.
 * `report`: a known difference, shown in the test's table: we may refuse, never accept
 *   otherwise.
 */
export type Judgement = 'agree' | 'not-swallowed' | 'report';
export type CorpusCase = [name: string, judgement: Judgement, text: string];

const TE = 'Transfer-Encoding: chunked\r\n';
export const RESPONSE_CORPUS: CorpusCase[] = [
  // Valid.
  ['content-length', 'agree', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello'],
  [
    'chunked, extensions, trailers',
    'agree',
    `HTTP/1.1 200 OK\r\n${TE}\r\n5;a=b\r\nhello\r\n6;c\r\n world\r\n0\r\nX-T: 1\r\n\r\n`,
  ],
  ['close-delimited 1.0', 'agree', 'HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody until close'],
  ['close-delimited 1.1', 'agree', 'HTTP/1.1 200 OK\r\n\r\nbody until close'],
  // An unasked 100 Continue (we never send Expect: the relay answered the visitor's) is
  // skipped, as Node does (undici refuses it as 'bad response').
  [
    '100 + 103 then 200',
    'agree',
    'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi',
  ],
  [
    '102 + 103 then 200',
    'agree',
    'HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi',
  ],
  ['204', 'agree', 'HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n'],
  ['304 with Content-Length', 'agree', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n'],
  ['missing reason phrase', 'agree', 'HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi'],
  ['empty reason phrase', 'agree', 'HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nhi'],
  ['status 999', 'agree', 'HTTP/1.1 999 Odd\r\nContent-Length: 2\r\n\r\nhi'],
  ['tab in reason phrase', 'agree', 'HTTP/1.1 200 O\tK\r\nContent-Length: 2\r\n\r\nhi'],
  // Kept as latin1, as Node does (undici decodes UTF-8: latin1 bytes become U+FFFD).
  ['latin1 reason phrase', 'agree', 'HTTP/1.1 200 \xc9t\xe9\r\nContent-Length: 2\r\n\r\nhi'],
  [
    'empty header value',
    'agree',
    'HTTP/1.1 200 OK\r\nX-Empty:\r\nX-Blank:  \r\nContent-Length: 2\r\n\r\nhi',
  ],
  [
    'latin1 header value, 0xA0 at the edges',
    'agree',
    'HTTP/1.1 200 OK\r\nX: \xa0\xe9\x80\xff\xa0 \t\r\nContent-Length: 2\r\n\r\nhi',
  ],
  [
    'repeated headers, case kept',
    'agree',
    'HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 0\r\n\r\n',
  ],
  [
    'Transfer-Encoding: gzip',
    'agree',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw bytes',
  ],
  [
    'Transfer-Encoding: chunked, gzip',
    'agree',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\nhi\r\n0\r\n\r\n',
  ],
  [
    'Transfer-Encoding: gzip, chunked',
    'agree',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n',
  ],
  ['empty Transfer-Encoding', 'agree', 'HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\nhi'],
  // Invalid.
  ['LF-only line endings', 'agree', 'HTTP/1.1 200 OK\nContent-Length: 2\n\nhi'],
  ['one LF-only header line', 'agree', 'HTTP/1.1 200 OK\r\nX: 1\nContent-Length: 2\r\n\r\nhi'],
  ['LF-only chunk lines', 'agree', `HTTP/1.1 200 OK\r\n${TE}\r\n2\nhi\n0\n\n`],
  ['negative Content-Length', 'agree', 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhi'],
  [
    'huge Content-Length',
    'agree',
    'HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nhi',
  ],
  ['Content-Length: +2', 'agree', 'HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nhi'],
  [
    'Content-Length with Transfer-Encoding',
    'agree',
    `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n${TE}\r\n2\r\nhi\r\n0\r\n\r\n`,
  ],
  ['body shorter than Content-Length', 'agree', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhi'],
  ['chunked without the last chunk', 'agree', `HTTP/1.1 200 OK\r\n${TE}\r\n2\r\nhi\r\n`],
  [
    'chunk-size overflow',
    'agree',
    `HTTP/1.1 200 OK\r\n${TE}\r\nfffffffffffffffff\r\nhi\r\n0\r\n\r\n`,
  ],
  ['chunk data longer than its size', 'agree', `HTTP/1.1 200 OK\r\n${TE}\r\n2\r\nhix\r\n0\r\n\r\n`],
  [
    'control char in chunk extension',
    'agree',
    `HTTP/1.1 200 OK\r\n${TE}\r\n2;a=\x01\r\nhi\r\n0\r\n\r\n`,
  ],
  ['invalid trailer', 'agree', `HTTP/1.1 200 OK\r\n${TE}\r\n2\r\nhi\r\n0\r\nBad Trailer\r\n\r\n`],
  ['space before colon', 'agree', 'HTTP/1.1 200 OK\r\nFoo : bar\r\nContent-Length: 2\r\n\r\nhi'],
  ['header without colon', 'agree', 'HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 2\r\n\r\nhi'],
  ['obs-fold', 'agree', 'HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nhi'],
  ['DEL in header value', 'agree', 'HTTP/1.1 200 OK\r\nX: a\x7fb\r\nContent-Length: 2\r\n\r\nhi'],
  ['bare CR in header value', 'agree', 'HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 2\r\n\r\nhi'],
  ['lower-case http', 'agree', 'http/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi'],
  ['2-digit status', 'agree', 'HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nhi'],
  ['tab after version', 'agree', 'HTTP/1.1\t200 OK\r\nContent-Length: 2\r\n\r\nhi'],
  ['cut inside the head', 'agree', 'HTTP/1.1 200 OK\r\nContent-Le'],
  ['nothing at all', 'agree', ''],
  // Node accepts a status below 100 as final; we may refuse it, but not skip it.
  ['status 099', 'not-swallowed', 'HTTP/1.1 099 Weird\r\nContent-Length: 2\r\n\r\nhi'],
  ['status 000', 'not-swallowed', 'HTTP/1.1 000 Zero\r\nContent-Length: 2\r\n\r\nhi'],
  // Known, accepted differences.
  ['HTTP/2.0 status line', 'report', 'HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nhi'],
  ['HTTP/0.9 status line', 'report', 'HTTP/0.9 200 OK\r\nContent-Length: 2\r\n\r\nhi'],
  ['101 without Upgrade header', 'report', 'HTTP/1.1 101 Switching Protocols\r\n\r\n'],
  ['Content-Length: 2, 2', 'report', 'HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nhi'],
  [
    'two Content-Length: 2',
    'report',
    'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi',
  ],
  [
    'Content-Length with 16 digits',
    'report',
    'HTTP/1.1 200 OK\r\nContent-Length: 0000000000000002\r\n\r\nhi',
  ],
  ['chunk size with leading space', 'report', `HTTP/1.1 200 OK\r\n${TE}\r\n 2\r\nhi\r\n0\r\n\r\n`],
  ['chunk size with trailing space', 'report', `HTTP/1.1 200 OK\r\n${TE}\r\n2 \r\nhi\r\n0\r\n\r\n`],
  [
    'chunk size, space before ;ext',
    'report',
    `HTTP/1.1 200 OK\r\n${TE}\r\n2 ;a=b\r\nhi\r\n0\r\n\r\n`,
  ],
  [
    'chunk size with 14 digits',
    'report',
    `HTTP/1.1 200 OK\r\n${TE}\r\n00000000000002\r\nhi\r\n0\r\n\r\n`,
  ],
  ['CRLF before the status line', 'report', '\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi'],
];
