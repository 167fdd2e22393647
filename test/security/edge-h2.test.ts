/**
 * Hostile input over HTTP/2 (the relay's HTTPS listener with ALPN h2): one authority
 * decides routing and must match SNI, the same access checks, limits and error pages
 * as h1, and h2-specific abuse (rapid reset, CONTINUATION, SETTINGS and PING floods,
 * too many streams, oversized header lists, sessions that never ask or sit idle,
 * visitors that stop reading, uploads faster than the app reads), each while an h1
 * control tunnel keeps serving.
 */
import { once } from 'node:events';
import t from 'tap';
import { basicAuthDigest } from '../../relay/edge/access.js';
import { connectH2, visitH2 } from '../helpers/h2-visitor.js';
import { connectTunnel, startOrigin, startTestRelay } from '../helpers/relay-env.js';
import { Flag, FrameType, frame, hpack, rawH2, requestBlock } from '../helpers/h2-raw.js';
import { MiB, relayStreams, startControl } from '../helpers/hostile.js';
import { delay, eventually, within } from '../helpers/wait.js';

t.test('authority, SNI, access checks and limits over h2', async (t) => {
  const env = await startTestRelay(t);
  const control = await startControl(t, env);
  const seen: { url: string; authorization: string | undefined; headers: number }[] = [];
  const { port } = await startOrigin(t, (req, res) => {
    seen.push({
      url: req.url ?? '',
      authorization: req.headers.authorization,
      headers: req.rawHeaders.length / 2,
    });
    req.resume();
    res.end('origin ok');
  });
  const a = await connectTunnel(t, env, String(port));
  const b = await connectTunnel(t, env, String(port));

  // SNI names tunnel A, :authority tunnel B: a browser that coalesced connections gets
  // 421 and retries on a connection of its own.
  const sessionA = connectH2(env, a.hostname);
  t.teardown(() => sessionA.close());
  const misdirected = await visitH2(env, b.hostname, {}, sessionA);
  t.equal(misdirected.status, 421, 'SNI and :authority disagree: 421');
  const ok = await visitH2(env, a.hostname, { path: '/fine' }, sessionA);
  t.equal(ok.status, 200, 'the same connection still serves its own host');
  t.equal(ok.body.toString(), 'origin ok');

  const before = seen.length;
  const hostDiffers = await visitH2(env, a.hostname, { headers: { 'x-h': '1' } }, sessionA);
  t.equal(hostDiffers.status, 200, 'a Host equal to :authority is fine');
  const twoNames = await new Promise<number>((resolve, reject) => {
    const req = sessionA.request({
      ':path': '/two-names',
      ':authority': a.hostname,
      host: b.hostname,
    });
    req.on('response', (h) => resolve(Number(h[':status'])));
    req.on('error', reject);
    req.resume();
    req.end();
  });
  t.equal(twoNames, 400, 'a Host naming another host than :authority: 400');
  t.notOk(
    seen.slice(before).some((s) => s.url === '/two-names'),
    'the refused request reached no app',
  );

  const tooMany = await visitH2(env, a.hostname, {
    headers: Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`x-h${i}`, 'v'])),
  });
  t.equal(tooMany.status, 431, '101 header fields: 431, as over h1');
  const longUrl = await visitH2(env, a.hostname, { path: `/${'a'.repeat(9000)}` });
  t.equal(longUrl.status, 414, 'a 9000-byte :path: 414');
  const noTunnel = await visitH2(env, `nosuch.${a.hostname.split('.').slice(1).join('.')}`, {
    headers: { accept: 'text/html' },
  });
  t.equal(noTunnel.status, 404);
  t.match(noTunnel.body.toString(), /No such tunnel/, 'the same error page as h1');

  // A header list over the advertised SETTINGS_MAX_HEADER_LIST_SIZE never reaches an app,
  // and only that stream (or at worst that connection) pays.
  const huge = await visitH2(env, a.hostname, {
    path: '/huge',
    headers: { 'x-big': 'b'.repeat(20_000) },
  }).then(
    (r) => String(r.status),
    (err: Error) => err.message,
  );
  t.not(huge, '200', `a 20 KB header list is refused (${huge})`);
  t.notOk(
    seen.some((s) => s.url === '/huge'),
    'the oversized request reached no app',
  );

  // CONNECT: never a forward proxy over h2 either.
  const connect = await new Promise<number | string>((resolve) => {
    const req = sessionA.request({ ':method': 'CONNECT', ':authority': 'example.com:443' });
    req.on('response', (h) => resolve(Number(h[':status'])));
    req.on('error', (err) => resolve(err.message));
    req.on('close', () => resolve('closed'));
    req.resume();
  });
  t.equal(connect, 405, 'CONNECT over h2: 405');

  await control.check(t, 'h2 routing and limits');
});

t.test('the tunnel access policy and rate limit hold over h2', async (t) => {
  const env = await startTestRelay(t, { rateLimitPerTunnel: 5 });
  const auths: (string | undefined)[] = [];
  const { port } = await startOrigin(t, (req, res) => {
    auths.push(req.headers.authorization);
    res.end('secret');
  });
  const guarded = await connectTunnel(t, env, String(port), {
    access: { basicAuthSha256: basicAuthDigest('u:p') },
  });
  const none = await visitH2(env, guarded.hostname);
  t.equal(none.status, 401, 'no credentials: 401');
  t.match(String(none.headers['www-authenticate']), /Basic/);
  const good = await visitH2(env, guarded.hostname, {
    headers: { authorization: `Basic ${Buffer.from('u:p').toString('base64')}` },
  });
  t.equal(good.status, 200, 'right credentials: 200');
  t.same(auths, [undefined], 'the tunnel password never reaches the app');

  const fenced = await connectTunnel(t, env, String(port), {
    access: { allowIps: ['10.0.0.0/8'] },
  });
  t.equal((await visitH2(env, fenced.hostname)).status, 403, 'an address outside --allow-ip: 403');

  const open = await connectTunnel(t, env, String(port));
  const session = connectH2(env, open.hostname);
  t.teardown(() => session.close());
  const statuses = await Promise.all(
    Array.from({ length: 30 }, () =>
      visitH2(env, open.hostname, {}, session).then((r) => r.status),
    ),
  );
  t.ok(statuses.includes(429), 'past the per-tunnel rate: 429');
});

t.test('h2 floods and resets end the offending connection only', async (t) => {
  const env = await startTestRelay(t);
  const control = await startControl(t, env);
  let originRequests = 0;
  const { port } = await startOrigin(t, (req, res) => {
    originRequests++;
    req.resume();
    // Slow enough that a cancelled stream is still open at the relay.
    setTimeout(() => res.end('late'), 50).unref();
  });
  const tunnel = await connectTunnel(t, env, String(port));

  // Rapid reset (CVE-2023-44487): open streams and cancel them once the relay has
  // started on them, 50 at a time, up to 2000. (Pairs that arrive in one read cost
  // nothing: nghttp2 drops them before any stream exists.)
  {
    const raw = await rawH2(env, tunnel.hostname);
    t.teardown(() => raw.destroy());
    const block = requestBlock(tunnel.hostname, '/reset');
    let id = 1;
    for (let round = 0; round < 40 && !raw.isClosed; round++) {
      const ids = Array.from({ length: 50 }, () => (id += 2) - 2);
      const flags = Flag.END_HEADERS | Flag.END_STREAM;
      raw.write(Buffer.concat(ids.map((i) => frame(FrameType.HEADERS, flags, i, block))));
      await delay(10);
      const cancel = Buffer.from([0, 0, 0, 8]);
      raw.write(Buffer.concat(ids.map((i) => frame(FrameType.RST_STREAM, 0, i, cancel))));
    }
    t.ok(
      await within(raw.closed, 10_000).then(() => raw.isClosed),
      'rapid reset: connection closed',
    );
    t.ok(raw.goaway !== undefined, `rapid reset: GOAWAY first (code ${raw.goaway?.code})`);
    t.ok(originRequests < 1000, `the app saw ${originRequests} of 2000 requests`);
    t.ok(await eventually(() => relayStreams(env) === 0), 'no tunnel stream left open');
    await control.check(t, 'rapid reset');
  }

  // CONTINUATION flood: a header block that never ends.
  {
    const raw = await rawH2(env, tunnel.hostname);
    t.teardown(() => raw.destroy());
    raw.write(frame(FrameType.HEADERS, 0, 1, requestBlock(tunnel.hostname, '/cont')));
    const junk = frame(FrameType.CONTINUATION, 0, 1, hpack([['x-junk', 'j'.repeat(200)]]));
    for (let i = 0; i < 100 && !raw.isClosed; i++) {
      raw.write(Buffer.concat(Array.from({ length: 100 }, () => junk)));
      await delay(5);
    }
    t.ok(
      await within(raw.closed, 10_000).then(() => raw.isClosed),
      'CONTINUATION flood: connection closed',
    );
    await control.check(t, 'CONTINUATION flood');
  }

  // SETTINGS and PING floods.
  for (const [what, f] of [
    ['SETTINGS', frame(FrameType.SETTINGS, 0, 0, Buffer.from([0, 3, 0, 0, 0, 100]))],
    ['PING', frame(FrameType.PING, 0, 0, Buffer.alloc(8))],
  ] as const) {
    const raw = await rawH2(env, tunnel.hostname);
    t.teardown(() => raw.destroy());
    // 100 frames at a time: past the relay's budget long before nghttp2's own limit on
    // queued ACKs (which ends a session that floods it in one read, without GOAWAY).
    for (let round = 0; round < 50 && !raw.isClosed; round++) {
      raw.write(Buffer.concat(Array.from({ length: 100 }, () => f)));
      await delay(5);
    }
    t.ok(
      await within(raw.closed, 10_000).then(() => raw.isClosed),
      `${what} flood: connection closed`,
    );
    t.equal(raw.goaway?.code, 11, `${what} flood: GOAWAY ENHANCE_YOUR_CALM`);
    await control.check(t, `${what} flood`);
  }

  // More concurrent streams than SETTINGS_MAX_CONCURRENT_STREAMS (100): the extra
  // ones are refused, not queued at the relay.
  {
    const raw = await rawH2(env, tunnel.hostname);
    t.teardown(() => raw.destroy());
    await delay(50); // our SETTINGS ACK for the relay's limits is out
    const block = requestBlock(tunnel.hostname, '/many');
    const parts: Buffer[] = [];
    for (let i = 0; i < 150; i++) {
      parts.push(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1 + 2 * i, block));
    }
    raw.write(Buffer.concat(parts));
    const refused = (): number =>
      raw.frames.filter((f) => f.type === FrameType.RST_STREAM || f.type === FrameType.GOAWAY)
        .length;
    t.ok(await eventually(() => refused() > 0 || raw.isClosed), 'streams past 100 are refused');
    raw.destroy();
    await control.check(t, 'too many streams');
  }
});

t.test('sessions that never ask, sit idle, or stop reading are closed', async (t) => {
  const env = await startTestRelay(t, {
    http2: { firstRequestTimeoutMs: 500, idleTimeoutMs: 500, stalledStreamTimeoutMs: 500 },
  });
  const control = await startControl(t, env);
  const big = Buffer.alloc(8 * MiB, 1);
  const { port } = await startOrigin(t, (req, res) => {
    if (req.url === '/big') {
      res.end(big);
      return;
    }
    res.end('small');
  });
  const tunnel = await connectTunnel(t, env, String(port));

  const silent = await rawH2(env, tunnel.hostname);
  t.teardown(() => silent.destroy());
  t.ok(await within(silent.closed, 10_000).then(() => silent.isClosed), 'no request: closed');

  const session = connectH2(env, tunnel.hostname);
  t.teardown(() => session.close());
  t.equal((await visitH2(env, tunnel.hostname, {}, session)).status, 200);
  const [code] = (await within(once(session, 'goaway'), 10_000)) ?? [];
  t.equal(code, 0, 'idle after its request: GOAWAY NO_ERROR');

  // A visitor that opens no window for the response: its stream is reset and the
  // tunnel stream freed.
  const stingy = connectH2(env, tunnel.hostname);
  t.teardown(() => stingy.destroy());
  const req = stingy.request({ ':path': '/big', ':authority': tunnel.hostname });
  req.pause();
  req.on('error', () => {});
  const [, closedCode] = await Promise.all([
    eventually(() => relayStreams(env) > 0),
    within(
      new Promise<number>((resolve) => req.once('close', () => resolve(req.rstCode ?? -1))),
      15_000,
    ),
  ]);
  t.equal(closedCode, 8, 'a stalled reader: RST_STREAM CANCEL');
  t.ok(await eventually(() => relayStreams(env) === 0), 'the tunnel stream is freed');
  await control.check(t, 'idle and stalled h2 sessions');
});

t.test('an upload opens its h2 window only as fast as the app reads', async (t) => {
  const env = await startTestRelay(t);
  let reading: (() => void) | undefined;
  let received = 0;
  const { port } = await startOrigin(t, (req, res) => {
    req.pause();
    reading = () => {
      req.on('data', (c: Buffer) => (received += c.length));
      req.resume();
    };
    req.on('end', () => res.end(String(received)));
  });
  const tunnel = await connectTunnel(t, env, String(port));
  const session = connectH2(env, tunnel.hostname);
  t.teardown(() => session.destroy());
  const req = session.request(
    { ':method': 'POST', ':path': '/up', ':authority': tunnel.hostname },
    { endStream: false },
  );
  req.on('error', () => {});
  const total = 96 * MiB;
  const chunk = Buffer.alloc(256 * 1024, 7);
  let accepted = 0;
  let sent = 0;
  let lastProgress = performance.now();
  const pump = (): void => {
    while (sent < total) {
      sent += chunk.length;
      const more = req.write(chunk, () => {
        accepted += chunk.length;
        lastProgress = performance.now();
      });
      if (!more) {
        req.once('drain', pump);
        return;
      }
    }
    req.end();
  };
  pump();
  // Stalled: no write completed for a second while the app reads nothing.
  await eventually(() => performance.now() - lastProgress > 1_000, 30_000);
  t.ok(accepted < 48 * MiB, `the relay took ${(accepted / MiB).toFixed(1)} of 96 MiB unread`);
  reading?.();
  const [headers] = (await once(req, 'response')) as [Record<string, unknown>];
  t.equal(headers[':status'], 200);
  let body = '';
  req.setEncoding('utf8');
  for await (const c of req) body += String(c);
  t.equal(body, String(total), 'then all of it arrives');
});
