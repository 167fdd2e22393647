/**
 * Stream and session lifecycle over both transports: half-close in each direction,
 * resets from each side, GOAWAY with streams in flight, the handshake (version
 * mismatch, rejection), stream limits, and a dropped connection.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import t from 'tap';
import { ConnectionError, ProtocolError, StreamResetError } from '../../shared/errors.js';
import { HelloRejection, type MuxSession } from '../../shared/mux/session.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import { ErrorCode, FrameType, encodeCodeMessage } from '../../shared/protocol/frame.js';
import { muxPair, sessionPair, type PairKind } from '../helpers/mux-pair.js';
import { rawServer } from '../helpers/raw-peer.js';
import {
  closeError,
  echoStreams,
  hashReader,
  readAll,
  roundTrip,
  sha256,
  writeAll,
} from '../helpers/mux-streams.js';

const MiB = 1024 * 1024;
const kinds: PairKind[] = ['memory', 'tls-ws'];

/** The next stream `session` accepts. */
function nextStream(session: MuxSession): Promise<MuxStream> {
  return new Promise((resolve) => session.once('stream', resolve));
}

for (const kind of kinds) {
  t.test(`half-close over ${kind}`, async (t) => {
    const pair = await muxPair(kind);
    t.teardown(() => pair.close());

    for (const [openerName, opener, acceptor] of [
      ['client', pair.client, pair.server],
      ['server', pair.server, pair.client],
    ] as const) {
      t.test(`${openerName}-opened: opener ends first, acceptor keeps sending`, async (t) => {
        const response = randomBytes(MiB + 3);
        const accepted = nextStream(acceptor).then(async (s) => {
          const request = await readAll(s); // until the opener's FIN
          t.ok(s.remoteFin, 'acceptor saw FIN before answering');
          t.notOk(s.writableEnded, 'acceptor can still write');
          // Keep sending after the peer's half-close, in several writes.
          for (let i = 0; i < response.length; i += 100_000) {
            if (!s.write(response.subarray(i, i + 100_000))) await once(s, 'drain');
          }
          s.end();
          await finished(s);
          return request.toString();
        });
        const s = opener.openStream({});
        const result = hashReader(s);
        s.end('the request');
        await once(s, 'finish');
        t.ok(s.writableFinished, 'opener finished writing');
        t.notOk(s.readableEnded, 'opener still reading');
        await finished(s);
        t.equal(await accepted, 'the request');
        t.same(result(), { sha256: sha256(response), bytes: response.length });
        t.equal(opener.streamCount, 0);
        t.equal(acceptor.streamCount, 0);
      });

      t.test(`${openerName}-opened: acceptor ends first, opener keeps sending`, async (t) => {
        const upload = randomBytes(MiB + 5);
        const accepted = nextStream(acceptor).then(async (s) => {
          s.reply({ status: 200 });
          s.end('short answer'); // half-close right away
          const got = hashReader(s);
          await finished(s);
          return got();
        });
        const s = opener.openStream({});
        const answer = await readAll(s);
        t.equal(answer.toString(), 'short answer');
        t.ok(s.remoteFin);
        t.notOk(s.writableEnded, 'opener can still write after the peer ended');
        await writeAll(s, upload);
        await finished(s);
        t.same(await accepted, { sha256: sha256(upload), bytes: upload.length });
        t.equal(opener.streamCount, 0);
        t.equal(acceptor.streamCount, 0);
      });
    }
  });

  t.test(`reset from each side over ${kind}`, async (t) => {
    const pair = await muxPair(kind);
    t.teardown(() => pair.close());

    t.test('opener resets: the acceptor gets StreamResetError with the code', async (t) => {
      const accepted = nextStream(pair.server).then(async (s) => {
        const err = closeError(s);
        s.resume();
        s.reply({ status: 200 });
        return err;
      });
      const s = pair.client.openStream({});
      const local = closeError(s);
      s.write(randomBytes(300_000)); // DATA in flight when the RESET goes out
      await once(s, 'reply');
      s.reset(ErrorCode.CONNECT_ERROR, 'origin refused');
      const remoteErr = await accepted;
      t.type(remoteErr, StreamResetError);
      t.equal((remoteErr as StreamResetError).resetCode, ErrorCode.CONNECT_ERROR);
      t.match(remoteErr?.message, /CONNECT_ERROR.*origin refused/);
      t.equal((remoteErr as StreamResetError).reason, 'origin refused', 'the reason alone');
      const localErr = await local;
      t.type(localErr, StreamResetError, 'the resetting side fails its own stream too');
      t.equal((localErr as StreamResetError).resetCode, ErrorCode.CONNECT_ERROR);
    });

    t.test('acceptor resets mid-upload: the opener gets StreamResetError', async (t) => {
      pair.server.once('stream', (s) => {
        s.on('error', () => {});
        s.once('data', () => s.reset(ErrorCode.TIMEOUT, 'too slow'));
      });
      const s = pair.client.openStream({});
      const err = closeError(s);
      s.end(randomBytes(4 * MiB)); // far more than one window: the rest races the RESET
      const e = await err;
      t.type(e, StreamResetError);
      t.equal((e as StreamResetError).resetCode, ErrorCode.TIMEOUT);
      t.equal((e as StreamResetError).code, 'QT_ERR_STREAM_RESET');
      t.match(e?.message, /reset by peer \(TIMEOUT\): too slow/);
      t.equal((e as StreamResetError).reason, 'too slow');
    });

    t.test('server-opened stream reset by the client', async (t) => {
      pair.client.once('stream', (s) => {
        s.on('error', () => {});
        s.reset(ErrorCode.REFUSED_STREAM, 'busy');
      });
      const s = pair.server.openStream({});
      const e = await closeError(s);
      t.equal((e as StreamResetError).resetCode, ErrorCode.REFUSED_STREAM);
    });

    t.test('destroy() sends CANCEL, destroy(err) INTERNAL_ERROR', async (t) => {
      for (const [err, code] of [
        [undefined, ErrorCode.CANCEL],
        [new Error('boom'), ErrorCode.INTERNAL_ERROR],
      ] as const) {
        // Listen inside the 'stream' event: OPEN and RESET may arrive in one read (the
        // transport batches frames sent in one turn), and the stream is then already
        // destroyed by the time a promise continuation would run.
        const accepted = new Promise<Error | undefined>((resolve) =>
          pair.server.once('stream', (s) => resolve(closeError(s))),
        );
        const s = pair.client.openStream({});
        s.on('error', () => {});
        s.destroy(err);
        t.equal(((await accepted) as StreamResetError).resetCode, code);
      }
    });

    t.test('the session is unharmed', async (t) => {
      const errors = echoStreams(pair.server);
      t.teardown(() => pair.server.removeAllListeners('stream'));
      const payload = randomBytes(600_000);
      t.equal((await roundTrip(pair.client, payload)).sha256, sha256(payload));
      t.same(errors, []);
      t.notOk(pair.client.closed);
      t.notOk(pair.server.closed);
      t.equal(pair.client.streamCount, 0);
      t.equal(pair.server.streamCount, 0);
    });
  });

  t.test(`goaway with streams in flight over ${kind}`, async (t) => {
    const pair = await muxPair(kind);
    t.teardown(() => pair.close());
    const errors = echoStreams(pair.server);
    const payloads = Array.from({ length: 5 }, (_, i) => randomBytes(MiB + i));
    const inFlight = payloads.map((payload) => {
      const s = pair.client.openStream({});
      const result = hashReader(s);
      s.write(payload.subarray(0, 1000));
      return { s, payload, result };
    });
    // Make sure every OPEN reached the server before it goes away.
    await Promise.all(inFlight.map(({ s }) => once(s, 'reply')));

    const goaway = once(pair.client, 'goaway');
    pair.server.goAway(ErrorCode.SHUTDOWN, 'relay restarting');
    // An OPEN already on the wire when GOAWAY is sent gets refused.
    const racing = pair.client.openStream({});
    const racingErr = closeError(racing);
    t.same(await goaway, [ErrorCode.SHUTDOWN, 'relay restarting']);
    t.ok(pair.client.receivedGoAway);
    t.ok(pair.server.goingAway);

    t.throws(() => pair.client.openStream({}), { code: 'QT_ERR_GOING_AWAY' });
    t.throws(() => pair.server.openStream({}), { code: 'QT_ERR_GOING_AWAY' });
    const refused = await racingErr;
    t.type(refused, StreamResetError);
    t.equal((refused as StreamResetError).resetCode, ErrorCode.REFUSED_STREAM);

    // The streams that were open carry on to the end.
    await Promise.all(
      inFlight.map(async ({ s, payload }) => {
        s.end(payload.subarray(1000));
        await finished(s);
      }),
    );
    for (const { payload, result } of inFlight) {
      t.same(result(), { sha256: sha256(payload), bytes: payload.length });
    }
    t.same(errors, []);
    await pair.server.whenIdle();
    t.equal(pair.server.streamCount, 0);
    t.notOk(pair.client.closed, 'GOAWAY alone does not close the session');
    t.notOk(pair.server.closed);
  });

  t.test(`goaway with an error code and no streams closes the peer over ${kind}`, async (t) => {
    const pair = await muxPair(kind);
    t.teardown(() => pair.close());
    pair.client.goAway(ErrorCode.INTERNAL_ERROR, 'client is broken');
    const [err] = (await once(pair.server, 'close')) as [Error];
    t.type(err, ConnectionError);
    t.match(err.message, /GOAWAY \(INTERNAL_ERROR\): client is broken/);
  });

  for (const [clientVersion, serverVersion] of [
    [2, 1],
    [1, 2],
  ] as const) {
    t.test(
      `version mismatch (client v${clientVersion}, server v${serverVersion}) over ${kind}`,
      async (t) => {
        const pair = await sessionPair(kind, {
          client: clientVersion === 1 ? {} : { protocolVersion: clientVersion },
          server: serverVersion === 1 ? {} : { protocolVersion: serverVersion },
        });
        t.teardown(() => pair.close());
        const serverClosed = once(pair.server, 'close');
        const accepted = pair.server.accept(() => ({}));
        const connectErr = await pair.client.connect({}).then(
          () => undefined,
          (err: unknown) => err,
        );
        t.type(connectErr, ProtocolError);
        t.equal((connectErr as ProtocolError).code, 'QT_ERR_VERSION_MISMATCH');
        const message = (connectErr as Error).message;
        t.match(message, `v${serverVersion}`, 'names the relay version');
        t.match(message, `v${clientVersion}`, 'names the client version');
        t.match(message, /install a quick-tunnel version that matches the relay/);
        t.ok(pair.client.closed);
        const [serverErr] = (await serverClosed) as [Error];
        t.equal((serverErr as ProtocolError).code, 'QT_ERR_VERSION_MISMATCH');
        await t.rejects(accepted, { code: 'QT_ERR_VERSION_MISMATCH' });
        if (pair.serverWs !== undefined && pair.serverWs.readyState !== pair.serverWs.CLOSED) {
          await once(pair.serverWs, 'close'); // the relay hangs up, it does not wait
        }
      },
    );
  }

  t.test(`handshake rejection and refusals over ${kind}`, async (t) => {
    t.test('HelloRejection reaches connect() with its code', async (t) => {
      const pair = await sessionPair(kind);
      t.teardown(() => pair.close());
      pair.server
        .accept(() => {
          throw new HelloRejection(ErrorCode.REJECTED, 'name "web" is taken');
        })
        .catch(() => {});
      t.throws(() => pair.client.openStream({}), { code: 'QT_ERR_NOT_READY' });
      await t.rejects(pair.client.connect({ name: 'web' }), {
        code: 'QT_ERR_REJECTED',
        message: 'name "web" is taken',
      });
      t.throws(() => pair.client.openStream({}), { code: 'QT_ERR_SESSION_CLOSED' });
    });

    t.test('AUTH_FAILED becomes QT_ERR_AUTH', async (t) => {
      const pair = await sessionPair(kind);
      t.teardown(() => pair.close());
      pair.server
        .accept(() => {
          throw new HelloRejection(ErrorCode.AUTH_FAILED, 'bad token', 'QT_ERR_AUTH');
        })
        .catch(() => {});
      await t.rejects(pair.client.connect({}), { code: 'QT_ERR_AUTH', message: 'bad token' });
    });

    t.test('the app payloads travel both ways', async (t) => {
      const pair = await muxPair(kind, {
        clientApp: { token: 'x' },
        onHello: (app) => ({ hostname: 'a.qt.localhost', echo: app }),
      });
      t.teardown(() => pair.close());
      t.same(pair.server.peerApp, { token: 'x' });
      t.same(pair.client.peerApp, { hostname: 'a.qt.localhost', echo: { token: 'x' } });
    });

    t.test('a stream with no handler on the other side is refused', async (t) => {
      const pair = await muxPair(kind);
      t.teardown(() => pair.close());
      const s = pair.client.openStream({});
      const err = await closeError(s);
      t.equal((err as StreamResetError).resetCode, ErrorCode.REFUSED_STREAM);
      t.match(err?.message, /no stream handler/);
      t.equal(pair.server.streamCount, 0);
      t.notOk(pair.server.closed);
    });
  });

  t.test(`stream limit over ${kind}`, async (t) => {
    const pair = await muxPair(kind, { server: { maxStreams: 3 }, client: { maxStreams: 1 } });
    t.teardown(() => pair.close());
    const errors = echoStreams(pair.server);
    const open = [1, 2, 3].map(() => pair.client.openStream({}));
    t.throws(() => pair.client.openStream({}), StreamResetError);
    try {
      pair.client.openStream({});
    } catch (err) {
      t.equal((err as StreamResetError).resetCode, ErrorCode.REFUSED_STREAM);
      t.match((err as Error).message, /limit of 3 streams/);
    }
    // Finishing one frees a slot.
    const first = open[0]!;
    first.resume();
    first.end('x');
    await finished(first);
    const fourth = pair.client.openStream({});
    t.throws(() => pair.client.openStream({}), StreamResetError);

    // The client accepts a single stream from the server.
    pair.client.on('stream', (s) => {
      s.on('error', () => {});
      s.resume();
    });
    pair.server.openStream({}).on('error', () => {});
    t.throws(() => pair.server.openStream({}), {
      name: 'StreamResetError',
      resetCode: ErrorCode.REFUSED_STREAM,
    });

    for (const s of [...open.slice(1), fourth]) {
      s.resume();
      s.end();
      await finished(s);
    }
    t.same(errors, []);
  });

  t.test(`a dropped connection errors every open stream over ${kind}`, async (t) => {
    for (const how of kind === 'memory' ? ['terminate'] : ['terminate', 'kill socket']) {
      t.test(how, async (t) => {
        const pair = await muxPair(kind);
        t.teardown(() => pair.close());
        const accepted: MuxStream[] = [];
        for (const session of [pair.server, pair.client]) {
          session.on('stream', (s) => {
            accepted.push(s);
            s.on('error', () => {});
            s.pipe(s);
          });
        }
        const opened: MuxStream[] = [];
        for (let i = 0; i < 10; i++) {
          const s = (i % 2 === 0 ? pair.client : pair.server).openStream({});
          s.on('error', () => {});
          s.write(randomBytes(100_000)); // mid-transfer: unacknowledged data in both directions
          opened.push(s);
        }
        await Promise.all(opened.map((s) => once(s, 'data')));
        const all = [...opened, ...accepted];
        t.equal(all.length, 20);
        const outcomes = all.map((s) => closeError(s));
        const sessionsClosed = [once(pair.client, 'close'), once(pair.server, 'close')];
        const started = performance.now();
        if (how === 'terminate') pair.clientTransport.terminate();
        else pair.serverSocket!.destroy();
        const errs = await Promise.all(outcomes);
        await Promise.all(sessionsClosed);
        const elapsedMs = performance.now() - started;
        t.same(
          errs.filter((e) => !(e instanceof ConnectionError)).map(String),
          [],
          'every stream failed with a ConnectionError',
        );
        t.ok(elapsedMs < 2000, `all failed in ${Math.round(elapsedMs)} ms`);
        t.ok(pair.client.closed && pair.server.closed);
        t.equal(pair.client.streamCount, 0);
        t.equal(pair.server.streamCount, 0);
        t.throws(() => pair.client.openStream({}), { code: 'QT_ERR_SESSION_CLOSED' });
      });
    }
  });
}

t.test('beyond-limit OPENs are refused with RESET REFUSED_STREAM', async (t) => {
  const raw = rawServer({ maxStreams: 2 });
  t.teardown(() => raw.session.close());
  await raw.handshake();
  for (const id of [1, 3, 5]) raw.sendFrame(FrameType.OPEN, id, Buffer.from('{}'));
  await raw.settle();
  const resets = raw.received.filter((f) => f.type === FrameType.RESET);
  t.same(
    resets.map((f) => [f.streamId, f.payload.readUInt32BE(0)]),
    [[5, ErrorCode.REFUSED_STREAM]],
    'only the third stream is refused',
  );
  t.equal(raw.streams.length, 2);
  t.equal(raw.session.streamCount, 2);
  // Frames for the refused stream are ignored (it was opened, then refused).
  raw.sendFrame(FrameType.DATA, 5, Buffer.from('late'));
  // Ending stream 1 in both directions frees a slot.
  raw.sendFrame(FrameType.FIN, 1);
  await raw.settle();
  t.ok(raw.received.some((f) => f.type === FrameType.FIN && f.streamId === 1));
  t.equal(raw.session.streamCount, 1);
  raw.sendFrame(FrameType.OPEN, 7, Buffer.from('{}'));
  await raw.settle();
  t.equal(raw.streams.length, 3, 'stream 7 accepted');
  t.notOk(raw.received.some((f) => f.type === FrameType.RESET && f.streamId === 7));
  t.notOk(raw.session.closed);
  t.same(raw.streamErrors, []);
});

t.test('GOAWAY during the handshake explains itself', async (t) => {
  const raw = rawServer();
  t.teardown(() => raw.session.close());
  raw.sendFrame(FrameType.GOAWAY, 0, encodeCodeMessage(ErrorCode.SHUTDOWN, 'bye'));
  await raw.settle();
  t.ok(raw.session.closed);
  t.match(raw.session.closeError, { code: 'QT_ERR_REJECTED', message: 'bye', retryable: true });
});

t.test('stream ids never wrap: the last u32 id is used, then opens fail', async (t) => {
  const pair = await muxPair('memory');
  t.teardown(() => pair.close());
  const errors = echoStreams(pair.server);
  // Jump near the end of the id space instead of opening 2^31 streams.
  (pair.client as unknown as { nextStreamId: number }).nextStreamId = 0xfffffffd;
  for (const expected of [0xfffffffd, 0xffffffff]) {
    const s = pair.client.openStream({});
    t.equal(s.id, expected);
    const got = hashReader(s);
    s.end('last ids');
    await finished(s);
    t.equal(got().bytes, 8);
  }
  t.throws(() => pair.client.openStream({}), { code: 'QT_ERR_GOING_AWAY', message: /exhausted/ });
  t.notOk(pair.server.closed);
  t.same(errors, []);
});
