/**
 * Page-load benchmark: a generated Vite-style dev app (an HTML page and 300 small ES
 * modules in a two-level import tree) loaded cold in headless Chromium (Debian's
 * /usr/bin/chromium, driven with playwright-core) three ways: straight from the app's
 * HTTP/1.1 server, through the relay over HTTP/1.1, and through the relay over HTTP/2.
 *
 * The browser reaches both servers through a delaying TCP forwarder on loopback
 * (bench/delay-proxy.ts: half the round trip each way, one more for a connection's
 * handshake), so every request pays the emulated network round trip, as it would
 * between a phone and a relay. Relay ↔ CLI ↔ app stay on loopback, as when the relay
 * is near the visitor. Each load uses a fresh browser context (no cache, no open
 * connections); targets alternate within each round so drift hits them alike.
 */
import { type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { startDelayProxy, type DelayProxy } from './delay-proxy.js';
import { firstLine, spawnLogged } from './e2e.js';
import type { ParamSpec } from './params.js';
import type { BenchCase } from './run.js';
import { DOMAIN, build, entry, freePort, median, relayArgs } from './scale-support.js';
import { CHROMIUM_PATH, CHROMIUM_RELAY_ARGS as CHROMIUM_ARGS } from '../test/helpers/chromium.js';

const PARAMS = {
  runs: { default: '5', help: 'measured cold loads per target (after one warm-up round)' },
  'rtt-ms': { default: '40', help: 'emulated round trip between browser and server, ms' },
  modules: { default: '300', help: 'ES modules in the app (about 20 groups of leaves)' },
  chromium: { default: CHROMIUM_PATH, help: 'Chromium executable' },
} satisfies Record<string, ParamSpec>;

/**
 * The app server: an HTTP/1.1 server answering like a dev server (no-cache, one
 * request per module). main.js imports the groups, each group its leaves; main.js marks
 * the page done once every module ran.
 */
export const APP_SOURCE = `
const http = require('node:http');
const total = Number(process.argv[1]);
const groups = Math.max(1, Math.round(Math.sqrt(total) + 3));
const leaves = total - 1 - groups;
const files = new Map();
const pad = '// '.concat('x'.repeat(60), '\\n').repeat(12);
let count = 1;
const mainImports = [];
for (let g = 0; g < groups; g++) {
  const imports = [];
  for (let l = 0; l < Math.ceil((leaves - g) / groups); l++, count++) {
    files.set('/src/g' + g + '/m' + l + '.js',
      pad + 'export const v' + l + ' = ' + (g * 1000 + l) + ';\\nexport function f' + l + '(x) { return x + v' + l + '; }\\n');
    imports.push('import { f' + l + ' } from "./g' + g + '/m' + l + '.js";');
  }
  const calls = imports.map((_, l) => 'f' + l + '(0)').join(' + ') || '0';
  files.set('/src/g' + g + '.js', imports.join('\\n') + '\\n' + pad + 'export const g' + g + ' = () => ' + calls + ';\\n');
  mainImports.push('import { g' + g + ' } from "./g' + g + '.js";');
  count++;
}
files.set('/src/main.js', mainImports.join('\\n') + '\\nwindow.__modules = ' + (count) + ';\\n' +
  'document.body.textContent = "loaded " + (' + Array.from({ length: groups }, (_, g) => 'g' + g + '()').join(' + ') + ');\\n');
files.set('/', '<!doctype html><html><head><meta charset="utf-8"><title>app</title>' +
  '<script type="module" src="/src/main.js"></script></head><body>loading</body></html>');
const server = http.createServer((req, res) => {
  const body = files.get(req.url.split('?')[0]);
  if (body === undefined) { res.statusCode = 404; res.end(); return; }
  res.setHeader('content-type', req.url === '/' ? 'text/html' : 'text/javascript');
  res.setHeader('cache-control', 'no-cache');
  res.end(body);
});
server.keepAliveTimeout = 65000;
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + ' ' + count + '\\n'));
`;

interface Target {
  name: 'direct-h1' | 'relay-h1' | 'relay-h2';
  url: string;
  browser: Browser;
  protocol: string;
}

interface Load {
  ms: number;
  modules: number;
  protocols: string[];
}

async function loadOnce(target: Target): Promise<Load> {
  const context = await target.browser.newContext({ ignoreHTTPSErrors: true });
  try {
    const page = await context.newPage();
    const problems: string[] = [];
    const bodies: Promise<unknown>[] = [];
    page.on('requestfailed', (r) =>
      problems.push(`${r.failure()?.errorText ?? 'failed'} ${r.url()}`),
    );
    page.on('response', (r) => {
      if (r.status() >= 400 && !r.url().endsWith('/favicon.ico')) {
        problems.push(`${r.status()} ${r.url()}`);
        bodies.push(
          r.text().then(
            (body) => problems.push(body.slice(0, 300).replace(/\s+/g, ' ')),
            () => {},
          ),
        );
      }
    });
    await page.goto(target.url, { waitUntil: 'load', timeout: 120_000 });
    const result = (await page.evaluate(`(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const entries = [nav, ...performance.getEntriesByType('resource')];
      return {
        ms: nav.loadEventStart - nav.startTime,
        modules: window.__modules ?? 0,
        protocols: [...new Set(entries.map((e) => e.nextHopProtocol))],
      };
    })()`)) as Load;
    await Promise.all(bodies);
    if (problems.length > 0) {
      const bodyText = problems.find((p) => !/^(\d{3}|net::)/.test(p)) ?? '';
      throw new Error(
        `${target.name}: ${problems.length} failed requests, e.g. ${problems.slice(0, 2).join('; ')}; ${bodyText}`,
      );
    }
    return result;
  } finally {
    await context.close();
  }
}

export const pageBench: BenchCase = {
  name: 'page',
  description:
    'cold load of a 300-module dev app in headless Chromium over an emulated RTT: direct h1 vs relay h1 vs relay h2',
  params: PARAMS,
  async run(params, log) {
    const runs = Math.max(1, params.number('runs', PARAMS.runs));
    const rttMs = params.number('rtt-ms', PARAMS['rtt-ms']);
    const modules = params.number('modules', PARAMS.modules);
    const executablePath = params.string('chromium', PARAMS.chromium);
    log('building dist/ (tsc)…');
    await build();
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'qt-bench-page-'));
    const children: ChildProcess[] = [];
    const proxies: DelayProxy[] = [];
    const browsers: Browser[] = [];
    try {
      const app = spawnLogged(['-e', APP_SOURCE, String(modules)], 'app', log);
      children.push(app);
      const [appPort, appModules] = (await firstLine(app, /^\d+ \d+$/)).split(' ').map(Number);
      const httpPort = await freePort();
      const relay = spawnLogged(
        relayArgs('dist', { httpPort, dataDir, logLevel: 'info' }),
        'relay',
        log,
      );
      children.push(relay);
      const listening = JSON.parse(await firstLine(relay, /"relay listening"/)) as {
        httpsPort: number;
        certificate: string;
      };
      relay.stdout!.resume();
      const cli = spawnLogged(
        [
          ...entry('dist'),
          String(appPort),
          '--relay',
          `https://${DOMAIN}:${listening.httpsPort}`,
          '--ca',
          listening.certificate,
          '--log',
          'text',
          // No web inspector: the bench measures the tunnel (and dist/ has no UI assets).
          '--no-inspect',
        ],
        'cli',
        log,
      );
      children.push(cli);
      const line = await firstLine(cli, /^Forwarding /);
      const host = new URL(line.split(' ')[1]!).hostname;
      cli.stdout!.resume();

      const toApp = await startDelayProxy(appPort!, rttMs);
      const toRelay = await startDelayProxy(listening.httpsPort, rttMs);
      proxies.push(toApp, toRelay);
      const launch = async (extra: string[]): Promise<Browser> => {
        const b = await chromium.launch({
          executablePath,
          args: [...CHROMIUM_ARGS, ...extra],
          timeout: 60_000,
        });
        browsers.push(b);
        return b;
      };
      // HTTP/1.1 runs use a browser that does not offer h2 (ALPN http/1.1 only).
      const h1 = await launch(['--disable-http2']);
      const h2 = await launch([]);
      const targets: Target[] = [
        {
          name: 'direct-h1',
          url: `http://localhost:${toApp.port}/`,
          browser: h1,
          protocol: 'http/1.1',
        },
        {
          name: 'relay-h1',
          url: `https://${host}:${toRelay.port}/`,
          browser: h1,
          protocol: 'http/1.1',
        },
        { name: 'relay-h2', url: `https://${host}:${toRelay.port}/`, browser: h2, protocol: 'h2' },
      ];
      log(
        `app: ${appModules} modules; tunnel ${host}; emulated RTT ${rttMs} ms (delaying forwarder on loopback)`,
      );
      const times = new Map<Target['name'], number[]>(targets.map((t) => [t.name, []]));
      const ratios = { 'relay-h1': [] as number[], 'relay-h2': [] as number[] };
      for (let round = 0; round <= runs; round++) {
        const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
        const loads = new Map<Target['name'], number>();
        for (const target of order) {
          const load = await loadOnce(target);
          if (load.modules !== appModules) {
            throw new Error(`${target.name}: ${load.modules} of ${appModules} modules ran`);
          }
          if (load.protocols.length !== 1 || load.protocols[0] !== target.protocol) {
            throw new Error(`${target.name}: loaded over ${load.protocols.join(', ')}`);
          }
          loads.set(target.name, load.ms);
        }
        const line = targets.map((t) => `${t.name} ${loads.get(t.name)!.toFixed(0)} ms`).join(', ');
        if (round === 0) {
          log(`warm-up round: ${line}`);
          continue;
        }
        log(`round ${round}: ${line}`);
        for (const t of targets) times.get(t.name)!.push(loads.get(t.name)!);
        const direct = loads.get('direct-h1')!;
        ratios['relay-h1'].push(loads.get('relay-h1')! / direct);
        ratios['relay-h2'].push(loads.get('relay-h2')! / direct);
      }
      const med = (name: Target['name']): number => median(times.get(name)!);
      const direct = med('direct-h1');
      const result = {
        rttMs,
        modules: appModules,
        runs,
        directH1Ms: Math.round(direct),
        relayH1Ms: Math.round(med('relay-h1')),
        relayH2Ms: Math.round(med('relay-h2')),
        relayH1xDirect: Number((med('relay-h1') / direct).toFixed(2)),
        relayH2xDirect: Number((med('relay-h2') / direct).toFixed(2)),
        relayH1xDirectSameRound: Number(median(ratios['relay-h1']).toFixed(2)),
        relayH2xDirectSameRound: Number(median(ratios['relay-h2']).toFixed(2)),
      };
      log(
        `median load (${runs} cold loads each): direct h1 ${result.directH1Ms} ms, relay h1 ${result.relayH1Ms} ms (${result.relayH1xDirect}x), relay h2 ${result.relayH2Ms} ms (${result.relayH2xDirect}x; target ≤ 0.6x)`,
      );
      return result;
    } finally {
      for (const b of browsers) await b.close().catch(() => {});
      for (const p of proxies) await p.close();
      for (const c of children) c.kill('SIGKILL');
      await Promise.all(
        children.map((c) =>
          c.exitCode === null && c.signalCode === null ? once(c, 'exit') : undefined,
        ),
      );
      await rm(dataDir, { recursive: true, force: true });
    }
  },
};
