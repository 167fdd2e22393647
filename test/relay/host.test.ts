import t from 'tap';
import { normalizeHost, routeHost, soleTunnelRoute } from '../../relay/edge/host.js';
import { invalidNameReason, randomLabel, RANDOM_LABEL_LENGTH } from '../../relay/tunnels/labels.js';

t.test('normalizeHost strips the port, case and one trailing dot', async (t) => {
  t.equal(normalizeHost('Abc.QT.localhost:8443'), 'abc.qt.localhost');
  t.equal(normalizeHost('abc.qt.localhost.'), 'abc.qt.localhost');
  t.equal(normalizeHost('[::1]:80'), '[::1]');
  t.equal(normalizeHost(undefined), undefined);
  t.equal(normalizeHost(''), undefined);
  t.equal(normalizeHost('a b.qt.localhost'), undefined);
  t.equal(normalizeHost('abc.qt.localhost:x'), undefined);
  t.equal(normalizeHost('abc.qt.localhost:123456'), undefined);
  t.equal(normalizeHost('[::1'), undefined);
});

t.test('routeHost: apex, tunnel label, IP literal, anything else unknown', async (t) => {
  const d = 'qt.localhost';
  t.same(routeHost('qt.localhost', d), { kind: 'apex' });
  t.same(routeHost('127.0.0.1', d), { kind: 'apex' });
  t.same(routeHost('[::1]', d), { kind: 'apex' });
  t.same(routeHost('abc.qt.localhost', d), {
    kind: 'tunnel',
    label: 'abc',
    hostname: 'abc.qt.localhost',
  });
  t.same(routeHost('x.abc.qt.localhost', d), { kind: 'unknown', host: 'x.abc.qt.localhost' });
  t.same(routeHost('abcqt.localhost', d), { kind: 'unknown', host: 'abcqt.localhost' });
  t.same(routeHost('abc.qt.localhost.evil.com', d), {
    kind: 'unknown',
    host: 'abc.qt.localhost.evil.com',
  });
  t.same(routeHost(undefined, d), { kind: 'unknown', host: '' });
});

t.test('random labels are DNS-safe, 50 bits, and distinct', async (t) => {
  const seen = new Set<string>();
  const bad: string[] = [];
  for (let i = 0; i < 5000; i++) {
    const l = randomLabel();
    if (l.length !== RANDOM_LABEL_LENGTH || !/^[a-z][a-z2-9]+$/.test(l)) bad.push(l);
    seen.add(l);
  }
  t.same(bad, [], 'every label is 10 DNS-safe chars starting with a letter');
  t.equal(seen.size, 5000, 'no collision in 5000 labels');
});

t.test('name rules', async (t) => {
  t.equal(invalidNameReason('my-app'), undefined);
  t.match(invalidNameReason('ab'), /3 to 63/);
  t.match(invalidNameReason('My_App'), /lowercase/);
  t.match(invalidNameReason('-abc'), /hyphen/);
  t.match(invalidNameReason('xn--abc'), /3rd and 4th/);
  t.match(invalidNameReason('admin'), /reserved/);
  t.match(invalidNameReason('abcdefghij'), /random tunnel hostnames/);
  t.equal(invalidNameReason('abcdefghi-j'), undefined);
});

t.test('soleTunnelRoute: an IP host reaches the only tunnel (embedded relay)', async (t) => {
  const d = 'localhost';
  const registry = (labels: string[]) => ({
    size: labels.length,
    tunnels: () => labels.map((label) => ({ label }))[Symbol.iterator](),
  });
  const route = (host: string, labels: string[]) =>
    soleTunnelRoute(host, routeHost(host, d), d, registry(labels));
  t.same(route('127.0.0.1', ['k3mzq7x2ab']), {
    kind: 'tunnel',
    label: 'k3mzq7x2ab',
    hostname: 'k3mzq7x2ab.localhost',
  });
  t.same(route('[::1]', ['k3mzq7x2ab']), {
    kind: 'tunnel',
    label: 'k3mzq7x2ab',
    hostname: 'k3mzq7x2ab.localhost',
  });
  t.same(route('127.0.0.1', []), { kind: 'apex' }, 'no tunnel: the relay itself');
  t.same(route('127.0.0.1', ['aaa', 'bbb']), { kind: 'apex' }, 'several: the relay itself');
  t.same(route('localhost', ['k3mzq7x2ab']), { kind: 'apex' }, 'the domain stays the relay');
  t.same(route('zzz.localhost', ['k3mzq7x2ab']), {
    kind: 'tunnel',
    label: 'zzz',
    hostname: 'zzz.localhost',
  });
});
