/**
 * Host routing under attack (test plan H1, H2, R): spoofed, duplicated, missing Host;
 * absolute-form targets naming another host; TLS SNI for one tunnel with Host of
 * another (421); IP literals (the relay itself, never a tunnel); trailing dots, case
 * and ports (the same tunnel); look-alike names (404). Each case runs over raw TCP or
 * TLS and checks which origin, if any, saw the request: a request resolves to exactly
 * one tunnel or to the relay itself, never to another tunnel.
 */
import t from 'tap';
import type { Test } from 'tap';
import { TEST_DOMAIN, connectTunnel, startTestRelay } from '../helpers/relay-env.js';
import { basicAuthDigest } from '../../shared/access.js';
import {
  bodyOf,
  rawRequest,
  startControl,
  startRecordingOrigin,
  type RawResult,
} from '../helpers/hostile.js';
import { delay } from '../helpers/wait.js';

const head = (lines: string[]): string => `${lines.join('\r\n')}\r\nConnection: close\r\n\r\n`;

t.test('Host header attacks resolve to one tunnel or to the relay, never another', async (t) => {
  const env = await startTestRelay(t);
  const control = await startControl(t, env);
  const originA = await startRecordingOrigin(t);
  const originB = await startRecordingOrigin(t);
  const a = (await connectTunnel(t, env, String(originA.port))).hostname;
  // B is protected: whatever trick a visitor tries, B's app sees nothing without it.
  const b = (
    await connectTunnel(t, env, String(originB.port), {
      access: { basicAuthSha256: basicAuthDigest('owner:pw') },
    })
  ).hostname;
  const labelA = a.slice(0, -TEST_DOMAIN.length - 1);

  interface HostCase {
    name: string;
    bytes: string;
    /** TLS with this SNI; absent = plain HTTP. */
    sni?: string | null;
    status: number;
    /** Which origin must see it: 'a', or none. B never does (it needs credentials). */
    reaches?: 'a';
    check?: (t: Test, r: RawResult) => void;
  }

  const cases: HostCase[] = [
    {
      name: 'TLS SNI of A with Host of B',
      sni: a,
      bytes: head(['GET / HTTP/1.1', `Host: ${b}`]),
      status: 421,
    },
    {
      name: 'TLS SNI of B with Host of A',
      sni: b,
      bytes: head(['GET / HTTP/1.1', `Host: ${a}`]),
      status: 421,
    },
    {
      name: 'TLS SNI of A with the apex as Host',
      sni: a,
      bytes: head(['GET / HTTP/1.1', `Host: ${TEST_DOMAIN}`]),
      status: 421,
    },
    {
      name: 'TLS SNI of A, WebSocket upgrade with Host of B',
      sni: a,
      bytes: head([
        'GET / HTTP/1.1',
        `Host: ${b}`,
        'Upgrade: websocket',
        'Sec-WebSocket-Version: 13',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      ]).replace('Connection: close', 'Connection: Upgrade'),
      status: 421,
    },
    {
      name: 'TLS SNI of A, upgrade to the tunnel endpoint with the apex as Host',
      sni: a,
      bytes: head([
        'GET /_qt/tunnel HTTP/1.1',
        `Host: ${TEST_DOMAIN}`,
        'Upgrade: websocket',
        'Sec-WebSocket-Version: 13',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      ]).replace('Connection: close', 'Connection: Upgrade'),
      status: 421,
    },
    {
      name: 'TLS SNI and Host of A, MixedCase and trailing dot',
      sni: a,
      bytes: head(['GET / HTTP/1.1', `Host: ${a.toUpperCase()}.`]),
      status: 200,
      reaches: 'a',
    },
    {
      name: 'two Host headers, A then B',
      bytes: head(['GET / HTTP/1.1', `Host: ${a}`, `Host: ${b}`]),
      status: 400,
    },
    {
      name: 'two Host headers, same value',
      bytes: head(['GET / HTTP/1.1', `Host: ${a}`, `Host: ${a}`]),
      status: 400,
    },
    {
      name: 'two Host headers, differing case of the name',
      bytes: head(['GET / HTTP/1.1', `host: ${b}`, `HOST: ${a}`]),
      status: 400,
    },
    {
      name: 'two Host headers over TLS',
      sni: a,
      bytes: head(['GET / HTTP/1.1', `Host: ${a}`, `Host: ${b}`]),
      status: 400,
    },
    { name: 'no Host on HTTP/1.1', bytes: head(['GET / HTTP/1.1']), status: 400 },
    {
      name: 'no Host on HTTP/1.1 over TLS with SNI of A',
      sni: a,
      bytes: head(['GET / HTTP/1.1']),
      status: 400,
    },
    {
      name: 'no Host on HTTP/1.0: the relay, not a tunnel',
      bytes: 'GET / HTTP/1.0\r\n\r\n',
      status: 404,
    },
    { name: 'empty Host', bytes: head(['GET / HTTP/1.1', 'Host:']), status: 400 },
    {
      name: 'Host with userinfo',
      bytes: head(['GET / HTTP/1.1', `Host: user@${a}`]),
      status: 400,
    },
    {
      name: 'Host with a path',
      bytes: head(['GET / HTTP/1.1', `Host: ${a}/x`]),
      status: 400,
    },
    {
      name: 'Host with a bad port',
      bytes: head(['GET / HTTP/1.1', `Host: ${a}:80x`]),
      status: 400,
    },
    {
      name: 'Host with an underscore label (__proto__)',
      bytes: head(['GET / HTTP/1.1', `Host: __proto__.${TEST_DOMAIN}`]),
      status: 400,
    },
    {
      name: 'absolute-form naming B with Host A',
      bytes: head([`GET http://${b}/ HTTP/1.1`, `Host: ${a}`]),
      status: 400,
    },
    {
      name: 'absolute-form naming A with Host B',
      bytes: head([`GET http://${a}/ HTTP/1.1`, `Host: ${b}`]),
      status: 400,
    },
    {
      name: 'absolute-form with userinfo naming B',
      bytes: head([`GET http://${a}@${b}/ HTTP/1.1`, `Host: ${a}`]),
      status: 400,
    },
    {
      name: 'absolute-form naming the apex with Host A',
      bytes: head([`GET http://${TEST_DOMAIN}/ HTTP/1.1`, `Host: ${a}`]),
      status: 400,
    },
    {
      name: 'absolute-form naming A over TLS (SNI A, Host A)',
      sni: a,
      bytes: head([`GET https://${a}/abs HTTP/1.1`, `Host: ${a}`]),
      status: 200,
      reaches: 'a',
    },
    {
      name: 'IP literal Host: the relay itself',
      bytes: head(['GET / HTTP/1.1', 'Host: 127.0.0.1']),
      status: 200,
      check: (t, r) => t.notMatch(bodyOf(r.text), /origin saw/, 'the relay page, not a tunnel'),
    },
    {
      name: 'IP literal Host with port, unknown path: the relay 404',
      bytes: head(['GET /x HTTP/1.1', `Host: 127.0.0.1:${env.httpPort}`]),
      status: 404,
    },
    {
      name: 'IPv6 literal Host: the relay itself',
      bytes: head(['GET /nothing HTTP/1.1', 'Host: [::1]']),
      status: 404,
    },
    {
      name: 'IP literal over TLS without SNI',
      sni: null,
      bytes: head(['GET /nothing HTTP/1.1', 'Host: 127.0.0.1']),
      status: 404,
    },
    {
      name: 'MixedCase Host: the same tunnel',
      bytes: head(['GET / HTTP/1.1', `Host: ${a.slice(0, 3).toUpperCase()}${a.slice(3)}`]),
      status: 200,
      reaches: 'a',
    },
    {
      name: 'trailing dot: the same tunnel',
      bytes: head(['GET / HTTP/1.1', `Host: ${a}.`]),
      status: 200,
      reaches: 'a',
    },
    {
      name: 'trailing dot and port: the same tunnel',
      bytes: head(['GET / HTTP/1.1', `Host: ${a}.:${env.httpPort}`]),
      status: 200,
      reaches: 'a',
    },
    {
      name: 'look-alike: apex under another domain',
      bytes: head(['GET / HTTP/1.1', `Host: ${TEST_DOMAIN}.evil.com`]),
      status: 404,
    },
    {
      name: 'look-alike: tunnel under another domain',
      bytes: head(['GET / HTTP/1.1', `Host: ${a}.evil.com`]),
      status: 404,
    },
    {
      name: 'look-alike: x + domain without the dot',
      bytes: head(['GET / HTTP/1.1', `Host: x${TEST_DOMAIN}`]),
      status: 404,
    },
    {
      name: 'look-alike: label + domain without the dot',
      bytes: head(['GET / HTTP/1.1', `Host: ${labelA}${TEST_DOMAIN}`]),
      status: 404,
    },
    {
      name: 'look-alike: nested a.b.<domain>',
      bytes: head(['GET / HTTP/1.1', `Host: a.b.${TEST_DOMAIN}`]),
      status: 404,
    },
    {
      name: 'look-alike: nested x.<tunnel A>',
      bytes: head(['GET / HTTP/1.1', `Host: x.${a}`]),
      status: 404,
    },
    {
      name: 'look-alike: label with a prefix (evil + A)',
      bytes: head(['GET / HTTP/1.1', `Host: evil${a}`]),
      status: 404,
    },
    {
      name: 'look-alike: punycode label',
      bytes: head(['GET / HTTP/1.1', `Host: xn--${labelA}-9ja.${TEST_DOMAIN}`]),
      status: 404,
    },
    {
      name: 'object-prototype labels (constructor)',
      bytes: head(['GET / HTTP/1.1', `Host: constructor.${TEST_DOMAIN}`]),
      status: 404,
    },
    {
      name: 'object-prototype labels (hasOwnProperty)',
      bytes: head(['GET / HTTP/1.1', `Host: hasownproperty.${TEST_DOMAIN}`]),
      status: 404,
    },
    {
      name: 'B without credentials, over plain HTTP',
      bytes: head(['GET / HTTP/1.1', `Host: ${b}`, `X-Forwarded-Host: ${a}`]),
      status: 401,
    },
  ];

  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const beforeA = originA.requests.length;
      const beforeB = originB.requests.length;
      const r = await rawRequest(
        c.sni === undefined
          ? { port: env.httpPort, send: c.bytes }
          : {
              port: env.httpsPort,
              tls: { servername: c.sni === null ? undefined : c.sni },
              send: c.bytes,
            },
      );
      t.equal(r.status, c.status, `answered ${c.status}`);
      t.ok(r.closedByPeer, 'exchange finished');
      c.check?.(t, r);
      await delay(30);
      t.equal(originA.requests.length - beforeA, c.reaches === 'a' ? 1 : 0, 'tunnel A');
      t.equal(originB.requests.length - beforeB, 0, 'tunnel B never');
      await control.check(t, c.name);
    });
  }
});
