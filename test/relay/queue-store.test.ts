/**
 * The durable parts of store-and-forward: the queue setting in a tunnel's reservation
 * (JSON file store across a reopen, and the Redis store of cluster mode), and the item
 * files on disk (leftover temp files and damaged items at load, the disk cap).
 */
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { RedisConnection } from '../../relay/cluster/redis.js';
import { RedisTunnelStore } from '../../relay/cluster/redis-store.js';
import { QueueDisk, QueueStorageFullError } from '../../relay/queue/disk.js';
import { JsonFileTunnelStore, type TunnelRecord } from '../../relay/tunnels/store.js';
import { startRedis } from '../helpers/redis.js';
import { tempDir } from '../helpers/relay-env.js';

const record = (name: string): TunnelRecord => ({
  id: `${name}-id`,
  name,
  credentialHash: `sha256:${'ab'.repeat(32)}`,
  createdAt: '2026-01-01T00:00:00.000Z',
  lastSeenAt: null,
});

const head = {
  method: 'POST',
  url: '/hook',
  httpVersion: '1.1',
  headers: [['Content-Type', 'application/json']] as [string, string][],
  remoteAddress: '127.0.0.1',
  scheme: 'https' as const,
};

t.test('the queue setting survives a reopen of the JSON store', async (t) => {
  const dir = await tempDir(t);
  const store = await JsonFileTunnelStore.open(dir);
  await store.create({ ...record('a'), queue: { enabled: true } });
  await store.create(record('b'));
  t.match(await store.setQueue('b', { enabled: true }), { name: 'b', queue: { enabled: true } });
  await store.setQueue('a', { enabled: false });
  t.equal(await store.setQueue('nobody', { enabled: true }), undefined);
  await store.close();
  const again = await JsonFileTunnelStore.open(dir);
  t.same((await again.get('a'))?.queue, { enabled: false });
  t.same((await again.get('b'))?.queue, { enabled: true });
  await again.close();
});

t.test('the queue setting in the Redis store (cluster mode)', async (t) => {
  const redis = await startRedis(t);
  const c = new RedisConnection({ url: redis.url });
  await c.connect();
  t.teardown(() => c.close());
  const store = new RedisTunnelStore(c, 'qt:q:');
  await store.create({ ...record('on'), queue: { enabled: true } });
  await store.create(record('plain'));
  t.same((await store.get('on'))?.queue, { enabled: true });
  t.equal((await store.get('plain'))?.queue, undefined, 'never set: absent');
  t.match(await store.setQueue('plain', { enabled: true }), { queue: { enabled: true } });
  await store.setQueue('on', { enabled: false });
  t.same((await store.get('on'))?.queue, { enabled: false });
  t.equal(await store.setQueue('nobody', { enabled: true }), undefined);
});

t.test('queue items on disk: complete ones load, leftovers go, the cap holds', async (t) => {
  const dir = await tempDir(t);
  const logs: string[] = [];
  const id = '11111111-2222-3333-4444-555555555555';
  const disk = await QueueDisk.open(dir, 10_000, (m) => logs.push(m));
  const q = disk.for(id);
  const a = await q.append(head, Buffer.from('first'), new Date());
  await q.append(head, Buffer.from([0, 255, 1]), new Date());
  const used = disk.used;
  t.ok(used > 0);
  t.throws(() => disk.reserve(10_000), QueueStorageFullError, 'past the cap: storage full');
  await t.rejects(q.append(head, Buffer.alloc(10_000), new Date()), QueueStorageFullError);
  t.equal(disk.used, used, 'a refused item takes nothing');
  t.equal(q.items.length, 2);

  // A crash mid-write leaves a temp file; a damaged item is kept aside, not delivered.
  await writeFile(path.join(q.dir, '0000000000000099.qti.123.abcd.tmp'), 'half');
  await writeFile(path.join(q.dir, '0000000000000050.qti'), 'QTQ1garbage');
  await q.markFailed(a, { reason: 'attempts', message: 'HTTP 500', attempts: 3, failedAt: 'x' });

  const reopened = await QueueDisk.open(dir, 10_000, (m) => logs.push(m));
  const r = reopened.for(id);
  t.same(
    r.items.map((i) => [i.meta.seq, i.failed?.reason]),
    [
      [1, 'attempts'],
      [2, undefined],
    ],
    'both items back, in order, the failed one still failed',
  );
  t.same(await r.readBody(r.items[1]!), Buffer.from([0, 255, 1]), 'body intact');
  t.match(logs, [/unreadable/], 'the damaged item is reported');
  const names = await readdir(r.dir);
  t.notOk(
    names.some((n) => n.endsWith('.tmp')),
    'temp files removed',
  );
  t.ok(names.includes('0000000000000050.qti.broken'), 'damaged item moved aside');
  const next = await r.append(head, Buffer.from('third'), new Date());
  t.equal(next.meta.seq, 51, 'numbering continues after the highest seen');
  t.equal(await r.purge('failed'), 1);
  t.equal(await r.purge(), 2);
  t.equal(reopened.used, 0, 'purged items free their bytes');
});

t.test('failed attempts are counted on disk, across a reopen', async (t) => {
  const dir = await tempDir(t);
  const id = '99999999-2222-3333-4444-555555555555';
  const disk = await QueueDisk.open(dir, 10_000, () => {});
  const item = await disk.for(id).append(head, Buffer.from('x'), new Date());
  await disk.for(id).noteAttempt(item);
  t.equal(await disk.for(id).noteAttempt(item), 2);
  const again = await QueueDisk.open(dir, 10_000, () => {});
  const q = again.for(id);
  t.equal(q.items[0]?.attempts, 2, 'the count survives a restart');
  await q.remove(q.items[0]!);
  t.same(await readdir(q.dir), [], 'delivered: item and its count are gone');
});
