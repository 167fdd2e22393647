/**
 * What the relay and `quick-tunnel <port>` load at startup. Redis (cluster mode), undici
 * and acme-client (automatic certificates) are loaded on first use only: together they
 * cost ~15 MiB of a relay's RSS and ~140 ms of the CLI's time to URL on its embedded
 * relay (`npm run bench -- e2e`, the issue 20 note). So is https-proxy-agent, for a relay
 * behind a proxy (~20 ms: cli/tunnel/proxy.ts). A static import of any of them from the
 * startup graph fails this test.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LAZY = ['redis', '@redis/client', 'undici', 'acme-client', 'https-proxy-agent'];

/** The packages loaded by importing `modules` (repo paths) in a fresh process. */
function packagesLoadedBy(modules: string[]): Promise<Set<string>> {
  const script = modules.map((m) => `await import(${JSON.stringify(`./${m}`)});`).join('\n');
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--import', './test/helpers/trace-packages.mjs', '--input-type=module'],
    { cwd: ROOT, stdio: ['pipe', 'ignore', 'pipe'] },
  );
  child.stdin.end(script);
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      if (code !== 0) reject(new Error(`exit ${code}: ${stderr.slice(-2000)}`));
      else resolve(new Set([...stderr.matchAll(/^package (\S+)$/gm)].map((m) => m[1]!)));
    });
  });
}

t.test(
  'the relay, the relay command and expose load no cluster, ACME or proxy packages',
  async (t) => {
    const loaded = await packagesLoadedBy([
      'relay/index.ts',
      'cli/commands/relay.ts',
      'cli/commands/expose.ts',
      'cli/commands/start.ts',
      'cli/tunnel/relay-connector.ts',
    ]);
    t.ok(loaded.has('ws'), 'the trace sees packages (ws is loaded)');
    t.same(
      LAZY.filter((name) => loaded.has(name)),
      [],
      'none of them at startup',
    );
  },
);

t.test('they do load where they are used', async (t) => {
  const loaded = await packagesLoadedBy([
    'relay/cluster/redis.ts',
    'relay/acme/ca-http.ts',
    'cli/tunnel/proxy-agent.ts',
  ]);
  // redis.ts loads node-redis in connect(): importing it alone loads nothing.
  t.notOk(loaded.has('redis'), 'redis.ts alone: no node-redis');
  t.ok(loaded.has('undici'), 'ca-http.ts: undici');
  t.ok(loaded.has('https-proxy-agent'), 'proxy-agent.ts: https-proxy-agent');
});
