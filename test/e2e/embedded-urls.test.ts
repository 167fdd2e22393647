/**
 * The embedded relay's URLs as a user meets them (issue 21 §2): the tunnel is also served
 * at http://127.0.0.1:PORT, which Node's fetch (and Python, wget…) can open, and `--lan`
 * serves it on the LAN address with a QR code and a plain warning. The LAN address is a
 * second loopback address here (QUICK_TUNNEL_LAN_ADDRESS), so no traffic leaves the host.
 */
import net from 'node:net';
import t from 'tap';
import { spawnCli } from '../helpers/processes.js';
import { startOrigin, tempDir } from '../helpers/relay-env.js';

const LAN = '127.0.0.2';

t.test(
  'http://127.0.0.1:PORT serves the one tunnel, for clients without *.localhost',
  async (t) => {
    const { port } = await startOrigin(t, (req, res) => res.end(`origin ${req.url}`));
    const cli = spawnCli(t, [String(port), '--log', 'json'], {
      env: { QUICK_TUNNEL_CONFIG_DIR: await tempDir(t) },
    });
    const ready = JSON.parse(await cli.waitFor(/"event":"ready"/, 'stdout')) as {
      url: string;
      urls: string[];
      directUrl: string;
    };
    t.match(ready.url, /^http:\/\/[a-z2-9]{10}\.localhost:\d+$/, 'the *.localhost URL first');
    const relayPort = new URL(ready.url).port;
    t.equal(ready.directUrl, `http://127.0.0.1:${relayPort}`);
    t.same(ready.urls, [ready.url, ready.directUrl]);
    const note = await cli.waitFor(/local-only/, 'stderr');
    t.match(note, /works in browsers and curl/);
    t.match(note, /works in any HTTP client \(Node's fetch, Python, wget/);

    // Node's own fetch: the client the issue says could not open the *.localhost URL.
    const res = await fetch(`${ready.directUrl}/from-fetch?x=1`);
    t.equal(res.status, 200);
    t.equal(await res.text(), 'origin /from-fetch?x=1');
    await cli.waitFor(/"path":"\/from-fetch\?x=1"/, 'stdout');
    cli.child.kill('SIGINT');
    t.equal(await cli.exited, 0);
  },
);

t.test('text output names both URLs and what each is for', async (t) => {
  const { port } = await startOrigin(t, (_req, res) => res.end('ok'));
  const cli = spawnCli(t, [String(port), '--log', 'text'], {
    env: { QUICK_TUNNEL_CONFIG_DIR: await tempDir(t) },
  });
  const first = await cli.waitFor(/^Forwarding /, 'stdout');
  t.match(first, /^Forwarding http:\/\/[a-z2-9]{10}\.localhost:(\d+) -> localhost:\d+$/);
  const relayPort = /:(\d+) ->/.exec(first)![1];
  await cli.waitFor(new RegExp(`^Also at   http://127\\.0\\.0\\.1:${relayPort} -> `), 'stdout');
  cli.child.kill('SIGINT');
  t.equal(await cli.exited, 0);
});

t.test('--lan: the LAN URL, its QR code, the warning; basic auth applies', async (t) => {
  const { port } = await startOrigin(t, (req, res) => res.end(`lan ${req.url}`));
  const cli = spawnCli(t, [String(port), '--lan', '--basic-auth', 'demo:s3cret'], {
    env: { QUICK_TUNNEL_CONFIG_DIR: await tempDir(t), QUICK_TUNNEL_LAN_ADDRESS: LAN },
  });
  const line = await cli.waitFor(/^On the LAN /, 'stdout');
  const lanUrl = /^On the LAN (\S+) -> /.exec(line)![1]!;
  t.match(lanUrl, new RegExp(`^http://127\\.0\\.0\\.2:\\d+$`));
  await cli.waitFor(/ANYONE on the network can open it/, 'stderr');
  await cli.waitFor(/[▀▄█]{10}/, 'stderr');

  const refused = await fetch(`${lanUrl}/phone`);
  t.equal(refused.status, 401, 'basic auth applies on the LAN URL');
  const ok = await fetch(`${lanUrl}/phone`, {
    headers: { authorization: `Basic ${Buffer.from('demo:s3cret').toString('base64')}` },
  });
  t.equal(ok.status, 200);
  t.equal(await ok.text(), 'lan /phone');

  // Only loopback and the LAN address listen, not every interface (0.0.0.0).
  const other = await new Promise<string>((resolve) => {
    const s = net.connect({ host: '127.0.0.3', port: Number(new URL(lanUrl).port) });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
  t.equal(other, 'ECONNREFUSED', 'not listening on other addresses');
  cli.child.kill('SIGINT');
  t.equal(await cli.exited, 0);
});

t.test('--lan with a relay server is refused with a reason', async (t) => {
  const cli = spawnCli(t, ['3000', '--lan', '--relay', 'https://relay.example.com'], {
    env: { QUICK_TUNNEL_CONFIG_DIR: await tempDir(t) },
  });
  t.equal(await cli.exited, 1);
  t.match(cli.stderr.join('\n'), /--lan is for the embedded local relay/);
});
