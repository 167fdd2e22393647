/**
 * `quick-tunnel start` on a terminal (tmux): the TUI lists every tunnel of the config on
 * its tab line with status and request count, shows the selected one (Tab / 1–9 switch),
 * a request through a path route lands on the right tunnel's list, and q stops them all
 * (exit status 0).
 */
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import t from 'tap';
import { REPO_ROOT } from '../helpers/processes.js';
import { startOrigin, tempDir } from '../helpers/relay-env.js';
import { TmuxPane, tmuxVersion } from '../helpers/tmux.js';

const version = tmuxVersion();

function get(port: number, host: string, urlPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: urlPath, headers: { host }, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

t.test(
  'start under tmux: a tab per tunnel, switching, routed request, q quits',
  { skip: version === undefined ? 'tmux is not installed (apt-get install tmux)' : false },
  async (t) => {
    const web = await startOrigin(t, (req, res) => res.end(`web ${req.url}`));
    const api = await startOrigin(t, (req, res) => res.end(`api ${req.url}`));
    const hooks = await startOrigin(t, (req, res) => res.end(`hooks ${req.url}`));
    const dir = await tempDir(t, 'qt-start-tmux-');
    const config = path.join(dir, 'quick-tunnel.yml');
    await writeFile(
      config,
      `tunnels:\n  web:\n    target: ${web.port}\n    routes:\n      - path: /api\n        target: ${api.port}\n  hooks: ${hooks.port}\n`,
    );
    const pane = await TmuxPane.start({
      argv: [
        process.execPath,
        '--import',
        'tsx',
        'cli/main.ts',
        'start',
        '--config',
        config,
        '--inspect-port',
        '0',
      ],
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        QUICK_TUNNEL_RELAY: '',
        QUICK_TUNNEL_TOKEN: '',
        QUICK_TUNNEL_CONFIG_DIR: dir,
      },
      dir,
      width: 120,
      height: 30,
    });
    t.teardown(() => pane.kill());

    let screen = await pane.waitForScreen(/tunnels\s+1 web ● 0\s+2 hooks ● 0[\s\S]*● online/);
    t.match(screen, new RegExp(`→ localhost:${web.port}`), 'the first tunnel is shown');
    const url = /http:\/\/([a-z2-9]{10}\.localhost):(\d+)/.exec(screen);
    t.ok(url, 'its URL');
    const [, host, port] = url!;

    t.equal(await get(Number(port), host!, '/api/users'), 'api /api/users', 'routed to the API');
    screen = await pane.waitForScreen(/1 web ● 1[\s\S]*GET\s+\/api\/users\s+200/);
    t.pass('the request is counted on the tab and listed');

    await pane.keys('Tab');
    screen = await pane.waitForScreen(new RegExp(`→ localhost:${hooks.port}`));
    t.notMatch(screen, /\/api\/users/, "the hooks tunnel's own (empty) list");
    await pane.keys('1');
    await pane.waitForScreen(new RegExp(`→ localhost:${web.port}[\\s\\S]*/api/users`));
    t.pass('1 goes back to the first tunnel');

    await pane.keys('q');
    const { status } = await pane.exited();
    t.equal(status, 0, 'q stops every tunnel, exit 0');
  },
);
