/**
 * An HTTP/1.x response parser for the CLI's own origin connections (see http1.ts):
 * the status line and headers, then the body framed as RFC 9112 §6.3 says (none for a
 * HEAD request or a 1xx/204/304 status, chunked, Content-Length, or until the
 * connection closes). Body bytes are handed on as slices of the input, never copied.
 *
 * It refuses what Node's own client parser (llhttp, no lenient flags) refuses, checked
 * case by case against Node in test/cli/response-parser.test.ts: bare LF line endings,
 * a header name that is not a token, control characters in values, obs-fold, a
 * Content-Length with Transfer-Encoding, a list or a repeat of Content-Length, chunk
 * sizes with whitespace. What it refuses becomes a `ResponseParseError` with an
 * llhttp-style code (`HPE_*`), mostly the one Node gives. Where it differs, it is
 * stricter: only HTTP/1.0 and 1.1 status lines, Content-Length up to 15 digits, chunk
 * sizes up to 13 hex digits, and a 101 to a request that asked for no upgrade. A 101 to
 * one that did is the last thing parsed: the bytes after its head are the new protocol's.
 *
 * The parser may keep a reference to part of an input buffer until the next call:
 * callers must not reuse a buffer they passed (socket 'data' buffers are fresh).
 */

/** The final (non-1xx) response head, or the 101 to an upgrade. */
export interface ParsedResponseHead {
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  versionMinor: number;
  status: number;
  statusMessage: string;
  /** [name, value, name, value, …] as Node's `rawHeaders`: latin1, case kept, OWS trimmed. */
  rawHeaders: string[];
  /** The connection may carry another request once this response is complete. */
  keepAlive: boolean;
  /** From `Keep-Alive: timeout=N`, in ms, when present. */
  keepAliveTimeoutMs: number | undefined;
  /** The first Content-Encoding value, if any (the host-hint check skips encoded bodies). */
  contentEncoding: string | undefined;
}

export interface ResponseParserEvents {
  onHead(head: ParsedResponseHead): void;
  /** A slice of the input buffer: consume or copy it before the next `execute`. */
  onBody(chunk: Buffer): void;
  /** The response is complete (for a body delimited by the close: from `finish`). */
  onComplete(): void;
}

export class ResponseParseError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'ResponseParseError';
    this.code = code;
  }
}

type State =
  | 'idle'
  | 'head'
  | 'length'
  | 'chunk-size'
  | 'chunk-data'
  | 'chunk-data-end'
  | 'trailers'
  | 'until-close'
  | 'done';

const CRLF = Buffer.from('\r\n');
/** A byte's value as a hex digit, or -1. */
const HEX_VALUE = Int8Array.from({ length: 256 }, (_, b) => {
  const c = String.fromCharCode(b);
  return /^[0-9a-fA-F]$/.test(c) ? parseInt(c, 16) : -1;
});
const CRLFCRLF = Buffer.from('\r\n\r\n');
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?$/;
/** A chunk-size line longer than this is an attack or garbage, not an extension. */
const MAX_CHUNK_LINE_BYTES = 4096;
/** Hex digits in a chunk size: 13 keeps it below 2^53. */
const MAX_CHUNK_SIZE_DIGITS = 13;

function fail(code: string, message: string): never {
  throw new ResponseParseError(code, message);
}

/** Throws on an LF at or after `from` that no CR precedes (llhttp wants CRLF). */
function refuseBareLf(buf: Buffer, from: number): void {
  let at = buf.indexOf(10, from);
  while (at >= 0) {
    if (at === 0 || buf[at - 1] !== 13) fail('HPE_CR_EXPECTED', 'a line ends in LF without CR');
    at = buf.indexOf(10, at + 1);
  }
}

/** Strips optional whitespace (SP, HTAB only: 0xA0 and the like are value bytes). */
function trimOws(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && (s.charCodeAt(start) === 32 || s.charCodeAt(start) === 9)) start++;
  while (end > start && (s.charCodeAt(end - 1) === 32 || s.charCodeAt(end - 1) === 9)) end--;
  return start === 0 && end === s.length ? s : s.slice(start, end);
}

/** Comma-separated list members, lower-cased and trimmed, empty ones dropped. */
function listMembers(value: string): string[] {
  const out: string[] = [];
  for (const part of value.split(',')) {
    const member = trimOws(part).toLowerCase();
    if (member !== '') out.push(member);
  }
  return out;
}

export class ResponseParser {
  private readonly events: ResponseParserEvents;
  private readonly maxHeaderBytes: number;
  private state: State = 'idle';
  private noBody = false;
  private upgrade = false;
  /** Bytes of a head or chunk line not yet complete. */
  private pending: Buffer | undefined;
  private remaining = 0;
  /** Bytes of trailers so far. */
  private trailerBytes = 0;
  /** A byte of the current response arrived (empty lines before it do not count). */
  private received = false;
  private generation = 0;

  constructor(events: ResponseParserEvents, options: { maxHeaderBytes: number }) {
    this.events = events;
    this.maxHeaderBytes = options.maxHeaderBytes;
  }

  /** Waiting for (or in) a response, as opposed to idle or done. */
  get active(): boolean {
    return this.state !== 'idle' && this.state !== 'done';
  }

  /** No byte of the response has arrived yet. */
  get untouched(): boolean {
    return !this.received;
  }

  /** The body runs until the connection closes. */
  get delimitedByClose(): boolean {
    return this.state === 'until-close';
  }

  /** Prepares for the response to a request with `method` (that asks for an `upgrade`). */
  expect(method: string, upgrade = false): void {
    this.generation++;
    this.state = 'head';
    this.noBody = method === 'HEAD';
    this.upgrade = upgrade;
    this.pending = undefined;
    this.remaining = 0;
    this.trailerBytes = 0;
    this.received = false;
  }

  /** Stops: an `execute` in progress returns at once (safe to call from a callback). */
  reset(): void {
    this.generation++;
    this.state = 'idle';
    this.pending = undefined;
  }

  /**
   * Parses `data`. Returns how many bytes belonged to the response: fewer than
   * `data.length` means bytes arrived after its end (the caller decides what that
   * means). Throws `ResponseParseError` on a malformed response.
   */
  execute(data: Buffer): number {
    const generation = this.generation;
    let at = 0;
    while (at < data.length) {
      if (this.generation !== generation) return data.length;
      switch (this.state) {
        case 'idle':
        case 'done':
          return at;
        case 'head':
          at = this.readHead(data, at);
          break;
        case 'length':
        case 'chunk-data': {
          const byLength = this.state === 'length';
          const n = Math.min(this.remaining, data.length - at);
          this.remaining -= n;
          const chunk = data.subarray(at, at + n);
          at += n;
          if (this.remaining === 0) this.state = byLength ? 'done' : 'chunk-data-end';
          this.events.onBody(chunk);
          if (byLength && this.state === 'done' && this.generation === generation) {
            this.events.onComplete();
          }
          break;
        }
        case 'chunk-size':
          at = this.readChunkSize(data, at);
          break;
        case 'chunk-data-end':
          at = this.readChunkDataEnd(data, at);
          break;
        case 'trailers':
          at = this.readTrailers(data, at);
          break;
        case 'until-close': {
          const chunk = data.subarray(at);
          at = data.length;
          this.events.onBody(chunk);
          break;
        }
      }
    }
    return at;
  }

  /**
   * The connection ended. Completes a body delimited by the close; throws when a
   * response was under way (or not yet started) and is now cut short.
   */
  finish(): void {
    switch (this.state) {
      case 'idle':
      case 'done':
        return;
      case 'until-close':
        this.state = 'done';
        this.events.onComplete();
        return;
      case 'head':
        fail('ECONNRESET', 'socket hang up');
      default:
        fail('HPE_INVALID_EOF_STATE', 'the connection closed before the body was complete');
    }
  }

  // ---- head ------------------------------------------------------------------------

  private readHead(data: Buffer, at: number): number {
    if (this.pending === undefined) {
      // Empty lines before a status line are skipped, as llhttp does.
      while (at + 1 < data.length && data[at] === 13 && data[at + 1] === 10) at += 2;
      if (at === data.length) return at;
    }
    this.received = true;
    let buf = data.subarray(at);
    let searchFrom = 0;
    if (this.pending !== undefined) {
      searchFrom = Math.max(0, this.pending.length - 3);
      buf = Buffer.concat([this.pending, buf]);
    }
    const end = buf.indexOf(CRLFCRLF, searchFrom);
    if (end < 0) {
      refuseBareLf(buf, searchFrom);
      if (buf.length > this.maxHeaderBytes) {
        fail('HPE_HEADER_OVERFLOW', `the response head is over ${this.maxHeaderBytes} bytes`);
      }
      this.pending = buf;
      return data.length;
    }
    const headEnd = end + 4;
    if (headEnd > this.maxHeaderBytes) {
      fail('HPE_HEADER_OVERFLOW', `the response head is over ${this.maxHeaderBytes} bytes`);
    }
    const consumed = headEnd - (this.pending?.length ?? 0);
    this.pending = undefined;
    const head = this.parseHead(buf.toString('latin1', 0, end));
    // undefined: an interim (1xx) response; the real one follows.
    if (head !== undefined) {
      const generation = this.generation;
      this.events.onHead(head);
      if (this.state === 'done' && this.generation === generation) this.events.onComplete();
    }
    return at + consumed;
  }

  /** Parses one head; undefined for a 1xx to skip. Sets the body state. */
  private parseHead(text: string): ParsedResponseHead | undefined {
    const lines = text.split('\r\n');
    const statusLine = STATUS_LINE.exec(lines[0]!);
    if (statusLine === null) {
      if (/^HTTP\/1\.[01] /.test(lines[0]!)) {
        fail('HPE_INVALID_STATUS', `invalid status ${JSON.stringify(lines[0]!.slice(9, 24))}`);
      }
      fail(
        'HPE_INVALID_CONSTANT',
        `not an HTTP/1.x status line: ${JSON.stringify(lines[0]!.slice(0, 64))}`,
      );
    }
    const versionMinor = Number(statusLine[1]);
    const status = Number(statusLine[2]);
    const rawHeaders: string[] = [];
    let contentLength: number | undefined;
    let transferEncoding: string[] | undefined;
    let connection: string[] = [];
    let keepAliveTimeoutMs: number | undefined;
    let contentEncoding: string | undefined;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      if (colon <= 0) {
        // Includes obs-fold (a line starting with whitespace): refused, as llhttp does.
        fail(
          'HPE_INVALID_HEADER_TOKEN',
          `invalid header line ${JSON.stringify(line.slice(0, 64))}`,
        );
      }
      const name = line.slice(0, colon);
      if (!TOKEN.test(name)) {
        fail(
          'HPE_INVALID_HEADER_TOKEN',
          `invalid header name ${JSON.stringify(name.slice(0, 64))}`,
        );
      }
      const value = trimOws(line.slice(colon + 1));
      if (BAD_VALUE.test(value)) {
        fail(
          value.includes('\r')
            ? 'HPE_LF_EXPECTED'
            : value.includes('\n')
              ? 'HPE_CR_EXPECTED'
              : 'HPE_INVALID_HEADER_TOKEN',
          `invalid character in header ${JSON.stringify(name)}`,
        );
      }
      rawHeaders.push(name, value);
      switch (name.length) {
        case 14:
          if (name.toLowerCase() === 'content-length') {
            if (!/^\d{1,15}$/.test(value)) {
              fail('HPE_INVALID_CONTENT_LENGTH', `invalid Content-Length ${JSON.stringify(value)}`);
            }
            if (contentLength !== undefined) {
              fail('HPE_UNEXPECTED_CONTENT_LENGTH', 'more than one Content-Length');
            }
            contentLength = Number(value);
          }
          break;
        case 17:
          if (name.toLowerCase() === 'transfer-encoding') {
            transferEncoding = [...(transferEncoding ?? []), ...listMembers(value)];
          }
          break;
        case 16:
          if (name.toLowerCase() === 'content-encoding') contentEncoding ??= value;
          break;
        case 10: {
          const lower = name.toLowerCase();
          if (lower === 'connection') connection = [...connection, ...listMembers(value)];
          else if (lower === 'keep-alive') {
            const hint = /(?:^|[,;\s])timeout=(\d{1,9})(?:$|[,;\s])/i.exec(value);
            if (hint !== null) keepAliveTimeoutMs = Number(hint[1]) * 1000;
          }
          break;
        }
      }
    }
    if (status >= 100 && status < 200) {
      if (status !== 101) return undefined;
      if (!this.upgrade)
        fail('HPE_UNEXPECTED_UPGRADE', 'the origin switched protocols (101) unasked');
    }
    let keepAlive =
      versionMinor === 1 ? !connection.includes('close') : connection.includes('keep-alive');
    // A refused upgrade: the origin may still wait for the new protocol's bytes.
    if (this.upgrade) keepAlive = false;
    if (status === 101) {
      // Switched: what follows is not HTTP, and not ours to parse.
      this.state = 'idle';
    } else if (this.noBody || status === 204 || status === 304) {
      this.state = 'done';
    } else if (transferEncoding !== undefined) {
      if (contentLength !== undefined) {
        fail('HPE_INVALID_TRANSFER_ENCODING', 'Content-Length together with Transfer-Encoding');
      }
      if (transferEncoding.at(-1) === 'chunked') {
        this.state = 'chunk-size';
      } else {
        // Any other final coding: the body runs to the close (RFC 9112 §6.3).
        this.state = 'until-close';
        keepAlive = false;
      }
    } else if (contentLength !== undefined) {
      this.remaining = contentLength;
      this.state = contentLength === 0 ? 'done' : 'length';
    } else {
      this.state = 'until-close';
      keepAlive = false;
    }
    return {
      versionMinor,
      status,
      statusMessage: statusLine[3] ?? '',
      rawHeaders,
      keepAlive,
      keepAliveTimeoutMs,
      contentEncoding,
    };
  }

  // ---- chunked ---------------------------------------------------------------------

  /** Reads up to a CRLF; returns the line (without it) and the new offset, or stores. */
  private readLine(
    data: Buffer,
    at: number,
    limit: number,
    what: string,
    tooLong = 'HPE_INVALID_CHUNK_SIZE',
  ): [string, number] | number {
    let buf = data.subarray(at);
    let searchFrom = 0;
    const held = this.pending?.length ?? 0;
    if (this.pending !== undefined) {
      searchFrom = Math.max(0, held - 1);
      buf = Buffer.concat([this.pending, buf]);
    }
    const end = buf.indexOf(CRLF, searchFrom);
    if (end < 0) {
      refuseBareLf(buf, searchFrom);
      if (buf.length > limit) fail(tooLong, `${what} is too long`);
      this.pending = buf;
      return data.length;
    }
    refuseBareLf(buf.subarray(0, end), searchFrom);
    if (end > limit) fail(tooLong, `${what} is too long`);
    this.pending = undefined;
    return [buf.toString('latin1', 0, end), at + end + 2 - held];
  }

  private readChunkSize(data: Buffer, at: number): number {
    // The usual line, whole in this buffer: hex digits and CRLF, read byte by byte (an
    // origin writing 1 KiB chunks sends one per KiB). Anything else takes the general path.
    if (this.pending === undefined) {
      let size = 0;
      let i = at;
      for (; i < data.length && i - at < MAX_CHUNK_SIZE_DIGITS; i++) {
        const digit = HEX_VALUE[data[i]!]!;
        if (digit < 0) break;
        size = size * 16 + digit;
      }
      if (i > at && data[i] === 0x0d && data[i + 1] === 0x0a) {
        this.remaining = size;
        this.state = size === 0 ? 'trailers' : 'chunk-data';
        return i + 2;
      }
    }
    const read = this.readLine(data, at, MAX_CHUNK_LINE_BYTES, 'a chunk size line');
    if (typeof read === 'number') return read;
    const [line, next] = read;
    const semicolon = line.indexOf(';');
    const digits = semicolon < 0 ? line : line.slice(0, semicolon);
    if (!/^[0-9a-fA-F]+$/.test(digits) || digits.length > MAX_CHUNK_SIZE_DIGITS) {
      fail('HPE_INVALID_CHUNK_SIZE', `invalid chunk size ${JSON.stringify(line.slice(0, 32))}`);
    }
    if (semicolon >= 0 && BAD_VALUE.test(line.slice(semicolon))) {
      fail('HPE_STRICT', 'invalid character in a chunk extension');
    }
    this.remaining = parseInt(digits, 16);
    this.state = this.remaining === 0 ? 'trailers' : 'chunk-data';
    return next;
  }

  /** The CRLF after a chunk's data (it may arrive split). */
  private readChunkDataEnd(data: Buffer, at: number): number {
    const held = this.pending?.length ?? 0;
    const want = 2 - held;
    const available = Math.min(want, data.length - at);
    for (let i = 0; i < available; i++) {
      if (data[at + i] !== CRLF[held + i]) fail('HPE_STRICT', 'chunk data longer than its size');
    }
    if (available < want) {
      this.pending = CRLF.subarray(0, held + available);
      return at + available;
    }
    this.pending = undefined;
    this.state = 'chunk-size';
    return at + available;
  }

  private readTrailers(data: Buffer, at: number): number {
    const read = this.readLine(
      data,
      at,
      this.maxHeaderBytes,
      'a trailer line',
      'HPE_HEADER_OVERFLOW',
    );
    if (typeof read === 'number') return read;
    const [line, next] = read;
    if (line === '') {
      this.state = 'done';
      this.events.onComplete();
      return next;
    }
    this.trailerBytes += line.length + 2;
    if (this.trailerBytes > this.maxHeaderBytes) {
      fail('HPE_HEADER_OVERFLOW', `the trailers are over ${this.maxHeaderBytes} bytes`);
    }
    const colon = line.indexOf(':');
    if (colon <= 0 || !TOKEN.test(line.slice(0, colon)) || BAD_VALUE.test(line.slice(colon + 1))) {
      fail('HPE_INVALID_HEADER_TOKEN', `invalid trailer line ${JSON.stringify(line.slice(0, 64))}`);
    }
    // Trailers are not forwarded (the relay writes none): parsed to find the end only.
    return next;
  }
}
