/**
 * Seeded fuzz of the visitor edge: thousands of HTTP/1.x requests built from a small
 * grammar (methods, targets, versions, Host variants, Content-Length and
 * Transfer-Encoding in every combination, upgrades, pipelining) and then mutated byte
 * by byte (flips, CR/LF/NUL/colon insertions, deleted ranges, duplicated or swapped
 * lines, LF-only endings, truncation, oversizing), sent over raw TCP and TLS to a
 * relay with a tunnel. No crash, no unhandled rejection; every answer is a well-formed
 * status line or a closed connection; the origin's strict parser never sees a
 * malformed request; the control tunnel never fails; heap, sockets and mux streams
 * return to their baseline. Reproduce a run with its seed (in the test name).
 */
import t from 'tap';
import { TEST_DOMAIN, connectTunnel, startTestRelay } from '../helpers/relay-env.js';
import { Prng } from '../helpers/prng.js';
import {
  MiB,
  rawRequest,
  relayStreams,
  settledHeap,
  startControl,
  startRecordingOrigin,
} from '../helpers/hostile.js';
import { eventually } from '../helpers/wait.js';

// Heavy on a shared 2-core machine (npm, thousands of connections): more than .taprc's 120 s.
t.setTimeout(360_000);

const SEED = 0x5eed_ed9e;
const CASES = 4_000;
const TLS_SHARE = 0.1;
const CONCURRENCY = 32;

const SPECIAL = ['\r', '\n', '\r\n', '\0', ' ', '\t', ':', ',', ';', '\x7f', '\xff', '\x0b', '"'];

function tcpSockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
}

/** A well-formed request to `host`: GET, or POST with a Content-Length or chunked body. */
function clean(rng: Prng, host: string): string {
  const body = 'p'.repeat(rng.int(0, 2_000));
  const close = rng.chance(0.9) ? 'Connection: close\r\n' : '';
  switch (rng.int(0, 2)) {
    case 0:
      return `GET /ok?i=${rng.int(0, 1e6)} HTTP/1.1\r\nHost: ${host}\r\n${close}\r\n`;
    case 1:
      return `POST /ok HTTP/1.1\r\nHost: ${host}\r\n${close}Content-Length: ${body.length}\r\n\r\n${body}`;
    default:
      return (
        `POST /ok HTTP/1.1\r\nHost: ${host}\r\n${close}Transfer-Encoding: chunked\r\n\r\n` +
        `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`
      );
  }
}

/** One request from the grammar: half clean, half built from hostile choices. */
function generate(rng: Prng, hosts: string[]): string {
  if (rng.chance(0.5)) return clean(rng, hosts[0]!);
  const host = rng.pick(hosts);
  const method = rng.pick([
    'GET',
    'GET',
    'GET',
    'POST',
    'POST',
    'POST',
    'POST',
    'PUT',
    'HEAD',
    'OPTIONS',
    'DELETE',
    'PATCH',
    'TRACE',
    'PRI',
    'CONNECT',
    'G ET',
    'get',
  ]);
  const target = rng.pick([
    '/',
    '/a?b=c&d=%20e',
    '*',
    `http://${host}/abs`,
    `http://other.${TEST_DOMAIN}/abs`,
    `https://${host}:1/`,
    '/%00%0d%0a',
    '/../../etc/passwd',
    `/${'x'.repeat(rng.int(0, 10_000))}`,
    'no-slash',
    '//double',
    `${host}:443`,
  ]);
  const version = rng.pick([
    'HTTP/1.1',
    'HTTP/1.1',
    'HTTP/1.1',
    'HTTP/1.0',
    'HTTP/2.0',
    'HTTP/0.9',
    'HTTP/1.10',
    'http/1.1',
  ]);
  const lines = [
    rng.chance(0.7)
      ? `${rng.pick(['GET', 'POST'])} /ok HTTP/1.1`
      : `${method} ${target} ${version}`,
  ];
  if (!rng.chance(0.05)) {
    lines.push(
      `${rng.chance(0.8) ? 'Host' : rng.pick(['host', 'HOST', 'Host ', ' Host'])}: ${
        rng.chance(0.6)
          ? host
          : rng.pick([
              host,
              host,
              host.toUpperCase(),
              `${host}.`,
              `${host}:${rng.int(0, 99999)}`,
              `user@${host}`,
              `${host}, ${host}`,
              '',
            ])
      }`,
    );
  }
  if (rng.chance(0.05)) lines.push(`Host: ${rng.pick(hosts)}`);
  let body = '';
  const framing = rng.int(0, 6);
  const payload = 'b'.repeat(rng.int(0, 300));
  if (framing === 1 || framing === 3) {
    lines.push(
      `Content-Length: ${rng.pick([
        String(payload.length),
        String(payload.length),
        String(payload.length + rng.int(-5, 5)),
        `+${payload.length}`,
        `${payload.length}, ${payload.length}`,
        '-1',
        '0x10',
        '99999999999999999999',
      ])}`,
    );
    if (rng.chance(0.1)) lines.push(`Content-Length: ${payload.length}`);
  }
  if (framing >= 2 && framing <= 4) {
    lines.push(
      `Transfer-Encoding: ${rng.pick(['chunked', 'chunked', 'Chunked', ' chunked', 'chunked, identity', 'identity, chunked', 'gzip, chunked', 'xchunked', 'chunked\x0b'])}`,
    );
    let chunked = '';
    for (let i = 0, n = rng.int(0, 4); i < n; i++) {
      const size = rng.int(1, 64);
      const ext = rng.chance(0.2) ? `;e=${'v'.repeat(rng.int(0, 200))}` : '';
      chunked += `${size.toString(16)}${ext}\r\n${'c'.repeat(size)}\r\n`;
    }
    body = `${chunked}0\r\n${rng.chance(0.2) ? 'X-Trailer: t\r\n' : ''}\r\n`;
  } else if (framing === 1 || framing === 3 || framing === 6) {
    body = payload;
  }
  if (framing === 5) {
    lines.push('Connection: Upgrade', `Upgrade: ${rng.pick(['websocket', 'h2c', 'WebSocket, x'])}`);
    lines.push('Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==');
  }
  if (framing === 6) lines.push('Expect: 100-continue', `Content-Length: ${payload.length}`);
  for (let i = 0, n = rng.int(0, 4); i < n; i++) {
    lines.push(
      rng.pick([
        'Connection: close',
        'Connection: keep-alive, X-Drop',
        'X-Forwarded-For: 10.0.0.1',
        'Authorization: Basic dTpw',
        'Cookie: a=b',
        `X-Long: ${'l'.repeat(rng.int(0, 2_000))}`,
        'Keep-Alive: timeout=1',
        'Proxy-Connection: keep-alive',
        'TE: trailers',
      ]),
    );
  }
  if (rng.chance(0.02)) for (let i = 0; i < 120; i++) lines.push(`X-Many-${i}: ${i}`);
  if (rng.chance(0.02)) lines.push(`X-Huge: ${'h'.repeat(17 * 1024)}`);
  let text = `${lines.join('\r\n')}\r\n\r\n${body}`;
  if (rng.chance(0.15)) text += `GET /pipelined HTTP/1.1\r\nHost: ${rng.pick(hosts)}\r\n\r\n`;
  return text;
}

/** Up to three byte-level mutations (none for 40% of the requests). */
function mutate(rng: Prng, text: string): string {
  let s = text;
  for (let i = 0, n = rng.chance(0.4) ? 0 : rng.int(1, 3); i < n; i++) {
    const at = rng.int(0, Math.max(0, s.length - 1));
    switch (rng.int(0, 8)) {
      case 0: // flip one byte
        s = s.slice(0, at) + String.fromCharCode(rng.int(0, 255)) + s.slice(at + 1);
        break;
      case 1: // insert a special byte
        s = s.slice(0, at) + rng.pick(SPECIAL) + s.slice(at);
        break;
      case 2: // delete a range
        s = s.slice(0, at) + s.slice(at + rng.int(1, 20));
        break;
      case 3: {
        // duplicate a header line
        const lines = s.split('\r\n');
        const k = rng.int(0, lines.length - 1);
        lines.splice(k, 0, lines[k] ?? '');
        s = lines.join('\r\n');
        break;
      }
      case 4: {
        // swap two lines
        const lines = s.split('\r\n');
        const a = rng.int(0, lines.length - 1);
        const b = rng.int(0, lines.length - 1);
        [lines[a], lines[b]] = [lines[b] ?? '', lines[a] ?? ''];
        s = lines.join('\r\n');
        break;
      }
      case 5: // LF-only line endings from here on
        s = s.slice(0, at) + s.slice(at).replaceAll('\r\n', '\n');
        break;
      case 6: // truncate
        s = s.slice(0, at);
        break;
      case 7: // obs-fold a line
        s = s.slice(0, at) + '\r\n ' + s.slice(at);
        break;
      default:
        break; // keep: a share of requests stays well-formed
    }
  }
  return s;
}

t.test(`edge fuzz: ${CASES} mutated requests (seed 0x${SEED.toString(16)})`, async (t) => {
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown): void => void rejections.push(reason);
  process.on('unhandledRejection', onRejection);
  t.teardown(() => void process.off('unhandledRejection', onRejection));

  const env = await startTestRelay(t, { rateLimitPerTunnel: 0 });
  const control = await startControl(t, env);
  const origin = await startRecordingOrigin(t, { lean: true });
  const tunnel = await connectTunnel(t, env, String(origin.port));
  const hosts = [
    tunnel.hostname,
    tunnel.hostname,
    tunnel.hostname,
    TEST_DOMAIN,
    `nope.${TEST_DOMAIN}`,
    '127.0.0.1',
    `${TEST_DOMAIN}.evil.com`,
  ];
  await settledHeap();
  const heapBefore = await settledHeap();
  const socketsBefore = tcpSockets();
  const connectionsBefore = env.relay.connections;
  const started = performance.now();

  const rng = new Prng(SEED);
  const cases = Array.from({ length: CASES }, () => {
    const text = mutate(rng, generate(rng, hosts));
    return { text, tls: rng.chance(TLS_SHARE), sni: rng.pick(hosts) };
  });
  const statuses = new Map<string, number>();
  const malformed: string[] = [];
  let next = 0;
  const run = async (c: (typeof cases)[number]): Promise<void> => {
    {
      const r = await rawRequest({
        port: c.tls ? env.httpsPort : env.httpPort,
        ...(c.tls ? { tls: { servername: c.sni } } : {}),
        send: c.text,
        halfCloseAfterIdleMs: 200,
        timeoutMs: 5_000,
      });
      const key =
        r.status === undefined ? (r.closedByPeer ? 'closed' : 'timeout') : String(r.status);
      statuses.set(key, (statuses.get(key) ?? 0) + 1);
      if (r.text !== '' && !/^HTTP\/1\.1 [1-5]\d\d [^\r\n]*\r\n/.test(r.text)) {
        malformed.push(JSON.stringify(r.text.slice(0, 80)));
      }
    }
  };
  // In four rounds, with the heap read after each: a leak grows round after round,
  // while caches (TLS sessions, JIT, pools) fill in the first and then stay flat.
  const heaps: number[] = [];
  const rounds = 4;
  for (let round = 1; round <= rounds; round++) {
    const end = (CASES * round) / rounds;
    const worker = async (): Promise<void> => {
      while (next < end) await run(cases[next++]!);
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    heaps.push((await settledHeap()).heapUsed);
  }
  const seconds = (performance.now() - started) / 1000;

  const histogram = Object.fromEntries([...statuses].sort());
  t.comment(`${CASES} cases in ${seconds.toFixed(1)} s: ${JSON.stringify(histogram)}`);
  t.equal(statuses.get('timeout') ?? 0, 0, 'no exchange hung (each ended within 5 s)');
  t.same(malformed, [], 'every answer starts with a well-formed status line');
  t.ok((statuses.get('200') ?? 0) > CASES / 20, 'a share of requests stayed valid and was served');
  t.ok((statuses.get('400') ?? 0) > CASES / 20, 'a share was refused');
  t.comment(`the origin received ${origin.count} requests`);
  t.same(origin.parseErrors, [], "the origin's strict parser never saw a malformed request");

  t.ok(await eventually(() => relayStreams(env) === 0), 'mux streams back to 0');
  t.equal(env.relay.connections, connectionsBefore, 'tunnel connections unchanged');
  t.ok(
    await eventually(() => tcpSockets() <= socketsBefore + 4),
    `TCP sockets back to baseline (${socketsBefore} before, ${tcpSockets()} now)`,
  );
  const heapAfter = await settledHeap();
  const growth = heapAfter.heapUsed - heapBefore.heapUsed;
  const rssGrowth = heapAfter.rss - heapBefore.rss;
  t.comment(
    `heap ${(heapBefore.heapUsed / MiB).toFixed(1)} → ${(heapAfter.heapUsed / MiB).toFixed(1)} MiB, ` +
      `rss ${(heapBefore.rss / MiB).toFixed(0)} → ${(heapAfter.rss / MiB).toFixed(0)} MiB`,
  );
  t.comment(`heap after each round: ${heaps.map((h) => (h / MiB).toFixed(1)).join(', ')} MiB`);
  t.ok(growth < 32 * MiB, `heap growth ${(growth / MiB).toFixed(1)} MiB < 32 MiB`);
  const lateGrowth = heaps[rounds - 1]! - heaps[0]!;
  t.ok(
    lateGrowth < 4 * MiB,
    `heap flat after the first round: +${(lateGrowth / MiB).toFixed(1)} MiB over ${rounds - 1} rounds (< 4)`,
  );
  t.ok(rssGrowth < 256 * MiB, `RSS growth ${(rssGrowth / MiB).toFixed(0)} MiB < 256 MiB`);
  t.same(rejections, [], 'no unhandled rejection');
  await control.check(t, 'after the edge fuzz');
});
