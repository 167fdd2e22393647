/**
 * The real `quick-tunnel` CLI with its Ink TUI under a pseudo-terminal (tmux), against
 * a real relay process and a local origin: what the screen shows as requests arrive,
 * keys (details, replay), a resize, and quitting with `q` (exit status 0, terminal
 * restored: main screen back, cursor shown, same stty settings).
 */
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import t from 'tap';
import { REPO_ROOT, spawnRelay } from '../helpers/processes.js';
import { startOrigin, tempDir } from '../helpers/relay-env.js';
import { BEFORE_MARKER, TmuxPane, tmuxVersion } from '../helpers/tmux.js';

const version = tmuxVersion();

function visit(
  port: number,
  host: string,
  ca: string,
  options: { method?: string; path?: string; body?: string; type?: string } = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host };
    if (options.body !== undefined) {
      headers['content-type'] = options.type ?? 'text/plain';
      headers['content-length'] = String(Buffer.byteLength(options.body));
    }
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        method: options.method ?? 'GET',
        path: options.path ?? '/',
        headers,
        servername: host,
        ca,
        agent: false,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Lines of the screen that hold `text`. */
const linesWith = (screen: string, text: string): string[] =>
  screen.split('\n').filter((l) => l.includes(text));

t.test(
  'TUI under tmux: live rows, details, replay, resize, q restores the terminal',
  { skip: version === undefined ? 'tmux is not installed (apt-get install tmux)' : false },
  async (t) => {
    const relay = await spawnRelay(t, await tempDir(t));
    const ca = await readFile(relay.certPath, 'utf8');
    const posts: string[] = [];
    const { port } = await startOrigin(t, (req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        if (req.method === 'POST') posts.push(body);
        if (req.url === '/missing') {
          res.statusCode = 404;
          res.end('not here');
          return;
        }
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ path: req.url, method: req.method }));
      });
    });
    const dir = await tempDir(t, 'qt-tmux-');
    const pane = await TmuxPane.start({
      argv: [
        process.execPath,
        '--import',
        'tsx',
        'cli/main.ts',
        String(port),
        '--relay',
        `https://qt.localhost:${relay.httpsPort}`,
        '--ca',
        relay.certPath,
        '--connections',
        '1',
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
      height: 40,
    });
    t.teardown(() => pane.kill());

    // 1. Online: the header shows the URL, target and relay.
    let screen = await pane.waitForScreen(/● online[\s\S]*Forwarding\s+https:\/\//);
    const host = /https:\/\/([a-z2-9]{10}\.qt\.localhost):\d+/.exec(screen)?.[1];
    t.ok(host, 'a public hostname on the screen');
    t.match(screen, new RegExp(`→ localhost:${port}`));
    t.match(screen, new RegExp(`Relay\\s+qt\\.localhost:${relay.httpsPort}`));
    t.match(screen, /Waiting for requests/);
    t.equal(await pane.format('#{alternate_on}'), '1', 'the TUI uses the alternate screen');

    // 2. Requests appear as rows, newest at the bottom, with status, duration, size.
    t.equal(await visit(relay.httpsPort, host!, ca, { path: '/hello?x=1' }), 200);
    t.equal(
      await visit(relay.httpsPort, host!, ca, {
        method: 'POST',
        path: '/hooks/github',
        body: '{"action":"opened","number":7}',
        type: 'application/json',
      }),
      200,
    );
    t.equal(await visit(relay.httpsPort, host!, ca, { path: '/missing' }), 404);
    screen = await pane.waitForScreen(/\/missing\s+404/);
    t.match(screen, /Requests\s+3 total · 0 open/);
    t.match(
      linesWith(screen, '/hello?x=1')[0],
      /\d\d:\d\d:\d\d GET\s+\/hello\?x=1\s+200\s+\d+ ms\s+\d+ B/,
    );
    t.match(linesWith(screen, '/hooks/github')[0], /POST\s+\/hooks\/github\s+200/);
    const rows = screen.split('\n');
    const filled = rows.filter((l) => l.trim() !== '');
    t.match(filled[filled.length - 2], /\/missing\s+404/, 'newest row at the bottom of the list');
    t.match(rows[rows.length - 1], /↑↓ select\s+⏎ details\s+r replay/);
    t.equal(rows.length, 39, 'the TUI fills the terminal but its last line');

    // 3. Details of the POST: headers and the JSON body pretty-printed.
    await pane.keys('Up', 'Up', 'Enter');
    screen = await pane.waitForScreen(/Request body/);
    t.match(screen, /#2 {2}POST \/hooks\/github/);
    t.match(screen, /X-Forwarded-For: 127\.0\.0\.1/);
    t.match(screen, /Request body · application\/json · 30 B · JSON/);
    t.match(screen, /"action": "opened",\n\s+"number": 7/);
    t.match(screen, /Response body · application\/json/);

    // 4. Replay it from the details view: a new row, marked as a replay.
    await pane.keys('r', 'Escape');
    screen = await pane.waitForScreen(/↻#2 \/hooks\/github\s+200/);
    t.same(posts, ['{"action":"opened","number":7}', '{"action":"opened","number":7}']);
    t.match(screen, /Requests\s+3 total/, 'a replay is not a tunnel request');

    // 5. Resize: the layout follows.
    await pane.resize(60, 20);
    screen = await pane.waitForScreen(/^(?![\s\S]*SIZE)[\s\S]*STAT/);
    let lines = screen.split('\n');
    t.ok(
      lines.every((l) => l.length <= 60),
      'nothing wider than 60 columns',
    );
    t.equal(lines.length, 19, 'fills the new height');
    t.match(lines[lines.length - 1], /↑↓ select/);
    t.match(
      linesWith(screen, '/missing')[0],
      /GET\s+\/missing\s+404\s+\d+ ms$/,
      'size column dropped',
    );
    await pane.resize(140, 45);
    screen = await pane.waitForScreen(/SIZE/);
    lines = screen.split('\n');
    t.equal(lines.length, 44);
    t.match(linesWith(screen, '/missing')[0], /\/missing\s+404\s+\d+ ms\s+\d+ B$/);

    // 6. q: tunnel closed, process ends with 0, terminal as it was.
    await pane.keys('q');
    const { status, sttyBefore, sttyAfter } = await pane.exited();
    t.equal(status, 0, 'exit status 0');
    t.equal(sttyAfter, sttyBefore, 'terminal modes restored (raw mode off)');
    t.equal(await pane.format('#{alternate_on}'), '0', 'back on the main screen');
    t.equal(await pane.format('#{cursor_flag}'), '1', 'cursor visible');
    screen = await pane.screen();
    console.error('SCREEN>>>' + JSON.stringify(screen));
    // Line breaks ignored: when the pane grew (step 5) tmux pulled lines the alternate
    // screen had scrolled into its history back above the marker, and reflow can join
    // the marker to a full-width one.
    t.match(screen.replace(/\n/g, ''), new RegExp(BEFORE_MARKER), 'the shell screen is back');
    t.notMatch(screen, /quick-tunnel\s+●/, 'no TUI left on the screen');
    // The tunnel is closed: the relay no longer reaches the origin through it.
    const after = await visit(relay.httpsPort, host!, ca, { path: '/after' });
    t.ok(after === 404 || after === 503, `the relay answers for the closed tunnel (${after})`);
  },
);
