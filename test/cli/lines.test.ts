/**
 * The one event stream and its views: `--log json` lines carry exactly the CLI
 * contract's fields (the origin proxy's in-process extras stay out), and one capturing
 * tunnel feeds the json view and the TUI store from the same events.
 */
import http from 'node:http';
import t from 'tap';
import type { TunnelEvent } from '../../cli/events.js';
import { ExchangeCapture } from '../../cli/origin/capture.js';
import { parseTarget } from '../../cli/origin/target.js';
import { embeddedRelay } from '../../cli/tunnel/relay-connector.js';
import { TunnelRunner } from '../../cli/tunnel/runner.js';
import { lineView } from '../../cli/ui/lines.js';
import { TuiStore } from '../../cli/ui/tui/store.js';
import { startOrigin } from '../helpers/relay-env.js';

function jsonView(): { view: (e: TunnelEvent) => void; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  const view = lineView('json', { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { view, out, err };
}

const capture = new ExchangeCapture({
  method: 'POST',
  url: '/hook',
  httpVersion: '1.1',
  headers: [['host', 'x.example']],
  remoteAddress: '203.0.113.7',
  scheme: 'https',
});

t.test('json: each event prints the contract fields only, in order', async (t) => {
  const { view, out } = jsonView();
  view({ event: 'connecting', relay: 'r', attempt: 1 });
  view({
    event: 'request-start',
    id: 1,
    method: 'POST',
    path: '/hook',
    upgrade: false,
    capture,
  });
  view({ event: 'rtt', ms: 3 });
  view({
    event: 'request',
    id: 1,
    method: 'POST',
    path: '/hook',
    status: 200,
    durationMs: 4,
    bytesIn: 10,
    bytesOut: 2,
    upgrade: false,
    queued: { deliveryId: 'd1', queuedAt: '2026-01-01T00:00:00.000Z' },
    capture,
    tunnel: 'web',
  });
  view({ event: 'warning', code: 'origin-unreachable', message: 'down' });
  view({ event: 'hint', code: 'host-rejected', hostname: 'a.example', message: 'allow it' });
  const lines = out.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(
    lines.map((l) => Object.keys(l)),
    [
      [
        'time',
        'event',
        'id',
        'method',
        'path',
        'status',
        'durationMs',
        'bytesIn',
        'bytesOut',
        'upgrade',
        'queued',
        'tunnel',
      ],
      ['time', 'event', 'message'],
      ['time', 'event', 'code', 'message'],
    ],
    'connecting, request-start and rtt print nothing; no capture, warning code or hostname',
  );
  t.match(lines[0], { event: 'request', status: 200, queued: { deliveryId: 'd1' } });
  t.match(lines[2], { event: 'hint', code: 'host-rejected', message: 'allow it' });
});

t.test('one capturing tunnel: the json view and the TUI store read the same events', async (t) => {
  const { port } = await startOrigin(t, (_req, res) => res.end('ok'));
  const { view, out } = jsonView();
  const store = new TuiStore();
  const seen: TunnelEvent[] = [];
  let finished: (() => void) | undefined;
  const requestDone = new Promise<void>((resolve) => (finished = resolve));
  const relay = await embeddedRelay();
  const runner = new TunnelRunner(
    {
      tunnel: 'web',
      target: parseTarget(String(port)),
      hostHeader: 'preserve',
      originInsecure: false,
      capture: true,
      request: { clientVersion: 'test' },
      relay,
    },
    {
      emit: (e) => {
        seen.push(e);
        store.onEvent(e);
        view(e);
        if (e.event === 'request') finished?.();
      },
    },
  );
  t.teardown(() => runner.stop(0));
  await runner.start();
  const url = new URL(store.tunnel.url!);
  const status = await new Promise<number>((resolve, reject) => {
    http
      .get(
        { host: '127.0.0.1', port: url.port, path: '/a?b=1', headers: { host: url.host } },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      )
      .on('error', reject);
  });
  t.equal(status, 200);
  await requestDone;

  const start = seen.find((e) => e.event === 'request-start');
  const end = seen.find((e) => e.event === 'request');
  t.match(start, { event: 'request-start', tunnel: 'web', path: '/a?b=1', capture: Object });
  t.match(end, { event: 'request', tunnel: 'web', status: 200, capture: Object });
  t.equal(store.rowCount, 1, 'the store made one row of the start and the end');
  const row = store.rowAt(0)!;
  t.match(row, { open: false, status: 200, path: '/a?b=1' });
  t.ok(row.capture !== undefined, 'with the capture the proxy emitted');

  const lines = out.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(
    lines.map((l) => l['event']),
    ['ready', 'request'],
  );
  t.notOk('capture' in lines[1]!, 'the json line has no capture');
  t.match(lines[1], { event: 'request', tunnel: 'web', path: '/a?b=1', status: 200 });
});
