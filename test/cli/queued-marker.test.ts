/**
 * Requests the relay delivers from its queue (store-and-forward) are marked in every
 * view: text lines, JSON lines and the terminal UI's request list.
 */
import t from 'tap';
import type { TunnelEvent } from '../../cli/events.js';
import { lineView } from '../../cli/ui/lines.js';
import { makePaint } from '../../cli/ui/tui/paint.js';
import { rowLine } from '../../cli/ui/tui/request-list.js';
import { makeStore, ready } from '../helpers/tui.js';

const queued = {
  deliveryId: 'c0ffee00-1111-2222-3333-444455556666',
  queuedAt: '2026-12-07T03:04:05.678Z',
};
const delivered: TunnelEvent = {
  event: 'request',
  id: 1,
  method: 'POST',
  path: '/hooks/stripe',
  status: 200,
  durationMs: 3,
  bytesIn: 10,
  bytesOut: 2,
  upgrade: false,
  queued,
};
const live: TunnelEvent = { ...delivered, id: 2, path: '/live' };
delete (live as { queued?: unknown }).queued;

t.test('text and JSON lines', async (t) => {
  const out: string[] = [];
  const writer = { out: (l: string) => out.push(l), err: () => {} };
  const text = lineView('text', writer);
  text(delivered);
  text(live);
  t.match(
    out[0],
    /POST \/hooks\/stripe 200 .*\(queued 2026-12-07T03:04:05\.678Z, delivery c0ffee00-/,
  );
  t.notMatch(out[1], /queued/, 'a live request is not marked');
  const json = lineView('json', writer);
  json(delivered);
  t.same(JSON.parse(out[2]!).queued, queued);
});

t.test('terminal UI row', async (t) => {
  const { store } = makeStore();
  ready(store);
  store.onEvent(delivered);
  store.onEvent(live);
  const row = store.rowAt(0)!;
  t.same(row.queued, queued);
  t.equal(store.rowAt(1)?.queued, undefined);
  const line = rowLine(row, 100, false, Date.now(), makePaint(false));
  t.match(line, /\/hooks\/stripe · queued \d\d:\d\d:\d\d/);
});
