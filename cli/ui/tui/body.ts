/**
 * Turns a captured body preview into lines for the details view: JSON pretty-printed,
 * form data as `key = value`, text as text, anything else as a hex dump, each with a
 * one-line summary (type, size, how much is shown). gzip/deflate/br bodies are
 * decoded first (a truncated preview decodes as far as it goes). Every line is made
 * printable: a body never sends escape sequences to the terminal.
 */
import zlib from 'node:zlib';
import type { BodyPreview } from '../../origin/capture.js';
import type { HeaderPairs } from '../../../shared/protocol/tunnel.js';
import { formatBytes, hardWrap, printable } from './format.js';

export type BodyKind = 'none' | 'released' | 'json' | 'form' | 'text' | 'binary';

export interface BodyView {
  kind: BodyKind;
  /** One line: type, size and what is shown. */
  summary: string;
  lines: string[];
}

/** Decoded text is capped so a small compressed body cannot blow up memory. */
const MAX_DECODED_BYTES = 256 * 1024;

export function headerValue(headers: HeaderPairs, name: string): string | undefined {
  const lower = name.toLowerCase();
  return headers.find(([k]) => k.toLowerCase() === lower)?.[1];
}

/**
 * Decodes a gzip/deflate/br body (a truncated one as far as it goes), at most 256 KiB
 * out; undefined for other encodings or when it does not decode.
 */
export function decodeContentEncoding(bytes: Buffer, encoding: string): Buffer | undefined {
  const opts = { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: MAX_DECODED_BYTES };
  try {
    switch (encoding) {
      case 'gzip':
      case 'x-gzip':
        return zlib.gunzipSync(bytes, opts);
      case 'deflate':
        try {
          return zlib.inflateSync(bytes, opts);
        } catch {
          return zlib.inflateRawSync(bytes, opts);
        }
      case 'br':
        return zlib.brotliDecompressSync(bytes, {
          finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH,
          maxOutputLength: MAX_DECODED_BYTES,
        });
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/** UTF-8 text with (almost) no control characters, or undefined for binary. */
function asText(bytes: Buffer, truncated: boolean): string | undefined {
  let text: string;
  try {
    // `stream: true` holds back a multi-byte character cut by the preview limit.
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: truncated });
  } catch {
    return undefined;
  }
  let controls = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0) return undefined;
    if ((c < 32 && c !== 9 && c !== 10 && c !== 13 && c !== 12) || c === 0x7f) controls++;
  }
  return controls > text.length / 100 ? undefined : text;
}

function hexLines(bytes: Buffer, width: number): string[] {
  const perLine = width >= 78 ? 16 : 8;
  const lines: string[] = [];
  for (let off = 0; off < bytes.length; off += perLine) {
    const slice = bytes.subarray(off, off + perLine);
    let hex = '';
    let ascii = '';
    for (let i = 0; i < perLine; i++) {
      if (i === 8) hex += ' ';
      const b = slice[i];
      hex += b === undefined ? '   ' : `${b.toString(16).padStart(2, '0')} `;
      if (b !== undefined) ascii += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.';
    }
    lines.push(`${off.toString(16).padStart(8, '0')}  ${hex} |${ascii}|`);
  }
  return lines;
}

function textLines(text: string, width: number): string[] {
  const out: string[] = [];
  for (const line of text.replace(/\r\n/g, '\n').split('\n')) {
    out.push(...hardWrap(printable(line), width));
  }
  // A trailing newline is not an empty line worth showing.
  if (out.length > 1 && out[out.length - 1] === '') out.pop();
  return out;
}

function formLines(text: string, width: number): string[] | undefined {
  const out: string[] = [];
  for (const part of text.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const raw = (s: string): string => {
      try {
        return decodeURIComponent(s.replace(/\+/g, ' '));
      } catch {
        return s;
      }
    };
    const key = raw(eq < 0 ? part : part.slice(0, eq));
    const value = eq < 0 ? '' : raw(part.slice(eq + 1));
    out.push(...textLines(`${key} = ${value}`, width));
  }
  return out.length > 0 ? out : undefined;
}

/** How a body preview reads in `width` columns. */
export function viewBody(preview: BodyPreview, headers: HeaderPairs, width: number): BodyView {
  const type = (headerValue(headers, 'content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  const encoding = (headerValue(headers, 'content-encoding') ?? '').trim().toLowerCase();
  const total = preview.totalBytes;
  if (total === 0) return { kind: 'none', summary: 'no body', lines: [] };
  const typeLabel = type || 'no content-type';
  if (preview.released) {
    return {
      kind: 'released',
      summary: `${typeLabel} · ${formatBytes(total)} · preview dropped to keep memory bounded`,
      lines: [],
    };
  }
  let bytes = preview.bytes();
  const shown =
    preview.truncated && preview.capturedBytes > 0
      ? ` · first ${formatBytes(preview.capturedBytes)} shown`
      : '';
  let encodingNote = '';
  if (encoding !== '' && encoding !== 'identity') {
    const decoded = decodeContentEncoding(bytes, encoding);
    if (decoded !== undefined) {
      bytes = decoded;
      encodingNote = ` · ${encoding}, decoded`;
    } else {
      encodingNote = ` · ${encoding} (could not decode)`;
    }
  }
  const summary = `${printable(typeLabel)} · ${formatBytes(total)}${shown}${encodingNote}`;
  const truncated = preview.truncated || encodingNote.includes('decoded');
  const text = encodingNote.includes('could not') ? undefined : asText(bytes, truncated);
  if (text !== undefined) {
    const first = text.trimStart()[0];
    if (type.includes('json') || (type === '' && (first === '{' || first === '['))) {
      try {
        const pretty = JSON.stringify(JSON.parse(text), null, 2);
        return { kind: 'json', summary: `${summary} · JSON`, lines: textLines(pretty, width) };
      } catch {
        // A truncated or broken document: show it as it came.
      }
    }
    if (type === 'application/x-www-form-urlencoded') {
      const lines = formLines(text, width);
      if (lines !== undefined) return { kind: 'form', summary: `${summary} · form`, lines };
    }
    return { kind: 'text', summary, lines: textLines(text, width) };
  }
  return { kind: 'binary', summary: `${summary} · binary`, lines: hexLines(bytes, width) };
}
