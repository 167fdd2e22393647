/**
 * Store-and-forward with real processes, as a user runs it: `quick-tunnel relay` (killed
 * with SIGKILL and restarted on its data dir), `tunnel create --queue`, `tunnel queue`,
 * `tunnel run`. 50 webhooks signed with an HMAC over the raw body are sent while the CLI
 * is stopped, with a relay kill -9 in the middle of the sending and another in the
 * middle of the delivery; every one arrives, in order, byte-identical, its signature
 * valid, and exactly once per delivery id (only the one in flight at the second kill
 * may come twice, with the same id). Count and size limits give their own answers
 * (the age limit: webhook-queue-age.test.ts).
 */
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { spawnCli, spawnRelay } from '../helpers/processes.js';
import { kill9, run, send, setup, sign } from '../helpers/queue-e2e.js';
import { startOrigin } from '../helpers/relay-env.js';

// Four relay starts, a CLI run and a dozen short CLI commands: ~20 s on an idle machine,
// several times that on a loaded one; more than tap's default per-file budget there.
t.setTimeout(300_000);

t.test('50 signed webhooks survive a stopped CLI and two relay kill -9s', async (t) => {
  const { dataDir, ca, env, relay: first } = await setup(t, ['--queue-max-items', '50']);
  let relay = first;
  const created = await run(t, ['tunnel', 'create', 'hooks', '--queue', '--json'], env);
  t.equal(created.code, 0, created.stderr);
  t.match(JSON.parse(created.stdout), { event: 'created', name: 'hooks', queue: true });
  const host = 'hooks.qt.localhost';

  // The app: checks each signature over the raw body, answers slowly enough that the
  // second kill lands while deliveries are in flight.
  interface Arrival {
    id: string;
    queuedAt: string;
    index: number;
    body: Buffer;
    signatureOk: boolean;
    method: string;
    path: string;
  }
  const arrivals: Arrival[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const distinct = (): number => new Set(arrivals.map((a) => a.id)).size;
  const { port: originPort } = await startOrigin(t, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      arrivals.push({
        id: String(req.headers['x-quick-tunnel-delivery-id']),
        queuedAt: String(req.headers['x-quick-tunnel-queued-at']),
        index: Number(req.headers['x-index']),
        body,
        signatureOk: req.headers['x-hub-signature-256'] === sign(body),
        method: req.method ?? '',
        path: req.url ?? '',
      });
      for (const w of [...waiters]) {
        if (arrivals.length >= w.n) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
      setTimeout(() => res.end('thanks'), 40);
    });
  });
  const arrived = (n: number, what: () => number = () => arrivals.length): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${what()} of ${n} arrived`)), 60_000);
      const check = (): void => {
        if (what() >= n) {
          clearTimeout(timer);
          resolve();
        } else waiters.push({ n: arrivals.length + 1, resolve: check });
      };
      check();
    });

  const sent: { id: string; body: Buffer; method: string; path: string }[] = [];
  const webhook = async (i: number): Promise<void> => {
    // Random bytes (not only text), different sizes: byte-for-byte is the point.
    const body = Buffer.concat([
      Buffer.from(JSON.stringify({ event: 'invoice.paid', index: i })),
      randomBytes(i * 37),
    ]);
    const method = i % 5 === 4 ? 'PUT' : 'POST';
    const path = `/webhooks/stripe?index=${i}&x=%2F`;
    const res = await send(relay, ca, host, method, path, body, {
      'x-hub-signature-256': sign(body),
      'x-index': String(i),
      'content-type': 'application/octet-stream',
    });
    t.equal(res.status, 202, `webhook ${i} kept`);
    const json = JSON.parse(res.body) as { deliveryId: string };
    sent.push({ id: json.deliveryId, body, method, path });
  };

  for (let i = 0; i < 25; i++) await webhook(i);
  const big = await send(relay, ca, host, 'POST', '/big', Buffer.alloc(1024 * 1024 + 1));
  t.equal(big.status, 503, 'a body over the default 1 MiB: 503');
  t.equal(big.headers['x-quick-tunnel-queue'], 'too-large');
  // kill -9 in the middle of the sending: what got its 202 is on disk.
  await kill9(relay);
  relay = await spawnRelay(t, dataDir, ['--reconnect-hold', '0', '--queue-max-items', '50'], {
    port: relay.httpsPort,
  });
  for (let i = 25; i < 50; i++) await webhook(i);

  t.equal(new Set(sent.map((s) => s.id)).size, 50, '50 distinct delivery ids');
  const get = await send(relay, ca, host, 'GET', '/webhooks/stripe');
  t.equal(get.status, 503, 'GET while offline: 503');
  const over = await send(relay, ca, host, 'POST', '/one-more', Buffer.from('{}'));
  t.equal(over.status, 503, 'the 51st with --queue-max-items 50: 503');
  t.equal(over.headers['x-quick-tunnel-queue'], 'full');
  t.match(over.body, /queue full/);

  const listed = await run(t, ['tunnel', 'queue', 'hooks', '--json'], env);
  t.equal(listed.code, 0, listed.stderr);
  const view = JSON.parse(listed.stdout) as { waiting: number; items: { deliveryId: string }[] };
  t.equal(view.waiting, 50, '`tunnel queue` lists 50 waiting');
  t.same(
    view.items.map((i) => i.deliveryId),
    sent.map((s) => s.id),
    'in arrival order',
  );
  const text = await run(t, ['tunnel', 'queue', 'hooks'], env);
  t.match(text.stdout, /queue on, offline, 50 waiting, 0 failed/);

  // The CLI starts: the queue is delivered. Midway, the relay is killed again.
  const cli = spawnCli(
    t,
    ['tunnel', 'run', 'hooks', '--url', String(originPort), '--log', 'json'],
    { env },
  );
  await arrived(12);
  await kill9(relay);
  const beforeRestart = distinct();
  relay = await spawnRelay(t, dataDir, ['--reconnect-hold', '0', '--queue-max-items', '50'], {
    port: relay.httpsPort,
  });
  await arrived(50, distinct);
  t.ok(beforeRestart < 50, `the kill landed mid-delivery (${beforeRestart} of 50 delivered)`);

  // Exactly once per id, in order; at most the one in flight at the kill came twice.
  const firstSeen: Arrival[] = [];
  const dupes: string[] = [];
  for (const a of arrivals) {
    if (firstSeen.some((f) => f.id === a.id)) dupes.push(a.id);
    else firstSeen.push(a);
  }
  t.same(
    firstSeen.map((a) => a.id),
    sent.map((s) => s.id),
    'all 50 arrived, in the order they were sent',
  );
  t.ok(dupes.length <= 1, `at most the in-flight one came twice (${dupes.length})`);
  for (const [i, a] of firstSeen.entries()) {
    const s = sent[i]!;
    if (!a.body.equals(s.body)) t.fail(`body ${i} differs`);
    if (!a.signatureOk) t.fail(`signature ${i} does not verify`);
    if (a.method !== s.method || a.path !== s.path) t.fail(`request line ${i} differs`);
    if (a.index !== i) t.fail(`index ${i} out of place`);
    if (!/^\d{4}-\d\d-\d\dT.*Z$/.test(a.queuedAt)) t.fail(`queued-at ${i} missing`);
  }
  t.pass('bodies byte-identical, signatures valid, method and path as sent');

  // The CLI's events mark what came from the queue.
  const marked = async (): Promise<number> => {
    const ids = new Set<string>();
    for (const line of cli.stdout) {
      if (!line.startsWith('{')) continue;
      const e = JSON.parse(line) as { event: string; queued?: { deliveryId: string } };
      if (e.event === 'request' && e.queued !== undefined) ids.add(e.queued.deliveryId);
    }
    return ids.size;
  };
  for (let i = 0; i < 200 && (await marked()) < 50; i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
  t.equal(await marked(), 50, 'every delivery is a request event with `queued` set');

  // Drained: nothing left waiting (the relay unlinks after each answer).
  let after: { waiting: number; failed: number } = { waiting: -1, failed: -1 };
  for (let i = 0; i < 100; i++) {
    const r = await run(t, ['tunnel', 'queue', 'hooks', '--json'], env);
    after = JSON.parse(r.stdout) as typeof after;
    if (after.waiting === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.match(after, { waiting: 0, failed: 0 }, 'the queue is empty afterwards');

  // Online: live requests pass straight through.
  const live = await send(relay, ca, host, 'POST', '/live', Buffer.from('now'));
  t.equal(live.status, 200, 'online: live');
  cli.child.kill('SIGTERM');
  await cli.exited;
});
