import t from 'tap';
import { exchange, makeStore, ready, renderApp } from '../helpers/tui.js';

t.test('connecting: relay and attempt, before any URL', async (t) => {
  const { store } = makeStore();
  store.tunnel.relay = 'qt.localhost:8443';
  store.tunnel.target = 'localhost:3000';
  store.onEvent({ event: 'connecting', relay: 'qt.localhost:8443', attempt: 2 });
  const app = renderApp(t, { store });
  const frame = await app.frame(/connecting/);
  t.match(frame, /◌ connecting to qt\.localhost:8443… \(attempt 2\)/);
  t.match(frame, /Forwarding\s+\(waiting for the relay\) → localhost:3000/);
  t.match(frame, /Waiting for the tunnel to come online/);
});

t.test('online: URL, target, relay with RTT, kind, connections, uptime, totals', async (t) => {
  const { store, clock } = makeStore();
  ready(store);
  clock.advance(65_000);
  for (let i = 1; i <= 10; i++) exchange(store, i, { durationMs: i * 10, status: 200 });
  const app = renderApp(t, { store });
  const frame = await app.frame(/online/);
  t.match(frame, /● online/);
  t.match(frame, /uptime 1m 05s/);
  t.match(frame, /Forwarding\s+https:\/\/k3mzq7x2ab\.qt\.localhost:8443 → localhost:3000/);
  t.match(frame, /Relay\s+qt\.localhost:8443 · rtt 12 ms · ephemeral · connections 2\/2/);
  t.match(frame, /Requests\s+10 total · 0 open · 1m 0\.2\/s · 5m 0\.2\/s · p50 50 ms · p90 90 ms/);
  t.notMatch(frame, /local only/);
});

t.test('local relay: the URL is marked local-only', async (t) => {
  const { store } = makeStore();
  ready(store, { local: true, url: 'http://k3mzq7x2ab.localhost:41234' });
  const app = renderApp(t, { store });
  t.match(
    await app.frame(/online/),
    /http:\/\/k3mzq7x2ab\.localhost:41234 → localhost:3000 \(local only/,
  );
});

t.test('reconnecting: countdown, attempt and the reason', async (t) => {
  const { store, clock, source } = makeStore();
  ready(store);
  source.live = 0;
  store.onEvent({ event: 'connection-lost', error: 'socket hang up', connectionsLeft: 0 });
  store.onEvent({
    event: 'reconnecting',
    attempt: 3,
    delayMs: 4_200,
    error: 'socket hang up',
  });
  const app = renderApp(t, { store });
  t.match(await app.frame(/reconnecting/), /↻ reconnecting in 5s \(attempt 3\): socket hang up/);
  clock.advance(2_000);
  store.onEvent({ event: 'rtt', ms: 3 }); // any change redraws
  t.match(await app.frame(/in 3s/), /reconnecting in 3s/);
  source.live = 1;
  store.onEvent({
    event: 'reconnected',
    url: 'https://k3mzq7x2ab.qt.localhost:8443',
    sameHostname: true,
  });
  t.match(await app.frame(/● online/), /connections 1\/2/);
});

t.test('a new address after reconnecting is shown and announced', async (t) => {
  const { store } = makeStore();
  ready(store);
  store.onEvent({
    event: 'reconnected',
    url: 'https://zzzzzzzzzz.qt.localhost:8443',
    sameHostname: false,
  });
  const app = renderApp(t, { store });
  const frame = await app.frame(/zzzzzzzzzz/);
  t.match(frame, /Forwarding\s+https:\/\/zzzzzzzzzz\.qt\.localhost:8443/);
  t.match(frame, /! reconnected with a NEW address/);
});

t.test('offline after closed; closing while the tunnel drains', async (t) => {
  const { store } = makeStore();
  ready(store);
  const app = renderApp(t, { store });
  store.markClosing();
  t.match(await app.frame(/closing/), /◌ closing the tunnel…/);
  store.onEvent({ event: 'closed' });
  t.match(await app.frame(/offline/), /○ offline/);
});

t.test('warnings and hints show in the header', async (t) => {
  const { store } = makeStore();
  ready(store);
  store.onEvent({
    event: 'warning',
    code: 'origin-unreachable',
    message: 'nothing is listening on localhost:3000',
  });
  const app = renderApp(t, { store });
  t.match(await app.frame(/nothing is listening/), /! nothing is listening on localhost:3000/);
  store.onEvent({
    event: 'hint',
    code: 'host-rejected',
    hostname: 'x',
    message: 'use --host-header rewrite',
  });
  t.match(await app.frame(/hint:/), /hint: use --host-header rewrite/);
});

t.test('no colour codes with color off; colours with it on', async (t) => {
  const { default: chalk } = await import('chalk');
  const level = chalk.level;
  chalk.level = 1;
  t.teardown(() => {
    chalk.level = level;
  });
  const { store } = makeStore();
  ready(store);
  exchange(store, 1, { status: 500 });
  const plain = renderApp(t, { store, color: false });
  const frame = await plain.frame(/online/);
  // eslint-disable-next-line no-control-regex
  t.notMatch(frame, /\u001b\[3\dm/, 'no foreground colour codes');
  const coloured = renderApp(t, { store, color: true });
  // eslint-disable-next-line no-control-regex
  t.match(await coloured.frame(/online/), /\u001b\[32m● online/, 'status in green');
});

t.test('a short terminal keeps only the status line above the list', async (t) => {
  const { store } = makeStore();
  ready(store);
  for (let i = 1; i <= 3; i++) exchange(store, i, { url: `/r${i}` });
  const app = renderApp(t, { store, height: 8, width: 60 });
  const frame = await app.frame(/r3/);
  t.notMatch(frame, /Forwarding/);
  t.match(frame, /● online/);
  t.equal(frame.split('\n').length, 8, 'fills the given height');
});

t.test('embedded relay: 127.0.0.1 URL and, with --lan, the LAN URL and its QR code', async (t) => {
  const { store } = makeStore();
  store.onEvent({
    event: 'ready',
    url: 'http://k3mzq7x2ab.localhost:41234',
    urls: ['http://k3mzq7x2ab.localhost:41234', 'http://127.0.0.1:41234'],
    directUrl: 'http://127.0.0.1:41234',
    lanUrl: 'http://192.168.1.20:41234',
    hostname: 'k3mzq7x2ab.localhost',
    kind: 'ephemeral',
    relay: 'local relay on 127.0.0.1:41234',
    target: 'localhost:3000',
    local: true,
    connections: 1,
  });
  const app = renderApp(t, { store, height: 40 });
  const frame = await app.frame(/online/);
  t.match(
    frame,
    /http:\/\/127\.0\.0\.1:41234 → localhost:3000 \(any HTTP client on this machine\)/,
  );
  t.match(frame, /LAN\s+http:\/\/192\.168\.1\.20:41234 \(anyone on this network/);
  await app.press('o');
  const qr = await app.frame(/Anyone on this network can open it/);
  t.match(qr, /http:\/\/192\.168\.1\.20:41234/);
});

t.test('the web inspector URL from the ready event shows in the header', async (t) => {
  const { store } = makeStore();
  store.onEvent({
    event: 'ready',
    url: 'https://k3mzq7x2ab.qt.localhost:8443',
    urls: ['https://k3mzq7x2ab.qt.localhost:8443'],
    hostname: 'k3mzq7x2ab.qt.localhost',
    kind: 'ephemeral',
    relay: 'qt.localhost:8443',
    target: 'localhost:3000',
    local: false,
    connections: 2,
    inspector: 'http://127.0.0.1:4040',
  });
  const app = renderApp(t, { store });
  t.match(await app.frame(/online/), /Inspector\s+http:\/\/127\.0\.0\.1:4040/);
});

t.test('without colour nothing is styled at all, bold and dim included', async (t) => {
  const { default: chalk } = await import('chalk');
  const level = chalk.level;
  chalk.level = 3; // as on a colour terminal, so the test can fail
  t.teardown(() => {
    chalk.level = level;
  });
  const { makePaint } = await import('../../cli/ui/tui/paint.js');
  const styled = { text: 'x', bold: true, dim: true, underline: true, fg: 'cyan' as const };
  t.match(makePaint(true).seg(styled), /\u001b\[/, 'with colour: escape codes');
  t.equal(makePaint(false).seg(styled), 'x', 'NO_COLOR / --no-color: plain text');
  t.equal(makePaint(false).inverse('y'), 'y');
});
