/**
 * Spawns the real `quick-tunnel` CLI (from the TypeScript sources, so tests always run
 * the current code) and reads its output line by line. Every child is killed in
 * t.teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import type { Test } from 'tap';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface CliProcess {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  /** Resolves with the first stdout/stderr line matching `re` (already seen lines count). */
  waitFor(re: RegExp, stream?: 'stdout' | 'stderr', timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code (or signal name) once the process ends. */
  exited: Promise<number | string>;
}

export function spawnCli(
  t: Test,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): CliProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], {
    cwd: options.cwd ?? REPO_ROOT,
    env: {
      ...process.env,
      QUICK_TUNNEL_RELAY: '',
      QUICK_TUNNEL_TOKEN: '',
      NO_COLOR: '1',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines = { stdout: [] as string[], stderr: [] as string[] };
  const watchers: {
    re: RegExp;
    stream: 'stdout' | 'stderr' | undefined;
    resolve: (l: string) => void;
  }[] = [];
  const onLine = (stream: 'stdout' | 'stderr') => (line: string) => {
    lines[stream].push(line);
    for (let i = watchers.length - 1; i >= 0; i--) {
      const w = watchers[i]!;
      if ((w.stream === undefined || w.stream === stream) && w.re.test(line)) {
        watchers.splice(i, 1);
        w.resolve(line);
      }
    }
  };
  createInterface({ input: child.stdout! }).on('line', onLine('stdout'));
  createInterface({ input: child.stderr! }).on('line', onLine('stderr'));
  const exited = once(child, 'exit').then(
    ([code, signal]) => (code ?? String(signal)) as number | string,
  );
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return {
    child,
    stdout: lines.stdout,
    stderr: lines.stderr,
    exited,
    waitFor(re, stream, timeoutMs = 20_000) {
      const seen = [
        ...(stream !== 'stderr' ? lines.stdout : []),
        ...(stream !== 'stdout' ? lines.stderr : []),
      ];
      const hit = seen.find((l) => re.test(l));
      if (hit !== undefined) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(
            new Error(
              `timed out waiting for ${re} in ${stream ?? 'output'}\nstdout:\n${lines.stdout.join('\n')}\nstderr:\n${lines.stderr.join('\n')}`,
            ),
          );
        }, timeoutMs);
        const onExit = (): void => {
          // Give readline a moment to flush the last lines, then fail if still unmatched.
          setImmediate(() => {
            const i = watchers.indexOf(w);
            if (i === -1) return;
            watchers.splice(i, 1);
            clearTimeout(timer);
            reject(
              new Error(
                `process exited before ${re} appeared\nstdout:\n${lines.stdout.join('\n')}\nstderr:\n${lines.stderr.join('\n')}`,
              ),
            );
          });
        };
        const w = {
          re,
          stream,
          resolve: (l: string) => {
            clearTimeout(timer);
            child.off('exit', onExit);
            resolve(l);
          },
        };
        watchers.push(w);
        child.once('exit', onExit);
      });
    },
  };
}

export interface RelayProcess extends CliProcess {
  httpsPort: number;
  httpPort: number;
  certPath: string;
}

/** Starts `quick-tunnel relay` on 127.0.0.1 with free ports; resolves once it listens. */
export async function spawnRelay(
  t: Test,
  dataDir: string,
  extraArgs: string[] = [],
  options: { port?: number } = {},
): Promise<RelayProcess> {
  const proc = spawnCli(t, [
    'relay',
    '--domain',
    'qt.localhost',
    '--host',
    '127.0.0.1',
    '--port',
    String(options.port ?? 0),
    '--http-port',
    '0',
    '--data-dir',
    dataDir,
    ...extraArgs,
  ]);
  const line = await proc.waitFor(/"relay listening"/, 'stdout');
  const info = JSON.parse(line) as { httpsPort: number; httpPort: number; certificate: string };
  return {
    ...proc,
    httpsPort: info.httpsPort,
    httpPort: info.httpPort ?? 0,
    certPath: info.certificate,
  };
}

/**
 * Starts `quick-tunnel <originPort> --relay https://qt.localhost:<relayPort> --ca <cert>
 * --log json` (the usual client of a spawned relay), plus `extraArgs`.
 */
export function spawnTunnelCli(
  t: Test,
  originPort: number,
  relay: { port: number; certPath: string },
  extraArgs: string[] = [],
  options: { env?: NodeJS.ProcessEnv } = {},
): CliProcess {
  return spawnCli(
    t,
    [
      String(originPort),
      '--relay',
      `https://qt.localhost:${relay.port}`,
      '--ca',
      relay.certPath,
      '--log',
      'json',
      ...extraArgs,
    ],
    options,
  );
}
