/**
 * Cluster mode's shared state in a real redis-server: the named-tunnel store (same
 * contract as the JSON file store, one winner when two relays create one name at once)
 * and the small blob/lock API other features use.
 */
import t, { type Test } from 'tap';
import { RedisConnection } from '../../relay/cluster/redis.js';
import { RedisTunnelStore } from '../../relay/cluster/redis-store.js';
import { RedisClusterState } from '../../relay/cluster/state.js';
import { NameTakenError, StoreError, type TunnelRecord } from '../../relay/tunnels/store.js';
import { startRedis } from '../helpers/redis.js';

const record = (name: string, id = `${name}-id`): TunnelRecord => ({
  id,
  name,
  credentialHash: `sha256:${'cd'.repeat(32)}`,
  createdAt: '2025-01-01T00:00:00.000Z',
  lastSeenAt: null,
});

const redis = await startRedis(t);

async function connection(t: Test): Promise<RedisConnection> {
  const c = new RedisConnection({ url: redis.url });
  await c.connect();
  t.teardown(() => c.close());
  return c;
}

t.test('the Redis store keeps the JSON store contract', async (t) => {
  const store = new RedisTunnelStore(await connection(t), 'qt:t1:');
  t.same(await store.list(), []);
  await store.create(record('web'));
  await store.create(record('api-2'));
  await t.rejects(store.create(record('web', 'other')), NameTakenError);
  await store.touch('web', new Date('2025-02-03T04:05:06.000Z'));
  await store.touch('nobody', new Date());
  t.equal((await store.get('web'))?.lastSeenAt, '2025-02-03T04:05:06.000Z');
  t.equal((await store.get('web'))?.id, 'web-id', 'the first creation stays');
  t.equal(await store.get('nobody'), undefined);
  t.equal(await store.delete('api-2'), true);
  t.equal(await store.delete('api-2'), false);
  t.same(
    (await store.list()).map((r) => r.name),
    ['web'],
  );
  // Another relay (its own connection, same prefix) sees the same records.
  const other = new RedisTunnelStore(await connection(t), 'qt:t1:');
  t.equal((await other.get('web'))?.credentialHash, record('web').credentialHash);
});

t.test('100 rounds of two relays creating one name: exactly one wins each round', async (t) => {
  const a = new RedisTunnelStore(await connection(t), 'qt:race:');
  const b = new RedisTunnelStore(await connection(t), 'qt:race:');
  for (let round = 0; round < 100; round++) {
    const name = `race-${round}`;
    const results = await Promise.allSettled([
      a.create(record(name, 'a')),
      b.create(record(name, 'b')),
    ]);
    const won = results.filter((r) => r.status === 'fulfilled').length;
    if (won !== 1) t.fail(`round ${round}: ${won} winners`);
    const stored = await a.get(name);
    const winner = results[0]!.status === 'fulfilled' ? 'a' : 'b';
    if (stored?.id !== winner) t.fail(`round ${round}: the stored owner is not the winner`);
  }
  t.pass('one winner in each of 100 rounds');
});

t.test('blobs and locks with a TTL', async (t) => {
  const c = await connection(t);
  const one = new RedisClusterState(c, 'qt:s:');
  const two = new RedisClusterState(await connection(t), 'qt:s:');
  t.equal(await one.getBlob('cert'), undefined);
  await one.setBlob('cert', Buffer.from([0, 1, 2, 255]));
  t.same([...((await two.getBlob('cert')) ?? [])], [0, 1, 2, 255]);
  const lock = await one.acquireLock('acme', 10_000);
  t.ok(lock, 'the first relay gets the lock');
  t.equal(await two.acquireLock('acme', 10_000), undefined, 'the second does not');
  t.equal(await lock!.extend(10_000), true);
  await lock!.release();
  const again = await two.acquireLock('acme', 50);
  t.ok(again, 'released: the other relay gets it');
  await new Promise((r) => setTimeout(r, 120));
  const third = await one.acquireLock('acme', 10_000);
  t.ok(third, 'an expired lock can be taken');
  t.equal(await again!.extend(1000), false, 'the expired holder cannot extend it any more');
});

t.test('Redis down: clear errors; back: works again', async (t) => {
  const store = new RedisTunnelStore(await connection(t), 'qt:down:');
  await store.create(record('kept'));
  await redis.kill();
  await t.rejects(store.get('kept'), StoreError, 'a clear store error while Redis is down');
  await t.rejects(store.create(record('new')), /unavailable/);
  await redis.restart();
  let ok = false;
  for (let i = 0; i < 100 && !ok; i++) {
    ok = await store.get('x').then(
      () => true,
      () => false,
    );
    if (!ok) await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(ok, 'the store reconnects by itself');
  await store.create(record('new'));
  t.ok(await store.get('new'));
});
