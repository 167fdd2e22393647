/**
 * Just enough of the DNS wire format for RFC 2136 dynamic updates signed with TSIG
 * (RFC 8945, HMAC-SHA256): build an UPDATE that adds or deletes one TXT value, sign it,
 * and read the server's answer (rcode, TSIG error, and its MAC checked with the same key).
 * No maintained npm package signs TSIG, so this is written against the RFCs and tested
 * with byte-exact vectors captured from BIND's own tools.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const TYPE_SOA = 6;
export const TYPE_TXT = 16;
export const TYPE_TSIG = 250;
export const CLASS_IN = 1;
/** RFC 2136 §2.5.4: "delete an RR from an RRset" uses class NONE. */
export const CLASS_NONE = 254;
export const CLASS_ANY = 255;
export const OPCODE_UPDATE = 5;
export const TSIG_ALGORITHM = 'hmac-sha256';
/** Seconds of clock skew the server tolerates (RFC 8945 recommends 300). */
export const TSIG_FUDGE_S = 300;

export const RCODES: Record<number, string> = {
  0: 'NOERROR',
  1: 'FORMERR',
  2: 'SERVFAIL',
  3: 'NXDOMAIN',
  4: 'NOTIMP',
  5: 'REFUSED',
  6: 'YXDOMAIN',
  7: 'YXRRSET',
  8: 'NXRRSET',
  9: 'NOTAUTH',
  10: 'NOTZONE',
};
/** TSIG error field values (RFC 8945 §4.3.3). */
export const TSIG_ERRORS: Record<number, string> = {
  0: 'none',
  16: 'BADSIG',
  17: 'BADKEY',
  18: 'BADTIME',
  22: 'BADTRUNC',
};

export interface TsigKey {
  /** Key name as configured on the server, e.g. `acme-update.` */
  name: string;
  /** The shared secret (the base64 in BIND's `secret "…";`, decoded). */
  secret: Buffer;
}

/** Uncompressed, lowercase wire form of a domain name (the canonical form TSIG signs). */
export function encodeName(name: string): Buffer {
  const trimmed = name.replace(/\.$/, '').toLowerCase();
  const parts: Buffer[] = [];
  if (trimmed !== '') {
    for (const label of trimmed.split('.')) {
      const bytes = Buffer.from(label, 'ascii');
      if (bytes.length === 0 || bytes.length > 63) {
        throw new RangeError(`bad DNS label in '${name}'`);
      }
      parts.push(Buffer.from([bytes.length]), bytes);
    }
  }
  parts.push(Buffer.from([0]));
  const out = Buffer.concat(parts);
  if (out.length > 255) throw new RangeError(`DNS name too long: '${name}'`);
  return out;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function u48(n: number): Buffer {
  const b = Buffer.alloc(6);
  b.writeUIntBE(n, 0, 6);
  return b;
}

/** TXT rdata: one <character-string> per 255 bytes. */
export function txtRdata(value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  const parts: Buffer[] = [];
  for (let i = 0; i === 0 || i < bytes.length; i += 255) {
    const chunk = bytes.subarray(i, i + 255);
    parts.push(Buffer.from([chunk.length]), chunk);
  }
  return Buffer.concat(parts);
}

export interface TxtUpdate {
  /** The zone being updated (the Zone section), e.g. `example.com`. */
  zone: string;
  /** Record owner, e.g. `_acme-challenge.tunnel.example.com`. */
  name: string;
  value: string;
  /** add: put this value in the RRset; delete: remove exactly this value, no other. */
  action: 'add' | 'delete';
  ttlS?: number;
}

/** An unsigned UPDATE message (header, zone, one update RR; ARCOUNT 0). */
export function buildTxtUpdate(id: number, update: TxtUpdate): Buffer {
  const header = Buffer.concat([
    u16(id),
    u16(OPCODE_UPDATE << 11),
    u16(1), // ZOCOUNT
    u16(0), // PRCOUNT
    u16(1), // UPCOUNT
    u16(0), // ADCOUNT (TSIG is appended by signMessage)
  ]);
  const zone = Buffer.concat([encodeName(update.zone), u16(TYPE_SOA), u16(CLASS_IN)]);
  const rdata = txtRdata(update.value);
  const rr = Buffer.concat([
    encodeName(update.name),
    u16(TYPE_TXT),
    u16(update.action === 'add' ? CLASS_IN : CLASS_NONE),
    u32(update.action === 'add' ? (update.ttlS ?? 60) : 0),
    u16(rdata.length),
    rdata,
  ]);
  return Buffer.concat([header, zone, rr]);
}

/**
 * The TSIG variables that follow the message in the MAC input (RFC 8945 §4.3.3), all
 * names in canonical (lowercase, uncompressed) form.
 */
function tsigVariables(
  keyName: string,
  timeSignedS: number,
  fudgeS: number,
  error: number,
  other: Buffer,
): Buffer {
  return Buffer.concat([
    encodeName(keyName),
    u16(CLASS_ANY),
    u32(0),
    encodeName(TSIG_ALGORITHM),
    u48(timeSignedS),
    u16(fudgeS),
    u16(error),
    u16(other.length),
    other,
  ]);
}

export function tsigMac(key: TsigKey, input: Buffer): Buffer {
  return createHmac('sha256', key.secret).update(input).digest();
}

/**
 * Appends a TSIG record to `message` (a complete message without one) and bumps its
 * ARCOUNT. Returns the signed message and the MAC (needed to check the answer).
 */
export function signMessage(
  message: Buffer,
  key: TsigKey,
  timeSignedS: number,
  fudgeS = TSIG_FUDGE_S,
): { signed: Buffer; mac: Buffer } {
  const mac = tsigMac(
    key,
    Buffer.concat([message, tsigVariables(key.name, timeSignedS, fudgeS, 0, Buffer.alloc(0))]),
  );
  const rdata = Buffer.concat([
    encodeName(TSIG_ALGORITHM),
    u48(timeSignedS),
    u16(fudgeS),
    u16(mac.length),
    mac,
    message.subarray(0, 2), // original id
    u16(0), // error
    u16(0), // other len
  ]);
  const rr = Buffer.concat([
    encodeName(key.name),
    u16(TYPE_TSIG),
    u16(CLASS_ANY),
    u32(0),
    u16(rdata.length),
    rdata,
  ]);
  const signed = Buffer.concat([message, rr]);
  signed.writeUInt16BE(message.readUInt16BE(10) + 1, 10);
  return { signed, mac };
}

export interface TsigRecord {
  keyName: string;
  algorithm: string;
  timeSignedS: number;
  fudgeS: number;
  mac: Buffer;
  originalId: number;
  error: number;
  other: Buffer;
  /** Offset of the TSIG RR in the message: the signed part ends here. */
  offset: number;
}

export interface ParsedResponse {
  id: number;
  isResponse: boolean;
  opcode: number;
  rcode: number;
  tsig: TsigRecord | undefined;
}

/** Reads a (possibly compressed) name at `offset`; returns it and the offset after it. */
function readName(msg: Buffer, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let next = -1;
  let pos = offset;
  for (let hops = 0; hops < 128; hops++) {
    const len = msg.readUInt8(pos);
    if (len === 0) {
      if (next === -1) next = pos + 1;
      return { name: labels.join('.'), next };
    }
    if ((len & 0xc0) === 0xc0) {
      if (next === -1) next = pos + 2;
      pos = msg.readUInt16BE(pos) & 0x3fff;
      continue;
    }
    if (pos + 1 + len > msg.length) throw new RangeError('truncated DNS name');
    labels.push(msg.toString('ascii', pos + 1, pos + 1 + len).toLowerCase());
    pos += 1 + len;
  }
  throw new RangeError('DNS name compression loop');
}

/** Skips one resource record; returns its parts. */
function readRecord(
  msg: Buffer,
  offset: number,
): { name: string; type: number; cls: number; rdata: number; rdlen: number; next: number } {
  const { name, next } = readName(msg, offset);
  if (next + 10 > msg.length) throw new RangeError('truncated DNS record');
  const type = msg.readUInt16BE(next);
  const cls = msg.readUInt16BE(next + 2);
  const rdlen = msg.readUInt16BE(next + 8);
  const rdata = next + 10;
  if (rdata + rdlen > msg.length) throw new RangeError('truncated DNS record data');
  return { name, type, cls, rdata, rdlen, next: rdata + rdlen };
}

/** Parses the header and, if present, the TSIG record (the last additional record). */
export function parseResponse(msg: Buffer): ParsedResponse {
  if (msg.length < 12) throw new RangeError('DNS message shorter than its header');
  const flags = msg.readUInt16BE(2);
  const counts = [msg.readUInt16BE(4), msg.readUInt16BE(6), msg.readUInt16BE(8)];
  const arcount = msg.readUInt16BE(10);
  let pos = 12;
  // Question/zone section entries have no TTL/rdata.
  for (let i = 0; i < (counts[0] ?? 0); i++) pos = readName(msg, pos).next + 4;
  const records = (counts[1] ?? 0) + (counts[2] ?? 0) + arcount;
  let tsig: TsigRecord | undefined;
  for (let i = 0; i < records; i++) {
    const start = pos;
    const rr = readRecord(msg, pos);
    pos = rr.next;
    if (rr.type === TYPE_TSIG && i === records - 1) {
      const alg = readName(msg, rr.rdata);
      let p = alg.next;
      const timeSignedS = msg.readUIntBE(p, 6);
      const fudgeS = msg.readUInt16BE(p + 6);
      const macLen = msg.readUInt16BE(p + 8);
      p += 10;
      const mac = msg.subarray(p, p + macLen);
      p += macLen;
      const originalId = msg.readUInt16BE(p);
      const error = msg.readUInt16BE(p + 2);
      const otherLen = msg.readUInt16BE(p + 4);
      const other = msg.subarray(p + 6, p + 6 + otherLen);
      tsig = {
        keyName: rr.name,
        algorithm: alg.name,
        timeSignedS,
        fudgeS,
        mac,
        originalId,
        error,
        other,
        offset: start,
      };
    }
  }
  return {
    id: msg.readUInt16BE(0),
    isResponse: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    rcode: flags & 0xf,
    tsig,
  };
}

/**
 * Checks a signed answer's MAC (RFC 8945 §5.3): request MAC (with its length), then the
 * answer without its TSIG record (ARCOUNT one less, id = original id), then its variables.
 */
export function verifyResponse(
  msg: Buffer,
  parsed: ParsedResponse,
  key: TsigKey,
  requestMac: Buffer,
): boolean {
  const t = parsed.tsig;
  if (t === undefined || t.mac.length === 0) return false;
  if (t.keyName !== key.name.replace(/\.$/, '').toLowerCase()) return false;
  if (t.algorithm !== TSIG_ALGORITHM) return false;
  const body = Buffer.from(msg.subarray(0, t.offset));
  body.writeUInt16BE(t.originalId, 0);
  body.writeUInt16BE(body.readUInt16BE(10) - 1, 10);
  const expected = tsigMac(
    key,
    Buffer.concat([
      u16(requestMac.length),
      requestMac,
      body,
      tsigVariables(key.name, t.timeSignedS, t.fudgeS, t.error, t.other),
    ]),
  );
  return expected.length === t.mac.length && timingSafeEqual(expected, t.mac);
}
