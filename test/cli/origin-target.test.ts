import t from 'tap';
import { ConfigError } from '../../shared/errors.js';
import { parseTarget } from '../../cli/origin/target.js';

t.test('accepted forms', async (t) => {
  const cases: [string, object][] = [
    [
      '3000',
      {
        protocol: 'http',
        hostname: 'localhost',
        port: 3000,
        localhost: true,
        hostHeader: 'localhost:3000',
        label: 'localhost:3000',
      },
    ],
    [' 8080 ', { hostname: 'localhost', port: 8080, localhost: true }],
    ['localhost:3000', { protocol: 'http', hostname: 'localhost', port: 3000, localhost: true }],
    ['LocalHost:3000', { hostname: 'localhost', localhost: true }],
    [':5173', { hostname: 'localhost', port: 5173, localhost: true }],
    [
      '127.0.0.1:4000',
      { hostname: '127.0.0.1', port: 4000, localhost: false, label: '127.0.0.1:4000' },
    ],
    ['myapp.test:8080', { hostname: 'myapp.test', port: 8080, localhost: false }],
    [
      '[::1]:3000',
      {
        hostname: '::1',
        port: 3000,
        localhost: false,
        hostHeader: '[::1]:3000',
        label: '[::1]:3000',
      },
    ],
    [
      'http://localhost:3000',
      { protocol: 'http', hostname: 'localhost', port: 3000, localhost: true },
    ],
    ['http://localhost:3000/', { protocol: 'http', port: 3000 }],
    [
      'https://localhost:8443',
      {
        protocol: 'https',
        hostname: 'localhost',
        port: 8443,
        label: 'https://localhost:8443',
        hostHeader: 'localhost:8443',
      },
    ],
    ['HTTPS://[::1]:8443', { protocol: 'https', hostname: '::1', hostHeader: '[::1]:8443' }],
    ['http://example.test', { port: 80, hostHeader: 'example.test', label: 'example.test:80' }],
    ['https://example.test', { port: 443, hostHeader: 'example.test' }],
    ['http://example.test:80', { port: 80, hostHeader: 'example.test' }],
    ['65535', { port: 65535 }],
    ['1', { port: 1 }],
  ];
  for (const [input, expected] of cases) t.match(parseTarget(input), expected, input);
  t.ok(Object.isFrozen(parseTarget('3000')));
});

t.test('bad input gets a ConfigError that says what to type', async (t) => {
  const cases: [string, RegExp][] = [
    ['abc', /^'abc' is not a port or URL: use 3000, localhost:3000 or http:\/\/localhost:3000$/],
    ['', /no target given/],
    ['localhost', /'localhost' is not a port or URL/],
    ['0', /port 0 is out of range: use a number from 1 to 65535/],
    ['65536', /port 65536 is out of range/],
    ['localhost:99999', /port 99999 is out of range/],
    ['localhost:abc', /'abc' in 'localhost:abc' is not a port/],
    ['localhost:', /'localhost:' has no port/],
    ['-1', /is not a port or URL/],
    ['ftp://localhost:21', /unknown scheme 'ftp:\/\/'.*http:\/\/ or https:\/\//],
    ['ws://localhost:3000', /unknown scheme 'ws:\/\/'/],
    ['http://localhost:3000/app', /has a path, query or credentials/],
    ['http://user:pw@localhost:3000', /has a path, query or credentials/],
    ['http://localhost:0', /port 0 is out of range/],
    ['::1:3000', /looks like an IPv6 address: put it in brackets/],
    ['[::1]', /has no port/],
    ['[nope]:3000', /not a valid IPv6 address/],
    ['bad_host!:3000', /'bad_host!' in 'bad_host!:3000' is not a valid host name/],
    ['http://:3000', /'http:\/\/:3000' has no host/],
  ];
  for (const [input, message] of cases) {
    t.throws(() => parseTarget(input), ConfigError, input);
    try {
      parseTarget(input);
    } catch (err) {
      t.match((err as ConfigError).message, message, input);
      t.equal((err as ConfigError).code, 'QT_ERR_CONFIG');
    }
  }
});
