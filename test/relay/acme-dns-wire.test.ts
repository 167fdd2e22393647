/**
 * TSIG (HMAC-SHA256) and the RFC 2136 UPDATE encoder against byte-exact vectors:
 * packets captured from BIND's `nsupdate -y hmac-sha256:acme-key:…` (9.18), sent to a
 * UDP socket that recorded them. Re-signing nsupdate's message with our code must give
 * nsupdate's exact bytes, MAC included.
 */
import t from 'tap';
import {
  buildTxtUpdate,
  encodeName,
  parseResponse,
  signMessage,
  txtRdata,
  verifyResponse,
  type TsigKey,
} from '../../relay/acme/dns-wire.js';

const KEY: TsigKey = {
  name: 'acme-key',
  secret: Buffer.from('c2VjcmV0LWZvci10aGUtcXVpY2stdHVubmVsLXRlc3Q=', 'base64'),
};
const VALUE = 'DGyRejmCefe7v4NfDGDKfA-y8d7gq1cYN6rvSrFmxvA';

// printf 'server 127.0.0.1 P\nzone qt.test\nupdate add _acme-challenge.qt.test 60 TXT "VALUE"\nsend\n'
//   | nsupdate -y hmac-sha256:acme-key:c2VjcmV0LWZvci10aGUtcXVpY2stdHVubmVsLXRlc3Q=
const NSUPDATE_ADD =
  '08cc28000001000000010001027174047465737400000600010f5f61636d652d6368616c6c656e6765c00c' +
  '001000010000003c002c2b44477952656a6d436566653776344e664447444b66412d7938643767713163594e' +
  '3672765372466d7876410861636d652d6b65790000fa00ff00000000003d0b686d61632d7368613235360000' +
  '006b1631ab012c00209d9d4691ecaa97bc951130152e670072277887574951afa984f0de9009ca15db08cc00' +
  '000000';
// The same with `update delete _acme-challenge.qt.test TXT "VALUE"` (class NONE, TTL 0).
const NSUPDATE_DELETE =
  '468a28000001000000010001027174047465737400000600010f5f61636d652d6368616c6c656e6765c00c' +
  '001000fe00000000002c2b44477952656a6d436566653776344e664447444b66412d7938643767713163594e' +
  '3672765372466d7876410861636d652d6b65790000fa00ff00000000003d0b686d61632d7368613235360000' +
  '006b1631b1012c0020b76fac745c7123a4b8233c1d686fe127fde0a614c7bca39f6df7d9aace100df2468a00' +
  '000000';

/** nsupdate's message without its TSIG record, ARCOUNT back to 0. */
function unsigned(hex: string): { body: Buffer; timeSignedS: number; mac: Buffer } {
  const msg = Buffer.from(hex, 'hex');
  const parsed = parseResponse(msg);
  const tsig = parsed.tsig;
  if (tsig === undefined) throw new Error('vector has no TSIG');
  const body = Buffer.from(msg.subarray(0, tsig.offset));
  body.writeUInt16BE(0, 10);
  return { body, timeSignedS: tsig.timeSignedS, mac: tsig.mac };
}

t.test('signing nsupdate’s messages gives nsupdate’s bytes (add and delete)', async (t) => {
  for (const hex of [NSUPDATE_ADD, NSUPDATE_DELETE]) {
    const { body, timeSignedS, mac } = unsigned(hex);
    t.equal(timeSignedS, 0x6b1631ab + (hex === NSUPDATE_ADD ? 0 : 6));
    const { signed, mac: ours } = signMessage(body, KEY, timeSignedS);
    t.equal(ours.toString('hex'), mac.toString('hex'), 'same MAC');
    t.equal(signed.toString('hex'), hex, 'same message, byte for byte');
  }
});

t.test('the UPDATE encoder writes what nsupdate writes, names uncompressed', async (t) => {
  const qtTest = encodeName('qt.test').toString('hex');
  t.equal(qtTest, '02717404746573740' + '0');
  for (const [hex, action] of [
    [NSUPDATE_ADD, 'add'],
    [NSUPDATE_DELETE, 'delete'],
  ] as const) {
    const { body } = unsigned(hex);
    const id = body.readUInt16BE(0);
    const ours = buildTxtUpdate(id, {
      zone: 'qt.test.',
      name: '_acme-challenge.QT.test',
      value: VALUE,
      action,
      ttlS: 60,
    });
    // nsupdate points back at the zone name (c00c); we spell the name out.
    t.equal(ours.toString('hex'), body.toString('hex').replace('c00c', qtTest));
  }
});

t.test('TXT values longer than 255 bytes are split into character-strings', async (t) => {
  const rdata = txtRdata('a'.repeat(300));
  t.equal(rdata.length, 302);
  t.equal(rdata[0], 255);
  t.equal(rdata[256], 45);
  t.same(txtRdata(''), Buffer.from([0]));
  t.throws(() => encodeName(`${'a'.repeat(64)}.test`), RangeError);
});

t.test('a signed answer is checked against the request MAC; a changed byte fails', async (t) => {
  const { body, timeSignedS } = unsigned(NSUPDATE_ADD);
  const { mac: requestMac } = signMessage(body, KEY, timeSignedS);
  // An answer as a server builds it: QR set, then TSIG over request MAC + answer.
  const answer = Buffer.from(body);
  answer.writeUInt16BE(0xa800, 2);
  const { createHmac } = await import('node:crypto');
  const vars = Buffer.concat([
    encodeName('acme-key'),
    Buffer.from('00ff00000000', 'hex'),
    encodeName('hmac-sha256'),
    Buffer.from('00006b1631ac012c00000000', 'hex'),
  ]);
  const len = Buffer.from([0, requestMac.length]);
  const mac = createHmac('sha256', KEY.secret)
    .update(Buffer.concat([len, requestMac, answer, vars]))
    .digest();
  const rdata = Buffer.concat([
    encodeName('hmac-sha256'),
    Buffer.from('00006b1631ac012c0020', 'hex'),
    mac,
    answer.subarray(0, 2),
    Buffer.from('00000000', 'hex'),
  ]);
  const rr = Buffer.concat([
    encodeName('acme-key'),
    Buffer.from('00fa00ff00000000', 'hex'),
    Buffer.from([rdata.length >> 8, rdata.length & 0xff]),
    rdata,
  ]);
  const full = Buffer.concat([answer, rr]);
  full.writeUInt16BE(1, 10);
  const parsed = parseResponse(full);
  t.equal(parsed.isResponse, true);
  t.equal(parsed.rcode, 0);
  t.equal(parsed.tsig?.error, 0);
  t.equal(verifyResponse(full, parsed, KEY, requestMac), true);
  const wrongKey = { ...KEY, secret: Buffer.from('other') };
  t.equal(verifyResponse(full, parsed, wrongKey, requestMac), false);
  const tampered = Buffer.from(full);
  tampered[answer.length - 1] = (tampered[answer.length - 1] ?? 0) ^ 1; // a TXT byte
  t.equal(verifyResponse(tampered, parseResponse(tampered), KEY, requestMac), false);
});
