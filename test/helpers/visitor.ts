/**
 * Visitor-side helpers for process-level tests: one request with a hard deadline
 * (a request that hits it "hung"), polling until a tunnel serves, and reading the
 * CLI's JSON events.
 */
import https from 'node:https';
import type { CliProcess } from './processes.js';

export type Outcome = { status: number; body: string; ms: number } | { error: string; ms: number };

/** One visitor request with a hard deadline: a request that hits it "hung". */
export function hit(
  port: number,
  hostname: string,
  ca: string,
  path = '/',
  timeoutMs = 20_000,
): Promise<Outcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path,
        headers: { host: hostname },
        servername: hostname,
        ca,
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - started }),
        );
        res.on('error', (err) => resolve({ error: err.message, ms: performance.now() - started }));
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error('HUNG')));
    req.on('error', (err) =>
      resolve({
        error: (err as NodeJS.ErrnoException).code ?? err.message,
        ms: performance.now() - started,
      }),
    );
    req.end();
  });
}

/** Polls until a request answers 200; returns when (ms since `from`), or fails after `limitMs`. */
export async function until200(
  port: number,
  hostname: string,
  ca: string,
  limitMs: number,
): Promise<number> {
  const from = performance.now();
  while (performance.now() - from < limitMs) {
    const r = await hit(port, hostname, ca, '/', 5_000);
    if ('status' in r && r.status === 200) return performance.now() - from;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`no 200 from ${hostname} within ${limitMs} ms`);
}

export function events(cli: CliProcess, name: string): Record<string, unknown>[] {
  return cli.stdout
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        return {};
      }
    })
    .filter((e) => e['event'] === name);
}

export async function readyHostname(cli: CliProcess): Promise<string> {
  const ready = JSON.parse(await cli.waitFor(/"event":"ready"/, 'stdout')) as { hostname: string };
  return ready.hostname;
}
