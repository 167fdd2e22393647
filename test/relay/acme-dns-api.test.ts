/**
 * The acme-dns provider against an HTTP server on loopback that speaks acme-dns's update
 * API (`POST /update`, X-Api-User / X-Api-Key, `{subdomain, txt}`; 401 for a wrong key):
 * the value is sent as acme-dns expects, propagation is checked at the account's
 * `fulldomain`, and a refused key gives an error that names the flag to fix.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { acmeDnsProvider } from '../../relay/acme/dns-provider.js';

t.test('acme-dns: update with the account, clear errors', async (t) => {
  const seen: { user?: string; key?: string; body: string }[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const user = req.headers['x-api-user'] as string | undefined;
      const key = req.headers['x-api-key'] as string | undefined;
      seen.push({
        ...(user === undefined ? {} : { user }),
        ...(key === undefined ? {} : { key }),
        body,
      });
      if (req.method !== 'POST' || req.url !== '/update') {
        res.writeHead(404).end();
      } else if (key !== 'right-key') {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"error": "forbidden"}');
      } else {
        const { txt } = JSON.parse(body) as { txt: string };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ txt }));
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const apiUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const account = {
    apiUrl,
    username: 'c36f50e8-4632-44f0-83fe-e070fef28a10',
    password: 'right-key',
    subdomain: '8e5700ea-a4bf-41c7-8a77-e990661dcc6a',
    fulldomain: '8e5700ea-a4bf-41c7-8a77-e990661dcc6a.auth.example.org',
  };
  const dns = acmeDnsProvider(account);
  t.equal(dns.description, `acme-dns ${apiUrl}`);
  const value = 'DGyRejmCefe7v4NfDGDKfA-y8d7gq1cYN6rvSrFmxvA';
  await dns.present('_acme-challenge.relay.qt.test.', value);
  t.same(seen[0], {
    user: account.username,
    key: 'right-key',
    body: JSON.stringify({ subdomain: account.subdomain, txt: value }),
  });
  await dns.cleanup('_acme-challenge.relay.qt.test.', value);
  t.equal(seen.length, 1, 'cleanup sends nothing: acme-dns rolls its two values over');
  t.equal(dns.visibleAt?.('_acme-challenge.relay.qt.test.'), `${account.fulldomain}.`);

  const wrong = acmeDnsProvider({ ...account, password: 'wrong' });
  await t.rejects(wrong.present('_acme-challenge.relay.qt.test.', value), {
    code: 'QT_ERR_ACME_DNS',
    message:
      /refused the update \(HTTP 401: \{"error": "forbidden"\}\); check the username\/password in --acme-dns-account/,
  });
  server.close();
  await once(server, 'close');
  await t.rejects(dns.present('_acme-challenge.relay.qt.test.', value), {
    code: 'QT_ERR_ACME_DNS',
    message: /cannot reach acme-dns at .*check --acme-dns-api/,
  });
});
