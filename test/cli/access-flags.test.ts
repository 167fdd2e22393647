import t from 'tap';
import { accessPolicy } from '../../cli/commands/expose.js';
import { basicAuthDigest } from '../../shared/access.js';

t.test('--basic-auth and --allow-ip become the policy the relay enforces', async (t) => {
  t.equal(accessPolicy({}), undefined, 'no flags: open tunnel');
  const p = accessPolicy({ basicAuth: 'demo:s3cret', allowIp: ['10.0.0.0/8', '::1'] });
  t.same(p, { basicAuthSha256: basicAuthDigest('demo:s3cret'), allowIps: ['10.0.0.0/8', '::1'] });
  t.notMatch(JSON.stringify(p), /s3cret/, 'the password itself never leaves the CLI');
  t.throws(() => accessPolicy({ basicAuth: 'nocolon' }), /USER:PASS/);
  t.throws(() => accessPolicy({ basicAuth: ':pass' }), /USER:PASS/);
  t.throws(() => accessPolicy({ allowIp: ['10.0.0.0/40'] }), /--allow-ip: .*prefix/);
  t.throws(() => accessPolicy({ allowIp: ['example.com'] }), /--allow-ip: .*not an IP/);
});
