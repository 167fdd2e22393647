import t from 'tap';
import { ConcurrencyCounter, RateLimiter } from '../../relay/edge/limits.js';
import { compileAccess, parseCidr } from '../../relay/edge/access.js';

t.test('token bucket: burst, refill, retry-after, bounded keys', async (t) => {
  let now = 0;
  const rl = new RateLimiter({ ratePerSecond: 10, burst: 3, maxKeys: 2, now: () => now });
  t.same([rl.take('a'), rl.take('a'), rl.take('a')], [0, 0, 0], 'burst of 3 allowed');
  t.equal(rl.take('a'), 1, 'fourth waits about a second');
  now += 100; // 0.1 s → one token back
  t.equal(rl.take('a'), 0);
  rl.take('b');
  rl.take('c');
  t.equal(rl.size, 2, 'least recently used key dropped beyond maxKeys');
});

t.test('concurrency counter', async (t) => {
  const c = new ConcurrencyCounter(2);
  const r1 = c.acquire('ip');
  const r2 = c.acquire('ip');
  t.ok(r1 && r2);
  t.equal(c.acquire('ip'), undefined, 'third refused');
  r1!();
  r1!(); // idempotent
  t.equal(c.count('ip'), 1);
  t.ok(c.acquire('ip'));
  t.ok(new ConcurrencyCounter(0).acquire('x'), '0 = unlimited');
});

t.test('CIDR parsing and policy compilation', async (t) => {
  t.same(parseCidr('10.0.0.0/8'), { address: '10.0.0.0', prefix: 8, family: 'ipv4' });
  t.same(parseCidr('::1'), { address: '::1', prefix: 128, family: 'ipv6' });
  t.throws(() => parseCidr('10.0.0.0/33'), /prefix/);
  t.throws(() => parseCidr('nope'), /not an IP/);
  const access = compileAccess({ allowIps: ['127.0.0.0/8', '2001:db8::/32'] });
  t.ok(access.allow?.check('127.1.2.3', 'ipv4'));
  t.notOk(access.allow?.check('10.1.2.3', 'ipv4'));
  t.ok(access.allow?.check('2001:db8::5', 'ipv6'));
  t.throws(() => compileAccess({ basicAuthSha256: 'xyz' }), /digest/);
  t.throws(() => compileAccess({ allowIps: 'x' }), /list/);
});
