/**
 * quick-tunnel.yml validation: every error names the file, the line (and column) and the
 * key; environment expansion; which file is found; path-route matching.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { routeMatches, normalizeRoutePath } from '../../cli/origin/router.js';
import {
  findTunnelsConfig,
  loadTunnelsConfig,
  parseTunnelsConfig,
} from '../../cli/tunnels-config.js';
import { tempDir } from '../helpers/relay-env.js';

const FILE = 'quick-tunnel.yml';
const parse = (text: string, env: NodeJS.ProcessEnv = {}) => parseTunnelsConfig(text, FILE, env);

t.test('a full config', async (t) => {
  const config = parse(
    [
      'relay: https://tunnel.example.com',
      'token: ${QT_TOKEN}',
      'tunnels:',
      '  web:',
      '    target: 3000',
      '    name: Web',
      '    host-header: rewrite',
      '    routes:',
      '      - path: /api/v2/',
      '        target: ${API2_PORT:-8082}',
      '      - path: /api',
      '        target: http://127.0.0.1:8080',
      '  hooks:',
      '    target: localhost:4000',
      '    basic-auth: ${HOOKS_AUTH}',
      '    allow-ip: [10.0.0.0/8, "::1"]',
      '  short: 5000',
      '',
    ].join('\n'),
    { QT_TOKEN: 'tok', HOOKS_AUTH: 'u:p' },
  );
  t.equal(config.relay, 'https://tunnel.example.com');
  t.equal(config.token, 'tok');
  t.same(
    config.tunnels.map((x) => x.key),
    ['web', 'hooks', 'short'],
    'file order',
  );
  const [web, hooks, short] = config.tunnels;
  t.equal(web!.name, 'web', 'named tunnel names are lower-cased');
  t.equal(web!.hostHeader, 'rewrite');
  t.same(
    web!.routes.map((r) => [r.path, r.target.label, r.line]),
    [
      ['/api/v2', 'localhost:8082', 9],
      ['/api', '127.0.0.1:8080', 11],
    ],
  );
  t.equal(hooks!.basicAuth, 'u:p');
  t.same(hooks!.allowIp, ['10.0.0.0/8', '::1']);
  t.equal(short!.target.label, 'localhost:5000', '`name: PORT` is short for target');
  t.equal(
    parse('tunnels:\n  a:\n    target: 1\n    basic-auth: a:$$b\n').tunnels[0]!.basicAuth,
    'a:$b',
  );
});

t.test('each validation error names file:line:col and the key', async (t) => {
  const cases: [string, string, RegExp][] = [
    [
      'unknown key',
      'tunnels:\n  web:\n    target: 3000\n    hostheader: rewrite\n',
      /^quick-tunnel\.yml:4:5: tunnels\.web\.hostheader: unknown key 'hostheader' \(allowed here: target, name, host-header/,
    ],
    [
      'unknown top-level key',
      'relays: https://x\ntunnels:\n  web: 3000\n',
      /^quick-tunnel\.yml:1:1: relays: unknown key 'relays'/,
    ],
    [
      'bad target',
      'tunnels:\n  web:\n    target: ftp://x:21\n',
      /^quick-tunnel\.yml:3:13: tunnels\.web\.target: unknown scheme 'ftp:\/\/'/,
    ],
    [
      'bad route target',
      'tunnels:\n  web:\n    target: 3000\n    routes:\n      - path: /api\n        target: 99999\n',
      /^quick-tunnel\.yml:6:17: tunnels\.web\.routes\[0\]\.target: port 99999 is out of range/,
    ],
    [
      'missing target',
      'tunnels:\n  web:\n    name: x\n',
      /^quick-tunnel\.yml:2:3: tunnels\.web\.target: missing/,
    ],
    [
      'duplicate tunnel',
      'tunnels:\n  web: 3000\n  web: 4000\n',
      /^quick-tunnel\.yml:3:3: tunnels\.web: duplicate tunnel name 'web' \(also on line 2\)/,
    ],
    [
      'duplicate named tunnel',
      'tunnels:\n  a:\n    target: 1\n    name: app\n  b:\n    target: 2\n    name: APP\n',
      /^quick-tunnel\.yml:7:11: tunnels\.b\.name: duplicate name 'app': tunnels\.a serves it already/,
    ],
    [
      'duplicate key',
      'tunnels:\n  web:\n    target: 1\n    target: 2\n',
      /^quick-tunnel\.yml:4:5: tunnels\.web\.target: 'target' appears twice \(also on line 3\)/,
    ],
    [
      'route that can never match',
      'tunnels:\n  web:\n    target: 3000\n    routes:\n      - path: /api\n        target: 8080\n      - path: /api/v1\n        target: 8081\n',
      /^quick-tunnel\.yml:7:15: tunnels\.web\.routes\[1\]\.path: this route can never match: the route for \/api on line 5 comes first/,
    ],
    [
      'route after /',
      'tunnels:\n  web:\n    target: 3000\n    routes:\n      - path: /\n        target: 8080\n      - path: /x\n        target: 8081\n',
      /routes\[1\]\.path: this route can never match/,
    ],
    [
      'route path without /',
      'tunnels:\n  web:\n    target: 3000\n    routes:\n      - path: api\n        target: 8080\n',
      /^quick-tunnel\.yml:5:15: tunnels\.web\.routes\[0\]\.path: 'api' is not a path prefix/,
    ],
    [
      'unset environment variable',
      'tunnels:\n  web:\n    target: 3000\n    basic-auth: ${NOT_SET_HERE}\n',
      /^quick-tunnel\.yml:4:17: tunnels\.web\.basic-auth: the environment variable NOT_SET_HERE is not set/,
    ],
    [
      'bad basic auth',
      'tunnels:\n  web:\n    target: 3000\n    basic-auth: nocolon\n',
      /^quick-tunnel\.yml:4:17: tunnels\.web\.basic-auth: basic-auth takes USER:PASS/,
    ],
    [
      'bad allow-ip',
      'tunnels:\n  web:\n    target: 3000\n    allow-ip: [10.0.0.0/99]\n',
      /^quick-tunnel\.yml:4:15: tunnels\.web\.allow-ip: allow-ip: /,
    ],
    [
      'bad relay',
      'relay: ftp://x\ntunnels:\n  web: 3000\n',
      /^quick-tunnel\.yml:1:8: relay: 'ftp:\/\/x' is not a relay URL/,
    ],
    ['no tunnels', 'relay: https://x\n', /^quick-tunnel\.yml:1:1: tunnels: missing/],
    ['YAML syntax', 'tunnels:\n  web: [3000\n', /^quick-tunnel\.yml:3:1: not valid YAML: /],
    [
      'connections',
      'tunnels:\n  web:\n    target: 3000\n    connections: 99\n',
      /^quick-tunnel\.yml:4:18: tunnels\.web\.connections: expected a number from 1 to 16/,
    ],
  ];
  for (const [name, text, re] of cases) {
    t.throws(() => parse(text), { code: 'QT_ERR_CONFIG', message: re }, name);
  }
});

t.test('which file: --config, else ./quick-tunnel.yml, else the config dir', async (t) => {
  const dir = await tempDir(t, 'qt-find-');
  const cwd = path.join(dir, 'project');
  const configDir = path.join(dir, 'config');
  await mkdir(cwd);
  await mkdir(configDir);
  t.throws(() => findTunnelsConfig(undefined, cwd, configDir), {
    code: 'QT_ERR_CONFIG',
    message: /no quick-tunnel\.yml in this directory or in /,
  });
  await writeFile(path.join(configDir, FILE), 'tunnels:\n  g: 1\n');
  t.equal(findTunnelsConfig(undefined, cwd, configDir), path.join(configDir, FILE));
  await writeFile(path.join(cwd, FILE), 'tunnels:\n  l: 1\n');
  t.equal(findTunnelsConfig(undefined, cwd, configDir), FILE, './quick-tunnel.yml first');
  t.equal(
    findTunnelsConfig(path.join(configDir, FILE), cwd, configDir),
    path.join(configDir, FILE),
  );
  t.throws(() => findTunnelsConfig(path.join(dir, 'nope.yml'), cwd, configDir), /does not exist/);
  const loaded = loadTunnelsConfig(path.join(configDir, FILE), {});
  t.equal(loaded.tunnels[0]!.key, 'g');
});

t.test('routes match whole path segments', async (t) => {
  t.equal(normalizeRoutePath('/api/'), '/api');
  t.equal(normalizeRoutePath('/'), '/');
  for (const target of ['/api', '/api/', '/api/x', '/api?x=1', '/api#f']) {
    t.ok(routeMatches('/api', target), target);
  }
  for (const target of ['/apix', '/ap', '/', '/v1/api'])
    t.notOk(routeMatches('/api', target), target);
  t.ok(routeMatches('/', '/anything'));
});
