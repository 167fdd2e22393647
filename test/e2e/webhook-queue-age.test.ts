/**
 * Store-and-forward from the command line: `tunnel queue NAME --enable`, the age limit
 * (an old request is listed as failed, `expired`, and not delivered), `--purge --failed`,
 * `--purge`, and a clear error for contradicting flags. Real relay and CLI processes.
 */
import t from 'tap';
import { run, send, setup } from '../helpers/queue-e2e.js';

t.test('age limit and purge, from the command line', async (t) => {
  const { env, relay, ca } = await setup(t, ['--queue-max-age', '2s']);
  t.equal((await run(t, ['tunnel', 'create', 'aged'], env)).code, 0);
  const host = 'aged.qt.localhost';
  const off = await send(relay, ca, host, 'POST', '/x', Buffer.from('x'));
  t.not(off.status, 202, 'not kept before the queue is on');
  const on = await run(t, ['tunnel', 'queue', 'aged', '--enable'], env);
  t.equal(on.code, 0, on.stderr);
  t.match(on.stdout, /Queue ON for 'aged'/);
  const list = await run(t, ['tunnel', 'list'], env);
  t.match(list.stdout, /QUEUE/);
  t.match(list.stdout, /aged\s+\S+\s+offline\s+0\s+0\s+on\s/, '`tunnel list` shows the queue on');
  t.equal((await send(relay, ca, host, 'POST', '/old', Buffer.from('old'))).status, 202);
  // The age limit is about time passing: list until the item has expired (bounded).
  let listed = { code: 0 as number | string, stdout: '', stderr: '' };
  for (let i = 0; i < 30; i++) {
    listed = await run(t, ['tunnel', 'queue', 'aged'], env);
    if (/expired/.test(listed.stdout)) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  t.match(listed.stdout, /0 waiting, 1 failed/);
  t.match(listed.stdout, /failed\s+POST\s+\/old.*expired: not delivered within 2 s/);
  t.equal(
    (await send(relay, ca, host, 'POST', '/new', Buffer.from('new'))).status,
    202,
    'new requests are still kept',
  );
  const purged = await run(t, ['tunnel', 'queue', 'aged', '--purge', '--failed'], env);
  // /new may have expired too by now on a slow machine: only /old is certain.
  t.match(purged.stdout, /Purged [12] failed request/);
  const all = await run(t, ['tunnel', 'queue', 'aged', '--purge'], env);
  t.match(all.stdout, /0 waiting, 0 failed/);
  const both = await run(t, ['tunnel', 'queue', 'aged', '--enable', '--disable'], env);
  t.equal(both.code, 1, 'contradicting flags: a clear error');
  t.match(both.stderr, /contradict/);
});
