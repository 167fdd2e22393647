/**
 * Issue 16 item 3: connections held half-open after an error answer, and the caps on
 * visitor connections. 2,000 visitors that never read and keep sending after an error
 * answer (404 for an unknown host and an unknown tunnel, 400 from the guard, a refused
 * upgrade on the relay, and an origin's own non-101 answer to an upgrade) must not hold
 * their sockets: the process's descriptors return to baseline within seconds while they
 * still send, and a well-behaved tunnel keeps serving throughout. Beyond the per-IP and
 * relay-wide caps a visitor gets a clear refusal, and other addresses still get in.
 */
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import t from 'tap';
import { startTestRelay, type TestRelay } from '../helpers/relay-env.js';
import { startControl } from '../helpers/hostile.js';
import { delay, eventually } from '../helpers/wait.js';

const fds = (): number => readdirSync('/proc/self/fd').length;

interface Attacker {
  closedByPeer: boolean;
  answered: boolean;
  stop(): void;
}

/** A visitor that sends `first`, never reads, and sends `more` every 250 ms until closed. */
async function attacker(env: TestRelay, first: string, more: string): Promise<Attacker> {
  const socket = net.connect(env.httpPort, '127.0.0.1');
  const state: Attacker = {
    closedByPeer: false,
    answered: false,
    stop: () => {
      clearInterval(timer);
      socket.destroy();
    },
  };
  socket.on('error', () => {});
  socket.once('data', () => (state.answered = true));
  let stopped = false;
  socket.once('close', () => {
    clearInterval(timer);
    if (!stopped) state.closedByPeer = true;
  });
  const timer = setInterval(() => {
    if (!socket.destroyed) socket.write(more);
  }, 250);
  const originalStop = state.stop;
  state.stop = () => {
    stopped = true;
    originalStop();
  };
  await once(socket, 'connect');
  socket.write(first);
  // Read the first answer's arrival only, then never read again (the kernel buffers
  // fill and the relay's writes would block forever).
  socket.once('data', () => socket.pause());
  return state;
}

t.test('2,000 non-reading visitors after error answers: fds return to baseline', async (t) => {
  const env = await startTestRelay(t, { maxVisitorConnectionsPerIp: 0, holdMs: 0 });
  const control = await startControl(t, env);
  await delay(300);
  const baseline = fds();

  const host = (h: string): string => `GET / HTTP/1.1\r\nHost: ${h}\r\n\r\n`;
  const upgrade = (h: string): string =>
    `GET /ws HTTP/1.1\r\nHost: ${h}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`;
  const kinds: [string, string][] = [
    [host('evil.example'), host('evil.example')], // 404 unknown host, pipelined more
    [host('nosuchtunnel.qt.localhost'), host('nosuchtunnel.qt.localhost')], // 404 no tunnel
    [`GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`, host('evil.example')], // 400 guard
    [upgrade('evil.example'), 'x'.repeat(200)], // refused upgrade at the relay
    [upgrade(control.hostname), 'x'.repeat(200)], // the origin's non-101 answer
  ];
  const attackers: Attacker[] = [];
  t.teardown(() => attackers.forEach((a) => a.stop()));
  for (let batch = 0; batch < 20; batch++) {
    const opened = await Promise.all(
      Array.from({ length: 100 }, (_, i) => {
        const [first, more] = kinds[(batch * 100 + i) % kinds.length]!;
        return attacker(env, first, more);
      }),
    );
    attackers.push(...opened);
  }
  t.equal(attackers.length, 2000, '2,000 attackers connected');
  const peak = fds();
  t.ok(peak > baseline + 100, `the attack holds descriptors (${baseline} → ${peak})`);

  const back = await eventually(() => fds() <= baseline + 100, 20_000);
  t.ok(back, `descriptors back to baseline within seconds (${baseline} → ${fds()})`);
  await eventually(() => attackers.every((a) => a.closedByPeer), 10_000);
  const open = new Map<number, number>();
  attackers.forEach((a, i) => {
    if (!a.closedByPeer) open.set(i % kinds.length, (open.get(i % kinds.length) ?? 0) + 1);
  });
  if (open.size > 0) t.comment(`still open by kind: ${JSON.stringify([...open])}`);
  t.ok(
    attackers.every((a) => a.closedByPeer),
    `the relay closed every attacker (${attackers.filter((a) => !a.closedByPeer).length} still open)`,
  );
  t.ok(attackers.filter((a) => a.answered).length > 1900, 'and each got its answer first');
  t.ok(
    await eventually(() => env.relay.visitorConnections <= 2, 5_000),
    `only the control tunnel's connections remain (${env.relay.visitorConnections})`,
  );
  await control.check(t, 'after 2,000 half-open attackers');
});

/** An idle visitor connection from `localAddress`; resolves with what it read until closed. */
async function idle(port: number, localAddress: string) {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress });
  socket.on('error', () => {});
  let text = '';
  socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
  const closed = once(socket, 'close').then(() => text);
  await once(socket, 'connect');
  return { socket, closed, text: () => text };
}

t.test('per-IP and relay-wide caps on visitor connections', async (t) => {
  const env = await startTestRelay(t, {
    maxVisitorConnectionsPerIp: 20,
    maxVisitorConnections: 30,
  });
  const held: net.Socket[] = [];
  t.teardown(() => held.forEach((s) => s.destroy()));
  for (let i = 0; i < 20; i++) held.push((await idle(env.httpPort, '127.0.0.1')).socket);
  await eventually(() => env.relay.visitorConnections === 20);

  const over = await idle(env.httpPort, '127.0.0.1');
  const refused = await Promise.race([over.closed, delay(5_000).then(() => 'still open')]);
  t.match(refused, /^HTTP\/1\.1 429 /, 'the 21st connection from one IP gets 429');
  t.match(refused, /too many connections from 127\.0\.0\.1/, 'saying why');
  const tlsOver = await idle(env.httpsPort, '127.0.0.1');
  t.equal(
    await Promise.race([tlsOver.closed, delay(5_000).then(() => 'still open')]),
    '',
    'on the HTTPS listener it is closed before the handshake',
  );

  const other = await idle(env.httpPort, '127.0.0.2');
  other.socket.write('GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n');
  t.match(await other.closed, /^HTTP\/1\.1 404 /, 'another address still gets in');

  for (let i = 0; i < 10; i++) held.push((await idle(env.httpPort, '127.0.0.3')).socket);
  await eventually(() => env.relay.visitorConnections === 30);
  const full = await idle(env.httpPort, '127.0.0.4');
  const fullText = await Promise.race([full.closed, delay(5_000).then(() => 'still open')]);
  t.match(fullText, /^HTTP\/1\.1 503 /, 'beyond the relay-wide cap: 503');
  t.match(fullText, /maximum of 30 visitor connections/, 'saying why');

  held.splice(0).forEach((s) => s.destroy());
  t.ok(await eventually(() => env.relay.visitorConnections === 0), 'the counts go back to 0');
});
